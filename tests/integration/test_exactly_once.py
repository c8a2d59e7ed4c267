"""Exactly once (README "Guarantees"): a retried write with the same request id returns the first result and
applies nothing, also when the first attempt's outcome is genuinely unknown, and for `limits.dedup_window`.

An unknown outcome without root or fault injection: both followers of a 3-node cluster are SIGSTOPped (and
the test waits until every thread of both has stopped: SIGSTOP takes effect asynchronously, and on a loaded
machine a follower can still acknowledge an entry milliseconds after the signal), the write goes to the
leader with a short deadline, so the client gets DEADLINE_EXCEEDED while the entry sits in
the leader's log, proposed but not committed (the test checks exactly that through ClusterService.Status).
The followers are resumed long before the leader would step down (leaderFallbackTimeout is twice
raft.election_timeout, here 8 s), the entry commits, and the retry with the same request id must return the
first attempt's result while the effect is applied exactly once. Two kinds of retry:

- `after_commit`: the retry arrives once the leader has applied the first entry (answered from the dedup
  record, before anything is proposed);
- `while_pending`: the retry arrives while the first entry is still uncommitted, so the leader proposes it
  a second time; apply must recognise the second entry as a retry.

Every write of state.proto and workflow.proto that takes a request_id is covered, PollWork's claim included
(its request id is remembered like any other write's). Heartbeat is not: its request_id is optional and
deliberately not remembered (extending a lease twice is harmless), see workflow.proto.

Everything goes through raw gRPC stubs, so the request id and the deadline are exactly what the test says.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from cairn.v1 import (
    cluster_pb2,
    state_pb2,
    workflow_pb2,
)
from tests.raw import Raw, new_id, pvalue, struct, wait_stopped
from tests.support import ClusterHandle, start_cluster, wait_until

pytestmark = pytest.mark.timeout(600)

# The leader steps down after 2 x election_timeout without hearing from a majority (8 s), and a follower
# resumed within election_timeout (4 s) of its last heartbeat starts no election (a stopped process's timers
# do not run, but monotonic time does): the pauses here last about a second, even on a loaded machine.
ELECTION_TIMEOUT = "4s"
LOST_DEADLINE = 0.5  # the first attempt's deadline: it expires while the entry is proposed, not committed
RETRY_DEADLINE = 20.0
LEASE_MS = 600_000  # leases the tests take never expire while a test runs
OVERRIDES: dict[str, Any] = {
    # One entry per write (no group commit): a retry arriving while its first attempt is pending is proposed
    # as a second entry, the case apply must recognise. With group commit the retry waits for the next group
    # instead (tests/integration/test_group_commit.py).
    "raft": {"election_timeout": ELECTION_TIMEOUT, "heartbeat_interval": "100ms", "group_commit": 1},
    # One attempt: a failed attempt quarantines the run at once, so ReleaseWorkflow has something to release.
    "recovery": {"max_attempts": 1},
    "execution": {"max_lease_timeout": "1h"},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    handle = start_cluster(tmp_path_factory.mktemp("exactly-once"), 3, OVERRIDES)
    yield handle
    for i in range(handle.size):
        handle.cluster.signal_node(i, signal.SIGCONT)
    handle.close()


@pytest.fixture(scope="module")
def raw(cluster: ClusterHandle) -> Iterator[Raw]:
    r = Raw(cluster)
    yield r
    r.close()


# ---- reads used by the checks (always linearizable, on the leader) ----------------------------------


def get_state(raw: Raw, workflow_id: str) -> state_pb2.WorkflowState:
    leader = raw.handle.wait_leader()
    return (
        raw.state(leader)
        .GetState(state_pb2.GetStateRequest(workflow_id=workflow_id, include_history=True), timeout=10)
        .state
    )


def changes_by(state: state_pb2.WorkflowState, request_id: str) -> list[state_pb2.StateChange]:
    return [h for h in state.history if h.request_id == request_id]


def checkpoints(raw: Raw, workflow_id: str) -> list[state_pb2.Checkpoint]:
    leader = raw.handle.wait_leader()
    return list(
        raw.state(leader)
        .ListCheckpoints(state_pb2.ListCheckpointsRequest(workflow_id=workflow_id), timeout=10)
        .checkpoints
    )


# ---- the cases: one write per case, its setup, and what "applied exactly once" means for it ----------


@dataclass
class Case:
    """`setup` creates what the write needs and returns a context; `call(ctx, stub_node, timeout)` sends the
    write (always the same request, request id included); `check(ctx, response)` asserts the retry's
    response is the first attempt's result and that the effect exists exactly once."""

    name: str
    setup: Callable[[Raw, str], dict[str, Any]]
    call: Callable[[Raw, dict[str, Any], int, float], Any]
    check: Callable[[Raw, dict[str, Any], Any], None]


def _persist(raw: Raw, leader: int, workflow_id: str, step: str, variables: dict[str, Any]) -> state_pb2.WorkflowState:
    return (
        raw.state(leader)
        .PersistState(
            state_pb2.PersistStateRequest(
                workflow_id=workflow_id, current_step=step, variables=struct(variables), request_id=new_id("setup")
            ),
            timeout=10,
        )
        .state
    )


def _start(raw: Raw, leader: int, workflow_id: str, workflow_type: str) -> state_pb2.WorkflowState:
    return (
        raw.flow(leader)
        .StartWorkflow(
            workflow_pb2.StartWorkflowRequest(
                workflow_id=workflow_id, workflow_type=workflow_type, input=pvalue({"n": 1}), request_id=new_id("setup")
            ),
            timeout=10,
        )
        .state
    )


def _claim(raw: Raw, leader: int, workflow_type: str) -> workflow_pb2.WorkTask:
    task = (
        raw.flow(leader)
        .PollWork(
            workflow_pb2.PollWorkRequest(
                worker_id="setup-worker",
                workflow_types=[workflow_type],
                lease_timeout_ms=LEASE_MS,
                wait_ms=5000,
                request_id=new_id("setup"),
            ),
            timeout=10,
        )
        .task
    )
    assert task.lease.fencing_token > 0, "setup: the run was not claimed"
    return task


# -- StateService


def persist_setup(expected: int | None) -> Callable[[Raw, str], dict[str, Any]]:
    def setup(raw: Raw, rid: str) -> dict[str, Any]:
        leader = raw.handle.wait_leader()
        wid = new_id("persist")
        before = _persist(raw, leader, wid, "one", {"n": 1}) if expected != 0 else None
        request = state_pb2.PersistStateRequest(
            workflow_id=wid, current_step="two", variables=struct({"n": 2, "tag": rid}), request_id=rid
        )
        if expected is not None:
            request.expected_version = before.version if before is not None else 0
        return {"wid": wid, "request": request, "version": before.version if before is not None else 0}

    return setup


def persist_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.state(node).PersistState(ctx["request"], timeout=timeout)


def persist_check(raw: Raw, ctx: dict[str, Any], response: state_pb2.PersistStateResponse) -> None:
    stored = get_state(raw, ctx["wid"])
    assert response.state.version == ctx["version"] + 1, "the retry did not return the first attempt's version"
    assert stored.version == ctx["version"] + 1, f"applied more than once: version {stored.version}"
    assert response.state.metadata.checksum == stored.metadata.checksum
    assert json_format.MessageToDict(response.state.variables) == {"n": 2, "tag": ctx["request"].request_id}
    assert len(changes_by(stored, ctx["request"].request_id)) == 1


def checkpoint_setup(raw: Raw, rid: str) -> dict[str, Any]:
    leader = raw.handle.wait_leader()
    wid = new_id("checkpoint")
    before = _persist(raw, leader, wid, "one", {"n": 1})
    return {"wid": wid, "request": state_pb2.CreateCheckpointRequest(workflow_id=wid, request_id=rid), "state": before}


def checkpoint_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.state(node).CreateCheckpoint(ctx["request"], timeout=timeout)


def checkpoint_check(raw: Raw, ctx: dict[str, Any], response: state_pb2.CreateCheckpointResponse) -> None:
    taken = checkpoints(raw, ctx["wid"])
    assert [cp.id for cp in taken] == [response.checkpoint.id], "the checkpoint was taken more than once"
    assert response.checkpoint.version == ctx["state"].version
    stored = get_state(raw, ctx["wid"])
    assert stored.version == ctx["state"].version and stored.checkpoint.id == response.checkpoint.id


def recover_setup(expected: bool) -> Callable[[Raw, str], dict[str, Any]]:
    def setup(raw: Raw, rid: str) -> dict[str, Any]:
        leader = raw.handle.wait_leader()
        wid = new_id("recover")
        _persist(raw, leader, wid, "one", {"n": 1})
        cp = raw.state(leader).CreateCheckpoint(
            state_pb2.CreateCheckpointRequest(workflow_id=wid, request_id=new_id("setup")), timeout=10
        )
        before = _persist(raw, leader, wid, "two", {"n": 2})
        request = state_pb2.RecoverFromCheckpointRequest(
            workflow_id=wid, checkpoint_id=cp.checkpoint.id, request_id=rid
        )
        if expected:
            request.expected_version = before.version
        return {"wid": wid, "request": request, "version": before.version, "cp": cp.checkpoint.id}

    return setup


def recover_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.state(node).RecoverFromCheckpoint(ctx["request"], timeout=timeout)


def recover_check(raw: Raw, ctx: dict[str, Any], response: state_pb2.RecoverFromCheckpointResponse) -> None:
    stored = get_state(raw, ctx["wid"])
    assert response.state.version == ctx["version"] + 1, "the retry did not return the first attempt's version"
    assert stored.version == ctx["version"] + 1, f"recovered more than once: version {stored.version}"
    assert (stored.current_step, json_format.MessageToDict(stored.variables)) == ("one", {"n": 1})
    mine = changes_by(stored, ctx["request"].request_id)
    assert [(h.kind, h.checkpoint_id) for h in mine] == [(state_pb2.RECOVER, ctx["cp"])]


def delete_setup(expected: bool) -> Callable[[Raw, str], dict[str, Any]]:
    def setup(raw: Raw, rid: str) -> dict[str, Any]:
        leader = raw.handle.wait_leader()
        wid = new_id("delete")
        _persist(raw, leader, wid, "one", {"n": 1})
        raw.state(leader).CreateCheckpoint(
            state_pb2.CreateCheckpointRequest(workflow_id=wid, request_id=new_id("setup")), timeout=10
        )
        before = _persist(raw, leader, wid, "two", {"n": 2})
        request = state_pb2.DeleteWorkflowRequest(workflow_id=wid, request_id=rid)
        if expected:
            request.expected_version = before.version
        return {"wid": wid, "request": request, "version": before.version}

    return setup


def delete_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.state(node).DeleteWorkflow(ctx["request"], timeout=timeout)


def delete_check(raw: Raw, ctx: dict[str, Any], response: state_pb2.DeleteWorkflowResponse) -> None:
    assert (response.deleted_version, response.deleted_checkpoints) == (ctx["version"], 1)
    with pytest.raises(grpc.RpcError) as err:
        get_state(raw, ctx["wid"])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- WorkflowService


def start_setup(raw: Raw, rid: str) -> dict[str, Any]:
    wid = new_id("start")
    request = workflow_pb2.StartWorkflowRequest(
        workflow_id=wid, workflow_type=new_id("type"), input=pvalue({"rid": rid}), request_id=rid
    )
    return {"wid": wid, "request": request}


def start_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.flow(node).StartWorkflow(ctx["request"], timeout=timeout)


def start_check(raw: Raw, ctx: dict[str, Any], response: workflow_pb2.StartWorkflowResponse) -> None:
    stored = get_state(raw, ctx["wid"])
    assert response.state.version == 1 and stored.version == 1
    assert response.state.run.status == state_pb2.PENDING
    assert [h.kind for h in changes_by(stored, ctx["request"].request_id)] == [state_pb2.RUN_STARTED]


def poll_setup(raw: Raw, rid: str) -> dict[str, Any]:
    leader = raw.handle.wait_leader()
    wid, wtype = new_id("poll"), new_id("type")
    started = _start(raw, leader, wid, wtype)
    request = workflow_pb2.PollWorkRequest(
        worker_id="w-poll", workflow_types=[wtype], lease_timeout_ms=LEASE_MS, wait_ms=5000, request_id=rid
    )
    return {"wid": wid, "request": request, "version": started.version}


def poll_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.flow(node).PollWork(ctx["request"], timeout=timeout)


def poll_check(raw: Raw, ctx: dict[str, Any], response: workflow_pb2.PollWorkResponse) -> None:
    assert response.HasField("task"), "the retried poll did not get the claim that happened back"
    leader = raw.handle.wait_leader()
    current = raw.flow(leader).GetWorkflow(workflow_pb2.GetWorkflowRequest(workflow_id=ctx["wid"]), timeout=10)
    assert response.task.state.workflow_id == ctx["wid"]
    assert response.task.lease.lease_id == current.lease.lease_id, "the retry got a lease the run does not have"
    assert response.task.lease.fencing_token == current.state.run.fencing_token
    stored = get_state(raw, ctx["wid"])
    assert stored.version == ctx["version"] + 1, f"claimed more than once: version {stored.version}"
    assert [h.kind for h in changes_by(stored, ctx["request"].request_id)] == [state_pb2.RUN_CLAIMED]


def leased_setup(make: Callable[[str, int, str], Any]) -> Callable[[Raw, str], dict[str, Any]]:
    """A started and claimed run; `make(workflow_id, fencing_token, request_id)` builds the write."""

    def setup(raw: Raw, rid: str) -> dict[str, Any]:
        leader = raw.handle.wait_leader()
        wid, wtype = new_id("run"), new_id("type")
        _start(raw, leader, wid, wtype)
        task = _claim(raw, leader, wtype)
        assert task.state.workflow_id == wid
        return {"wid": wid, "request": make(wid, task.lease.fencing_token, rid), "version": task.state.version}

    return setup


def record_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.flow(node).RecordStep(ctx["request"], timeout=timeout)


def record_check(raw: Raw, ctx: dict[str, Any], response: workflow_pb2.RecordStepResponse) -> None:
    stored = get_state(raw, ctx["wid"])
    assert response.state.version == ctx["version"] + 1 and stored.version == ctx["version"] + 1
    assert [(s.name, json_format.MessageToDict(s.result)) for s in stored.run.steps] == [("charge", {"ok": 1})]
    assert [h.kind for h in changes_by(stored, ctx["request"].request_id)] == [state_pb2.STEP_RECORDED]


def complete_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.flow(node).CompleteWorkflow(ctx["request"], timeout=timeout)


def fail_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.flow(node).FailWorkflow(ctx["request"], timeout=timeout)


def cancel_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.flow(node).CancelWorkflow(ctx["request"], timeout=timeout)


def release_call(raw: Raw, ctx: dict[str, Any], node: int, timeout: float) -> Any:
    return raw.flow(node).ReleaseWorkflow(ctx["request"], timeout=timeout)


def run_check(kind: int, status: int, attempt: int = 1) -> Callable[[Raw, dict[str, Any], Any], None]:
    def check(raw: Raw, ctx: dict[str, Any], response: Any) -> None:
        stored = get_state(raw, ctx["wid"])
        assert response.state.version == ctx["version"] + 1, "the retry did not return the first attempt's version"
        assert stored.version == ctx["version"] + 1, f"applied more than once: version {stored.version}"
        assert response.state.run.status == status and stored.run.status == status
        assert stored.run.attempt == attempt
        assert [h.kind for h in changes_by(stored, ctx["request"].request_id)] == [kind]

    return check


def cancel_setup(raw: Raw, rid: str) -> dict[str, Any]:
    leader = raw.handle.wait_leader()
    wid = new_id("cancel")
    started = _start(raw, leader, wid, new_id("type"))
    request = workflow_pb2.CancelWorkflowRequest(workflow_id=wid, reason="no longer needed", request_id=rid)
    return {"wid": wid, "request": request, "version": started.version}


def release_setup(raw: Raw, rid: str) -> dict[str, Any]:
    leader = raw.handle.wait_leader()
    wid, wtype = new_id("release"), new_id("type")
    _start(raw, leader, wid, wtype)
    task = _claim(raw, leader, wtype)
    failed = raw.flow(leader).FailWorkflow(
        workflow_pb2.FailWorkflowRequest(
            workflow_id=wid, fencing_token=task.lease.fencing_token, error="boom", request_id=new_id("setup")
        ),
        timeout=10,
    )
    assert failed.state.run.status == state_pb2.QUARANTINED, "setup: max_attempts 1 should quarantine at once"
    request = workflow_pb2.ReleaseWorkflowRequest(workflow_id=wid, request_id=rid)
    return {"wid": wid, "request": request, "version": failed.state.version}


CASES = [
    Case("persist", persist_setup(None), persist_call, persist_check),
    Case("persist_cas", persist_setup(1), persist_call, persist_check),
    Case("persist_create_only", persist_setup(0), persist_call, persist_check),
    Case("create_checkpoint", checkpoint_setup, checkpoint_call, checkpoint_check),
    Case("recover", recover_setup(False), recover_call, recover_check),
    Case("recover_cas", recover_setup(True), recover_call, recover_check),
    Case("delete", delete_setup(False), delete_call, delete_check),
    Case("delete_cas", delete_setup(True), delete_call, delete_check),
    Case("start_workflow", start_setup, start_call, start_check),
    Case("poll_work_claim", poll_setup, poll_call, poll_check),
    Case(
        "record_step",
        leased_setup(
            lambda wid, token, rid: workflow_pb2.RecordStepRequest(
                workflow_id=wid, fencing_token=token, step_name="charge", result=pvalue({"ok": 1}), request_id=rid
            )
        ),
        record_call,
        record_check,
    ),
    Case(
        "complete_workflow",
        leased_setup(
            lambda wid, token, rid: workflow_pb2.CompleteWorkflowRequest(
                workflow_id=wid, fencing_token=token, output=pvalue({"done": True}), request_id=rid
            )
        ),
        complete_call,
        run_check(state_pb2.RUN_COMPLETED, state_pb2.COMPLETED),
    ),
    Case(
        "fail_workflow",
        leased_setup(
            lambda wid, token, rid: workflow_pb2.FailWorkflowRequest(
                workflow_id=wid, fencing_token=token, error="step raised", request_id=rid
            )
        ),
        fail_call,
        run_check(state_pb2.RUN_ATTEMPT_FAILED, state_pb2.QUARANTINED),
    ),
    Case("cancel_workflow", cancel_setup, cancel_call, run_check(state_pb2.RUN_CANCELLED, state_pb2.CANCELLED)),
    Case(
        "release_workflow", release_setup, release_call, run_check(state_pb2.RUN_RELEASED, state_pb2.PENDING, attempt=2)
    ),
]


# ---- the unknown outcome ---------------------------------------------------------------------------


@dataclass
class Async:
    """A call on another thread: its response or its error."""

    thread: threading.Thread
    box: dict[str, Any]

    @classmethod
    def run(cls, fn: Callable[[], Any]) -> Async:
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["response"] = fn()
            except BaseException as exc:  # reported by result()
                box["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return cls(thread, box)

    def result(self, timeout: float) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the call did not return within {timeout}s"
        if "error" in self.box:
            raise self.box["error"]
        return self.box["response"]


@pytest.mark.parametrize("retry", ["after_commit", "while_pending"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_write_whose_response_is_lost_is_applied_exactly_once(
    cluster: ClusterHandle, raw: Raw, case: Case, retry: str
) -> None:
    rid = new_id(f"eo-{case.name}")
    ctx = case.setup(raw, rid)
    leader = cluster.wait_leader()
    followers = [i for i in range(cluster.size) if i != leader]
    before = raw.status(leader)
    pending: Async | None = None
    for f in followers:
        cluster.cluster.signal_node(f, signal.SIGSTOP)
    try:
        for f in followers:
            wait_stopped(cluster, f)
        with pytest.raises(grpc.RpcError) as lost:
            case.call(raw, ctx, leader, LOST_DEADLINE)
        assert lost.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, lost.value
        # The outcome is genuinely unknown: the write is in the leader's log, and not committed. (The leader's
        # handler proposes even once the deadline has passed; on a slow machine it may do so after the client
        # gave up, hence the wait.)
        proposed = wait_until(
            lambda: (s := raw.status(leader)).last_log_index > before.last_log_index and s,
            1.5,
            "the first attempt was never proposed",
        )
        assert proposed.role == cluster_pb2.LEADER
        assert proposed.commit_index < proposed.last_log_index, "the first attempt committed without a majority?"
        if retry == "while_pending":
            pending = Async.run(lambda: case.call(raw, ctx, leader, RETRY_DEADLINE))
            # The retry is proposed again (nothing is applied yet that could answer it).
            wait_until(
                lambda: raw.status(leader).last_log_index > proposed.last_log_index,
                10,
                "the retry was not proposed while the first attempt was pending",
            )
            assert raw.status(leader).commit_index < proposed.last_log_index
    finally:
        for f in followers:
            cluster.cluster.signal_node(f, signal.SIGCONT)
    if pending is not None:
        response = pending.result(RETRY_DEADLINE + 5)
    else:
        entry = proposed.last_log_index
        wait_until(lambda: raw.status(leader).applied_index >= entry, 20, "the first attempt was never applied")
        response = case.call(raw, ctx, leader, RETRY_DEADLINE)
    assert cluster.wait_leader() == leader, "leadership moved: the pause was not the deterministic scenario intended"
    case.check(raw, ctx, response)
    # And once more, through a follower (forwarded): still the first result, still applied once.
    again = case.call(raw, ctx, followers[0], RETRY_DEADLINE)
    case.check(raw, ctx, again)


# ---- limits.dedup_window -----------------------------------------------------------------------------

WINDOW = 2.0


@dataclass
class Reapplied:
    """A request id written once, then retried until the dedup window had passed and it applied again."""

    workflow_id: str
    request: state_pb2.PersistStateRequest
    first: state_pb2.WorkflowState
    sent_from: float  # wall clock just before the first write was sent ...
    acked_by: float  # ... and just after it was acknowledged: the leader stamped it in between
    retries: list[tuple[float, float, int]]  # (sent, answered, version returned), the last one applied again


def reapply_after_window(raw: Raw, leader: int) -> Reapplied:
    wid, rid = new_id("window"), new_id("window-rid")
    _persist(raw, leader, wid, "zero", {"n": 0})
    request = state_pb2.PersistStateRequest(
        workflow_id=wid, current_step="one", variables=struct({"n": 1}), request_id=rid
    )
    t0 = time.time()
    first = raw.state(leader).PersistState(request, timeout=10).state
    t1 = time.time()
    assert first.version == 2
    # Within the window the same id with another body is refused.
    other_body = state_pb2.PersistStateRequest()
    other_body.CopyFrom(request)
    other_body.current_step = "other"
    with pytest.raises(grpc.RpcError) as reused:
        raw.state(leader).PersistState(other_body, timeout=10)
    assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION and rid in (reused.value.details() or "")
    assert time.time() < t0 + WINDOW, "the machine is too slow for this window; the checks would be void"
    retries: list[tuple[float, float, int]] = []

    def retry_until_applied_again() -> bool:
        sent = time.time()
        response = raw.state(leader).PersistState(request, timeout=10)
        retries.append((sent, time.time(), response.state.version))
        return response.state.version != first.version

    wait_until(retry_until_applied_again, WINDOW + 10, "a retry after the dedup window never applied again")
    return Reapplied(wid, request, first, t0, t1, retries)


@pytest.fixture(scope="module")
def window_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Raw]:
    handle = start_cluster(tmp_path_factory.mktemp("dedup-window"), 3, {"limits": {"dedup_window": f"{WINDOW:g}s"}})
    raw = Raw(handle)
    yield raw
    raw.close()
    handle.close()


def test_dedup_window_from_the_config_bounds_how_long_a_request_id_is_remembered(window_cluster: Raw) -> None:
    raw = window_cluster
    r = reapply_after_window(raw, raw.handle.wait_leader())
    # The leader stamps the dedup expiry as (its clock at proposal) + window, its clock within [sent_from, acked_by]
    # (same machine); a retry is stamped between its own send and answer.
    deduped = [x for x in r.retries if x[2] == r.first.version]
    _, answered, version = r.retries[-1]
    assert len(deduped) >= 5, f"only {len(deduped)} retries inside the window: the check proves little"
    # Inside the window: the first result, nothing applied. And no later: every retry sent after the window
    # had certainly ended applied again (the first such retry is the one that did).
    for sent, _, _ in deduped:
        assert sent < r.acked_by + WINDOW, f"a retry sent {sent - r.acked_by:.3f}s after the write was deduplicated"
    # Not earlier: the retry that applied again was stamped at or after the expiry.
    assert answered >= r.sent_from + WINDOW, f"applied again {answered - r.sent_from:.3f}s after the first write"
    assert version == r.first.version + 1
    stored = get_state(raw, r.workflow_id)
    assert stored.version == r.first.version + 1
    assert [h.version for h in changes_by(stored, r.request.request_id)] == [r.first.version, r.first.version + 1]


def test_a_request_id_applied_again_after_its_window_is_remembered_again(window_cluster: Raw) -> None:
    raw = window_cluster
    leader = raw.handle.wait_leader()
    r = reapply_after_window(raw, leader)
    again = r.first.version + 1
    assert get_state(raw, r.workflow_id).version == again
    # The second application is remembered in turn: its retry returns it and applies nothing.
    retried = raw.state(leader).PersistState(r.request, timeout=10).state.version
    assert retried == again, f"the retry applied a third time (version {retried})"
    assert get_state(raw, r.workflow_id).version == again
