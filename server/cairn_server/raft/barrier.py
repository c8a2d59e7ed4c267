"""The read barrier: one replicated no-op serves every linearizable read waiting at that moment.

A read joins the next barrier; while one barrier is in flight, new readers gather for the one
after it (they arrived after the in-flight one was proposed, so it cannot order them). When the
barrier is applied on this node, every write committed before the read began is applied too.

A barrier can be lost without a word (pysyncobj drops a forwarded command when the connection to
the leader is down), so a barrier not applied within `retry_after` is proposed again for the same
readers: any barrier proposed after a read began orders it correctly. A barrier that fails (no
leader, lost quorum) fails its readers with UNAVAILABLE; a read is never answered from a replica
that has not applied a barrier proposed after it began.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from pysyncobj import FAIL_REASON

from cairn_server.internal import command_pb2

from ..errors import DeadlineExceeded, Unavailable
from .replica import Replica

_BARRIER = command_pb2.Command(barrier=command_pb2.BarrierOp()).SerializeToString()


class ReadBarrier:
    def __init__(self, replica: Replica, *, retry_after: float = 0.5):
        self._replica = replica
        self._retry_after = retry_after
        self._lock = threading.RLock()  # a full queue calls back synchronously, under the lock
        self._next: Future | None = None
        self._in_flight: Future | None = None
        self._generation = 0
        self._proposed_at = 0.0
        self.reproposed = 0

    def wait(self, timeout: float) -> int:
        """Block until a barrier proposed after this call is applied here; returns the applied index."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._next is None:
                self._next = Future()
            mine = self._next
            if self._in_flight is None:
                self._launch_locked()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(
                    "linearizable read timed out waiting for the read barrier; the cluster may have no quorum",
                    leader=self._replica.leader_address(),
                )
            try:
                return mine.result(min(left, self._retry_after))
            except TimeoutError:
                with self._lock:
                    if self._in_flight is mine and time.monotonic() - self._proposed_at >= self._retry_after:
                        self.reproposed += 1
                        self._propose_locked(mine)

    def _launch_locked(self) -> None:
        fut, self._next = self._next, None
        assert fut is not None
        self._in_flight = fut
        self._propose_locked(fut)

    def _propose_locked(self, fut: Future) -> None:
        self._generation += 1
        generation = self._generation
        self._proposed_at = time.monotonic()

        def done(_result: object, error: int) -> None:
            with self._lock:
                if self._in_flight is not fut or fut.done():
                    return  # already answered by another proposal for the same readers
                if error != FAIL_REASON.SUCCESS and generation != self._generation:
                    return  # a newer proposal for these readers is still in flight
                self._in_flight = None
                if error == FAIL_REASON.SUCCESS:
                    fut.set_result(self._replica.applied_index())
                else:
                    fut.set_exception(
                        Unavailable(
                            "read barrier failed (leader change or no quorum)", leader=self._replica.leader_address()
                        )
                    )
                if self._next is not None:
                    self._launch_locked()

        self._replica.propose_async(_BARRIER, done)
