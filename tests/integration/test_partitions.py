"""Partitions with real network namespaces (root only): stale reads and trap 1.

Each node runs in its own namespace; the test process reaches every node over a bridge, and a
partition is a blackhole route between nodes' namespaces.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cairn import Client
from cairn.errors import CairnError
from cairn.v1 import state_pb2, state_pb2_grpc
from cairn_server.local_cluster import LocalCluster
from chaos.netns import NetnsNetwork, netns_available
from tests.support import ClusterHandle, wait_until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not netns_available(), reason="network namespaces need root (the SIGSTOP test covers others)"),
]


@pytest.fixture
def netns_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[ClusterHandle, NetnsNetwork]]:
    env = getattr(request, "param", {}) or {}
    net = NetnsNetwork(3, prefix="czt", subnet="10.213.7").create()
    cluster = LocalCluster(
        tmp_path,
        nodes=3,
        base_port=50051,
        hosts=[net.address(i) for i in range(3)],
        wrap=net.exec_prefix,
        env=env,
        overrides={"limits": {"request_timeout": "15s"}, "raft": {"snapshot_entries": 20}},
    )
    handle = ClusterHandle(cluster, Client(cluster.endpoints, timeout=20))
    try:
        cluster.start()
        handle.wait_leader(30)
        yield handle, net
    finally:
        handle.close()
        net.destroy()


def test_an_isolated_leader_never_serves_a_stale_linearizable_read(netns_cluster) -> None:
    c, net = netns_cluster
    old = c.wait_leader()
    c.client.persist_state("iso", current_step="before")
    c.wait_applied(old, c.status(old).commit_index)
    net.isolate(old)
    others = [i for i in range(3) if i != old]
    c.wait_leader(among=others, timeout=20)
    Client([c.endpoint(i) for i in others], timeout=10).persist_state("iso", current_step="after")
    # The isolated node's replica is stale (the serializable read proves it) ...
    assert c.node_client(old).get_state("iso", consistency="serializable").current_step == "before"
    # ... yet a linearizable read there refuses rather than answer from it.
    with pytest.raises(CairnError) as err:
        c.node_client(old, timeout=4).get_state("iso")
    assert err.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    net.heal()
    got = wait_until(lambda: c.node_client(old, timeout=3).get_state("iso"), 20, "no read after heal")
    assert got.current_step == "after"


@pytest.mark.parametrize("netns_cluster", [{"CAIRN_TEST_ONLY_UNSAFE_LOCAL_READS": "1"}], indirect=True)
def test_unsafe_local_reads_mode_does_serve_stale_reads(netns_cluster) -> None:
    """The test-only flag exists so the chaos checker can be shown to catch stale reads: prove it does."""
    c, net = netns_cluster
    old = c.wait_leader()
    c.client.persist_state("unsafe", current_step="before")
    c.wait_applied(old, c.status(old).commit_index)
    net.isolate(old)
    others = [i for i in range(3) if i != old]
    c.wait_leader(among=others, timeout=20)
    Client([c.endpoint(i) for i in others], timeout=10).persist_state("unsafe", current_step="after")
    assert c.node_client(old).get_state("unsafe").current_step == "before"


def test_trap1_a_rejoining_old_leader_never_commits_its_unreplicated_entry(netns_cluster) -> None:
    """RAFT-NOTES trap 1: partition the leader, write to it, compact the majority's log, heal.

    Stock pysyncobj lets the snapshot-transfer messages advance the old leader's commit index over
    its own never-replicated entry: it is applied and the waiting client is told SUCCESS.
    """
    c, net = netns_cluster
    old = c.wait_leader()
    c.client.persist_state("base", current_step="ok")
    c.wait_applied(old, c.status(old).commit_index)
    before = c.status(old).last_log_index
    net.isolate(old)
    outcome: dict[str, object] = {}

    def stale_write() -> None:
        stub = state_pb2_grpc.StateServiceStub(grpc.insecure_channel(c.endpoint(old)))
        try:
            stub.PersistState(
                state_pb2.PersistStateRequest(workflow_id="stale", current_step="ghost", request_id="stale-1"),
                timeout=40,
            )
            outcome["result"] = "OK"
        except grpc.RpcError as err:
            outcome["result"] = err.code().name

    writer = threading.Thread(target=stale_write)
    writer.start()
    wait_until(lambda: c.status(old).last_log_index > before, 5, "the isolated leader did not take the write")
    others = [i for i in range(3) if i != old]
    c.wait_leader(among=others, timeout=20)
    majority = Client([c.endpoint(i) for i in others], timeout=10)
    # A snapshot of many 64 KiB chunks, so that its transfer spans several ticks of the old leader.
    blob = "x" * 200_000
    for n in range(60):
        majority.persist_state(f"after-{n % 30}", current_step=f"s{n}", variables={"blob": blob})
    for i in others:
        majority.snapshot(c.endpoint(i))
    assert min(c.status(i).snapshot_index for i in others) > c.status(old).last_log_index
    net.heal()
    commit = c.status(others[0]).commit_index
    c.wait_applied(old, commit, timeout=30)
    assert "installed snapshot" in c.log(old), "the old leader did not catch up through a snapshot"
    writer.join(45)
    assert outcome.get("result") != "OK", "an unreplicated write was acknowledged"
    for i in range(3):
        with pytest.raises(CairnError, match="does not exist"):
            c.node_client(i).get_state("stale", consistency="serializable")
    assert c.client.validate_state("after-1").valid
