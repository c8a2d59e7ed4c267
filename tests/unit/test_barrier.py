"""The read barrier's ordering and batching rules, with pysyncobj's propose faked (an edge we do not own)."""

from __future__ import annotations

import threading
from collections.abc import Callable
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

    t = threading.Thread(target=run)
    t.start()
    return t


def test_a_reader_arriving_mid_flight_waits_for_the_next_barrier() -> None:
    replica = FakeReplica()
    barrier = ReadBarrier(replica, retry_after=10)
    results: dict = {}
    a = reader(barrier, results, "a")
    wait_until(lambda: len(replica.proposals) == 1, 2, "first barrier not proposed")
    b = reader(barrier, results, "b")
    c = reader(barrier, results, "c")
    replica.apply(0)  # the in-flight barrier was proposed before b and c began: it answers only a
    a.join(2)
    assert results == {"a": 1}
    wait_until(lambda: len(replica.proposals) == 2, 2, "the next barrier was not proposed")
    replica.apply(1)  # one barrier serves every reader that gathered meanwhile
    b.join(2)
    c.join(2)
    assert results == {"a": 1, "b": 2, "c": 2} and len(replica.proposals) == 2


def test_a_lost_barrier_is_proposed_again_for_the_same_readers() -> None:
    replica = FakeReplica()
    barrier = ReadBarrier(replica, retry_after=0.05)
    results: dict = {}
    t = reader(barrier, results, "a")
    wait_until(lambda: len(replica.proposals) >= 2, 2, "the lost barrier was not proposed again")
    replica.apply(1)
    t.join(2)
    assert results == {"a": 1} and barrier.reproposed >= 1
    replica.apply(0)  # the lost one turns up late: ignored, nothing breaks


def test_a_failed_barrier_fails_its_readers_as_unavailable() -> None:
    replica = FakeReplica()
    barrier = ReadBarrier(replica, retry_after=10)
    results: dict = {}
    t = reader(barrier, results, "a")
    wait_until(lambda: replica.proposals, 2, "not proposed")
    replica.apply(0, FAIL_REASON.NOT_LEADER)
    t.join(2)
    assert isinstance(results["a"], Unavailable) and results["a"].leader == "leader:1"


def test_a_barrier_that_never_commits_times_out() -> None:
    from cairn_server.errors import DeadlineExceeded

    barrier = ReadBarrier(FakeReplica(), retry_after=0.02)
    with pytest.raises(DeadlineExceeded):
        barrier.wait(0.1)
