"""The read barrier: one replicated no-op serves every linearizable read waiting at that moment.

A read joins the next barrier; while one barrier is in flight, new readers gather for the one
after it (they arrived after the in-flight one was proposed, so it cannot order them). When the
barrier is applied on this node, every write committed before the read began is applied too.
A barrier that never commits (lost leadership, minority partition) fails its readers with
UNAVAILABLE after a deadline, rather than answering from stale state.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from pysyncobj import FAIL_REASON

from cairn.internal import command_pb2

from ..errors import DeadlineExceeded, Unavailable
from .replica import Replica

_BARRIER = command_pb2.Command(barrier=command_pb2.BarrierOp()).SerializeToString()


class ReadBarrier:
    def __init__(self, replica: Replica, *, stall_after: float = 3.0):
        self._replica = replica
        self._stall_after = stall_after
        self._lock = threading.Lock()
        self._next: Future | None = None
        self._in_flight: Future | None = None
        self._in_flight_since = 0.0
        self.proposed = 0

    def wait(self, timeout: float) -> int:
        """Block until a barrier proposed after this call is applied here; returns its index."""
        with self._lock:
            if self._in_flight is not None and time.monotonic() - self._in_flight_since > self._stall_after:
                stalled, self._in_flight = self._in_flight, None
                stalled.set_exception(
                    Unavailable(
                        "read barrier did not commit: no quorum reachable", leader=self._replica.leader_address()
                    )
                )
            if self._next is None:
                self._next = Future()
            mine = self._next
            if self._in_flight is None:
                self._launch_locked()
        try:
            return mine.result(timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                "linearizable read timed out waiting for the read barrier; the cluster may have no quorum",
                leader=self._replica.leader_address(),
            ) from None

    def _launch_locked(self) -> None:
        fut, self._next = self._next, None
        assert fut is not None
        self._in_flight, self._in_flight_since = fut, time.monotonic()
        self.proposed += 1

        def done(result: object, error: int) -> None:
            if not fut.done():
                if error == FAIL_REASON.SUCCESS:
                    fut.set_result(self._replica._machine.applied_index)
                else:
                    fut.set_exception(
                        Unavailable(
                            "read barrier failed (leader change or no quorum)", leader=self._replica.leader_address()
                        )
                    )
            with self._lock:
                if self._in_flight is fut:
                    self._in_flight = None
                    if self._next is not None:
                        self._launch_locked()

        self._replica.propose_async(_BARRIER, done)
