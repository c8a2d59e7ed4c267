"""Partitions with real network namespaces (root only): stale reads and trap 1.

Each node runs in its own namespace; the test process reaches every node over a bridge, and a
partition is a blackhole route between nodes' namespaces.

The stale-read tests read from the old leader while it is cut off in the minority, first while it still
believes it leads (node1 is slow to step down, see test_promises.py) and again after it stepped down,
with the check test_promises.py uses; the unsafe twin runs the same scenario and check with the test-only
local reads, where the check must see the stale reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cairn import Client
from cairn.errors import CairnError
from cairn.v1 import state_pb2, state_pb2_grpc
from cairn_server.local_cluster import LocalCluster
from chaos.netns import NetnsNetwork, netns_available
from tests.integration.test_promises import (
    READ_DEADLINE,
    SLOW_LEADER,
    MinorityReads,
    check_minority_reads,
    logs_on_failure,
    reads_until_stepped_down,
    start_read,
    start_slow_leader_cluster,
    state_stub,
)
from tests.support import ClusterHandle, wait_until

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not netns_available(), reason="network namespaces need root (test_promises.py: the SIGSTOP version)"
    ),
]


@pytest.fixture
def netns_cluster(tmp_path: Path) -> Iterator[tuple[ClusterHandle, NetnsNetwork]]:
    net = NetnsNetwork(3, prefix="czt", subnet="10.213.7").create()
    cluster = LocalCluster(
        tmp_path,
        nodes=3,
        base_port=50051,
        hosts=[net.address(i) for i in range(3)],
        wrap=net.exec_prefix,
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


@pytest.fixture
def slow_leader_netns_cluster(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[ClusterHandle, NetnsNetwork]]:
    """node1 leads and is slow to step down (test_promises.SLOW_LEADER_NODE); param: the test-only local reads."""
    unsafe = bool(getattr(request, "param", False))
    net = NetnsNetwork(3, prefix="czrd", subnet="10.213.8").create()
    try:
        handle = start_slow_leader_cluster(
            tmp_path, unsafe=unsafe, base_port=50051, hosts=[net.address(i) for i in range(3)], wrap=net.exec_prefix
        )
        try:
            yield handle, net
        finally:
            handle.close()
    finally:
        net.destroy()


def read_from_isolated_old_leader(c: ClusterHandle, net: NetnsNetwork, wid: str) -> MinorityReads:
    """node1 leads. Cut it off; the other two elect a new leader, which acknowledges `after`; read `wid` from
    node1 only, while it is still cut off: once while it still believes it leads, once after it stepped down."""
    old = SLOW_LEADER
    assert c.wait_leader() == old
    others = [i for i in range(c.size) if i != old]
    before = c.client.persist_state(wid, current_step="before")
    c.wait_applied(old, before.applied_index)
    old_term = c.status(old).term
    channel, stub = state_stub(c.endpoint(old))
    try:
        cut_off = time.monotonic()
        net.isolate(old)  # the test process still reaches every node
        new = c.wait_leader(20, among=others)
        after = c.node_client(new, timeout=10).persist_state(wid, current_step="after")
        assert after.version == before.version + 1
        # Begun after `after` was acknowledged: it must not return `before`.
        first = start_read(stub, wid, READ_DEADLINE)
        return reads_until_stepped_down(c, old, stub, wid, old_term, cut_off, {"sent while it led": first})
    finally:
        channel.close()


def test_an_isolated_leader_never_serves_a_stale_linearizable_read(slow_leader_netns_cluster) -> None:
    c, net = slow_leader_netns_cluster
    with logs_on_failure(c, close=False):
        check_minority_reads(read_from_isolated_old_leader(c, net, "iso"), unsafe=False)
        # After healing, the old leader catches up and serves the acknowledged value.
        net.heal()
        got = wait_until(lambda: c.node_client(SLOW_LEADER, timeout=3).get_state("iso"), 30, "no read after heal")
        assert got.current_step == "after"


@pytest.mark.parametrize("slow_leader_netns_cluster", [True], indirect=True, ids=["unsafe-local-reads"])
def test_unsafe_local_reads_mode_does_serve_stale_reads(slow_leader_netns_cluster) -> None:
    """The test-only flag exists so that stale-read checks can be shown to catch stale reads: the same scenario and
    the same check as above, which must see every read stale here."""
    c, net = slow_leader_netns_cluster
    with logs_on_failure(c, close=False):
        check_minority_reads(read_from_isolated_old_leader(c, net, "unsafe"), unsafe=True)


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
