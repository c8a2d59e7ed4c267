"""Plain result types the SDK returns (the protobuf messages stay available as `.raw`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2

from .v1 import cluster_pb2, state_pb2, workflow_pb2
from .values import from_struct, from_value


def _time(ts: timestamp_pb2.Timestamp) -> datetime | None:
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True)
class StateChange:
    version: int
    step: str
    changed_keys: list[str]
    time: datetime | None
    request_id: str
    kind: str
    checkpoint_id: str

    @classmethod
    def from_proto(cls, c: state_pb2.StateChange) -> StateChange:
        return cls(
            c.version,
            c.step,
            list(c.changed_keys),
            _time(c.time),
            c.request_id,
            state_pb2.ChangeKind.Name(c.kind),
            c.checkpoint_id,
        )


@dataclass(frozen=True)
class Metadata:
    created_at: datetime | None
    updated_at: datetime | None
    labels: dict[str, str]
    checksum: str
    size_bytes: int


@dataclass(frozen=True)
class CheckpointRef:
    id: str
    version: int
    timestamp: datetime | None


@dataclass(frozen=True)
class WorkflowState:
    workflow_id: str
    version: int
    current_step: str
    variables: dict[str, Any]
    history: list[StateChange]
    checkpoint: CheckpointRef | None
    metadata: Metadata
    applied_index: int = 0
    served_by: str = ""
    raw: state_pb2.WorkflowState | None = field(default=None, repr=False, compare=False)

    @property
    def checksum(self) -> str:
        return self.metadata.checksum

    @classmethod
    def from_proto(cls, s: state_pb2.WorkflowState, header: state_pb2.ResponseHeader | None = None) -> WorkflowState:
        ref = (
            CheckpointRef(s.checkpoint.id, s.checkpoint.version, _time(s.checkpoint.timestamp))
            if s.HasField("checkpoint") and s.checkpoint.id
            else None
        )
        meta = Metadata(
            _time(s.metadata.created_at),
            _time(s.metadata.updated_at),
            dict(s.metadata.labels),
            s.metadata.checksum,
            s.metadata.size_bytes,
        )
        return cls(
            s.workflow_id,
            s.version,
            s.current_step,
            from_struct(s.variables),
            [StateChange.from_proto(h) for h in s.history],
            ref,
            meta,
            header.applied_index if header else 0,
            header.node_id if header else "",
            s,
        )


@dataclass(frozen=True)
class Checkpoint:
    id: str
    workflow_id: str
    timestamp: datetime | None
    state: WorkflowState | None
    checksum: str
    version: int
    raw: state_pb2.Checkpoint | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, c: state_pb2.Checkpoint) -> Checkpoint:
        state = WorkflowState.from_proto(c.state) if c.HasField("state") else None
        return cls(c.id, c.workflow_id, _time(c.timestamp), state, c.checksum, c.version, c)


@dataclass(frozen=True)
class WorkflowSummary:
    workflow_id: str
    version: int
    current_step: str
    updated_at: datetime | None


@dataclass(frozen=True)
class DeleteResult:
    workflow_id: str
    deleted_version: int
    deleted_checkpoints: int


@dataclass(frozen=True)
class SyncResult:
    workflow_id: str
    node_id: str
    leader_id: str
    applied_index_before: int
    applied_index_after: int
    leader_commit_index: int
    version: int
    exists: bool
    duration_ms: float


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    node_id: str


@dataclass(frozen=True)
class ReplicaDigest:
    node_id: str
    reachable: bool
    applied_index: int
    version: int
    digest: str
    error: str


@dataclass(frozen=True)
class ValidationResult:
    workflow_id: str
    valid: bool
    problems: list[Problem]
    version: int
    checksum: str
    checkpoints_checked: int
    history_entries_checked: int
    replicas: list[ReplicaDigest]

    def __bool__(self) -> bool:
        return self.valid


@dataclass(frozen=True)
class Member:
    node_id: str
    raft_address: str
    grpc_address: str
    connected: bool
    match_index: int
    is_self: bool


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    endpoint: str
    role: str
    leader_id: str
    leader_grpc_address: str
    term: int
    commit_index: int
    applied_index: int
    log_entries: int
    snapshot_index: int
    has_quorum: bool
    members: list[Member]
    workflows: int
    uptime_seconds: float
    version: str
    healthy: bool = True
    error: str = ""
    last_log_index: int = 0

    @classmethod
    def from_proto(cls, endpoint: str, s: cluster_pb2.StatusResponse) -> NodeStatus:
        return cls(
            s.node_id,
            endpoint,
            cluster_pb2.RaftRole.Name(s.role),
            s.leader_id,
            s.leader_grpc_address,
            s.term,
            s.commit_index,
            s.applied_index,
            s.log_entries,
            s.snapshot_index,
            s.has_quorum,
            [
                Member(m.node_id, m.raft_address, m.grpc_address, m.connected, m.match_index, m.is_self)
                for m in s.members
            ],
            s.workflows,
            s.uptime_seconds,
            s.version,
            last_log_index=s.last_log_index,
        )

    @classmethod
    def unreachable(cls, endpoint: str, error: str) -> NodeStatus:
        return cls("", endpoint, "UNREACHABLE", "", "", 0, 0, 0, 0, 0, False, [], 0, 0.0, "", False, error)


@dataclass(frozen=True)
class DataKey:
    key_id: int
    records: int  # records sealed under this key now
    created_at: datetime | None
    rotation_index: int  # the rotation entry that made it (0: made with the keyring)


@dataclass(frozen=True)
class KeyStatus:
    """One node's encryption at rest: its data keys, records per key, and its re-encryption pass."""

    endpoint: str
    node_id: str
    current_key_id: int
    kek_fingerprint: str
    keys: list[DataKey]
    old_records: int  # records not yet under the current key
    pass_target_key_id: int
    pass_running: bool
    pass_complete: bool
    rewritten_records: int
    rewritten_bytes: int
    scanned_records: int
    elapsed_seconds: float
    records_per_second: float
    bytes_per_second: float
    error: str = ""

    @classmethod
    def from_proto(cls, endpoint: str, s: cluster_pb2.KeyStatusResponse) -> KeyStatus:
        p = s.reencryption
        return cls(
            endpoint,
            s.node_id,
            s.current_key_id,
            s.kek_fingerprint,
            [
                DataKey(k.key_id, k.records, datetime.fromtimestamp(k.created_ns / 1e9, UTC), k.rotation_index)
                for k in s.keys
            ],
            s.old_records,
            p.target_key_id,
            p.running,
            p.complete,
            p.rewritten_records,
            p.rewritten_bytes,
            p.scanned_records,
            p.elapsed_seconds,
            p.records_per_second,
            p.bytes_per_second,
            p.error,
        )

    @classmethod
    def unreachable(cls, endpoint: str, error: str) -> KeyStatus:
        return cls(endpoint, "", 0, "", [], 0, 0, False, False, 0, 0, 0, 0.0, 0.0, 0.0, error)


@dataclass(frozen=True)
class ClusterStatus:
    nodes: list[NodeStatus]

    @property
    def leader(self) -> NodeStatus | None:
        return next((n for n in self.nodes if n.role == "LEADER"), None)

    @property
    def healthy(self) -> bool:
        return self.leader is not None and all(n.healthy for n in self.nodes)


@dataclass(frozen=True)
class StepResult:
    name: str
    result: Any
    attempt: int
    completed_at: datetime | None


@dataclass(frozen=True)
class Lease:
    lease_id: str
    fencing_token: int
    worker_id: str
    granted_at: datetime | None
    expires_at: datetime | None
    duration_ms: int

    @classmethod
    def from_proto(cls, lease: workflow_pb2.Lease) -> Lease:
        return cls(
            lease.lease_id,
            lease.fencing_token,
            lease.worker_id,
            _time(lease.granted_at),
            _time(lease.expires_at),
            lease.duration_ms,
        )


TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "QUARANTINED", "CANCELLED"})


@dataclass(frozen=True)
class WorkflowRun:
    """A workflow run: its state (the same id, version and checksums as get_state) seen as an execution."""

    workflow_id: str
    workflow_type: str
    status: str
    attempt: int
    input: Any
    output: Any
    last_error: str
    current_step: str
    steps: list[StepResult]
    lease_holder: str
    version: int
    metadata: Metadata
    started_at: datetime | None = None
    finished_at: datetime | None = None
    ready_at: datetime | None = None
    fencing_token: int = 0
    lease: Lease | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    applied_index: int = 0
    raw: state_pb2.WorkflowState | None = field(default=None, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """COMPLETED, FAILED, QUARANTINED or CANCELLED: no worker is running it."""
        return self.status in TERMINAL_STATUSES

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    @classmethod
    def from_proto(
        cls,
        s: state_pb2.WorkflowState,
        lease: workflow_pb2.Lease | None = None,
        header: state_pb2.ResponseHeader | None = None,
    ) -> WorkflowRun:
        r = s.run
        return cls(
            workflow_id=s.workflow_id,
            workflow_type=r.workflow_type,
            status=state_pb2.RunStatus.Name(r.status),
            attempt=r.attempt,
            input=from_value(r.input),
            output=from_value(r.output),
            last_error=r.last_error,
            current_step=s.current_step,
            steps=[StepResult(p.name, from_value(p.result), p.attempt, _time(p.completed_at)) for p in r.steps],
            lease_holder=r.lease_holder if r.status == state_pb2.RUNNING else "",
            version=s.version,
            metadata=Metadata(
                _time(s.metadata.created_at),
                _time(s.metadata.updated_at),
                dict(s.metadata.labels),
                s.metadata.checksum,
                s.metadata.size_bytes,
            ),
            started_at=_time(r.started_at),
            finished_at=_time(r.finished_at),
            ready_at=_time(r.ready_at),
            fencing_token=r.fencing_token,
            lease=Lease.from_proto(lease) if lease is not None and lease.fencing_token else None,
            variables=from_struct(s.variables),
            applied_index=header.applied_index if header else 0,
            raw=s,
        )


@dataclass(frozen=True)
class RunSummary:
    workflow_id: str
    workflow_type: str
    status: str
    attempt: int
    current_step: str
    version: int
    updated_at: datetime | None

    @classmethod
    def from_proto(cls, r: workflow_pb2.RunSummary) -> RunSummary:
        return cls(
            r.workflow_id,
            r.workflow_type,
            state_pb2.RunStatus.Name(r.status),
            r.attempt,
            r.current_step,
            r.version,
            _time(r.updated_at),
        )


@dataclass(frozen=True)
class Task:
    """A run a worker has claimed: its state so far and the lease it holds."""

    run: WorkflowRun
    lease: Lease

    @classmethod
    def from_proto(cls, task: workflow_pb2.WorkTask) -> Task:
        return cls(WorkflowRun.from_proto(task.state, task.lease), Lease.from_proto(task.lease))


@dataclass(frozen=True)
class HeartbeatResult:
    workflow_id: str
    fencing_token: int
    extended: bool
    expires_at: datetime | None
    error: str
