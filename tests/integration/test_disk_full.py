"""A full disk: the node whose disk fills stops instead of acknowledging what it could not write; the
cluster keeps its acknowledged writes; the node comes back when space returns; no corrupt state is left.

Each node's data directory is a small tmpfs (LocalCluster.data_tmpfs_mib; root, which .ci/run is)."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn import CairnError
from tests.support import ClusterHandle, start_cluster, wait_until

DISK_MIB = 48


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    handle = start_cluster(tmp_path_factory.mktemp("diskfull"), 3, data_tmpfs_mib=DISK_MIB)
    try:
        yield handle
    finally:
        handle.close()
        assert handle.cluster.unmount_data() == []


def fill_disk(h: ClusterHandle, i: int) -> Path:
    ballast = h.cluster.specs[i].node_data_dir / "ballast"
    with open(ballast, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return ballast


def write_until_refused(h: ClusterHandle, tag: str, count: int) -> tuple[dict[str, int], list[str]]:
    acked, refused = {}, []
    for n in range(count):
        wid = f"{tag}-{n:03d}"
        try:
            acked[wid] = h.client.persist_state(wid, variables={"n": n}, timeout=3).version
        except CairnError as exc:
            refused.append(f"{wid}: {exc.code}")
    return acked, refused


def converged(h: ClusterHandle, wid: str) -> bool:
    result = h.client.validate_state(wid, timeout=10)
    return result.valid and all(r.reachable for r in result.replicas) and len({r.digest for r in result.replicas}) == 1


def wait_converged(h: ClusterHandle, wid: str) -> None:
    """Every replica holds the same records for `wid` (a restarted node may still be catching up: poll)."""
    wait_until(lambda: converged(h, wid), 60, f"the replicas of {wid} did not converge")


def test_one_full_disk_stops_that_node_and_loses_nothing(cluster: ClusterHandle) -> None:
    h = cluster
    victim = h.followers()[0]
    before, _ = write_until_refused(h, "before", 20)
    ballast = fill_disk(h, victim)
    during, refused = write_until_refused(h, "during", 100)
    assert refused == [] and len(during) == 100  # a majority still has room: the cluster goes on
    wait_until(lambda: not h.cluster.alive(victim), 30, "the node with a full disk did not stop")
    assert h.cluster.procs[victim].returncode not in (0, None)
    assert "No space left on device" in h.log(victim)
    assert re.search(r"stopping (the )?node", h.log(victim)), h.log(victim)[-2000:]
    ballast.unlink()
    h.cluster.start_node(victim)
    leader = h.wait_leader()
    commit = h.status(leader).commit_index
    h.wait_applied(victim, commit, timeout=30)
    local = h.node_client(victim)
    for wid, version in (before | during).items():
        assert local.get_state(wid, consistency="serializable").version == version
    wait_converged(h, "during-099")
    wait_converged(h, "before-000")
    assert not list(h.cluster.specs[victim].node_data_dir.glob("corrupt-*"))  # full is not corrupt


def test_a_majority_of_full_disks_refuses_writes_and_loses_nothing_acknowledged(cluster: ClusterHandle) -> None:
    h = cluster
    before, _ = write_until_refused(h, "before", 20)
    leader = h.wait_leader()
    full = [leader, (leader + 1) % 3]
    ballasts = [fill_disk(h, i) for i in full]
    during, refused = write_until_refused(h, "during", 10)
    wait_until(lambda: not any(h.cluster.alive(i) for i in full), 30, "nodes with full disks did not stop")
    late, late_refused = write_until_refused(h, "late", 5)
    assert late == {} and len(late_refused) == 5  # no majority can write: nothing is acknowledged
    assert all(code.endswith(("UNAVAILABLE", "DEADLINE_EXCEEDED")) for code in late_refused), late_refused
    for ballast in ballasts:
        ballast.unlink()
    for i in full:
        h.cluster.start_node(i)
    h.wait_leader(timeout=30)
    for wid, version in (before | during).items():
        got = h.client.get_state(wid)
        assert got.version == version, (wid, got.version, version)
    for wid in (w.split(":")[0] for w in refused + late_refused):
        try:
            assert h.client.get_state(wid).version == 1  # an unacknowledged write applied at most once
        except CairnError as exc:
            assert exc.code == "NOT_FOUND"
    wait_converged(h, "before-019")
