from google.protobuf import struct_pb2 as _struct_pb2
from cairn.v1 import auth_pb2 as _auth_pb2
from cairn.v1 import state_pb2 as _state_pb2
from cairn.v1 import workflow_pb2 as _workflow_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Command(_message.Message):
    __slots__ = ("request_id", "body_hash", "time_ns", "dedup_expires_ns", "history_limit", "checkpoint_limit", "policy", "require_expected_version", "identity", "persist", "delete", "checkpoint", "recover", "barrier", "start_run", "claim_run", "heartbeat", "record_step", "complete_run", "fail_run", "cancel_run", "release_run", "expire_leases", "periodic_checkpoints", "group", "auth", "audit_reads", "rotate_keys")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_HASH_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DEDUP_EXPIRES_NS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PERSIST_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    RECOVER_FIELD_NUMBER: _ClassVar[int]
    BARRIER_FIELD_NUMBER: _ClassVar[int]
    START_RUN_FIELD_NUMBER: _ClassVar[int]
    CLAIM_RUN_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RECORD_STEP_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_RUN_FIELD_NUMBER: _ClassVar[int]
    FAIL_RUN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_RUN_FIELD_NUMBER: _ClassVar[int]
    RELEASE_RUN_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_LEASES_FIELD_NUMBER: _ClassVar[int]
    PERIODIC_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    AUDIT_READS_FIELD_NUMBER: _ClassVar[int]
    ROTATE_KEYS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    body_hash: bytes
    time_ns: int
    dedup_expires_ns: int
    history_limit: int
    checkpoint_limit: int
    policy: Policy
    require_expected_version: bool
    identity: str
    persist: PersistOp
    delete: DeleteOp
    checkpoint: CheckpointOp
    recover: RecoverOp
    barrier: BarrierOp
    start_run: StartRunOp
    claim_run: ClaimRunOp
    heartbeat: HeartbeatOp
    record_step: RecordStepOp
    complete_run: CompleteRunOp
    fail_run: FailRunOp
    cancel_run: CancelRunOp
    release_run: ReleaseRunOp
    expire_leases: ExpireLeasesOp
    periodic_checkpoints: PeriodicCheckpointsOp
    group: CommandGroup
    auth: AuthOp
    audit_reads: AuditReadsOp
    rotate_keys: RotateKeysOp
    def __init__(self, request_id: _Optional[str] = ..., body_hash: _Optional[bytes] = ..., time_ns: _Optional[int] = ..., dedup_expires_ns: _Optional[int] = ..., history_limit: _Optional[int] = ..., checkpoint_limit: _Optional[int] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., require_expected_version: _Optional[bool] = ..., identity: _Optional[str] = ..., persist: _Optional[_Union[PersistOp, _Mapping]] = ..., delete: _Optional[_Union[DeleteOp, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointOp, _Mapping]] = ..., recover: _Optional[_Union[RecoverOp, _Mapping]] = ..., barrier: _Optional[_Union[BarrierOp, _Mapping]] = ..., start_run: _Optional[_Union[StartRunOp, _Mapping]] = ..., claim_run: _Optional[_Union[ClaimRunOp, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatOp, _Mapping]] = ..., record_step: _Optional[_Union[RecordStepOp, _Mapping]] = ..., complete_run: _Optional[_Union[CompleteRunOp, _Mapping]] = ..., fail_run: _Optional[_Union[FailRunOp, _Mapping]] = ..., cancel_run: _Optional[_Union[CancelRunOp, _Mapping]] = ..., release_run: _Optional[_Union[ReleaseRunOp, _Mapping]] = ..., expire_leases: _Optional[_Union[ExpireLeasesOp, _Mapping]] = ..., periodic_checkpoints: _Optional[_Union[PeriodicCheckpointsOp, _Mapping]] = ..., group: _Optional[_Union[CommandGroup, _Mapping]] = ..., auth: _Optional[_Union[AuthOp, _Mapping]] = ..., audit_reads: _Optional[_Union[AuditReadsOp, _Mapping]] = ..., rotate_keys: _Optional[_Union[RotateKeysOp, _Mapping]] = ...) -> None: ...

class RotateKeysOp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CommandGroup(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("max_attempts", "retry_backoff_ns", "max_retry_backoff_ns", "checkpoint_interval_ns", "checkpoint_every_versions", "checkpoints_enabled", "auto_recovery", "audit_enabled", "audit_retention_ns")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACKOFF_NS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRY_BACKOFF_NS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_INTERVAL_NS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_ENABLED_FIELD_NUMBER: _ClassVar[int]
    AUTO_RECOVERY_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ENABLED_FIELD_NUMBER: _ClassVar[int]
    AUDIT_RETENTION_NS_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    retry_backoff_ns: int
    max_retry_backoff_ns: int
    checkpoint_interval_ns: int
    checkpoint_every_versions: int
    checkpoints_enabled: bool
    auto_recovery: bool
    audit_enabled: bool
    audit_retention_ns: int
    def __init__(self, max_attempts: _Optional[int] = ..., retry_backoff_ns: _Optional[int] = ..., max_retry_backoff_ns: _Optional[int] = ..., checkpoint_interval_ns: _Optional[int] = ..., checkpoint_every_versions: _Optional[int] = ..., checkpoints_enabled: _Optional[bool] = ..., auto_recovery: _Optional[bool] = ..., audit_enabled: _Optional[bool] = ..., audit_retention_ns: _Optional[int] = ...) -> None: ...

class AuthOp(_message.Message):
    __slots__ = ("put_role", "delete_role", "bind", "unbind", "create_token", "revoke_token")
    PUT_ROLE_FIELD_NUMBER: _ClassVar[int]
    DELETE_ROLE_FIELD_NUMBER: _ClassVar[int]
    BIND_FIELD_NUMBER: _ClassVar[int]
    UNBIND_FIELD_NUMBER: _ClassVar[int]
    CREATE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    put_role: _auth_pb2.Role
    delete_role: str
    bind: AuthBindingChange
    unbind: AuthBindingChange
    create_token: StoredToken
    revoke_token: str
    def __init__(self, put_role: _Optional[_Union[_auth_pb2.Role, _Mapping]] = ..., delete_role: _Optional[str] = ..., bind: _Optional[_Union[AuthBindingChange, _Mapping]] = ..., unbind: _Optional[_Union[AuthBindingChange, _Mapping]] = ..., create_token: _Optional[_Union[StoredToken, _Mapping]] = ..., revoke_token: _Optional[str] = ...) -> None: ...

class AuthBindingChange(_message.Message):
    __slots__ = ("identity", "role")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    identity: str
    role: str
    def __init__(self, identity: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class StoredToken(_message.Message):
    __slots__ = ("token_id", "identity", "salt", "hash", "created_ns", "expires_ns")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_NS_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    identity: str
    salt: bytes
    hash: bytes
    created_ns: int
    expires_ns: int
    def __init__(self, token_id: _Optional[str] = ..., identity: _Optional[str] = ..., salt: _Optional[bytes] = ..., hash: _Optional[bytes] = ..., created_ns: _Optional[int] = ..., expires_ns: _Optional[int] = ...) -> None: ...

class AuditReadsOp(_message.Message):
    __slots__ = ("reads",)
    READS_FIELD_NUMBER: _ClassVar[int]
    reads: _containers.RepeatedCompositeFieldContainer[ReadAccess]
    def __init__(self, reads: _Optional[_Iterable[_Union[ReadAccess, _Mapping]]] = ...) -> None: ...

class ReadAccess(_message.Message):
    __slots__ = ("identity", "operation", "workflow_id", "time_ns", "code")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    identity: str
    operation: str
    workflow_id: str
    time_ns: int
    code: int
    def __init__(self, identity: _Optional[str] = ..., operation: _Optional[str] = ..., workflow_id: _Optional[str] = ..., time_ns: _Optional[int] = ..., code: _Optional[int] = ...) -> None: ...

class AuditAnchor(_message.Message):
    __slots__ = ("first_seq", "prev_hash", "pruned")
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    PRUNED_FIELD_NUMBER: _ClassVar[int]
    first_seq: int
    prev_hash: bytes
    pruned: int
    def __init__(self, first_seq: _Optional[int] = ..., prev_hash: _Optional[bytes] = ..., pruned: _Optional[int] = ...) -> None: ...

class PersistOp(_message.Message):
    __slots__ = ("workflow_id", "current_step", "variables", "labels", "expected_version")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    current_step: str
    variables: _struct_pb2.Struct
    labels: _containers.ScalarMap[str, str]
    expected_version: int
    def __init__(self, workflow_id: _Optional[str] = ..., current_step: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class DeleteOp(_message.Message):
    __slots__ = ("workflow_id", "expected_version")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    expected_version: int
    def __init__(self, workflow_id: _Optional[str] = ..., expected_version: _Optional[int] = ...) -> None: ...

class CheckpointOp(_message.Message):
    __slots__ = ("workflow_id", "checkpoint_id", "compress", "retain_after_ns")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPRESS_FIELD_NUMBER: _ClassVar[int]
    RETAIN_AFTER_NS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    checkpoint_id: str
    compress: bool
    retain_after_ns: int
    def __init__(self, workflow_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., compress: _Optional[bool] = ..., retain_after_ns: _Optional[int] = ...) -> None: ...

class RecoverOp(_message.Message):
    __slots__ = ("workflow_id", "checkpoint_id", "expected_version", "current_step", "variables", "labels", "run")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    checkpoint_id: str
    expected_version: int
    current_step: str
    variables: _struct_pb2.Struct
    labels: _containers.ScalarMap[str, str]
    run: _state_pb2.WorkflowRun
    def __init__(self, workflow_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., current_step: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., run: _Optional[_Union[_state_pb2.WorkflowRun, _Mapping]] = ...) -> None: ...

class BarrierOp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartRunOp(_message.Message):
    __slots__ = ("workflow_id", "workflow_type", "input", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    workflow_type: str
    input: _struct_pb2.Value
    labels: _containers.ScalarMap[str, str]
    def __init__(self, workflow_id: _Optional[str] = ..., workflow_type: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ClaimRunOp(_message.Message):
    __slots__ = ("workflow_id", "worker_id", "lease_id", "expires_ns", "duration_ns")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_NS_FIELD_NUMBER: _ClassVar[int]
    DURATION_NS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    worker_id: str
    lease_id: str
    expires_ns: int
    duration_ns: int
    def __init__(self, workflow_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., expires_ns: _Optional[int] = ..., duration_ns: _Optional[int] = ...) -> None: ...

class HeartbeatOp(_message.Message):
    __slots__ = ("worker_id", "leases")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    leases: _containers.RepeatedCompositeFieldContainer[_workflow_pb2.LeaseRef]
    def __init__(self, worker_id: _Optional[str] = ..., leases: _Optional[_Iterable[_Union[_workflow_pb2.LeaseRef, _Mapping]]] = ...) -> None: ...

class RecordStepOp(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "step_name", "result")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    step_name: str
    result: _struct_pb2.Value
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., step_name: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class CompleteRunOp(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "output")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    output: _struct_pb2.Value
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class FailRunOp(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "error", "non_retryable")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    error: str
    non_retryable: bool
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., error: _Optional[str] = ..., non_retryable: _Optional[bool] = ...) -> None: ...

class CancelRunOp(_message.Message):
    __slots__ = ("workflow_id", "reason")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    reason: str
    def __init__(self, workflow_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseRunOp(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class ExpireLeasesOp(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[ExpiredLease]
    def __init__(self, leases: _Optional[_Iterable[_Union[ExpiredLease, _Mapping]]] = ...) -> None: ...

class ExpiredLease(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "restore", "expires_ns")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_NS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    restore: _state_pb2.Checkpoint
    expires_ns: int
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., restore: _Optional[_Union[_state_pb2.Checkpoint, _Mapping]] = ..., expires_ns: _Optional[int] = ...) -> None: ...

class PeriodicCheckpointsOp(_message.Message):
    __slots__ = ("due", "compress", "retain_after_ns")
    DUE_FIELD_NUMBER: _ClassVar[int]
    COMPRESS_FIELD_NUMBER: _ClassVar[int]
    RETAIN_AFTER_NS_FIELD_NUMBER: _ClassVar[int]
    due: _containers.RepeatedCompositeFieldContainer[DueCheckpoint]
    compress: bool
    retain_after_ns: int
    def __init__(self, due: _Optional[_Iterable[_Union[DueCheckpoint, _Mapping]]] = ..., compress: _Optional[bool] = ..., retain_after_ns: _Optional[int] = ...) -> None: ...

class DueCheckpoint(_message.Message):
    __slots__ = ("workflow_id", "due_ns", "checkpoint_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    DUE_NS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    due_ns: int
    checkpoint_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., due_ns: _Optional[int] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class ApplyResult(_message.Message):
    __slots__ = ("code", "message", "current_version", "reason", "state", "checkpoint", "deleted", "task", "heartbeat", "batch", "group")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    current_version: int
    reason: str
    state: _state_pb2.WorkflowState
    checkpoint: _state_pb2.Checkpoint
    deleted: DeleteResult
    task: _workflow_pb2.WorkTask
    heartbeat: HeartbeatOutcome
    batch: BatchOutcome
    group: GroupOutcome
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., current_version: _Optional[int] = ..., reason: _Optional[str] = ..., state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., checkpoint: _Optional[_Union[_state_pb2.Checkpoint, _Mapping]] = ..., deleted: _Optional[_Union[DeleteResult, _Mapping]] = ..., task: _Optional[_Union[_workflow_pb2.WorkTask, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatOutcome, _Mapping]] = ..., batch: _Optional[_Union[BatchOutcome, _Mapping]] = ..., group: _Optional[_Union[GroupOutcome, _Mapping]] = ...) -> None: ...

class GroupOutcome(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ApplyResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ApplyResult, _Mapping]]] = ...) -> None: ...

class HeartbeatOutcome(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_workflow_pb2.HeartbeatResult]
    def __init__(self, results: _Optional[_Iterable[_Union[_workflow_pb2.HeartbeatResult, _Mapping]]] = ...) -> None: ...

class BatchOutcome(_message.Message):
    __slots__ = ("applied", "skipped")
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    applied: int
    skipped: int
    def __init__(self, applied: _Optional[int] = ..., skipped: _Optional[int] = ...) -> None: ...

class DeleteResult(_message.Message):
    __slots__ = ("deleted_version", "deleted_checkpoints")
    DELETED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    deleted_version: int
    deleted_checkpoints: int
    def __init__(self, deleted_version: _Optional[int] = ..., deleted_checkpoints: _Optional[int] = ...) -> None: ...

class DedupRecord(_message.Message):
    __slots__ = ("body_hash", "expires_ns", "result")
    BODY_HASH_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_NS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    body_hash: bytes
    expires_ns: int
    result: ApplyResult
    def __init__(self, body_hash: _Optional[bytes] = ..., expires_ns: _Optional[int] = ..., result: _Optional[_Union[ApplyResult, _Mapping]] = ...) -> None: ...

class WorkflowDigestRequest(_message.Message):
    __slots__ = ("workflow_id", "min_index")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_INDEX_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    min_index: int
    def __init__(self, workflow_id: _Optional[str] = ..., min_index: _Optional[int] = ...) -> None: ...

class WorkflowDigestResponse(_message.Message):
    __slots__ = ("node_id", "applied_index", "exists", "version", "digest")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    applied_index: int
    exists: bool
    version: int
    digest: str
    def __init__(self, node_id: _Optional[str] = ..., applied_index: _Optional[int] = ..., exists: _Optional[bool] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...
