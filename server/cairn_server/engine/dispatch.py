"""Handing pending runs to long-polling workers, on the leader.

A poll looks at the head of the queue of each type it serves, skips runs another poll on this node is
claiming right now, and proposes a claim for the earliest ready one. With nothing ready it waits on a
condition that apply signals whenever a run becomes PENDING (start, retry, release, expired lease), or
until the earliest waiting run's ready time: no busy loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cairn.v1 import state_pb2
from cairn_server.internal import command_pb2

from .. import clock
from ..statemachine import StateMachine
from ..storage import Batch
from . import queue

_SCAN = 16
_MAX_WAIT_SLICE = 1.0


class Dispatcher:
    def __init__(self, machine: StateMachine):
        self._machine = machine
        self._cond = threading.Condition()
        self._claiming: set[str] = set()
        self._pending_seen = False
        self._generation = 0
        machine.on_change(self._note_change)
        machine.on_committed(self._wake)

    def _note_change(self, _cmd: command_pb2.Command, _batch: Batch, state: state_pb2.WorkflowState) -> None:
        if state.HasField("run") and state.run.status == state_pb2.PENDING:
            self._pending_seen = True

    def _wake(self) -> None:
        if self._pending_seen:
            self._pending_seen = False
            self.wake()

    def wake(self) -> None:
        """Every waiting poll looks again (new work, or one of them lost its caller)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    @property
    def generation(self) -> int:
        """Read before looking for work; `wait(since=...)` returns at once if anything woke polls meanwhile."""
        with self._cond:
            return self._generation

    @contextmanager
    def candidate(self, workflow_types: list[str], now_ns: int, skip: set[str]) -> Iterator[str | None]:
        """The earliest ready run of these types that no other poll here is claiming (reserved while inside);
        `skip`: runs this poll already failed to claim."""
        with self._cond:
            best: tuple[int, str] | None = None
            for workflow_type in workflow_types:
                for ready_ns, workflow_id in queue.ready_runs(self._machine.store, workflow_type, now_ns, _SCAN):
                    if workflow_id not in self._claiming and workflow_id not in skip:
                        if best is None or ready_ns < best[0]:
                            best = (ready_ns, workflow_id)
                        break
            if best is not None:
                self._claiming.add(best[1])
        try:
            yield best[1] if best else None
        finally:
            if best is not None:
                with self._cond:
                    self._claiming.discard(best[1])
                    self._generation += 1
                    self._cond.notify_all()

    def wait(self, workflow_types: list[str], deadline: float, since: int) -> None:
        """Until a run may have become ready, the earliest waiting one's ready time, or `deadline` (monotonic).
        `since`: the generation read before the caller looked for work (no wake-up between is lost)."""
        now_ns = clock.now_ns()
        soonest = min(
            (t for t in (queue.next_ready_time(self._machine.store, wt) for wt in workflow_types) if t is not None),
            default=None,
        )
        timeout = max(0.0, deadline - time.monotonic())
        if soonest is not None:
            timeout = min(timeout, max(0.01, (soonest - now_ns) / 1e9))
        with self._cond:
            if self._generation == since:
                self._cond.wait(min(timeout, _MAX_WAIT_SLICE))
