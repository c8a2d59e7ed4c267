"""Linearizable reads on the leader use the read index: no log entry, yet never served without a majority
confirming the leadership after the read arrived."""

from __future__ import annotations

import grpc
import pytest

from cairn.v1 import state_pb2
from tests.raw import Raw, new_id, stopped, struct
from tests.support import ClusterHandle


def test_reads_on_the_leader_add_no_log_entry_and_see_the_latest_write(shared_cluster: ClusterHandle) -> None:
    raw = Raw(shared_cluster)
    try:
        leader = raw.leader()
        wid = new_id("ri")
        for n in range(5):
            raw.state(leader).PersistState(
                state_pb2.PersistStateRequest(workflow_id=wid, variables=struct({"n": n}), request_id=new_id("r")),
                timeout=10,
            )
        before = raw.status(leader).last_log_index
        for _ in range(20):
            state = raw.state(leader).GetState(state_pb2.GetStateRequest(workflow_id=wid), timeout=10).state
            assert state.version == 5 and state.variables.fields["n"].number_value == 4
        assert raw.status(leader).last_log_index == before
        # A follower still reads through the barrier (an entry), and sees the same.
        follower = raw.follower()
        state = raw.state(follower).GetState(state_pb2.GetStateRequest(workflow_id=wid), timeout=10).state
        assert state.version == 5
    finally:
        raw.close()


def test_a_leader_without_a_majority_does_not_answer_a_linearizable_read(
    make_cluster,
) -> None:
    handle: ClusterHandle = make_cluster(3, {"raft": {"election_timeout": "4s", "heartbeat_interval": "100ms"}})
    raw = Raw(handle)
    try:
        leader = raw.leader()
        wid = new_id("ri")
        raw.state(leader).PersistState(
            state_pb2.PersistStateRequest(workflow_id=wid, request_id=new_id("r")), timeout=10
        )
        followers = [i for i in range(handle.size) if i != leader]
        with stopped(handle, followers):
            with pytest.raises(grpc.RpcError) as refused:
                raw.state(leader).GetState(state_pb2.GetStateRequest(workflow_id=wid), timeout=1.5)
            assert refused.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
            # What this replica has is still readable when the caller says so.
            local = state_pb2.ReadOptions(consistency=state_pb2.SERIALIZABLE)
            assert raw.state(leader).GetState(state_pb2.GetStateRequest(workflow_id=wid, read=local), timeout=5).state
        state = raw.state(leader).GetState(state_pb2.GetStateRequest(workflow_id=wid), timeout=10).state
        assert state.version == 1
    finally:
        raw.close()
