"""The ergonomic Python client: any node's address works; it finds and follows the leader.

Every write carries a request id (made here unless you pass one). When a write's outcome is
unknown (timeout, leader change, lost connection) the client retries it with the same id until
its deadline: the cluster applies it at most once and a retry returns the first result.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import grpc

from .admin import AdminCalls
from .errors import (
    CairnError,
    DeadlineExceededError,
    InvalidArgumentError,
    UnavailableError,
    from_rpc_error,
)
from .persist_stream import MAX_BACKOFF, PersistStream
from .types import (
    Checkpoint,
    ClusterStatus,
    DeleteResult,
    HeartbeatResult,
    KeyStatus,
    NodeStatus,
    Problem,
    ReplicaDigest,
    RunSummary,
    SyncResult,
    Task,
    ValidationResult,
    WorkflowRun,
    WorkflowState,
    WorkflowSummary,
)
from .v1 import (
    audit_pb2_grpc,
    auth_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    state_pb2,
    state_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from .values import to_struct, to_value

Consistency = Literal["linearizable", "serializable"]
Service = Literal["state", "cluster", "workflow", "auth", "audit"]
_STUBS = {
    "state": state_pb2_grpc.StateServiceStub,
    "cluster": cluster_pb2_grpc.ClusterServiceStub,
    "workflow": workflow_pb2_grpc.WorkflowServiceStub,
    "auth": auth_pb2_grpc.AuthServiceStub,
    "audit": audit_pb2_grpc.AuditServiceStub,
}
RUN_STATUSES = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "QUARANTINED", "CANCELLED")
DEFAULT_ENDPOINTS = ("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053")
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# A restarted node should be reachable again within a second, not after gRPC's default backoff
# (which grows to two minutes): cluster members come and go.
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def open_channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A channel to one cluster member (TLS when credentials are given)."""
    if credentials is not None:
        return grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


# A file path (str or Path) or the PEM itself (bytes, or a str that starts with "-----BEGIN").
PemSource = Union[str, "os.PathLike[str]", bytes]


def read_pem(source: PemSource | None, what: str) -> bytes | None:
    """The PEM bytes of `source`; InvalidArgumentError naming `what` when a file cannot be read."""
    if source is None:
        return None
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"{what}: cannot read {os.fspath(source)}: {exc.strerror or exc}") from None


def tls_credentials(
    ca: PemSource | None = None, cert: PemSource | None = None, key: PemSource | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials: `ca` the roots to trust (default: the system's), `cert`+`key` a client
    certificate for mTLS (both or neither)."""
    if (cert is None) != (key is None):
        raise InvalidArgumentError("a client certificate needs both cert and key")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "ca"),
        private_key=read_pem(key, "key"),
        certificate_chain=read_pem(cert, "cert"),
    )


class _Metadata(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata (the bearer token) to every call on a channel, streams included."""

    def __init__(self, metadata: Sequence[tuple[str, str]]):
        self._metadata = tuple(metadata)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), *self._metadata),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):  # noqa: ANN001, ANN201
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # noqa: ANN001, ANN201
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # noqa: ANN001, ANN201
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # noqa: ANN001, ANN201
        return continuation(self._details(client_call_details), request_iterator)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(
        self,
        method: str,
        timeout: float | None,
        metadata: Sequence[tuple[str, str]],
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


_T = TypeVar("_T")


def _read_options(consistency: Consistency, min_index: int) -> state_pb2.ReadOptions:
    if consistency not in ("linearizable", "serializable"):
        raise InvalidArgumentError(f"consistency must be 'linearizable' or 'serializable', got {consistency!r}")
    level = state_pb2.LINEARIZABLE if consistency == "linearizable" else state_pb2.SERIALIZABLE
    return state_pb2.ReadOptions(consistency=level, min_index=min_index)


def _expected(value: int | None) -> dict[str, int]:
    if value is None:
        return {}
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"expected_version must be a whole number >= 0, got {value!r}")
    return {"expected_version": value}


class Client(AdminCalls):
    """A connection to a Cairn cluster through any subset of its nodes."""

    def __init__(
        self,
        endpoints: Sequence[str] | str = DEFAULT_ENDPOINTS,
        *,
        timeout: float = 10.0,
        attempt_timeout: float = 3.0,
        credentials: grpc.ChannelCredentials | None = None,
        stream_writes: bool = False,
        ca: PemSource | None = None,
        cert: PemSource | None = None,
        key: PemSource | None = None,
        token: str | None = None,
    ):
        """`stream_writes`: persist_state travels over one PersistStream to the leader shared by every thread
        (many concurrent writers in one process: less work per write on both sides); same answers and errors.

        TLS: `ca` (the CA that signed the nodes' certificates; default the system roots) and, for mTLS, `cert`
        and `key` (this client's certificate), each a file path or the PEM as bytes; giving any of them turns
        TLS on. `credentials` is the same as ready-made gRPC credentials (not together with those). `token` is
        sent as `authorization: Bearer <token>` on every call, streams and worker calls included."""
        if credentials is not None and (ca is not None or cert is not None or key is not None):
            raise InvalidArgumentError("give either credentials or ca/cert/key, not both")
        if ca is not None or cert is not None or key is not None:
            credentials = tls_credentials(ca, cert, key)
        if token is not None and (not token or any(c in token for c in "\r\n")):
            raise InvalidArgumentError("token must be a non-empty single line")
        if isinstance(endpoints, str):
            endpoints = [e.strip() for e in endpoints.split(",") if e.strip()]
        if not endpoints:
            raise InvalidArgumentError("at least one endpoint is needed")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self._credentials = credentials
        self._interceptors = [_Metadata([("authorization", f"Bearer {token}")])] if token else []
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._leader: str | None = None
        self._rr = random.randrange(len(self.endpoints))
        self._stream = PersistStream(self) if stream_writes else None

    # ---- plumbing ------------------------------------------------------------------------------

    def _channel(self, endpoint: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(endpoint)
            if channel is None:
                channel = open_channel(endpoint, self._credentials)
                if self._interceptors:
                    channel = grpc.intercept_channel(channel, *self._interceptors)
                self._channels[endpoint] = channel
            return channel

    def _stub(self, service: Service, endpoint: str) -> Any:
        return _STUBS[service](self._channel(endpoint))

    def _order(self) -> list[str]:
        with self._lock:
            self._rr = (self._rr + 1) % len(self.endpoints)
            rotated = self.endpoints[self._rr :] + self.endpoints[: self._rr]
            leader = self._leader
        if leader:
            return [leader] + [e for e in rotated if e != leader]
        return rotated

    def _note_leader(self, address: str | None) -> None:
        if address:
            with self._lock:
                self._leader = address

    def _note_header(self, header: state_pb2.ResponseHeader | None) -> None:
        if header is not None and header.leader_grpc_address and header.leader_grpc_address in self.endpoints:
            self._note_leader(header.leader_grpc_address)

    def _forget_leader(self, address: str) -> None:
        with self._lock:
            if self._leader == address:
                self._leader = None

    def _call(
        self,
        service: Service,
        method: str,
        request: Any,
        timeout: float | None,
        endpoint: str | None = None,
        *,
        attempt_timeout: float | None = None,
    ) -> Any:
        """Call with retries on UNAVAILABLE/DEADLINE_EXCEEDED until the overall deadline."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        last: CairnError | None = None
        backoff = 0.02
        stub_cls = _STUBS[service]
        per_attempt = max(self.attempt_timeout if attempt_timeout is None else attempt_timeout, 0.05)
        while True:
            candidates = [endpoint] if endpoint else self._order()
            for target in candidates:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise last or DeadlineExceededError("no node answered before the deadline")
                stub = stub_cls(self._channel(target))
                try:
                    response = getattr(stub, method)(request, timeout=min(left, per_attempt))
                except grpc.RpcError as err:
                    error = from_rpc_error(err)
                    if err.code() not in _RETRYABLE:
                        raise error from None
                    last = error
                    # Follow a hint only to an address we were given: a cluster-internal one
                    # (docker, namespaces) may not be reachable from here.
                    if error.leader in self.endpoints and error.leader != target and not endpoint:
                        self._note_leader(error.leader)
                        break  # go straight to the hinted leader
                    if target == self._leader:
                        with self._lock:
                            self._leader = None
                    continue
                self._note_header(getattr(response, "header", None))
                return response
            sleep = min(backoff, max(0.0, deadline - time.monotonic()))
            time.sleep(sleep * (0.5 + random.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex

    # ---- writes --------------------------------------------------------------------------------

    def persist_state(
        self,
        workflow_id: str,
        *,
        current_step: str = "",
        variables: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        expected_version: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WorkflowState:
        """Write a new version of the workflow's state (persistState)."""
        request = state_pb2.PersistStateRequest(
            workflow_id=workflow_id,
            current_step=current_step,
            variables=to_struct(variables),
            labels=dict(labels or {}),
            request_id=request_id or self.new_request_id(),
            **_expected(expected_version),
        )
        if self._stream is not None:
            response = self._stream.persist(request, self.timeout if timeout is None else timeout)
            self._note_header(response.header)
        else:
            response = self._call("state", "PersistState", request, timeout)
        return WorkflowState.from_proto(response.state, response.header)

    def delete_workflow(
        self,
        workflow_id: str,
        *,
        expected_version: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> DeleteResult:
        request = state_pb2.DeleteWorkflowRequest(
            workflow_id=workflow_id, request_id=request_id or self.new_request_id(), **_expected(expected_version)
        )
        response = self._call("state", "DeleteWorkflow", request, timeout)
        return DeleteResult(workflow_id, response.deleted_version, response.deleted_checkpoints)

    def create_checkpoint(
        self, workflow_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> Checkpoint:
        """Capture the whole current state with a SHA-256 checksum (createCheckpoint)."""
        request = state_pb2.CreateCheckpointRequest(
            workflow_id=workflow_id, request_id=request_id or self.new_request_id()
        )
        return Checkpoint.from_proto(self._call("state", "CreateCheckpoint", request, timeout).checkpoint)

    def recover_from_checkpoint(
        self,
        workflow_id: str,
        checkpoint_id: str,
        *,
        expected_version: int | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WorkflowState:
        """Verify the checkpoint, then make its state current as a new version (recoverFromCheckpoint)."""
        request = state_pb2.RecoverFromCheckpointRequest(
            workflow_id=workflow_id,
            checkpoint_id=checkpoint_id,
            request_id=request_id or self.new_request_id(),
            **_expected(expected_version),
        )
        response = self._call("state", "RecoverFromCheckpoint", request, timeout)
        return WorkflowState.from_proto(response.state, response.header)

    # ---- reads ---------------------------------------------------------------------------------

    def get_state(
        self,
        workflow_id: str,
        *,
        consistency: Consistency = "linearizable",
        min_index: int = 0,
        include_history: bool = True,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> WorkflowState:
        request = state_pb2.GetStateRequest(
            workflow_id=workflow_id, read=_read_options(consistency, min_index), include_history=include_history
        )
        response = self._call("state", "GetState", request, timeout, endpoint)
        return WorkflowState.from_proto(response.state, response.header)

    def list_workflows(
        self,
        prefix: str = "",
        *,
        limit: int | None = None,
        page_size: int = 500,
        consistency: Consistency = "linearizable",
        timeout: float | None = None,
    ) -> list[WorkflowSummary]:
        """Every workflow whose id starts with `prefix`, in id order (paged underneath)."""
        out: list[WorkflowSummary] = []
        token = ""
        while True:
            size = page_size if limit is None else min(page_size, limit - len(out))
            request = state_pb2.ListWorkflowsRequest(
                prefix=prefix, limit=size, page_token=token, read=_read_options(consistency, 0)
            )
            response = self._call("state", "ListWorkflows", request, timeout)
            out.extend(
                WorkflowSummary(
                    w.workflow_id,
                    w.version,
                    w.current_step,
                    w.updated_at.ToDatetime(tzinfo=UTC) if w.updated_at.seconds else None,
                )
                for w in response.workflows
            )
            token = response.next_page_token
            if not token or (limit is not None and len(out) >= limit):
                return out

    def list_checkpoints(
        self,
        workflow_id: str,
        *,
        include_state: bool = False,
        consistency: Consistency = "linearizable",
        timeout: float | None = None,
    ) -> list[Checkpoint]:
        request = state_pb2.ListCheckpointsRequest(
            workflow_id=workflow_id, include_state=include_state, read=_read_options(consistency, 0)
        )
        return [Checkpoint.from_proto(c) for c in self._call("state", "ListCheckpoints", request, timeout).checkpoints]

    def get_checkpoint(
        self,
        workflow_id: str,
        checkpoint_id: str,
        *,
        consistency: Consistency = "linearizable",
        timeout: float | None = None,
    ) -> Checkpoint:
        request = state_pb2.GetCheckpointRequest(
            workflow_id=workflow_id, checkpoint_id=checkpoint_id, read=_read_options(consistency, 0)
        )
        return Checkpoint.from_proto(self._call("state", "GetCheckpoint", request, timeout).checkpoint)

    def synchronize_state(
        self, workflow_id: str, *, timeout: float | None = None, endpoint: str | None = None
    ) -> SyncResult:
        """Bring the answering node up to the leader's commit index (synchronizeState)."""
        r = self._call(
            "state", "SynchronizeState", state_pb2.SynchronizeStateRequest(workflow_id=workflow_id), timeout, endpoint
        )
        return SyncResult(
            workflow_id,
            r.node_id,
            r.leader_id,
            r.applied_index_before,
            r.applied_index_after,
            r.leader_commit_index,
            r.version,
            r.exists,
            r.duration_ms,
        )

    def validate_state(
        self, workflow_id: str, *, timeout: float | None = None, endpoint: str | None = None
    ) -> ValidationResult:
        """Checksums, history, checkpoints and replica agreement (validateState)."""
        r = self._call(
            "state", "ValidateState", state_pb2.ValidateStateRequest(workflow_id=workflow_id), timeout, endpoint
        )
        return ValidationResult(
            workflow_id,
            r.valid,
            [Problem(p.code, p.message, p.node_id) for p in r.problems],
            r.version,
            r.checksum,
            r.checkpoints_checked,
            r.history_entries_checked,
            [ReplicaDigest(d.node_id, d.reachable, d.applied_index, d.version, d.digest, d.error) for d in r.replicas],
        )

    # ---- workflow runs (durable execution) --------------------------------------------------------

    def start_workflow(
        self,
        workflow_type: str,
        workflow_id: str,
        input: Any = None,
        *,
        labels: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WorkflowRun:
        """Start a run (PENDING, attempt 1). Idempotent per request id; an existing id is AlreadyExistsError."""
        request = workflow_pb2.StartWorkflowRequest(
            workflow_id=workflow_id,
            workflow_type=workflow_type,
            input=to_value(input, "input"),
            labels=dict(labels or {}),
            request_id=request_id or self.new_request_id(),
        )
        response = self._call("workflow", "StartWorkflow", request, timeout)
        return WorkflowRun.from_proto(response.state, header=response.header)

    def get_workflow(
        self,
        workflow_id: str,
        *,
        consistency: Consistency = "linearizable",
        min_index: int = 0,
        timeout: float | None = None,
        endpoint: str | None = None,
    ) -> WorkflowRun:
        request = workflow_pb2.GetWorkflowRequest(workflow_id=workflow_id, read=_read_options(consistency, min_index))
        response = self._call("workflow", "GetWorkflow", request, timeout, endpoint)
        return WorkflowRun.from_proto(
            response.state, response.lease if response.HasField("lease") else None, response.header
        )

    def wait_workflow(self, workflow_id: str, timeout: float = 60.0, *, poll_interval: float = 0.5) -> WorkflowRun:
        """Until the run is COMPLETED, FAILED, QUARANTINED or CANCELLED; DeadlineExceededError after `timeout`."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            left = deadline - time.monotonic()
            run = self.get_workflow(workflow_id, timeout=max(0.1, min(self.timeout, left)))
            if run.done:
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceededError(
                    f"run {workflow_id!r} is still {run.status} after {timeout}s (step {run.current_step!r})"
                )
            time.sleep(min(delay, left))
            delay = min(delay * 2, poll_interval)

    def list_workflow_runs(
        self,
        *,
        status: str | None = None,
        workflow_type: str | None = None,
        prefix: str = "",
        limit: int | None = None,
        page_size: int = 500,
        consistency: Consistency = "linearizable",
        timeout: float | None = None,
    ) -> list[RunSummary]:
        """Runs in id order, filtered by status and type (paged underneath)."""
        if status is not None and status not in RUN_STATUSES:
            raise InvalidArgumentError(f"status must be one of {', '.join(RUN_STATUSES)}; got {status!r}")
        out: list[RunSummary] = []
        token = ""
        while True:
            size = page_size if limit is None else min(page_size, limit - len(out))
            request = workflow_pb2.ListWorkflowRunsRequest(
                status=state_pb2.RunStatus.Value(status) if status else 0,
                workflow_type=workflow_type or "",
                prefix=prefix,
                limit=size,
                page_token=token,
                read=_read_options(consistency, 0),
            )
            response = self._call("workflow", "ListWorkflowRuns", request, timeout)
            out.extend(RunSummary.from_proto(r) for r in response.runs)
            token = response.next_page_token
            if not token or (limit is not None and len(out) >= limit):
                return out

    def cancel_workflow(
        self, workflow_id: str, *, reason: str = "", request_id: str | None = None, timeout: float | None = None
    ) -> WorkflowRun:
        """Stop the run at its worker's next write (PENDING, RUNNING or QUARANTINED -> CANCELLED)."""
        request = workflow_pb2.CancelWorkflowRequest(
            workflow_id=workflow_id, reason=reason, request_id=request_id or self.new_request_id()
        )
        response = self._call("workflow", "CancelWorkflow", request, timeout)
        return WorkflowRun.from_proto(response.state, header=response.header)

    def release_workflow(
        self, workflow_id: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> WorkflowRun:
        """QUARANTINED -> PENDING with a fresh recovery.max_attempts budget."""
        request = workflow_pb2.ReleaseWorkflowRequest(
            workflow_id=workflow_id, request_id=request_id or self.new_request_id()
        )
        response = self._call("workflow", "ReleaseWorkflow", request, timeout)
        return WorkflowRun.from_proto(response.state, header=response.header)

    # ---- the worker protocol (cairn.Worker uses these) ----------------------------------------------

    def poll_work(
        self,
        worker_id: str,
        workflow_types: Sequence[str],
        *,
        lease_timeout: float,
        wait: float = 20.0,
        request_id: str | None = None,
    ) -> Task | None:
        """Long-poll for a run of these types; None when none became ready within `wait` seconds."""
        request = workflow_pb2.PollWorkRequest(
            worker_id=worker_id,
            workflow_types=list(workflow_types),
            lease_timeout_ms=round(lease_timeout * 1000),
            wait_ms=round(wait * 1000),
            request_id=request_id or self.new_request_id(),
        )
        response = self._call(
            "workflow", "PollWork", request, wait + self.timeout, attempt_timeout=wait + self.attempt_timeout
        )
        return Task.from_proto(response.task) if response.HasField("task") else None

    def heartbeat(
        self, worker_id: str, leases: Sequence[tuple[str, int]], *, timeout: float | None = None
    ) -> list[HeartbeatResult]:
        """Extend every (workflow id, fencing token) lease in one call; each result says if it still holds."""
        request = workflow_pb2.HeartbeatRequest(
            worker_id=worker_id,
            leases=[workflow_pb2.LeaseRef(workflow_id=w, fencing_token=t) for w, t in leases],
        )
        response = self._call("workflow", "Heartbeat", request, timeout)
        return [
            HeartbeatResult(
                r.workflow_id,
                r.fencing_token,
                r.extended,
                r.expires_at.ToDatetime(tzinfo=UTC) if r.HasField("expires_at") else None,
                r.error,
            )
            for r in response.results
        ]

    def record_step(
        self,
        workflow_id: str,
        fencing_token: int,
        step_name: str,
        result: Any,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WorkflowRun:
        """Persist a step's result under the lease (LeaseLostError when the lease is gone)."""
        request = workflow_pb2.RecordStepRequest(
            workflow_id=workflow_id,
            fencing_token=fencing_token,
            step_name=step_name,
            result=to_value(result, f"result of step {step_name!r}"),
            request_id=request_id or self.new_request_id(),
        )
        response = self._call("workflow", "RecordStep", request, timeout)
        return WorkflowRun.from_proto(response.state, header=response.header)

    def complete_workflow(
        self,
        workflow_id: str,
        fencing_token: int,
        output: Any = None,
        *,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WorkflowRun:
        request = workflow_pb2.CompleteWorkflowRequest(
            workflow_id=workflow_id,
            fencing_token=fencing_token,
            output=to_value(output, "output"),
            request_id=request_id or self.new_request_id(),
        )
        response = self._call("workflow", "CompleteWorkflow", request, timeout)
        return WorkflowRun.from_proto(response.state, header=response.header)

    def fail_workflow(
        self,
        workflow_id: str,
        fencing_token: int,
        error: str,
        *,
        non_retryable: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> WorkflowRun:
        """This attempt failed: retried after a backoff, quarantined after max_attempts, FAILED if non_retryable."""
        request = workflow_pb2.FailWorkflowRequest(
            workflow_id=workflow_id,
            fencing_token=fencing_token,
            error=error,
            non_retryable=non_retryable,
            request_id=request_id or self.new_request_id(),
        )
        response = self._call("workflow", "FailWorkflow", request, timeout)
        return WorkflowRun.from_proto(response.state, header=response.header)

    # ---- cluster -------------------------------------------------------------------------------

    def node_status(self, endpoint: str, *, timeout: float = 2.0) -> NodeStatus:
        response = self._call("cluster", "Status", cluster_pb2.StatusRequest(), timeout, endpoint)
        return NodeStatus.from_proto(endpoint, response)

    def cluster_status(self, *, timeout: float = 2.0) -> ClusterStatus:
        """Every configured endpoint's view (unreachable ones included, marked so)."""
        nodes = []
        for endpoint in self.endpoints:
            try:
                nodes.append(self.node_status(endpoint, timeout=timeout))
            except CairnError as err:
                nodes.append(NodeStatus.unreachable(endpoint, str(err)))
        return ClusterStatus(nodes)

    def snapshot(self, endpoint: str, *, timeout: float = 30.0) -> cluster_pb2.SnapshotResponse:
        """Compact the Raft log of one node now (operators and tests)."""
        return self._call("cluster", "Snapshot", cluster_pb2.SnapshotRequest(), timeout, endpoint)

    def rotate_keys(
        self, *, request_id: str | None = None, timeout: float | None = None
    ) -> cluster_pb2.RotateKeysResponse:
        """Encryption at rest: a new data key on every node for new writes; older records are re-encrypted in the
        background (follow it with `key_status`). FailedPreconditionError when encryption is off."""
        request = cluster_pb2.RotateKeysRequest(request_id=request_id or self.new_request_id())
        return self._call("cluster", "RotateKeys", request, timeout)

    def key_status(self, endpoint: str, *, timeout: float = 10.0) -> KeyStatus:
        """One node's data keys, records per key and re-encryption pass."""
        response = self._call("cluster", "KeyStatus", cluster_pb2.KeyStatusRequest(), timeout, endpoint)
        return KeyStatus.from_proto(endpoint, response)

    def transfer_leadership(self, to_node_id: str = "", *, timeout: float = 10.0) -> str:
        """Ask the current leader to hand over (to `to_node_id`, or the best follower); returns the new leader's id."""
        status = self.cluster_status()
        if status.leader is None:
            raise UnavailableError("no leader to transfer from")
        request = cluster_pb2.TransferLeadershipRequest(node_id=to_node_id)
        return self._call("cluster", "TransferLeadership", request, timeout, status.leader.endpoint).leader_id

    def wait_ready(
        self, timeout: float = 30.0, *, check: Callable[[ClusterStatus], bool] | None = None
    ) -> ClusterStatus:
        """Poll until every endpoint answers and agrees on one leader (or `check` says so)."""
        deadline = time.monotonic() + timeout
        status = self.cluster_status()
        while time.monotonic() < deadline:
            status = self.cluster_status(timeout=1.0)
            ok = (
                check(status)
                if check
                else (status.healthy and len({n.leader_id for n in status.nodes}) == 1 and status.leader is not None)
            )
            if ok:
                return status
            time.sleep(0.1)
        raise UnavailableError(
            f"cluster not ready after {timeout}s: "
            + "; ".join(f"{n.endpoint}={n.role}{' ' + n.error if n.error else ''}" for n in status.nodes)
        )

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
        with self._lock:
            channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
