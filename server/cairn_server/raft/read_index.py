"""Read index (Raft thesis §6.4): a leader confirms it still leads with one heartbeat round, without a log entry.

A linearizable read on the leader takes the commit index when it arrives (the leader must have committed an
entry of its own term, or that index could be behind), then waits until a majority has answered an
append-entries message the leader sent *after* the read arrived, then until that index is applied here. If a
newer leader existed when the read arrived, a majority had already moved to its higher term and would ignore
this leader's messages (pysyncobj answers only append-entries of its own term or newer), so no majority could
answer: the read waits, and fails when this node steps down or the deadline passes. It never answers stale.

Which answer belongs to which message: every append-entries message the leader sends carries the read
counter at the moment it is sent ("cairn_read"), and a follower echoes the value of the message it is
answering. A read joins the round with the highest number when no message has carried that number yet
(every message stamped with it leaves after the read arrived); otherwise it opens the next round. A round is
confirmed when, with the leader itself, a majority has echoed its number or a higher one.

This module is the bookkeeping only; `Replica` stamps, echoes and feeds the answers in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future


class ReadRounds:
    """Rounds of leadership confirmation; thread-safe (readers on gRPC threads, answers on the Raft thread)."""

    def __init__(self, members: int):
        self._needed = members // 2  # answers from others that make a majority with the leader
        self._lock = threading.Lock()
        self._counter = 0  # the newest round's number
        self._stamped = 0  # the newest number a sent message has carried
        self._echoed: dict[object, int] = {}  # follower -> the highest number it echoed this leadership
        self._rounds: dict[int, Future[None]] = {}

    def open(self) -> Future[None]:
        """The round a read arriving now joins; done once a majority confirmed this leader after now."""
        with self._lock:
            if self._counter <= self._stamped:  # the newest round's number has been sent: too early for us
                self._counter += 1
            round_ = self._rounds.get(self._counter)
            if round_ is None:
                round_ = self._rounds[self._counter] = Future()
                self._confirm_locked()  # a single-member cluster confirms at once
            return round_

    def stamp(self) -> int:
        """The number an append-entries message carries, taken as it is sent."""
        with self._lock:
            self._stamped = self._counter
            return self._counter

    def answered(self, follower: object, echoed: int) -> None:
        """A follower's answer to a message that carried `echoed`."""
        with self._lock:
            if echoed > self._echoed.get(follower, 0):
                self._echoed[follower] = echoed
                self._confirm_locked()

    def _confirm_locked(self) -> None:
        for number in sorted(self._rounds):
            if sum(1 for echoed in self._echoed.values() if echoed >= number) < self._needed:
                return  # later rounds need at least as much
            self._rounds.pop(number).set_result(None)

    def reset(self, error: Callable[[], BaseException]) -> None:
        """Leadership began or ended: answers from before say nothing now; waiting reads fail with `error()`."""
        with self._lock:
            rounds, self._rounds = list(self._rounds.values()), {}
            self._echoed.clear()
        for round_ in rounds:
            if not round_.done():
                round_.set_exception(error())
