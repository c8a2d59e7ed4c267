"""README "Bad input", at the server, through raw gRPC (the SDK refuses some of these itself): every bad input
gets its precise status code and a message naming what was wrong, and changes nothing.

"Changes nothing" is checked against the whole replicated store of every node, not one workflow: before and
after each bad request, each node's digest is the SHA-256 over every workflow it holds (ListWorkflows on that
node), each workflow's server-side replica digest (NodeService.WorkflowDigest, the digest ValidateState
compares across replicas: the state record, every history entry and every checkpoint, byte for byte) and,
for runs, the lease record (GetWorkflow on that node). Every read is made once the node has applied what the
leader had applied after a read barrier. (What the API cannot show is not covered: the pending-run queue
index, the periodic checkpoint schedule and the dedup records; an apply-level rejection keeps a dedup record
of itself, so that a retry gets the same answer.)

The main cluster runs with `execution.scheduler_interval: 1h`, so the leader's scheduler never writes during
these tests (no lease is expired behind the test's back, which also makes "an expired lease" deterministic),
`limits.max_state_bytes: 64KiB` so that RESOURCE_EXHAUSTED needs no megabytes, and a 3 s election timeout, so
that a leader paused for a second and a half is still everybody's leader (the UNAVAILABLE + leader hint case).
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from cairn.v1 import (
    cluster_pb2,
    state_pb2,
    state_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from cairn.wire import CURRENT_VERSION_KEY, FORWARDED_KEY, LEADER_KEY, REASON_KEY, REASON_LEASE_LOST
from cairn_server import workflow as rules
from cairn_server.internal import command_pb2
from cairn_server.statemachine import decode_checkpoint, encode_checkpoint
from cairn_server.storage import RocksStore
from cairn_server.storage.keys import checkpoint_key, workflow_prefix
from tests.raw import Raw as RawStubs
from tests.raw import new_id, pvalue, struct, wait_stopped
from tests.support import ClusterHandle, start_cluster, wait_until

pytestmark = pytest.mark.timeout(600)

CAP = 64 * 1024
MAIN_OVERRIDES: dict[str, Any] = {
    "limits": {"max_state_bytes": "64KiB"},
    "raft": {"election_timeout": "3s", "heartbeat_interval": "100ms"},
    "execution": {"scheduler_interval": "1h", "max_lease_timeout": "1h"},
}
LONG_LEASE_MS = 3_600_000
SERIAL = state_pb2.SERIALIZABLE
Code = grpc.StatusCode


# ---- values ---------------------------------------------------------------------------------------------


def nan_struct(path: str = "x") -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.fields[path].number_value = float("nan")
    return out


def kindless_struct() -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.fields["x"].CopyFrom(struct_pb2.Value())  # a Value with no kind: not JSON
    return out


def kindless_in_list() -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    items = out.fields["l"].list_value
    items.values.add().number_value = 1
    items.values.add()  # no kind
    return out


# ---- raw access and the whole-store digest ----------------------------------------------------------


class Raw(RawStubs):
    """Raw stubs plus the whole-store digest of each node."""

    # -- the digest

    def node_digest(self, i: int, index: int) -> str:
        read = state_pb2.ReadOptions(consistency=SERIAL, min_index=index)
        ids: list[str] = []
        token = ""
        while True:
            page = self.state(i).ListWorkflows(
                state_pb2.ListWorkflowsRequest(limit=1000, page_token=token, read=read), timeout=10
            )
            ids.extend(w.workflow_id for w in page.workflows)
            token = page.next_page_token
            if not token:
                break
        runs: set[str] = set()
        token = ""
        while True:
            page = self.flow(i).ListWorkflowRuns(
                workflow_pb2.ListWorkflowRunsRequest(limit=1000, page_token=token, read=read), timeout=10
            )
            runs.update(r.workflow_id for r in page.runs)
            token = page.next_page_token
            if not token:
                break
        h = hashlib.sha256()
        for wid in ids:
            d = self.node(i).WorkflowDigest(
                command_pb2.WorkflowDigestRequest(workflow_id=wid, min_index=index), timeout=10
            )
            assert d.exists, f"{wid} is listed but has no record on node {i}"
            h.update(f"{wid}\0{d.version}\0{d.digest}\n".encode())
            if wid in runs:
                got = self.flow(i).GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=wid, read=read), timeout=10)
                h.update(got.lease.SerializeToString(deterministic=True) + b"\n")
        return h.hexdigest()

    def digest(self) -> dict[str, str]:
        """Every node's digest of its whole replicated store, once it has applied the leader's commit index."""
        # The index to wait for on every node: the leader's state-machine index after a read barrier (every
        # write committed so far is applied there). Not ClusterService.Status's commit index: that counts
        # pysyncobj's no-op entry of a new leader, which the state machine never sees (see the report).
        leader = self.leader()
        index = (
            self.state(leader).ListWorkflows(state_pb2.ListWorkflowsRequest(limit=1), timeout=10).header.applied_index
        )
        with ThreadPoolExecutor(self.handle.size) as pool:
            digests = list(pool.map(lambda i: self.node_digest(i, index), range(self.handle.size)))
        return {self.handle.cluster.specs[i].node_id: d for i, d in enumerate(digests)}


def refused(call: Callable[[], Any], code: grpc.StatusCode, *needles: str) -> grpc.RpcError:
    """The call fails with exactly `code`, and its message contains every needle (what was wrong)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err = caught.value
    details = err.details() or ""
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {details}"
    for needle in needles:
        assert needle in details, f"the message does not name {needle!r}: {details!r}"
    return err


def trailing(err: grpc.RpcError) -> dict[str, str]:
    return dict(err.trailing_metadata() or ())


# ---- the main cluster and what lives in it -------------------------------------------------------------


@dataclass
class World:
    """The workflows the bad requests aim at (created once; every test leaves them as they were)."""

    raw: Raw
    plain: str = "bi-plain"  # a plain state at version 2 with one checkpoint
    plain_cp: str = ""
    run_type: str = "bi-type"
    pending: str = "bi-pending"  # a PENDING run
    leased: str = "bi-leased"  # a RUNNING run with a long lease and one recorded step "charge"
    leased_token: int = 0
    expired: str = "bi-expired"  # a RUNNING run whose 1 s lease has passed (the scheduler never expires it)
    expired_token: int = 0
    expired_at_ns: int = 0
    done: str = "bi-done"  # a COMPLETED run
    cancelled: str = "bi-cancelled"  # a CANCELLED run
    big: str = "bi-big"  # a RUNNING run whose input takes 40 KiB of the 64 KiB cap
    big_token: int = 0
    used_rid: str = "bi-used-request-id"  # the request id of plain's second version

    def leader_state(self) -> state_pb2_grpc.StateServiceStub:
        return self.raw.state(self.raw.leader())

    def leader_flow(self) -> workflow_pb2_grpc.WorkflowServiceStub:
        return self.raw.flow(self.raw.leader())


def _claim(raw: Raw, workflow_type: str, lease_ms: int) -> workflow_pb2.WorkTask:
    task = (
        raw.flow(raw.leader())
        .PollWork(
            workflow_pb2.PollWorkRequest(
                worker_id="bi-worker",
                workflow_types=[workflow_type],
                lease_timeout_ms=lease_ms,
                wait_ms=5000,
                request_id=new_id("claim"),
            ),
            timeout=10,
        )
        .task
    )
    assert task.lease.fencing_token > 0, f"setup: nothing to claim for {workflow_type}"
    return task


def _start(raw: Raw, workflow_id: str, workflow_type: str, input_value: Any = None) -> state_pb2.WorkflowState:
    return (
        raw.flow(raw.leader())
        .StartWorkflow(
            workflow_pb2.StartWorkflowRequest(
                workflow_id=workflow_id,
                workflow_type=workflow_type,
                input=pvalue(input_value if input_value is not None else {"n": 1}),
                request_id=new_id("start"),
            ),
            timeout=10,
        )
        .state
    )


def build_world(raw: Raw) -> World:
    w = World(raw)
    st = w.leader_state()
    st.PersistState(
        state_pb2.PersistStateRequest(workflow_id=w.plain, current_step="a", variables=struct({"n": 1})), timeout=10
    )
    w.plain_cp = st.CreateCheckpoint(state_pb2.CreateCheckpointRequest(workflow_id=w.plain), timeout=10).checkpoint.id
    st.PersistState(
        state_pb2.PersistStateRequest(
            workflow_id=w.plain,
            current_step="b",
            variables=struct({"n": 2}),
            labels={"team": "core"},
            request_id=w.used_rid,
        ),
        timeout=10,
    )
    # The limits themselves are accepted: an id of exactly 256 bytes using every allowed character class.
    longest = ("_a.b:c/d@e+f=g-h9" * 16)[:256]
    assert len(longest.encode()) == 256  # README: over 256 bytes is refused
    st.PersistState(state_pb2.PersistStateRequest(workflow_id=longest, current_step="x"), timeout=10)

    # Each run gets its own type, so that a claim takes exactly the run meant.
    for wid in (w.pending, w.leased, w.expired, w.done, w.cancelled, w.big):
        _start(raw, wid, f"{wid}-type", {"blob": "x" * (40 * 1024)} if wid == w.big else None)
    leased = _claim(raw, f"{w.leased}-type", LONG_LEASE_MS)
    w.leased_token = leased.lease.fencing_token
    w.leader_flow().RecordStep(
        workflow_pb2.RecordStepRequest(
            workflow_id=w.leased, fencing_token=w.leased_token, step_name="charge", result=pvalue({"ok": True})
        ),
        timeout=10,
    )
    w.big_token = _claim(raw, f"{w.big}-type", LONG_LEASE_MS).lease.fencing_token
    done = _claim(raw, f"{w.done}-type", LONG_LEASE_MS)
    w.leader_flow().CompleteWorkflow(
        workflow_pb2.CompleteWorkflowRequest(
            workflow_id=w.done, fencing_token=done.lease.fencing_token, output=pvalue({"total": 3})
        ),
        timeout=10,
    )
    w.leader_flow().CancelWorkflow(workflow_pb2.CancelWorkflowRequest(workflow_id=w.cancelled), timeout=10)
    expired = _claim(raw, f"{w.expired}-type", 1000)
    w.expired_token = expired.lease.fencing_token
    w.expired_at_ns = expired.lease.expires_at.ToNanoseconds()
    return w


@pytest.fixture(scope="module")
def main_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    handle = start_cluster(tmp_path_factory.mktemp("bad-input"), 3, MAIN_OVERRIDES)
    yield handle
    for i in range(handle.size):
        handle.cluster.signal_node(i, signal.SIGCONT)
    handle.close()


@pytest.fixture(scope="module")
def world(main_cluster: ClusterHandle) -> Iterator[World]:
    raw = Raw(main_cluster)
    w = build_world(raw)
    yield w
    raw.close()


# ---- the table of bad requests ----------------------------------------------------------------------------


@dataclass
class Bad:
    """One bad request: `send(world, node)` sends it to that node (raw gRPC, with a deadline)."""

    name: str
    send: Callable[[World, int], Any]
    code: grpc.StatusCode
    needles: tuple[str, ...]
    via_follower: bool = False
    metadata: dict[str, str] = field(default_factory=dict)  # expected trailing metadata (values: see _expect)


def st(method: str, request_fn: Callable[[World], Any]) -> Callable[[World, int], Any]:
    return lambda w, node: getattr(w.raw.state(node), method)(request_fn(w), timeout=10)


def wf(method: str, request_fn: Callable[[World], Any]) -> Callable[[World, int], Any]:
    return lambda w, node: getattr(w.raw.flow(node), method)(request_fn(w), timeout=10)


S, W = state_pb2, workflow_pb2

# Workflow ids: (case, id, what the message must say)
BAD_IDS = [
    ("empty", "", "workflow_id is empty"),
    ("257_bytes", "a" * 257, "workflow_id is 257 bytes; the limit is 256"),
    ("258_bytes_in_129_chars", "é" * 129, "workflow_id is 258 bytes; the limit is 256"),
    ("leading_dash", "-abc", "workflow_id '-abc' is malformed"),
    ("space", "a b", "workflow_id 'a b' is malformed"),
    ("nul", "a\x00b", "is malformed"),
    ("non_ascii", "zürich", "workflow_id 'zürich' is malformed"),
]


def id_requests(wid: str) -> list[tuple[str, Callable[[World, int], Any]]]:
    """Every method that takes a workflow id, with that id (and otherwise valid fields)."""
    return [
        ("PersistState", st("PersistState", lambda w: S.PersistStateRequest(workflow_id=wid, current_step="s"))),
        ("GetState", st("GetState", lambda w: S.GetStateRequest(workflow_id=wid))),
        ("DeleteWorkflow", st("DeleteWorkflow", lambda w: S.DeleteWorkflowRequest(workflow_id=wid))),
        ("CreateCheckpoint", st("CreateCheckpoint", lambda w: S.CreateCheckpointRequest(workflow_id=wid))),
        (
            "RecoverFromCheckpoint",
            st(
                "RecoverFromCheckpoint",
                lambda w: S.RecoverFromCheckpointRequest(workflow_id=wid, checkpoint_id=w.plain_cp),
            ),
        ),
        ("ListCheckpoints", st("ListCheckpoints", lambda w: S.ListCheckpointsRequest(workflow_id=wid))),
        (
            "GetCheckpoint",
            st("GetCheckpoint", lambda w: S.GetCheckpointRequest(workflow_id=wid, checkpoint_id=w.plain_cp)),
        ),
        ("SynchronizeState", st("SynchronizeState", lambda w: S.SynchronizeStateRequest(workflow_id=wid))),
        ("ValidateState", st("ValidateState", lambda w: S.ValidateStateRequest(workflow_id=wid))),
        (
            "StartWorkflow",
            wf("StartWorkflow", lambda w: W.StartWorkflowRequest(workflow_id=wid, workflow_type="t", input=pvalue(1))),
        ),
        ("GetWorkflow", wf("GetWorkflow", lambda w: W.GetWorkflowRequest(workflow_id=wid))),
        ("CancelWorkflow", wf("CancelWorkflow", lambda w: W.CancelWorkflowRequest(workflow_id=wid))),
        ("ReleaseWorkflow", wf("ReleaseWorkflow", lambda w: W.ReleaseWorkflowRequest(workflow_id=wid))),
        (
            "RecordStep",
            wf("RecordStep", lambda w: W.RecordStepRequest(workflow_id=wid, fencing_token=1, step_name="s")),
        ),
        (
            "CompleteWorkflow",
            wf("CompleteWorkflow", lambda w: W.CompleteWorkflowRequest(workflow_id=wid, fencing_token=1)),
        ),
        ("FailWorkflow", wf("FailWorkflow", lambda w: W.FailWorkflowRequest(workflow_id=wid, fencing_token=1))),
    ]


ID_CASES = [
    Bad(f"{method}-{case}", send, Code.INVALID_ARGUMENT, (needle,))
    for case, wid, needle in BAD_IDS
    for method, send in id_requests(wid)
]


def persist(**kw: Any) -> Callable[[World, int], Any]:
    def request(w: World) -> S.PersistStateRequest:
        fields = {"workflow_id": w.plain, "current_step": "c", **kw}
        return S.PersistStateRequest(**fields)

    return st("PersistState", request)


ABSURD = rules.MAX_VERSION + 1
INVALID_CASES = [
    # checkpoint ids follow the id rules
    Bad(
        "RecoverFromCheckpoint-bad_checkpoint_id",
        st("RecoverFromCheckpoint", lambda w: S.RecoverFromCheckpointRequest(workflow_id=w.plain, checkpoint_id="a b")),
        Code.INVALID_ARGUMENT,
        ("checkpoint_id 'a b' is malformed",),
    ),
    Bad(
        "GetCheckpoint-empty_checkpoint_id",
        st("GetCheckpoint", lambda w: S.GetCheckpointRequest(workflow_id=w.plain)),
        Code.INVALID_ARGUMENT,
        ("checkpoint_id is empty",),
    ),
    # variables that are not JSON-like
    Bad("variables-nan", persist(variables=nan_struct()), Code.INVALID_ARGUMENT, ("variables.x", "not a JSON number")),
    Bad(
        "variables-infinity",
        persist(variables=struct({"inf": float("inf")})),
        Code.INVALID_ARGUMENT,
        ("variables.inf", "not a JSON number"),
    ),
    Bad(
        "variables-value_without_kind",
        persist(variables=kindless_struct()),
        Code.INVALID_ARGUMENT,
        ("variables.x", "no kind set"),
    ),
    Bad(
        "variables-kindless_list_item",
        persist(variables=kindless_in_list()),
        Code.INVALID_ARGUMENT,
        ("variables.l[1]", "no kind set"),
    ),
    Bad(
        "variables-nested_nan",
        persist(variables=struct({"a": {"b": float("nan")}})),
        Code.INVALID_ARGUMENT,
        ("variables.a.b", "not a JSON number"),
    ),
    Bad(
        "step-control_character",
        persist(current_step="a\nb"),
        Code.INVALID_ARGUMENT,
        ("current_step contains control characters",),
    ),
    Bad("step-257_bytes", persist(current_step="s" * 257), Code.INVALID_ARGUMENT, ("current_step is 257 bytes",)),
    # labels
    Bad("labels-key_with_space", persist(labels={"bad key": "v"}), Code.INVALID_ARGUMENT, ("labels: key 'bad key'",)),
    Bad("labels-key_leading_dash", persist(labels={"-k": "v"}), Code.INVALID_ARGUMENT, ("labels: key '-k'",)),
    Bad("labels-empty_key", persist(labels={"": "v"}), Code.INVALID_ARGUMENT, ("labels: key ''",)),
    Bad("labels-key_64_bytes", persist(labels={"k" * 64: "v"}), Code.INVALID_ARGUMENT, ("labels: key 'kkk",)),
    Bad(
        "labels-value_257_bytes",
        persist(labels={"k": "v" * 257}),
        Code.INVALID_ARGUMENT,
        ("labels: value of 'k' is over 256 bytes",),
    ),
    Bad(
        "labels-65_labels",
        persist(labels={f"k{i}": "v" for i in range(65)}),
        Code.INVALID_ARGUMENT,
        ("labels: 65 given; at most 64",),
    ),
    Bad(
        "StartWorkflow-bad_label",
        wf(
            "StartWorkflow",
            lambda w: W.StartWorkflowRequest(workflow_id=new_id("bi-x"), workflow_type="t", labels={"a b": "v"}),
        ),
        Code.INVALID_ARGUMENT,
        ("labels: key 'a b'",),
    ),
    # absurd expected versions
    Bad(
        "PersistState-absurd_expected_version",
        persist(expected_version=ABSURD),
        Code.INVALID_ARGUMENT,
        (f"expected_version {ABSURD} is absurd",),
    ),
    Bad(
        "PersistState-max_uint64_expected_version",
        persist(expected_version=2**64 - 1),
        Code.INVALID_ARGUMENT,
        (f"expected_version {2**64 - 1} is absurd",),
    ),
    Bad(
        "DeleteWorkflow-absurd_expected_version",
        st("DeleteWorkflow", lambda w: S.DeleteWorkflowRequest(workflow_id=w.plain, expected_version=ABSURD)),
        Code.INVALID_ARGUMENT,
        (f"expected_version {ABSURD} is absurd",),
    ),
    Bad(
        "RecoverFromCheckpoint-absurd_expected_version",
        st(
            "RecoverFromCheckpoint",
            lambda w: S.RecoverFromCheckpointRequest(
                workflow_id=w.plain, checkpoint_id=w.plain_cp, expected_version=ABSURD
            ),
        ),
        Code.INVALID_ARGUMENT,
        (f"expected_version {ABSURD} is absurd",),
    ),
    # request ids
    Bad(
        "request_id-129_bytes", persist(request_id="r" * 129), Code.INVALID_ARGUMENT, ("request_id is over 128 bytes",)
    ),
    Bad("request_id-space", persist(request_id="a b"), Code.INVALID_ARGUMENT, ("request_id must be printable ASCII",)),
    # list limits
    Bad(
        "ListWorkflows-limit",
        st("ListWorkflows", lambda w: S.ListWorkflowsRequest(limit=1001)),
        Code.INVALID_ARGUMENT,
        ("limit 1001 is over the maximum of 1000",),
    ),
    Bad(
        "ListWorkflows-page_token",
        st("ListWorkflows", lambda w: S.ListWorkflowsRequest(page_token="a b")),
        Code.INVALID_ARGUMENT,
        ("page_token 'a b' is malformed",),
    ),
    Bad(
        "ListWorkflowRuns-status",
        wf("ListWorkflowRuns", lambda w: W.ListWorkflowRunsRequest(status=99)),
        Code.INVALID_ARGUMENT,
        ("status 99 is not a RunStatus",),
    ),
    Bad(
        "ListWorkflowRuns-type",
        wf("ListWorkflowRuns", lambda w: W.ListWorkflowRunsRequest(workflow_type="a b")),
        Code.INVALID_ARGUMENT,
        ("workflow_type 'a b' is malformed",),
    ),
    # ---- durable execution: INVALID_ARGUMENT
    Bad(
        "StartWorkflow-empty_type",
        wf("StartWorkflow", lambda w: W.StartWorkflowRequest(workflow_id=new_id("bi-x"))),
        Code.INVALID_ARGUMENT,
        ("workflow_type is empty",),
    ),
    Bad(
        "StartWorkflow-malformed_type",
        wf("StartWorkflow", lambda w: W.StartWorkflowRequest(workflow_id=new_id("bi-x"), workflow_type="a/b c")),
        Code.INVALID_ARGUMENT,
        ("workflow_type 'a/b c' is malformed",),
    ),
    Bad(
        "StartWorkflow-nan_input",
        wf(
            "StartWorkflow",
            lambda w: W.StartWorkflowRequest(
                workflow_id=new_id("bi-x"), workflow_type="t", input=struct_pb2.Value(number_value=float("nan"))
            ),
        ),
        Code.INVALID_ARGUMENT,
        ("input", "not a JSON number"),
    ),
    Bad(
        "StartWorkflow-kindless_input_field",
        wf(
            "StartWorkflow",
            lambda w: W.StartWorkflowRequest(
                workflow_id=new_id("bi-x"), workflow_type="t", input=struct_pb2.Value(struct_value=kindless_struct())
            ),
        ),
        Code.INVALID_ARGUMENT,
        ("input.x", "no kind set"),
    ),
    Bad(
        "RecordStep-nan_result",
        wf(
            "RecordStep",
            lambda w: W.RecordStepRequest(
                workflow_id=w.leased,
                fencing_token=w.leased_token,
                step_name="ship",
                result=struct_pb2.Value(struct_value=nan_struct("cost")),
            ),
        ),
        Code.INVALID_ARGUMENT,
        ("result of step 'ship'", "cost", "not a JSON number"),
    ),
    Bad(
        "RecordStep-empty_step_name",
        wf("RecordStep", lambda w: W.RecordStepRequest(workflow_id=w.leased, fencing_token=w.leased_token)),
        Code.INVALID_ARGUMENT,
        ("step_name is empty",),
    ),
    Bad(
        "RecordStep-step_name_control_character",
        wf(
            "RecordStep",
            lambda w: W.RecordStepRequest(workflow_id=w.leased, fencing_token=w.leased_token, step_name="a\tb"),
        ),
        Code.INVALID_ARGUMENT,
        ("control characters",),
    ),
    Bad(
        "RecordStep-no_fencing_token",
        wf("RecordStep", lambda w: W.RecordStepRequest(workflow_id=w.leased, step_name="ship")),
        Code.INVALID_ARGUMENT,
        ("fencing_token is missing",),
    ),
    Bad(
        "CompleteWorkflow-nan_output",
        wf(
            "CompleteWorkflow",
            lambda w: W.CompleteWorkflowRequest(
                workflow_id=w.leased,
                fencing_token=w.leased_token,
                output=struct_pb2.Value(number_value=float("-inf")),
            ),
        ),
        Code.INVALID_ARGUMENT,
        ("output", "not a JSON number"),
    ),
    Bad(
        "FailWorkflow-no_fencing_token",
        wf("FailWorkflow", lambda w: W.FailWorkflowRequest(workflow_id=w.leased, error="x")),
        Code.INVALID_ARGUMENT,
        ("fencing_token is missing",),
    ),
    Bad(
        "CancelWorkflow-reason_too_long",
        wf("CancelWorkflow", lambda w: W.CancelWorkflowRequest(workflow_id=w.pending, reason="r" * 4097)),
        Code.INVALID_ARGUMENT,
        ("reason is over 4096 characters",),
    ),
]


def poll(**kw: Any) -> Callable[[World, int], Any]:
    def request(w: World) -> W.PollWorkRequest:
        fields = {
            "worker_id": "bi-poller",
            "workflow_types": [f"{w.pending}-type"],
            "lease_timeout_ms": 10_000,
            "wait_ms": 100,
            **kw,
        }
        return W.PollWorkRequest(**fields)

    return wf("PollWork", request)


POLL_CASES = [
    Bad("PollWork-no_types", poll(workflow_types=[]), Code.INVALID_ARGUMENT, ("workflow_types is empty",)),
    Bad(
        "PollWork-type_twice",
        poll(workflow_types=["bi-pending-type", "bi-pending-type"]),
        Code.INVALID_ARGUMENT,
        ("workflow_types: at most 64, each once",),
    ),
    Bad(
        "PollWork-malformed_type",
        poll(workflow_types=["a b"]),
        Code.INVALID_ARGUMENT,
        ("workflow_type 'a b' is malformed",),
    ),
    Bad("PollWork-empty_worker_id", poll(worker_id=""), Code.INVALID_ARGUMENT, ("worker_id is empty",)),
    Bad(
        "PollWork-no_lease",
        poll(lease_timeout_ms=0),
        Code.INVALID_ARGUMENT,
        ("lease_timeout_ms 0 is outside the cluster's bounds", "min_lease_timeout"),
    ),
    Bad(
        "PollWork-lease_below_min",
        poll(lease_timeout_ms=999),
        Code.INVALID_ARGUMENT,
        ("lease_timeout_ms 999 is outside the cluster's bounds",),
    ),
    Bad(
        "PollWork-lease_above_max",
        poll(lease_timeout_ms=3_600_001),
        Code.INVALID_ARGUMENT,
        ("lease_timeout_ms 3600001 is outside the cluster's bounds", "max_lease_timeout"),
    ),
    Bad(
        "Heartbeat-empty_worker_id",
        wf("Heartbeat", lambda w: W.HeartbeatRequest(leases=[W.LeaseRef(workflow_id=w.leased, fencing_token=1)])),
        Code.INVALID_ARGUMENT,
        ("worker_id is empty",),
    ),
    Bad(
        "Heartbeat-lease_twice",
        wf(
            "Heartbeat",
            lambda w: W.HeartbeatRequest(
                worker_id="bi-worker",
                leases=[W.LeaseRef(workflow_id=w.leased, fencing_token=w.leased_token)] * 2,
            ),
        ),
        Code.INVALID_ARGUMENT,
        ("leases: a workflow is listed twice",),
    ),
    Bad(
        "Heartbeat-malformed_workflow_id",
        wf(
            "Heartbeat",
            lambda w: W.HeartbeatRequest(
                worker_id="bi-worker", leases=[W.LeaseRef(workflow_id="a b", fencing_token=1)]
            ),
        ),
        Code.INVALID_ARGUMENT,
        ("leases.workflow_id 'a b' is malformed",),
    ),
]

NOT_FOUND_CASES = [
    Bad(
        "GetState-unknown",
        st("GetState", lambda w: S.GetStateRequest(workflow_id="bi-nope")),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "ValidateState-unknown",
        st("ValidateState", lambda w: S.ValidateStateRequest(workflow_id="bi-nope")),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "ListCheckpoints-unknown",
        st("ListCheckpoints", lambda w: S.ListCheckpointsRequest(workflow_id="bi-nope")),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "CreateCheckpoint-unknown",
        st("CreateCheckpoint", lambda w: S.CreateCheckpointRequest(workflow_id="bi-nope", request_id=new_id("r"))),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
        via_follower=True,
    ),
    Bad(
        "DeleteWorkflow-unknown",
        st("DeleteWorkflow", lambda w: S.DeleteWorkflowRequest(workflow_id="bi-nope")),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "GetCheckpoint-unknown_checkpoint",
        st("GetCheckpoint", lambda w: S.GetCheckpointRequest(workflow_id=w.plain, checkpoint_id="cp-nope")),
        Code.NOT_FOUND,
        ("checkpoint 'cp-nope' of workflow 'bi-plain' does not exist",),
    ),
    Bad(
        "RecoverFromCheckpoint-unknown_checkpoint",
        st(
            "RecoverFromCheckpoint",
            lambda w: S.RecoverFromCheckpointRequest(workflow_id=w.plain, checkpoint_id="cp-nope"),
        ),
        Code.NOT_FOUND,
        ("checkpoint 'cp-nope' of workflow 'bi-plain' does not exist",),
        via_follower=True,
    ),
    Bad(
        "RecoverFromCheckpoint-checkpoint_of_another_workflow",
        st(
            "RecoverFromCheckpoint",
            lambda w: S.RecoverFromCheckpointRequest(workflow_id=w.pending, checkpoint_id=w.plain_cp),
        ),
        Code.NOT_FOUND,
        (f"of workflow '{World.pending}' does not exist",),
    ),
    Bad(
        "RecoverFromCheckpoint-unknown_workflow",
        st(
            "RecoverFromCheckpoint",
            lambda w: S.RecoverFromCheckpointRequest(workflow_id="bi-nope", checkpoint_id=w.plain_cp),
        ),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "GetWorkflow-unknown",
        wf("GetWorkflow", lambda w: W.GetWorkflowRequest(workflow_id="bi-nope")),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "GetWorkflow-not_a_run",
        wf("GetWorkflow", lambda w: W.GetWorkflowRequest(workflow_id=w.plain)),
        Code.NOT_FOUND,
        ("'bi-plain' exists but was not started as a run",),
    ),
    Bad(
        "CancelWorkflow-unknown",
        wf("CancelWorkflow", lambda w: W.CancelWorkflowRequest(workflow_id="bi-nope")),
        Code.NOT_FOUND,
        ("run 'bi-nope' does not exist",),
        via_follower=True,
    ),
    Bad(
        "CancelWorkflow-not_a_run",
        wf("CancelWorkflow", lambda w: W.CancelWorkflowRequest(workflow_id=w.plain)),
        Code.NOT_FOUND,
        ("run 'bi-plain' does not exist",),
    ),
    Bad(
        "ReleaseWorkflow-unknown",
        wf("ReleaseWorkflow", lambda w: W.ReleaseWorkflowRequest(workflow_id="bi-nope")),
        Code.NOT_FOUND,
        ("run 'bi-nope' does not exist",),
    ),
    Bad(
        "RecordStep-unknown",
        wf("RecordStep", lambda w: W.RecordStepRequest(workflow_id="bi-nope", fencing_token=5, step_name="s")),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "CompleteWorkflow-unknown",
        wf("CompleteWorkflow", lambda w: W.CompleteWorkflowRequest(workflow_id="bi-nope", fencing_token=5)),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
    Bad(
        "FailWorkflow-unknown",
        wf("FailWorkflow", lambda w: W.FailWorkflowRequest(workflow_id="bi-nope", fencing_token=5)),
        Code.NOT_FOUND,
        ("workflow 'bi-nope' does not exist",),
    ),
]

# The current version travels in the trailing metadata; "{plain}" etc. are filled in from the world.
ABORTED_CASES = [
    Bad(
        "PersistState-stale_expected_version",
        persist(expected_version=1),
        Code.ABORTED,
        ("version conflict: expected version 1, but the workflow is at version 2",),
        metadata={CURRENT_VERSION_KEY: "2"},
    ),
    Bad(
        "PersistState-stale_expected_version_via_follower",
        persist(expected_version=1),
        Code.ABORTED,
        ("version conflict: expected version 1, but the workflow is at version 2",),
        via_follower=True,
        metadata={CURRENT_VERSION_KEY: "2"},
    ),
    Bad(
        "PersistState-future_expected_version",
        persist(expected_version=7),
        Code.ABORTED,
        ("expected version 7, but the workflow is at version 2",),
        metadata={CURRENT_VERSION_KEY: "2"},
    ),
    Bad(
        "PersistState-create_only_but_exists",
        persist(expected_version=0),
        Code.ABORTED,
        ("expected version 0, but the workflow is at version 2",),
        metadata={CURRENT_VERSION_KEY: "2"},
    ),
    Bad(
        "PersistState-expected_version_of_absent_workflow",
        st("PersistState", lambda w: S.PersistStateRequest(workflow_id="bi-nope", expected_version=3)),
        Code.ABORTED,
        ("expected version 3, but the workflow does not exist",),
        metadata={CURRENT_VERSION_KEY: "0"},
    ),
    Bad(
        "DeleteWorkflow-stale_expected_version",
        st("DeleteWorkflow", lambda w: S.DeleteWorkflowRequest(workflow_id=w.plain, expected_version=1)),
        Code.ABORTED,
        ("expected version 1, but the workflow is at version 2",),
        via_follower=True,
        metadata={CURRENT_VERSION_KEY: "2"},
    ),
    Bad(
        "RecoverFromCheckpoint-stale_expected_version",
        st(
            "RecoverFromCheckpoint",
            lambda w: S.RecoverFromCheckpointRequest(workflow_id=w.plain, checkpoint_id=w.plain_cp, expected_version=1),
        ),
        Code.ABORTED,
        ("expected version 1, but the workflow is at version 2",),
        metadata={CURRENT_VERSION_KEY: "2"},
    ),
]

PRECONDITION_CASES = [
    Bad(
        "PersistState-request_id_reused_with_another_body",
        persist(current_step="b", variables=struct({"n": 3}), labels={"team": "core"}, request_id=World.used_rid),
        Code.FAILED_PRECONDITION,
        (f"request_id {World.used_rid!r} was already used for a different request",),
    ),
    Bad(
        "PersistState-request_id_reused_with_another_body_via_follower",
        persist(current_step="b", variables=struct({"n": 2}), labels={"team": "other"}, request_id=World.used_rid),
        Code.FAILED_PRECONDITION,
        (f"request_id {World.used_rid!r} was already used for a different request",),
        via_follower=True,
    ),
    Bad(
        "CreateCheckpoint-request_id_of_a_persist",
        st("CreateCheckpoint", lambda w: S.CreateCheckpointRequest(workflow_id=w.plain, request_id=w.used_rid)),
        Code.FAILED_PRECONDITION,
        (f"request_id {World.used_rid!r} was already used for a different request",),
    ),
    Bad(
        "StartWorkflow-request_id_of_a_persist",
        wf(
            "StartWorkflow",
            lambda w: W.StartWorkflowRequest(workflow_id=w.plain, workflow_type="t", request_id=w.used_rid),
        ),
        Code.FAILED_PRECONDITION,
        (f"request_id {World.used_rid!r} was already used for a different request",),
    ),
    # ---- durable execution
    Bad(
        "RecordStep-stale_token",
        wf(
            "RecordStep",
            lambda w: W.RecordStepRequest(
                workflow_id=w.leased, fencing_token=w.leased_token - 1, step_name="ship", result=pvalue(1)
            ),
        ),
        Code.FAILED_PRECONDITION,
        ("lease lost", "is stale"),
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "RecordStep-future_token_via_follower",
        wf(
            "RecordStep",
            lambda w: W.RecordStepRequest(
                workflow_id=w.leased, fencing_token=w.leased_token + 1000, step_name="ship", result=pvalue(1)
            ),
        ),
        Code.FAILED_PRECONDITION,
        ("lease lost", "is stale"),
        via_follower=True,
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "CompleteWorkflow-stale_token",
        wf("CompleteWorkflow", lambda w: W.CompleteWorkflowRequest(workflow_id=w.leased, fencing_token=1)),
        Code.FAILED_PRECONDITION,
        ("lease lost", "fencing token 1 is stale"),
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "FailWorkflow-stale_token",
        wf("FailWorkflow", lambda w: W.FailWorkflowRequest(workflow_id=w.leased, fencing_token=1, error="x")),
        Code.FAILED_PRECONDITION,
        ("lease lost", "fencing token 1 is stale"),
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "RecordStep-pending_run",
        wf("RecordStep", lambda w: W.RecordStepRequest(workflow_id=w.pending, fencing_token=5, step_name="s")),
        Code.FAILED_PRECONDITION,
        ("lease lost", "is PENDING, not RUNNING"),
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "CompleteWorkflow-completed_run",
        wf("CompleteWorkflow", lambda w: W.CompleteWorkflowRequest(workflow_id=w.done, fencing_token=5)),
        Code.FAILED_PRECONDITION,
        ("lease lost", "is COMPLETED, not RUNNING"),
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "RecordStep-not_a_run",
        wf("RecordStep", lambda w: W.RecordStepRequest(workflow_id=w.plain, fencing_token=5, step_name="s")),
        Code.FAILED_PRECONDITION,
        ("'bi-plain' is not a workflow run",),
    ),
    Bad(
        "RecordStep-expired_lease",
        wf(
            "RecordStep",
            lambda w: W.RecordStepRequest(
                workflow_id=w.expired, fencing_token=w.expired_token, step_name="s", result=pvalue(1)
            ),
        ),
        Code.FAILED_PRECONDITION,
        ("lease lost", "the lease on run 'bi-expired' has expired"),
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "CompleteWorkflow-expired_lease",
        wf(
            "CompleteWorkflow",
            lambda w: W.CompleteWorkflowRequest(workflow_id=w.expired, fencing_token=w.expired_token),
        ),
        Code.FAILED_PRECONDITION,
        ("lease lost", "has expired"),
        metadata={REASON_KEY: REASON_LEASE_LOST},
    ),
    Bad(
        "RecordStep-step_recorded_twice",
        wf(
            "RecordStep",
            lambda w: W.RecordStepRequest(
                workflow_id=w.leased, fencing_token=w.leased_token, step_name="charge", result=pvalue({"ok": False})
            ),
        ),
        Code.FAILED_PRECONDITION,
        ("step 'charge' of run 'bi-leased' is already recorded",),
        via_follower=True,
    ),
    Bad(
        "ReleaseWorkflow-pending_run",
        wf("ReleaseWorkflow", lambda w: W.ReleaseWorkflowRequest(workflow_id=w.pending)),
        Code.FAILED_PRECONDITION,
        ("run 'bi-pending' is PENDING; only a QUARANTINED run can be released",),
    ),
    Bad(
        "ReleaseWorkflow-running_run",
        wf("ReleaseWorkflow", lambda w: W.ReleaseWorkflowRequest(workflow_id=w.leased)),
        Code.FAILED_PRECONDITION,
        ("run 'bi-leased' is RUNNING; only a QUARANTINED run can be released",),
    ),
    Bad(
        "ReleaseWorkflow-completed_run",
        wf("ReleaseWorkflow", lambda w: W.ReleaseWorkflowRequest(workflow_id=w.done)),
        Code.FAILED_PRECONDITION,
        ("run 'bi-done' is COMPLETED; only a QUARANTINED run can be released",),
    ),
    Bad(
        "CancelWorkflow-completed_run",
        wf("CancelWorkflow", lambda w: W.CancelWorkflowRequest(workflow_id=w.done)),
        Code.FAILED_PRECONDITION,
        ("run 'bi-done' is already COMPLETED",),
    ),
    Bad(
        "CancelWorkflow-cancelled_run",
        wf("CancelWorkflow", lambda w: W.CancelWorkflowRequest(workflow_id=w.cancelled)),
        Code.FAILED_PRECONDITION,
        ("run 'bi-cancelled' is already CANCELLED",),
    ),
]

EXISTS_CASES = [
    Bad(
        "StartWorkflow-existing_run",
        wf("StartWorkflow", lambda w: W.StartWorkflowRequest(workflow_id=w.pending, workflow_type="bi-pending-type")),
        Code.ALREADY_EXISTS,
        ("workflow 'bi-pending' already exists (version 1); a start is refused",),
    ),
    Bad(
        "StartWorkflow-existing_state_via_follower",
        wf(
            "StartWorkflow",
            lambda w: W.StartWorkflowRequest(workflow_id=w.plain, workflow_type="t", request_id=new_id("r")),
        ),
        Code.ALREADY_EXISTS,
        ("workflow 'bi-plain' already exists (version 2)",),
        via_follower=True,
    ),
]

BIG = "x" * (CAP + 1024)
EXHAUSTED_CASES = [
    Bad(
        "PersistState-variables_over_the_cap",
        persist(variables=struct({"blob": BIG})),
        Code.RESOURCE_EXHAUSTED,
        ("state of 'bi-plain' would be", f"the cap is {CAP} (limits.max_state_bytes)"),
    ),
    Bad(
        "PersistState-new_workflow_over_the_cap_via_follower",
        st(
            "PersistState",
            lambda w: S.PersistStateRequest(workflow_id="bi-too-big", variables=struct({"blob": BIG})),
        ),
        Code.RESOURCE_EXHAUSTED,
        ("state of 'bi-too-big' would be", "limits.max_state_bytes"),
        via_follower=True,
    ),
    Bad(
        "StartWorkflow-input_over_the_cap",
        wf(
            "StartWorkflow",
            lambda w: W.StartWorkflowRequest(workflow_id="bi-too-big", workflow_type="t", input=pvalue({"blob": BIG})),
        ),
        Code.RESOURCE_EXHAUSTED,
        ("input", f"the cap is {CAP}", "limits.max_state_bytes"),
    ),
    Bad(
        "RecordStep-result_takes_the_state_over_the_cap",
        wf(
            "RecordStep",
            lambda w: W.RecordStepRequest(
                workflow_id=w.big, fencing_token=w.big_token, step_name="s", result=pvalue("y" * (30 * 1024))
            ),
        ),
        Code.RESOURCE_EXHAUSTED,
        ("the result of step 's' is", f"the cap is {CAP}"),
    ),
    Bad(
        "CompleteWorkflow-output_takes_the_state_over_the_cap",
        wf(
            "CompleteWorkflow",
            lambda w: W.CompleteWorkflowRequest(
                workflow_id=w.big, fencing_token=w.big_token, output=pvalue({"o": "y" * (30 * 1024)})
            ),
        ),
        Code.RESOURCE_EXHAUSTED,
        ("output is", f"the cap is {CAP}"),
    ),
]

ALL_CASES = ID_CASES + INVALID_CASES + POLL_CASES + NOT_FOUND_CASES + ABORTED_CASES + PRECONDITION_CASES
ALL_CASES += EXISTS_CASES + EXHAUSTED_CASES


@pytest.mark.parametrize("bad", ALL_CASES, ids=lambda b: b.name)
def test_a_bad_request_gets_its_code_and_message_and_changes_nothing(world: World, bad: Bad) -> None:
    raw = world.raw
    if "expired" in bad.name:
        wait_until(lambda: time.time_ns() > world.expired_at_ns + 50_000_000, 10, "the short lease never passed")
    before = raw.digest()
    assert len(set(before.values())) == 1, f"the replicas differ before the request: {before}"
    node = raw.follower() if bad.via_follower else raw.leader()
    err = refused(lambda: bad.send(world, node), bad.code, *bad.needles)
    got = trailing(err)
    for key, value in bad.metadata.items():
        assert got.get(key) == value, f"trailing metadata {key}: expected {value!r}, got {got!r}"
    if bad.code != Code.ABORTED:
        assert CURRENT_VERSION_KEY not in got
    assert raw.digest() == before, f"{bad.name} changed the store"


# ---- requests the server cannot even decode -----------------------------------------------------------
# Protobuf's decoder refuses a message nested deeper than 100 levels (a variables dict nested 33 levels deep
# already is: each level is a Struct, a map entry and a Value) and a string field that is not UTF-8. A client
# in another language can send both. The server's own rule for nesting (workflow.MAX_DEPTH, 64 levels) is
# never reached.


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_variables(levels: int) -> bytes:
    """A google.protobuf.Struct {"d": {"d": ... {"leaf": "x"}}}, `levels` dicts deep, encoded by hand."""
    inner = _field(1, _field(1, b"leaf") + _field(2, _field(3, b"x")))  # fields entry "leaf": string_value
    for _ in range(levels):
        inner = _field(1, _field(1, b"d") + _field(2, _field(5, inner)))  # fields entry "d": struct_value
    return inner


UNDECODABLE = [
    # (case, PersistStateRequest bytes, what the message must name)
    ("variables_nested_33_levels", _field(1, b"bi-deep") + _field(3, _nested_variables(33)), "nested"),
    ("variables_nested_65_levels", _field(1, b"bi-deep") + _field(3, _nested_variables(65)), "nested"),
    ("workflow_id_not_utf8", _field(1, b"bi-\xff"), "UTF-8"),
    ("label_key_not_utf8", _field(1, b"bi-plain") + _field(4, _field(1, b"k\xff") + _field(2, b"v")), "UTF-8"),
]


def test_the_nesting_limit_below_the_decoders_is_accepted(world: World) -> None:
    """The control for the next test: 32 levels decode, and are stored (so the encoding above is right)."""
    raw = world.raw
    call = raw.channels[raw.leader()].unary_unary(
        "/cairn.v1.StateService/PersistState",
        request_serializer=None,
        response_deserializer=S.PersistStateResponse.FromString,
    )
    stored = call(_field(1, b"bi-deep-ok") + _field(3, _nested_variables(32)), timeout=10).state
    depth, node = 0, json_format.MessageToDict(stored.variables)
    while "d" in node:
        depth, node = depth + 1, node["d"]
    assert (depth, node) == (32, {"leaf": "x"})


@pytest.mark.parametrize(("case", "payload", "needle"), UNDECODABLE, ids=[u[0] for u in UNDECODABLE])
def test_an_undecodable_request_is_invalid_argument(world: World, case: str, payload: bytes, needle: str) -> None:
    raw = world.raw
    before = raw.digest()
    call = raw.channels[raw.leader()].unary_unary(
        "/cairn.v1.StateService/PersistState",
        request_serializer=None,
        response_deserializer=S.PersistStateResponse.FromString,
    )
    try:
        refused(lambda: call(payload, timeout=10), Code.INVALID_ARGUMENT, needle)
    finally:
        assert raw.digest() == before


def test_an_undecodable_message_ends_a_persist_stream_with_invalid_argument_after_the_ones_before(
    world: World,
) -> None:
    """A stream is answered up to the bad message, then ends INVALID_ARGUMENT; the bad message changes nothing."""
    raw = world.raw
    call = raw.channels[raw.leader()].stream_stream(
        "/cairn.v1.StateService/PersistStream",
        request_serializer=None,
        response_deserializer=S.PersistStreamResponse.FromString,
    )
    good = S.PersistStreamRequest(
        sequence=1, persist=S.PersistStateRequest(workflow_id="bi-stream-ok", request_id="bi-stream-ok")
    ).SerializeToString()
    bad = _field(2, _field(1, b"bi-stream-\xff"))  # PersistStreamRequest.persist.workflow_id, not UTF-8
    answers: list[S.PersistStreamResponse] = []
    with pytest.raises(grpc.RpcError) as ended:
        for answer in call(iter([good, bad, good]), timeout=10):
            answers.append(answer)
    assert ended.value.code() == Code.INVALID_ARGUMENT and "UTF-8" in (ended.value.details() or "")
    assert [(a.sequence, a.response.state.version) for a in answers] == [(1, 1)]


def test_a_persist_on_a_run_cannot_take_its_state_over_the_cap(world: World) -> None:
    """The run's own fields (its 40 KiB input) are part of the state like the variables, and the cap is on the
    state ("a larger state is RESOURCE_EXHAUSTED"). Uses its own run: when this bug shows, the run grows."""
    raw = world.raw
    wid = new_id("bi-big-persist")
    _start(raw, wid, f"{wid}-type", {"blob": "x" * (40 * 1024)})
    before = raw.digest()
    refused(
        lambda: raw.state(raw.leader()).PersistState(
            S.PersistStateRequest(workflow_id=wid, variables=struct({"blob": "z" * (30 * 1024)})), timeout=10
        ),
        Code.RESOURCE_EXHAUSTED,
        "limits.max_state_bytes",
    )
    assert raw.digest() == before


def test_a_start_whose_input_and_labels_together_exceed_the_cap_is_refused(world: World) -> None:
    raw = world.raw
    labels = {f"k{i:02d}-" + "k" * 58: "v" * 256 for i in range(64)}  # the most labels allow: ~21 KiB
    wid = new_id("bi-big-start")
    before = raw.digest()
    refused(
        lambda: raw.flow(raw.leader()).StartWorkflow(
            W.StartWorkflowRequest(
                workflow_id=wid, workflow_type="t", input=pvalue({"blob": "x" * (50 * 1024)}), labels=labels
            ),
            timeout=10,
        ),
        Code.RESOURCE_EXHAUSTED,
        "limits.max_state_bytes",
    )
    assert raw.digest() == before


BAD_STEP_NAMES = [("control_character", "a\tb"), ("257_bytes", "s" * 257)]


@pytest.mark.parametrize(("case", "name"), BAD_STEP_NAMES, ids=[c for c, _ in BAD_STEP_NAMES])
def test_a_bad_step_name_is_named_step_name(world: World, case: str, name: str) -> None:
    raw = world.raw
    before = raw.digest()
    refused(
        lambda: raw.flow(raw.leader()).RecordStep(
            W.RecordStepRequest(
                workflow_id=world.leased, fencing_token=world.leased_token, step_name=name, result=pvalue(1)
            ),
            timeout=10,
        ),
        Code.INVALID_ARGUMENT,
        "step_name",
    )
    assert raw.digest() == before


# ---- UNAVAILABLE, and the leader hint ---------------------------------------------------------------


def test_a_request_already_marked_forwarded_is_not_forwarded_again_and_names_the_leader(world: World) -> None:
    raw = world.raw
    leader, follower = raw.leader(), raw.follower()
    before = raw.digest()
    err = refused(
        lambda: raw.state(follower).PersistState(
            S.PersistStateRequest(workflow_id=world.plain, current_step="z", expected_version=99),
            timeout=10,
            metadata=((FORWARDED_KEY, "1"),),
        ),
        Code.UNAVAILABLE,
        "no longer the leader",
    )
    assert trailing(err).get(LEADER_KEY) == raw.handle.endpoint(leader)
    assert raw.digest() == before


PAUSED_DEADLINE = 1.5


def test_a_follower_that_cannot_reach_a_paused_leader_answers_unavailable_with_the_leader_hint(
    world: World,
) -> None:
    """With the leader SIGSTOPped, a follower (which still believes in it: the election timeout is 3 s) cannot
    forward: before the caller's deadline it answers UNAVAILABLE, outcome unknown, with the leader it knows in
    x-cairn-leader. (forwarding.py gives the forwarded call the caller's deadline minus 50 ms; a follower whose
    channel to the leader is not connected yet gives up after gRPC's connect timeout, sooner, same answer.)"""
    raw = world.raw
    leader, follower = raw.leader(), raw.follower()
    # A write that changes nothing even if the leader picks it up when it resumes (its version is wrong).
    request = S.PersistStateRequest(workflow_id=world.plain, current_step="z", expected_version=99)
    refused(lambda: raw.state(follower).PersistState(request, timeout=10), Code.ABORTED)  # the channel is up
    before = raw.digest()
    raw.handle.cluster.signal_node(leader, signal.SIGSTOP)
    try:
        wait_stopped(raw.handle, leader)
        err = refused(
            lambda: raw.state(follower).PersistState(request, timeout=PAUSED_DEADLINE),
            Code.UNAVAILABLE,
            f"could not reach the leader at {raw.handle.endpoint(leader)}",
            "retry with the same request_id",
        )
    finally:
        raw.handle.cluster.signal_node(leader, signal.SIGCONT)
    assert trailing(err).get(LEADER_KEY) == raw.handle.endpoint(leader)
    assert raw.digest() == before


def test_a_write_without_a_deadline_sent_to_a_follower_is_forwarded(world: World) -> None:
    """grpcurl, or any client that sets no deadline: 'Any node's address works' (README)."""
    raw = world.raw
    follower = raw.follower()
    wid = new_id("bi-no-deadline")
    try:
        got = raw.state(follower).PersistState(S.PersistStateRequest(workflow_id=wid, current_step="a"))
    except grpc.RpcError as err:
        raise AssertionError(f"{err.code().name}: {err.details()}") from None
    assert got.state.version == 1


# ---- clusters with features switched off, and the reject mode ------------------------------------------


def _persist(raw: Raw, workflow_id: str, **kw: Any) -> S.WorkflowState:
    return raw.state(raw.leader()).PersistState(S.PersistStateRequest(workflow_id=workflow_id, **kw), timeout=10).state


@pytest.fixture(scope="module")
def no_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Raw]:
    handle = start_cluster(tmp_path_factory.mktemp("no-checkpoints"), 3, {"checkpointing": {"enabled": False}})
    raw = Raw(handle)
    yield raw
    raw.close()
    handle.close()


def test_checkpointing_disabled(no_checkpoints: Raw) -> None:
    raw = no_checkpoints
    _persist(raw, "cp-off", current_step="a")
    before = raw.digest()
    for node in (raw.leader(), raw.follower()):
        refused(
            lambda node=node: raw.state(node).CreateCheckpoint(
                S.CreateCheckpointRequest(workflow_id="cp-off", request_id=new_id("r")), timeout=10
            ),
            Code.FAILED_PRECONDITION,
            "checkpointing is disabled on this cluster (checkpointing.enabled)",
        )
        assert raw.digest() == before


def test_a_node_that_knows_no_leader_answers_unavailable_without_a_hint(no_checkpoints: Raw) -> None:
    """A node restarted alone has never heard of a leader (and pysyncobj starts no election without a
    connection, so it stays that way). Runs last on its cluster: it kills the other nodes."""
    raw, handle = no_checkpoints, no_checkpoints.handle
    survivor = raw.follower()
    for i in range(handle.size):
        handle.kill(i)
    handle.cluster.start_node(survivor)
    wait_until(
        lambda: raw.status(survivor).leader_id == "" and raw.status(survivor).role == cluster_pb2.FOLLOWER,
        20,
        "the restarted node does not answer, or believes in a leader",
    )
    err = refused(
        lambda: raw.state(survivor).PersistState(S.PersistStateRequest(workflow_id="cp-off"), timeout=10),
        Code.UNAVAILABLE,
        "no leader is known",
    )
    assert LEADER_KEY not in trailing(err)


def test_recovery_disabled(make_cluster) -> None:
    handle = make_cluster(3, {"recovery": {"enabled": False}})
    raw = Raw(handle)
    try:
        _persist(raw, "rec-off", current_step="a")
        cp = raw.state(raw.leader()).CreateCheckpoint(S.CreateCheckpointRequest(workflow_id="rec-off"), timeout=10)
        _persist(raw, "rec-off", current_step="b")
        before = raw.digest()
        for node in (raw.leader(), raw.follower()):
            refused(
                lambda node=node: raw.state(node).RecoverFromCheckpoint(
                    S.RecoverFromCheckpointRequest(
                        workflow_id="rec-off", checkpoint_id=cp.checkpoint.id, expected_version=2
                    ),
                    timeout=10,
                ),
                Code.FAILED_PRECONDITION,
                "recovery is disabled on this cluster (recovery.enabled)",
            )
            assert raw.digest() == before
    finally:
        raw.close()


@pytest.fixture(scope="module")
def reject_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    handle = start_cluster(tmp_path_factory.mktemp("reject"), 3, {"synchronization": {"conflict_resolution": "reject"}})
    yield handle
    handle.close()


def test_reject_mode_refuses_updates_without_expected_version(reject_cluster: ClusterHandle) -> None:
    raw = Raw(reject_cluster)
    try:
        _persist(raw, "rj", current_step="a")
        cp = raw.state(raw.leader()).CreateCheckpoint(S.CreateCheckpointRequest(workflow_id="rj"), timeout=10)
        _persist(raw, "rj", current_step="b", expected_version=1)
        before = raw.digest()
        updates = [
            lambda n: raw.state(n).PersistState(S.PersistStateRequest(workflow_id="rj", current_step="c"), timeout=10),
            lambda n: raw.state(n).RecoverFromCheckpoint(
                S.RecoverFromCheckpointRequest(workflow_id="rj", checkpoint_id=cp.checkpoint.id), timeout=10
            ),
        ]
        for update in updates:
            for node in (raw.leader(), raw.follower()):
                refused(
                    lambda update=update, node=node: update(node),
                    Code.FAILED_PRECONDITION,
                    "workflow 'rj' exists (version 2)",
                    "without expected_version (synchronization.conflict_resolution: reject)",
                )
                assert raw.digest() == before
    finally:
        raw.close()


# ---- corrupt records ---------------------------------------------------------------------------------


def _db(handle: ClusterHandle, i: int) -> Path:
    return handle.cluster.specs[i].data_dir / "data" / "db"


def test_corrupt_checkpoint_and_corrupt_state_records(reject_cluster: ClusterHandle) -> None:
    """A checkpoint record altered on every node is never restored (DATA_LOSS); a state record altered on one
    node is reported by ValidateState there (CHECKSUM_MISMATCH) and from the other nodes (REPLICA_DIVERGED).

    GetState does not verify checksums (rpc/state_service.py GetState reads the record as stored): a read on
    the altered node serves the altered variables with the old checksum. The README promises only that
    validate_state reports it, which is what is asserted here."""
    handle, raw = reject_cluster, Raw(reject_cluster)
    try:
        _persist(raw, "bad-cp", current_step="a", variables=struct({"n": 1}))
        cp = raw.state(raw.leader()).CreateCheckpoint(S.CreateCheckpointRequest(workflow_id="bad-cp"), timeout=10)
        _persist(raw, "bad-cp", current_step="b", variables=struct({"n": 2}), expected_version=1)
        _persist(raw, "bad-state", current_step="a", variables=struct({"n": 1}))
        _persist(raw, "bad-state", current_step="b", variables=struct({"n": 2}), expected_version=1)
        index = raw.status(raw.leader()).commit_index
        for i in range(handle.size):
            handle.wait_applied(i, index)
        victim = raw.follower()
        for i in range(handle.size):
            assert handle.cluster.stop_node(i) == 0
        for i in range(handle.size):
            store = RocksStore(_db(handle, i))
            try:
                key = checkpoint_key("bad-cp", cp.checkpoint.id)
                raw_cp = store.get("checkpoint", key)
                assert raw_cp is not None
                altered = decode_checkpoint(raw_cp)
                altered.state.variables["n"] = 1000  # the checksum is left as it was
                batch = store.batch()
                batch.put("checkpoint", key, encode_checkpoint(altered, compress=raw_cp[:1] == b"\x01"))
                if i == victim:
                    state = S.WorkflowState.FromString(store.get("state", b"bad-state"))
                    state.variables["n"] = 666
                    batch.put("state", b"bad-state", state.SerializeToString(deterministic=True))
                store.write(batch, sync=True)
                assert sum(1 for _ in store.scan("history", workflow_prefix("bad-state"))) == 2
            finally:
                store.close()
        for i in range(handle.size):
            handle.cluster.start_node(i)
        handle.wait_leader(30)
        wait_until(raw.digest, 30, "the restarted cluster does not answer reads")

        # The corrupt checkpoint: never restored, nothing changes.
        before = raw.digest()
        for node in (raw.leader(), raw.follower()):
            refused(
                lambda node=node: raw.state(node).RecoverFromCheckpoint(
                    S.RecoverFromCheckpointRequest(
                        workflow_id="bad-cp", checkpoint_id=cp.checkpoint.id, expected_version=2
                    ),
                    timeout=10,
                ),
                Code.DATA_LOSS,
                f"checkpoint {cp.checkpoint.id!r} is corrupt",
                "refusing to restore it",
            )
            assert raw.digest() == before
        report = raw.state(raw.leader()).ValidateState(S.ValidateStateRequest(workflow_id="bad-cp"), timeout=10)
        assert not report.valid
        assert [p.code for p in report.problems] == ["CHECKPOINT_CORRUPT"], report.problems
        assert cp.checkpoint.id in report.problems[0].message

        # The corrupt state record on one node.
        victim_id = handle.cluster.specs[victim].node_id
        on_victim = raw.state(victim).ValidateState(S.ValidateStateRequest(workflow_id="bad-state"), timeout=10)
        assert not on_victim.valid
        mismatch = [p for p in on_victim.problems if p.code == "CHECKSUM_MISMATCH"]
        assert len(mismatch) == 1 and mismatch[0].node_id == victim_id, on_victim.problems
        others = [i for i in range(handle.size) if i != victim]
        for i in others:
            report = raw.state(i).ValidateState(S.ValidateStateRequest(workflow_id="bad-state"), timeout=10)
            assert not report.valid
            assert [(p.code, p.node_id) for p in report.problems] == [("REPLICA_DIVERGED", victim_id)], report.problems
        served = (
            raw.state(victim)
            .GetState(S.GetStateRequest(workflow_id="bad-state", read=S.ReadOptions(consistency=SERIAL)), timeout=10)
            .state
        )
        assert rules.checksum(served) != served.metadata.checksum  # what a careful client can check itself
        assert raw.digest() == before
    finally:
        raw.close()
