"""PersistStream (README "Performance"): many writes over one stream, answered in order with the unary call's
answers and errors; the SDK's `stream_writes` follows the leader and keeps exactly-once across a failover."""

from __future__ import annotations

import threading
from collections.abc import Callable

import grpc
import pytest

from cairn import Client
from cairn.errors import ConflictError, InvalidArgumentError
from cairn.v1 import state_pb2
from tests.raw import Raw, new_id, struct
from tests.support import ClusterHandle, wait_until


def persist_request(wid: str, n: int, **fields: object) -> state_pb2.PersistStateRequest:
    return state_pb2.PersistStateRequest(
        workflow_id=wid, current_step=f"s{n}", variables=struct({"n": n}), request_id=new_id("rid"), **fields
    )


def test_answers_come_in_request_order_with_the_unary_calls_errors(shared_cluster: ClusterHandle) -> None:
    raw = Raw(shared_cluster)
    try:
        leader = raw.leader()
        wid = new_id("ps")
        first = persist_request(wid, 0)
        requests = [
            first,
            *(persist_request(f"{wid}-{k}", k) for k in range(1, 40)),
            persist_request(wid, 40, expected_version=7),  # a version conflict: ABORTED, current version 1
            persist_request("", 41),  # no workflow id: INVALID_ARGUMENT
            first,  # a retry of the first: its first answer, nothing applied
        ]
        stream = raw.state(leader).PersistStream(
            iter([state_pb2.PersistStreamRequest(sequence=100 + i, persist=r) for i, r in enumerate(requests)]),
            timeout=30,
        )
        answers = list(stream)
        assert [a.sequence for a in answers] == [100 + i for i in range(len(requests))]
        assert all(a.WhichOneof("outcome") == "response" for a in answers[:40])
        assert [a.response.state.workflow_id for a in answers[:40]] == [r.workflow_id for r in requests[:40]]
        conflict, invalid, retry = answers[40:]
        assert conflict.error.code == grpc.StatusCode.ABORTED.value[0]
        assert conflict.error.HasField("current_version") and conflict.error.current_version == 1
        assert "expected version 7" in conflict.error.message
        assert invalid.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "workflow_id" in invalid.error.message
        assert retry.response.state.version == 1
        # The same answers as the unary call gives.
        with pytest.raises(grpc.RpcError) as unary:
            raw.state(leader).PersistState(persist_request(wid, 40, expected_version=7), timeout=10)
        assert unary.value.code() == grpc.StatusCode.ABORTED
        state = raw.state(leader).GetState(state_pb2.GetStateRequest(workflow_id=wid), timeout=10).state
        assert state.version == 1
        # A follower answers each request UNAVAILABLE with the leader's address.
        follower = raw.follower()
        answers = list(
            raw.state(follower).PersistStream(
                iter([state_pb2.PersistStreamRequest(sequence=1, persist=persist_request(wid, 50))]), timeout=10
            )
        )
        assert answers[0].error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        assert answers[0].error.leader == shared_cluster.endpoint(leader)
    finally:
        raw.close()


def test_sdk_stream_writes_from_many_threads(shared_cluster: ClusterHandle) -> None:
    follower = Raw(shared_cluster)
    try:
        first = shared_cluster.endpoint(follower.follower())  # starts at a follower: must follow the hint
    finally:
        follower.close()
    endpoints = [first] + [e for e in shared_cluster.cluster.endpoints if e != first]
    prefix = new_id("sdk")
    with Client(endpoints, stream_writes=True, timeout=30) as client:
        errors: list[BaseException] = []

        def writer(t: int) -> None:
            try:
                for n in range(15):
                    state = client.persist_state(f"{prefix}-{t}", variables={"n": n}, expected_version=n)
                    assert state.version == n + 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors[:3]
        with pytest.raises(ConflictError) as conflict:
            client.persist_state(f"{prefix}-0", variables={}, expected_version=3)
        assert conflict.value.current_version == 15
        with pytest.raises(InvalidArgumentError):
            client.persist_state("", variables={})
        rid = Client.new_request_id()
        once = client.persist_state(f"{prefix}-0", variables={"x": 1}, request_id=rid)
        again = client.persist_state(f"{prefix}-0", variables={"x": 1}, request_id=rid)
        assert once.version == again.version == 16
    with Client(shared_cluster.cluster.endpoints) as reader:
        assert reader.get_state(f"{prefix}-0", include_history=False).version == 16
        assert {reader.get_state(f"{prefix}-{t}", include_history=False).version for t in range(1, 16)} == {15}


def test_stream_writes_survive_a_leader_kill_exactly_once(make_cluster: Callable[..., ClusterHandle]) -> None:
    handle = make_cluster(3, {"raft": {"election_timeout": "500ms", "heartbeat_interval": "100ms"}})
    leader = handle.wait_leader()
    prefix = new_id("fail")
    acked = [0] * 8
    errors: list[BaseException] = []
    stop = threading.Event()
    with Client(handle.cluster.endpoints, stream_writes=True, timeout=30) as client:

        def writer(t: int) -> None:
            try:
                while not stop.is_set():
                    # Unconditional writes: a retry of an applied write that were applied twice would show as a
                    # version above the count of acknowledged writes.
                    client.persist_state(f"{prefix}-{t}", variables={"n": acked[t]})
                    acked[t] += 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        wait_until(lambda: min(acked) >= 5, 30, "the writers did not get going")
        handle.kill(leader)
        at_kill = sum(acked)
        wait_until(lambda: sum(acked) >= at_kill + 80, 60, "the writes did not resume after the leader was killed")
        stop.set()
        for th in threads:
            th.join(60)
    assert not errors, errors[:3]
    survivors = [i for i in range(handle.size) if i != leader]
    new_leader = handle.wait_leader(among=survivors)
    with Client([handle.endpoint(new_leader)]) as reader:
        versions = [reader.get_state(f"{prefix}-{t}", include_history=False).version for t in range(8)]
    assert versions == acked
