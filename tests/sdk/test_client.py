"""The SDK against a live 3-node cluster: the five functions, reads, typed errors for bad input."""

from __future__ import annotations

import pytest

from cairn import (
    Client,
    ConflictError,
    DataLossError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
)
from cairn.v1 import state_pb2, state_pb2_grpc
from tests.support import ClusterHandle


@pytest.fixture(scope="module")
def c(shared_cluster: ClusterHandle) -> Client:
    return shared_cluster.client


def test_the_readme_example(c: Client) -> None:
    s = c.persist_state("order-42", current_step="charge", variables={"amount": 12.5, "items": ["a"]})
    assert s.version == 1 and s.variables == {"amount": 12.5, "items": ["a"]} and len(s.checksum) == 64
    assert s.metadata.created_at is not None and s.metadata.updated_at == s.metadata.created_at
    cp = c.create_checkpoint("order-42")
    assert cp.workflow_id == "order-42" and cp.version == 1 and cp.state.variables == s.variables
    assert cp.checksum == s.checksum and cp.timestamp is not None
    shipped = c.persist_state(
        "order-42", current_step="ship", variables={"amount": 12.5, "items": ["a", "b"]}, expected_version=s.version
    )
    assert shipped.version == 2
    recovered = c.recover_from_checkpoint("order-42", cp.id)
    assert recovered.version == 3 and recovered.current_step == "charge"
    assert recovered.variables == {"amount": 12.5, "items": ["a"]}
    sync = c.synchronize_state("order-42")
    assert sync.version == 3 and sync.exists and sync.applied_index_after >= sync.applied_index_before
    assert sync.leader_id and sync.duration_ms >= 0
    assert c.validate_state("order-42").valid
    got = c.get_state("order-42")
    assert [(h.version, h.kind) for h in got.history] == [(1, "PERSIST"), (2, "PERSIST"), (3, "RECOVER")]
    assert got.history[2].checkpoint_id == cp.id and got.history[1].changed_keys == ["items"]
    assert got.checkpoint is not None and got.checkpoint.id == cp.id


def test_reads_serializable_and_min_index(c: Client, shared_cluster: ClusterHandle) -> None:
    s = c.persist_state("reads", current_step="x")
    for i in range(shared_cluster.size):
        got = shared_cluster.node_client(i).get_state("reads", consistency="serializable", min_index=s.applied_index)
        assert got.version == 1 and got.applied_index >= s.applied_index
    assert c.get_state("reads", include_history=False).history == []


def test_list_delete_and_checkpoints(c: Client) -> None:
    for n in range(5):
        c.persist_state(f"lst-{n}", current_step="s")
    assert [w.workflow_id for w in c.list_workflows("lst-")] == [f"lst-{n}" for n in range(5)]
    assert [w.workflow_id for w in c.list_workflows("lst-", page_size=2)] == [f"lst-{n}" for n in range(5)]
    assert len(c.list_workflows("lst-", limit=3)) == 3
    cps = [c.create_checkpoint("lst-0") for _ in range(3)]
    listed = c.list_checkpoints("lst-0")
    assert [x.id for x in listed] == [x.id for x in cps] and listed[0].state is None
    assert c.get_checkpoint("lst-0", cps[1].id).state.workflow_id == "lst-0"
    deleted = c.delete_workflow("lst-0")
    assert deleted.deleted_version == 1 and deleted.deleted_checkpoints == 3
    with pytest.raises(NotFoundError):
        c.get_state("lst-0")
    assert c.persist_state("lst-0", current_step="again", expected_version=0).version == 1


def test_conflict_carries_the_current_version(c: Client) -> None:
    c.persist_state("cas-sdk", current_step="a")
    with pytest.raises(ConflictError) as err:
        c.persist_state("cas-sdk", current_step="b", expected_version=0)
    assert err.value.current_version == 1 and "expected version 0" in err.value.message
    with pytest.raises(ConflictError):
        c.delete_workflow("cas-sdk", expected_version=5)
    assert c.get_state("cas-sdk").current_step == "a"


BAD_INPUTS = [
    ("empty id", lambda c: c.persist_state(""), InvalidArgumentError, "workflow_id is empty"),
    ("long id", lambda c: c.persist_state("x" * 257), InvalidArgumentError, "257 bytes"),
    ("malformed id", lambda c: c.persist_state("bad id!"), InvalidArgumentError, "malformed"),
    ("not json-like", lambda c: c.persist_state("victim", variables={"s": {1}}), InvalidArgumentError, "set"),
    ("negative version", lambda c: c.persist_state("victim", expected_version=-1), InvalidArgumentError, ">= 0"),
    ("absurd version", lambda c: c.persist_state("victim", expected_version=2**60), InvalidArgumentError, "absurd"),
    (
        "too big",
        lambda c: c.persist_state("victim", variables={"x": "y" * (4 * 1024 * 1024 + 10)}),
        ResourceExhaustedError,
        "limits.max_state_bytes",
    ),
    ("unknown checkpoint", lambda c: c.recover_from_checkpoint("victim", "cp-nope"), NotFoundError, "cp-nope"),
    ("unknown checkpoint get", lambda c: c.get_checkpoint("victim", "cp-nope"), NotFoundError, "cp-nope"),
    ("unknown workflow", lambda c: c.get_state("never-written"), NotFoundError, "never-written"),
    ("checkpoint of nothing", lambda c: c.create_checkpoint("never-written"), NotFoundError, "never-written"),
    (
        "reused request id",
        lambda c: c.persist_state("victim", current_step="other", request_id="victim-req"),
        FailedPreconditionError,
        "already used",
    ),
    ("bad label", lambda c: c.persist_state("victim", labels={"no spaces": "x"}), InvalidArgumentError, "labels"),
    ("bad consistency", lambda c: c.get_state("victim", consistency="eventual"), InvalidArgumentError, "consistency"),
]


@pytest.mark.parametrize("name, call, error, fragment", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_changes_nothing(c: Client, name, call, error, fragment) -> None:
    c.persist_state("victim", current_step="safe", variables={"v": 1}, request_id="victim-req")
    before = c.get_state("victim")
    with pytest.raises(error, match=fragment.replace("(", r"\(")):
        call(c)
    after = c.get_state("victim")
    assert after.raw == before.raw


def test_raw_grpc_bad_values_get_precise_codes(shared_cluster: ClusterHandle) -> None:
    """What another language could send that the SDK would have refused itself."""
    import grpc

    stub = state_pb2_grpc.StateServiceStub(grpc.insecure_channel(shared_cluster.endpoint(0)))
    request = state_pb2.PersistStateRequest(workflow_id="raw", request_id="r")
    request.variables.fields["x"].number_value = float("nan")
    with pytest.raises(grpc.RpcError) as err:
        stub.PersistState(request, timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "variables.x" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.ListWorkflows(state_pb2.ListWorkflowsRequest(limit=5000), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit" in err.value.details()


def test_corrupt_checkpoint_is_refused_with_data_loss(make_cluster) -> None:
    from cairn_server.statemachine import decode_checkpoint, encode_checkpoint
    from cairn_server.storage import RocksStore

    h: ClusterHandle = make_cluster()
    h.client.persist_state("fragile", current_step="one", variables={"n": 1})
    cp = h.client.create_checkpoint("fragile")
    current = h.client.persist_state("fragile", current_step="two", variables={"n": 2})
    h.wait_applied(0, current.applied_index)
    h.wait_applied(1, current.applied_index)
    h.wait_applied(2, current.applied_index)
    h.cluster.stop()
    key = b"fragile\x00" + cp.id.encode()
    for spec in h.cluster.specs:  # bit rot on every replica: whichever leads must refuse
        store = RocksStore(spec.data_dir / "data" / "db")
        tampered = decode_checkpoint(store.get("checkpoint", key))
        tampered.state.variables["n"] = 99
        batch = store.batch()
        batch.put("checkpoint", key, encode_checkpoint(tampered, compress=True))
        store.write(batch, sync=True)
        store.close()
    h.cluster.start()
    h.wait_leader(30)
    with pytest.raises(DataLossError, match="corrupt"):
        h.client.recover_from_checkpoint("fragile", cp.id)
    assert h.client.get_state("fragile").version == current.version
    result = h.client.validate_state("fragile")
    assert not result.valid and [p.code for p in result.problems] == ["CHECKPOINT_CORRUPT"]


def test_validate_reports_a_diverged_replica(make_cluster) -> None:
    from cairn_server.storage import RocksStore

    h: ClusterHandle = make_cluster()
    s = h.client.persist_state("drift", current_step="one", variables={"n": 1})
    for i in range(3):
        h.wait_applied(i, s.applied_index)
    victim = h.followers()[0]
    h.cluster.stop_node(victim)
    store = RocksStore(h.cluster.specs[victim].data_dir / "data" / "db")
    batch = store.batch()
    batch.put("history", b"drift\x00" + (7).to_bytes(8, "big"), b"")  # a stray record only here
    store.write(batch, sync=True)
    store.close()
    h.cluster.start_node(victim)
    h.wait_applied(victim, s.applied_index)
    leader = h.wait_leader()
    result = h.node_client(leader).validate_state("drift")
    assert not result.valid
    diverged = [p for p in result.problems if p.code == "REPLICA_DIVERGED"]
    assert [p.node_id for p in diverged] == [h.cluster.specs[victim].node_id]
    local = h.node_client(victim).validate_state("drift")
    assert {p.code for p in local.problems} >= {"HISTORY_GAP", "HISTORY_MISMATCH"}
