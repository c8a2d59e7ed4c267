"""WorkflowService against a live 3-node cluster: the worker protocol by hand, and every bad input's code.

Bad input goes through raw gRPC as well as the SDK (which refuses some cases itself), and "changes nothing"
is checked against the workflow's version and checksum, and the leader's applied index where nothing at all
may be proposed.
"""

from __future__ import annotations

import math

import grpc
import pytest
from google.protobuf import struct_pb2

from cairn import (
    AlreadyExistsError,
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    LeaseLostError,
    NotFoundError,
    ResourceExhaustedError,
    Worker,
    workflow,
)
from cairn.v1 import workflow_pb2, workflow_pb2_grpc
from cairn.wire import REASON_KEY, REASON_LEASE_LOST
from tests.support import ClusterHandle


@pytest.fixture(scope="module")
def c(shared_cluster: ClusterHandle) -> Client:
    return shared_cluster.client


@pytest.fixture(scope="module")
def raw(shared_cluster: ClusterHandle):
    leader = shared_cluster.wait_leader()
    with grpc.insecure_channel(shared_cluster.endpoint(leader)) as channel:
        yield workflow_pb2_grpc.WorkflowServiceStub(channel)


def code_of(call) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    return err.code(), err.details() or "", dict(err.trailing_metadata() or ())


def claim(c: Client, workflow_type: str, worker: str = "w1", lease: float = 5.0):
    task = c.poll_work(worker, [workflow_type], lease_timeout=lease, wait=5.0)
    assert task is not None, f"no {workflow_type} run was handed out"
    return task


def test_the_worker_protocol_by_hand(c: Client) -> None:
    run = c.start_workflow("proto", "proto-1", input={"n": 1}, labels={"team": "a"})
    assert (run.status, run.attempt, run.version, run.input) == ("PENDING", 1, 1, {"n": 1})
    task = claim(c, "proto")
    assert task.run.workflow_id == "proto-1" and task.run.status == "RUNNING"
    assert task.lease.fencing_token == task.run.fencing_token > 0 and task.lease.worker_id == "w1"
    seen = c.get_workflow("proto-1")
    assert seen.lease_holder == "w1" and seen.lease is not None and seen.lease.fencing_token == task.lease.fencing_token
    [beat] = c.heartbeat("w1", [("proto-1", task.lease.fencing_token)])
    assert beat.extended and beat.expires_at is not None and beat.expires_at >= task.lease.expires_at
    assert c.get_workflow("proto-1").version == seen.version  # a heartbeat writes no version
    stepped = c.record_step("proto-1", task.lease.fencing_token, "s1", {"ok": True})
    assert (
        stepped.current_step == "s1" and stepped.step("s1").result == {"ok": True} and stepped.step("s1").attempt == 1
    )
    done = c.complete_workflow("proto-1", task.lease.fencing_token, {"total": 1})
    assert done.status == "COMPLETED" and done.output == {"total": 1} and done.done and done.lease_holder == ""
    assert c.wait_workflow("proto-1", timeout=5).status == "COMPLETED"
    kinds = [h.kind for h in c.get_state("proto-1").history]
    assert kinds == ["RUN_STARTED", "RUN_CLAIMED", "STEP_RECORDED", "RUN_COMPLETED"]
    assert c.validate_state("proto-1").valid
    assert "proto-1" in [r.workflow_id for r in c.list_workflow_runs(status="COMPLETED", workflow_type="proto")]


def test_a_failed_attempt_is_retried_then_non_retryable_fails(c: Client) -> None:
    c.start_workflow("retry", "retry-1")
    task = claim(c, "retry")
    again = c.fail_workflow("retry-1", task.lease.fencing_token, "boom")
    assert again.status == "PENDING" and again.attempt == 2 and again.last_error == "boom"
    assert again.ready_at is not None and again.ready_at > task.lease.granted_at  # backoff
    task2 = claim(c, "retry")
    assert task2.lease.fencing_token > task.lease.fencing_token and task2.run.attempt == 2
    failed = c.fail_workflow("retry-1", task2.lease.fencing_token, "fatal", non_retryable=True)
    assert failed.status == "FAILED" and failed.finished_at is not None


def test_starting_is_idempotent_and_an_existing_id_is_already_exists(c: Client) -> None:
    first = c.start_workflow("idem", "idem-1", input=[1], request_id="start-idem-1")
    assert c.start_workflow("idem", "idem-1", input=[1], request_id="start-idem-1").version == first.version
    with pytest.raises(AlreadyExistsError, match="already exists"):
        c.start_workflow("idem", "idem-1", input=[2])
    after = c.get_workflow("idem-1")
    assert (after.version, after.input, after.metadata.checksum) == (1, [1], first.metadata.checksum)


def test_unknown_runs_are_not_found(c: Client) -> None:
    for call in (
        lambda: c.get_workflow("no-such-run"),
        lambda: c.cancel_workflow("no-such-run"),
        lambda: c.release_workflow("no-such-run"),
        lambda: c.record_step("no-such-run", 5, "s", 1),
    ):
        with pytest.raises(NotFoundError):
            call()
    c.persist_state("plain-state", current_step="x")
    with pytest.raises(NotFoundError, match="not started as a run"):
        c.get_workflow("plain-state")


def test_stale_and_missing_tokens_change_nothing(c: Client, raw) -> None:
    c.start_workflow("fence", "fence-1")
    task = claim(c, "fence")
    token = task.lease.fencing_token
    before = c.get_workflow("fence-1")
    for call in (
        lambda: c.record_step("fence-1", token + 1, "s1", 1),
        lambda: c.complete_workflow("fence-1", token - 1, None),
        lambda: c.fail_workflow("fence-1", token + 7, "x"),
    ):
        with pytest.raises(LeaseLostError, match="lease lost"):
            call()
    code, _, meta = code_of(
        lambda: raw.RecordStep(
            workflow_pb2.RecordStepRequest(workflow_id="fence-1", fencing_token=token + 1, step_name="s1")
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and meta.get(REASON_KEY) == REASON_LEASE_LOST
    code, details, _ = code_of(
        lambda: raw.RecordStep(workflow_pb2.RecordStepRequest(workflow_id="fence-1", step_name="s1"))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "fencing_token" in details
    [beat] = c.heartbeat("w1", [("fence-1", token + 1)])
    assert not beat.extended and "stale" in beat.error
    after = c.get_workflow("fence-1")
    assert (after.version, after.metadata.checksum, after.steps) == (before.version, before.metadata.checksum, [])
    c.record_step("fence-1", token, "s1", 1)
    with pytest.raises(FailedPreconditionError, match="never replaced") as info:
        c.record_step("fence-1", token, "s1", 2)
    assert not isinstance(info.value, LeaseLostError)
    assert c.get_workflow("fence-1").step("s1").result == 1
    c.cancel_workflow("fence-1")  # no lease left to expire under later tests of this module


def test_release_and_cancel_preconditions(c: Client) -> None:
    c.start_workflow("pre", "pre-1")
    with pytest.raises(FailedPreconditionError, match="only a QUARANTINED run"):
        c.release_workflow("pre-1")
    cancelled = c.cancel_workflow("pre-1", reason="not needed")
    assert cancelled.status == "CANCELLED" and "not needed" in cancelled.last_error
    with pytest.raises(FailedPreconditionError, match="already CANCELLED"):
        c.cancel_workflow("pre-1")
    assert c.poll_work("w1", ["pre"], lease_timeout=2.0, wait=0.2) is None  # a cancelled run is never handed out


def test_bad_input_is_invalid_argument_and_reaches_nothing(c: Client, raw, shared_cluster: ClusterHandle) -> None:
    leader = shared_cluster.wait_leader()
    before = shared_cluster.status(leader).last_log_index
    nan = struct_pb2.Value(number_value=math.nan)
    cases = [
        lambda: raw.StartWorkflow(workflow_pb2.StartWorkflowRequest(workflow_id="", workflow_type="t")),
        lambda: raw.StartWorkflow(workflow_pb2.StartWorkflowRequest(workflow_id="bad id", workflow_type="t")),
        lambda: raw.StartWorkflow(workflow_pb2.StartWorkflowRequest(workflow_id="ok-id", workflow_type="")),
        lambda: raw.StartWorkflow(workflow_pb2.StartWorkflowRequest(workflow_id="ok-id", workflow_type="t", input=nan)),
        lambda: raw.PollWork(workflow_pb2.PollWorkRequest(worker_id="w", lease_timeout_ms=5000)),  # no types
        lambda: raw.PollWork(workflow_pb2.PollWorkRequest(worker_id="w", workflow_types=["t"], lease_timeout_ms=10)),
        lambda: raw.PollWork(
            workflow_pb2.PollWorkRequest(worker_id="w", workflow_types=["t"], lease_timeout_ms=4_000_000)
        ),
        lambda: raw.PollWork(workflow_pb2.PollWorkRequest(worker_id="", workflow_types=["t"], lease_timeout_ms=5000)),
        lambda: raw.Heartbeat(
            workflow_pb2.HeartbeatRequest(
                worker_id="w", leases=[workflow_pb2.LeaseRef(workflow_id="a", fencing_token=1)] * 2
            )
        ),
        lambda: raw.RecordStep(
            workflow_pb2.RecordStepRequest(workflow_id="ok-id", fencing_token=3, step_name="s", result=nan)
        ),
        lambda: raw.RecordStep(workflow_pb2.RecordStepRequest(workflow_id="ok-id", fencing_token=3, step_name="")),
        lambda: raw.ListWorkflowRuns(workflow_pb2.ListWorkflowRunsRequest(limit=5000)),
        lambda: raw.ListWorkflowRuns(workflow_pb2.ListWorkflowRunsRequest(status=99)),
    ]
    for n, call in enumerate(cases):
        code, details, _ = code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (n, code, details)
        assert details, n
    assert shared_cluster.status(leader).last_log_index == before  # nothing was proposed
    with pytest.raises(InvalidArgumentError, match="not JSON-like"):
        c.start_workflow("t", "ok-id", input={"when": object()})
    with pytest.raises(InvalidArgumentError, match="status must be one of"):
        c.list_workflow_runs(status="SLEEPING")
    with pytest.raises(NotFoundError):
        c.get_workflow("ok-id")


def test_oversized_input_and_results_are_resource_exhausted(c: Client) -> None:
    big = "x" * (5 * 1024 * 1024)  # over the default limits.max_state_bytes (4 MiB)
    with pytest.raises(ResourceExhaustedError, match="max_state_bytes"):
        c.start_workflow("big", "big-1", input=big)
    with pytest.raises(NotFoundError):
        c.get_workflow("big-1")
    c.start_workflow("big", "big-2", input="small")
    task = claim(c, "big")
    with pytest.raises(ResourceExhaustedError, match="max_state_bytes"):
        c.record_step("big-2", task.lease.fencing_token, "s1", big)
    with pytest.raises(ResourceExhaustedError):
        c.complete_workflow("big-2", task.lease.fencing_token, big)
    run = c.get_workflow("big-2")
    assert run.status == "RUNNING" and run.steps == [] and run.version == task.run.version


@workflow("names")
def _names(ctx, input):
    return [ctx.step(name, str.upper, name) for name in input]


def test_step_names_with_spaces_and_non_ascii_are_persisted(c: Client) -> None:
    """Step request ids are derived from the step name, which may hold what a request id may not."""
    names = ["charge card", "débit", "x" * 200]
    c.start_workflow("names", "names-1", input=names)
    worker = Worker(c, [_names], concurrency=1, lease_timeout=5.0, poll_wait=1.0)
    worker.start()
    try:
        run = c.wait_workflow("names-1", timeout=30)
    finally:
        worker.stop(5.0)
    assert run.status == "COMPLETED" and run.attempt == 1, run.last_error
    assert [s.name for s in run.steps] == names and run.output == [n.upper() for n in names]
    assert worker.completed == 1 and worker.failed == 0
