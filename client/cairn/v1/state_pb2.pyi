import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_UNSPECIFIED: _ClassVar[Consistency]
    LINEARIZABLE: _ClassVar[Consistency]
    SERIALIZABLE: _ClassVar[Consistency]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    PERSIST: _ClassVar[ChangeKind]
    RECOVER: _ClassVar[ChangeKind]
    RUN_STARTED: _ClassVar[ChangeKind]
    RUN_CLAIMED: _ClassVar[ChangeKind]
    STEP_RECORDED: _ClassVar[ChangeKind]
    RUN_COMPLETED: _ClassVar[ChangeKind]
    RUN_ATTEMPT_FAILED: _ClassVar[ChangeKind]
    LEASE_EXPIRED: _ClassVar[ChangeKind]
    RUN_CANCELLED: _ClassVar[ChangeKind]
    RUN_RELEASED: _ClassVar[ChangeKind]

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    PENDING: _ClassVar[RunStatus]
    RUNNING: _ClassVar[RunStatus]
    COMPLETED: _ClassVar[RunStatus]
    FAILED: _ClassVar[RunStatus]
    QUARANTINED: _ClassVar[RunStatus]
    CANCELLED: _ClassVar[RunStatus]
CONSISTENCY_UNSPECIFIED: Consistency
LINEARIZABLE: Consistency
SERIALIZABLE: Consistency
CHANGE_KIND_UNSPECIFIED: ChangeKind
PERSIST: ChangeKind
RECOVER: ChangeKind
RUN_STARTED: ChangeKind
RUN_CLAIMED: ChangeKind
STEP_RECORDED: ChangeKind
RUN_COMPLETED: ChangeKind
RUN_ATTEMPT_FAILED: ChangeKind
LEASE_EXPIRED: ChangeKind
RUN_CANCELLED: ChangeKind
RUN_RELEASED: ChangeKind
RUN_STATUS_UNSPECIFIED: RunStatus
PENDING: RunStatus
RUNNING: RunStatus
COMPLETED: RunStatus
FAILED: RunStatus
QUARANTINED: RunStatus
CANCELLED: RunStatus

class ReadOptions(_message.Message):
    __slots__ = ("consistency", "min_index")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    MIN_INDEX_FIELD_NUMBER: _ClassVar[int]
    consistency: Consistency
    min_index: int
    def __init__(self, consistency: _Optional[_Union[Consistency, str]] = ..., min_index: _Optional[int] = ...) -> None: ...

class ResponseHeader(_message.Message):
    __slots__ = ("node_id", "leader_id", "applied_index", "term", "leader_grpc_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    leader_id: str
    applied_index: int
    term: int
    leader_grpc_address: str
    def __init__(self, node_id: _Optional[str] = ..., leader_id: _Optional[str] = ..., applied_index: _Optional[int] = ..., term: _Optional[int] = ..., leader_grpc_address: _Optional[str] = ...) -> None: ...

class StateMetadata(_message.Message):
    __slots__ = ("created_at", "updated_at", "labels", "checksum", "size_bytes")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    checksum: str
    size_bytes: int
    def __init__(self, created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., checksum: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class CheckpointRef(_message.Message):
    __slots__ = ("id", "version", "timestamp")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class StepRecord(_message.Message):
    __slots__ = ("name", "result", "attempt", "completed_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    result: _struct_pb2.Value
    attempt: int
    completed_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., attempt: _Optional[int] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WorkflowRun(_message.Message):
    __slots__ = ("workflow_type", "status", "attempt", "input", "output", "last_error", "steps", "attempt_base", "ready_at", "fencing_token", "started_at", "finished_at", "lease_holder")
    WORKFLOW_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_BASE_FIELD_NUMBER: _ClassVar[int]
    READY_AT_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_HOLDER_FIELD_NUMBER: _ClassVar[int]
    workflow_type: str
    status: RunStatus
    attempt: int
    input: _struct_pb2.Value
    output: _struct_pb2.Value
    last_error: str
    steps: _containers.RepeatedCompositeFieldContainer[StepRecord]
    attempt_base: int
    ready_at: _timestamp_pb2.Timestamp
    fencing_token: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    lease_holder: str
    def __init__(self, workflow_type: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., attempt: _Optional[int] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., last_error: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepRecord, _Mapping]]] = ..., attempt_base: _Optional[int] = ..., ready_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fencing_token: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_holder: _Optional[str] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("version", "step", "changed_keys", "time", "request_id", "kind", "checkpoint_id", "attempt", "fencing_token", "step_name")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHANGED_KEYS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    version: int
    step: str
    changed_keys: _containers.RepeatedScalarFieldContainer[str]
    time: _timestamp_pb2.Timestamp
    request_id: str
    kind: ChangeKind
    checkpoint_id: str
    attempt: int
    fencing_token: int
    step_name: str
    def __init__(self, version: _Optional[int] = ..., step: _Optional[str] = ..., changed_keys: _Optional[_Iterable[str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., checkpoint_id: _Optional[str] = ..., attempt: _Optional[int] = ..., fencing_token: _Optional[int] = ..., step_name: _Optional[str] = ...) -> None: ...

class WorkflowState(_message.Message):
    __slots__ = ("workflow_id", "version", "current_step", "variables", "history", "checkpoint", "metadata", "run")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    version: int
    current_step: str
    variables: _struct_pb2.Struct
    history: _containers.RepeatedCompositeFieldContainer[StateChange]
    checkpoint: CheckpointRef
    metadata: StateMetadata
    run: WorkflowRun
    def __init__(self, workflow_id: _Optional[str] = ..., version: _Optional[int] = ..., current_step: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., history: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ..., checkpoint: _Optional[_Union[CheckpointRef, _Mapping]] = ..., metadata: _Optional[_Union[StateMetadata, _Mapping]] = ..., run: _Optional[_Union[WorkflowRun, _Mapping]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("id", "workflow_id", "timestamp", "state", "checksum", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    workflow_id: str
    timestamp: _timestamp_pb2.Timestamp
    state: WorkflowState
    checksum: str
    version: int
    def __init__(self, id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[WorkflowState, _Mapping]] = ..., checksum: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class PersistStateRequest(_message.Message):
    __slots__ = ("workflow_id", "current_step", "variables", "labels", "expected_version", "request_id")
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
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    current_step: str
    variables: _struct_pb2.Struct
    labels: _containers.ScalarMap[str, str]
    expected_version: int
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., current_step: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., expected_version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class PersistStateResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: WorkflowState
    header: ResponseHeader
    def __init__(self, state: _Optional[_Union[WorkflowState, _Mapping]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("workflow_id", "read", "include_history")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    read: ReadOptions
    include_history: bool
    def __init__(self, workflow_id: _Optional[str] = ..., read: _Optional[_Union[ReadOptions, _Mapping]] = ..., include_history: _Optional[bool] = ...) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: WorkflowState
    header: ResponseHeader
    def __init__(self, state: _Optional[_Union[WorkflowState, _Mapping]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class DeleteWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "expected_version", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    expected_version: int
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteWorkflowResponse(_message.Message):
    __slots__ = ("deleted_version", "deleted_checkpoints", "header")
    DELETED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    deleted_version: int
    deleted_checkpoints: int
    header: ResponseHeader
    def __init__(self, deleted_version: _Optional[int] = ..., deleted_checkpoints: _Optional[int] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class WorkflowSummary(_message.Message):
    __slots__ = ("workflow_id", "version", "current_step", "updated_at")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    version: int
    current_step: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, workflow_id: _Optional[str] = ..., version: _Optional[int] = ..., current_step: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("prefix", "limit", "page_token", "read")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    limit: int
    page_token: str
    read: ReadOptions
    def __init__(self, prefix: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., read: _Optional[_Union[ReadOptions, _Mapping]] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token", "header")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[WorkflowSummary]
    next_page_token: str
    header: ResponseHeader
    def __init__(self, workflows: _Optional[_Iterable[_Union[WorkflowSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class CreateCheckpointRequest(_message.Message):
    __slots__ = ("workflow_id", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "header")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    header: ResponseHeader
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("workflow_id", "read", "include_state")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STATE_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    read: ReadOptions
    include_state: bool
    def __init__(self, workflow_id: _Optional[str] = ..., read: _Optional[_Union[ReadOptions, _Mapping]] = ..., include_state: _Optional[bool] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints", "header")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[Checkpoint]
    header: ResponseHeader
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[Checkpoint, _Mapping]]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("workflow_id", "checkpoint_id", "read")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    checkpoint_id: str
    read: ReadOptions
    def __init__(self, workflow_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., read: _Optional[_Union[ReadOptions, _Mapping]] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "header")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    checkpoint: Checkpoint
    header: ResponseHeader
    def __init__(self, checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class RecoverFromCheckpointRequest(_message.Message):
    __slots__ = ("workflow_id", "checkpoint_id", "expected_version", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    checkpoint_id: str
    expected_version: int
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class RecoverFromCheckpointResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: WorkflowState
    header: ResponseHeader
    def __init__(self, state: _Optional[_Union[WorkflowState, _Mapping]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class SynchronizeStateRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class SynchronizeStateResponse(_message.Message):
    __slots__ = ("node_id", "leader_id", "applied_index_before", "applied_index_after", "leader_commit_index", "version", "exists", "duration_ms", "header")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_BEFORE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_AFTER_FIELD_NUMBER: _ClassVar[int]
    LEADER_COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    leader_id: str
    applied_index_before: int
    applied_index_after: int
    leader_commit_index: int
    version: int
    exists: bool
    duration_ms: float
    header: ResponseHeader
    def __init__(self, node_id: _Optional[str] = ..., leader_id: _Optional[str] = ..., applied_index_before: _Optional[int] = ..., applied_index_after: _Optional[int] = ..., leader_commit_index: _Optional[int] = ..., version: _Optional[int] = ..., exists: _Optional[bool] = ..., duration_ms: _Optional[float] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class ValidationProblem(_message.Message):
    __slots__ = ("code", "message", "node_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    node_id: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., node_id: _Optional[str] = ...) -> None: ...

class ReplicaDigest(_message.Message):
    __slots__ = ("node_id", "reachable", "applied_index", "version", "digest", "error")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    reachable: bool
    applied_index: int
    version: int
    digest: str
    error: str
    def __init__(self, node_id: _Optional[str] = ..., reachable: _Optional[bool] = ..., applied_index: _Optional[int] = ..., version: _Optional[int] = ..., digest: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ValidateStateRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class ValidateStateResponse(_message.Message):
    __slots__ = ("valid", "problems", "version", "checksum", "checkpoints_checked", "history_entries_checked", "replicas", "header")
    VALID_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ENTRIES_CHECKED_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    problems: _containers.RepeatedCompositeFieldContainer[ValidationProblem]
    version: int
    checksum: str
    checkpoints_checked: int
    history_entries_checked: int
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaDigest]
    header: ResponseHeader
    def __init__(self, valid: _Optional[bool] = ..., problems: _Optional[_Iterable[_Union[ValidationProblem, _Mapping]]] = ..., version: _Optional[int] = ..., checksum: _Optional[str] = ..., checkpoints_checked: _Optional[int] = ..., history_entries_checked: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[ReplicaDigest, _Mapping]]] = ..., header: _Optional[_Union[ResponseHeader, _Mapping]] = ...) -> None: ...

class PersistStreamRequest(_message.Message):
    __slots__ = ("sequence", "persist")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PERSIST_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    persist: PersistStateRequest
    def __init__(self, sequence: _Optional[int] = ..., persist: _Optional[_Union[PersistStateRequest, _Mapping]] = ...) -> None: ...

class StreamError(_message.Message):
    __slots__ = ("code", "message", "current_version", "leader", "reason")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    current_version: int
    leader: str
    reason: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., current_version: _Optional[int] = ..., leader: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PersistStreamResponse(_message.Message):
    __slots__ = ("sequence", "response", "error")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    response: PersistStateResponse
    error: StreamError
    def __init__(self, sequence: _Optional[int] = ..., response: _Optional[_Union[PersistStateResponse, _Mapping]] = ..., error: _Optional[_Union[StreamError, _Mapping]] = ...) -> None: ...
