"""The read barrier's ordering and batching rules, with pysyncobj's propose faked (an edge we do not own)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import pytest
from pysyncobj import FAIL_REASON

from cairn_server.errors import Unavailable
from cairn_server.raft.barrier import ReadBarrier
from tests.support import wait_until


@dataclass
class Machine:
    applied_index: int = 0


@dataclass
class FakeReplica:
    """Records proposals; the test decides when (and whether) each is applied."""

    proposals: list[Callable[[object, int], None]] = field(default_factory=list)
    _machine: Machine = field(default_factory=Machine)

    def propose_async(self, _payload: bytes, callback: Callable[[object, int], None]) -> None:
        self.proposals.append(callback)

    def leader_address(self) -> str | None:
        return "leader:1"

    def applied_index(self) -> int:
        return self._machine.applied_index

    def apply(self, n: int, error: int = FAIL_REASON.SUCCESS) -> None:
        self._machine.applied_index += 1
        self.proposals[n](None, error)


def reader(barrier: ReadBarrier, results: dict, name: str, timeout: float = 5.0) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = barrier.wait(timeout)
        except Exception as exc:
            results[name] = exc

    t = threading.Thread(target=run, name=f"reader-{name}", daemon=True)  # daemon: a hung one cannot hang pytest
    t.start()
    return t


def finished(*threads: threading.Thread, timeout: float = 5.0) -> None:
    """Join each thread with a timeout and fail if any is still running (waiting on a barrier forever)."""
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), f"{t.name} still waiting after {timeout}s"


def parked(t: threading.Thread) -> bool:
    """True once `t` blocks in Future.result inside ReadBarrier.wait: it has joined a barrier."""
    callee, frame = None, sys._current_frames().get(t.ident or -1)
    while frame is not None:
        if frame.f_code is ReadBarrier.wait.__code__:
            return callee is not None and callee.f_code is Future.result.__code__
        callee, frame = frame, frame.f_back
    return False


def test_a_reader_arriving_mid_flight_waits_for_the_next_barrier() -> None:
    replica = FakeReplica()
    barrier = ReadBarrier(replica, retry_after=10)
    results: dict = {}
    a = reader(barrier, results, "a")
    wait_until(lambda: len(replica.proposals) == 1, 2, "first barrier not proposed")
    b = reader(barrier, results, "b")
    c = reader(barrier, results, "c")
    wait_until(lambda: parked(b) and parked(c), 2, "b and c did not start waiting")
    replica.apply(0)  # the in-flight barrier was proposed before b and c began: it answers only a
    finished(a)
    assert results == {"a": 1}
    wait_until(lambda: len(replica.proposals) == 2, 2, "the next barrier was not proposed")
    replica.apply(1)  # one barrier serves every reader that gathered meanwhile
    finished(b, c)
    assert results == {"a": 1, "b": 2, "c": 2} and len(replica.proposals) == 2


def test_a_lost_barrier_is_proposed_again_for_the_same_readers() -> None:
    replica = FakeReplica()
    barrier = ReadBarrier(replica, retry_after=0.05)
    results: dict = {}
    t = reader(barrier, results, "a")
    wait_until(lambda: len(replica.proposals) >= 2, 2, "the lost barrier was not proposed again")
    replica.apply(1)
    finished(t)
    assert results == {"a": 1} and barrier.reproposed >= 1
    replica.apply(0)  # the lost one turns up late: ignored, nothing breaks


def test_a_failed_barrier_fails_its_readers_as_unavailable() -> None:
    replica = FakeReplica()
    barrier = ReadBarrier(replica, retry_after=10)
    results: dict = {}
    t = reader(barrier, results, "a")
    wait_until(lambda: replica.proposals, 2, "not proposed")
    replica.apply(0, FAIL_REASON.NOT_LEADER)
    finished(t)
    assert isinstance(results["a"], Unavailable) and results["a"].leader == "leader:1"


def test_a_barrier_that_never_commits_times_out() -> None:
    from cairn_server.errors import DeadlineExceeded

    barrier = ReadBarrier(FakeReplica(), retry_after=0.02)
    with pytest.raises(DeadlineExceeded):
        barrier.wait(0.1)
