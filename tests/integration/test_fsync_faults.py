"""Slow and failing fsync (the `journal.sync` failpoint, armed per node through its failpoint file).

A slow sync stretches latency and loses nothing. A failed sync is never followed by an acknowledgement of
what it covered: the node stops (the fsyncgate rule), the others go on, every acknowledged write survives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from cairn import CairnError
from cairn_server import failpoints
from tests.support import ClusterHandle, start_cluster, wait_until


@pytest.fixture
def armed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterHandle, Callable[..., None]]]:
    root = tmp_path_factory.mktemp("fsync")
    files = {i: root / f"failpoints-{i}" for i in range(3)}
    for f in files.values():
        f.write_text("")
    handle = start_cluster(root / "cluster", 3, node_env=lambda i: {failpoints.FILE_ENV: str(files[i])})

    def arm(i: int, spec: str) -> None:
        files[i].write_text(spec)

    try:
        yield handle, arm
    finally:
        handle.close()


def writes(h: ClusterHandle, tag: str, count: int) -> tuple[dict[str, int], list[str]]:
    acked, failed = {}, []
    for n in range(count):
        wid = f"{tag}-{n:03d}"
        try:
            acked[wid] = h.client.persist_state(wid, variables={"n": n}, request_id=f"rid-{wid}", timeout=10).version
        except CairnError:
            failed.append(wid)
    return acked, failed


def test_slow_fsync_stretches_latency_and_loses_nothing(armed_cluster) -> None:
    h, arm = armed_cluster
    for i in range(3):
        arm(i, "journal.sync=sleep(150ms)")

    def one_write_is_slow() -> bool:  # the nodes re-read their failpoint files within about 50 ms
        started = time.monotonic()
        writes(h, f"warm-{time.monotonic_ns()}", 1)
        return time.monotonic() - started >= 0.15

    wait_until(one_write_is_slow, 10, "the slow-fsync failpoint never took effect")
    started = time.monotonic()
    acked, failed = writes(h, "slow", 10)
    elapsed = time.monotonic() - started
    assert failed == [] and elapsed >= 10 * 0.15, elapsed  # each write waited for a (slow) majority sync
    for i in range(3):
        arm(i, "")
    for wid, version in acked.items():
        assert h.client.get_state(wid).version == version


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_a_failed_fsync_stops_the_node_before_it_acknowledges(armed_cluster, role: str) -> None:
    h, arm = armed_cluster
    before, _ = writes(h, "before", 10)
    leader = h.wait_leader()
    victim = leader if role == "leader" else next(i for i in range(3) if i != leader)
    arm(victim, "journal.sync=error(EIO from the failpoint)")

    def stopped_after_a_write() -> bool:  # the victim syncs (and fails) only when there is something to sync
        writes(h, f"probe-{time.monotonic_ns()}", 1)
        return not h.cluster.alive(victim)

    wait_until(stopped_after_a_write, 30, f"the {role} whose fsync failed did not stop")
    assert h.cluster.procs[victim].returncode == 70
    log = h.log(victim)
    assert "Raft journal write failed" in log and "EIO from the failpoint" in log
    # Nothing after the failed sync was acknowledged by that node: it logged no apply, answered nothing.
    tail = log[log.index("Raft journal write failed") :]
    assert "installed snapshot" not in tail and "serving gRPC" not in tail
    after, failed = writes(h, "after", 10)
    assert failed == [], failed  # the two others carry on
    arm(victim, "")
    h.cluster.start_node(victim)
    commit = h.status(h.wait_leader()).commit_index
    h.wait_applied(victim, commit, timeout=30)
    local = h.node_client(victim)
    for wid, version in (before | after).items():
        assert local.get_state(wid, consistency="serializable").version == version
