"""Corruption at rest: a node whose files fail their checksums never serves or votes from them; it moves
them aside, rejoins empty and is re-filled by the leader, and the corruption reaches no client or replica."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos.nemesis import sst_data_end
from tests.support import ClusterHandle, stays_true, wait_until

WORKFLOWS = 40


def data_dir(h: ClusterHandle, i: int) -> Path:
    return h.cluster.specs[i].data_dir / "data"


def fill(h: ClusterHandle, tag: str) -> dict[str, int]:
    versions = {}
    for n in range(WORKFLOWS):
        wid = f"{tag}-{n:03d}"
        versions[wid] = h.client.persist_state(wid, variables={"n": n, "pad": "x" * 400}).version
    return versions


def flip_bits(path: Path, offsets: list[int]) -> None:
    with open(path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            byte = f.read(1)
            f.seek(off)
            f.write(bytes([byte[0] ^ 0x5A]))


def corrupt_sst(h: ClusterHandle, i: int) -> Path:
    """Flip bits inside the data blocks (found from each SST's metaindex) of every SST of node i: a flip in a
    filter or properties block is never read back, and one in a stretch of the Raft log that a range
    deletion covers is skipped by iterators (the node then finds it only when a compaction reads it)."""
    ssts = {p: sst_data_end(p.read_bytes()) for p in (data_dir(h, i) / "db").glob("*.sst")}
    targets = [p for p, end in ssts.items() if end > 64]
    assert targets, f"node {i} has no SST file to corrupt: {os.listdir(data_dir(h, i) / 'db')}"
    for path in targets:
        flip_bits(path, [ssts[path] // 4, ssts[path] // 2])
    return max(targets, key=lambda p: ssts[p])


def caught_up(h: ClusterHandle, i: int) -> bool:
    leader = h.wait_leader()
    target = h.status(leader).commit_index
    return h.status(i).applied_index >= target


def assert_replicas_agree(h: ClusterHandle, versions: dict[str, int]) -> None:
    for wid, version in list(versions.items())[:: max(1, WORKFLOWS // 8)]:
        result = h.client.validate_state(wid, timeout=10)
        assert result.valid, result.problems
        digests = {(r.version, r.digest) for r in result.replicas if r.reachable}
        assert len(digests) == 1 and all(r.reachable for r in result.replicas), result.replicas
        assert result.version == version


@pytest.mark.parametrize("what", ["sst", "snapshot"])
def test_a_corrupt_follower_moves_its_data_aside_and_is_refilled(make_cluster, what: str) -> None:
    h = make_cluster(3, {"raft": {"snapshot_entries": 50}})
    versions = fill(h, "before")
    follower = h.followers()[0]
    h.client.snapshot(h.endpoint(follower), timeout=10)  # a snapshot file and flushed SSTs on that node
    h.cluster.stop_node(follower)
    if what == "sst":
        corrupted = corrupt_sst(h, follower)
    else:
        corrupted = data_dir(h, follower) / "raft.snapshot"
        flip_bits(corrupted, [corrupted.stat().st_size // 2])
    versions |= fill(h, "while-down")
    h.cluster.start_node(follower)
    wait_until(lambda: "corrupt data found" in h.log(follower), 30, f"node {follower} did not detect {corrupted}")
    aside = list(data_dir(h, follower).glob("corrupt-*"))
    assert len(aside) == 1, aside
    wait_until(lambda: caught_up(h, follower), 60, f"node {follower} was not re-filled by the leader")
    wait_until(lambda: "voting again" in h.log(follower), 30, f"node {follower} never ended its rejoin")
    # What the rebuilt node serves locally is the cluster's data, not the corrupt file's.
    local = h.node_client(follower)
    for wid, version in versions.items():
        got = local.get_state(wid, consistency="serializable")
        assert (got.version, got.variables["n"]) == (version, int(wid.rsplit("-", 1)[1]))
    assert_replicas_agree(h, versions)


def test_a_rejoining_node_does_not_vote_until_it_has_caught_up(make_cluster) -> None:
    """With the leader gone right after the corrupt node restarts, the two left must not elect anyone: the
    rejoined node may have acknowledged entries it lost, so its vote could elect a leader without them."""
    h = make_cluster(3, {"raft": {"snapshot_entries": 50}})
    fill(h, "a")
    leader = h.wait_leader()
    follower = next(i for i in range(3) if i != leader)
    other = 3 - leader - follower
    h.client.snapshot(h.endpoint(follower), timeout=10)
    h.cluster.stop_node(follower)
    corrupt_sst(h, follower)
    h.kill(leader)
    h.cluster.start_node(follower)
    wait_until(lambda: "corrupt data found" in h.log(follower), 30, "the corrupt node did not detect its corruption")
    stays_true(
        lambda: h.leader_index([follower, other]) is None,
        4.0,
        "a leader was elected with the vote of a node that had just lost its data",
    )
    # Restarted before it caught up, it is still rejoining (its data now verifies, but it is not complete).
    h.kill(follower)
    h.cluster.start_node(follower)
    wait_until(lambda: h.log(follower).count("rejoining after data loss") == 2, 30, "no second start")
    stays_true(
        lambda: h.leader_index([follower, other]) is None,
        4.0,
        "a restart made a node that had lost its data vote before catching up",
    )
    h.cluster.start_node(leader)
    wait_until(lambda: caught_up(h, follower), 60, "the rejoined node never caught up once the old leader was back")
    wait_until(lambda: "voting again" in h.log(follower), 30, "the rejoin never ended")
    wait_until(lambda: not (data_dir(h, follower) / "REJOINING").exists(), 10, "the rejoin marker was kept")
