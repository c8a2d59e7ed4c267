import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from cairn.v1 import state_pb2 as _state_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Lease(_message.Message):
    __slots__ = ("lease_id", "fencing_token", "worker_id", "granted_at", "expires_at", "duration_ms")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    fencing_token: int
    worker_id: str
    granted_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    duration_ms: int
    def __init__(self, lease_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., worker_id: _Optional[str] = ..., granted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class StartWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "workflow_type", "input", "labels", "request_id")
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
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    workflow_type: str
    input: _struct_pb2.Value
    labels: _containers.ScalarMap[str, str]
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., workflow_type: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartWorkflowResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    header: _state_pb2.ResponseHeader
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "read")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    read: _state_pb2.ReadOptions
    def __init__(self, workflow_id: _Optional[str] = ..., read: _Optional[_Union[_state_pb2.ReadOptions, _Mapping]] = ...) -> None: ...

class GetWorkflowResponse(_message.Message):
    __slots__ = ("state", "lease", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    lease: Lease
    header: _state_pb2.ResponseHeader
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("workflow_id", "workflow_type", "status", "attempt", "current_step", "version", "updated_at")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    workflow_type: str
    status: _state_pb2.RunStatus
    attempt: int
    current_step: str
    version: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, workflow_id: _Optional[str] = ..., workflow_type: _Optional[str] = ..., status: _Optional[_Union[_state_pb2.RunStatus, str]] = ..., attempt: _Optional[int] = ..., current_step: _Optional[str] = ..., version: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkflowRunsRequest(_message.Message):
    __slots__ = ("status", "workflow_type", "prefix", "limit", "page_token", "read")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_TYPE_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    status: _state_pb2.RunStatus
    workflow_type: str
    prefix: str
    limit: int
    page_token: str
    read: _state_pb2.ReadOptions
    def __init__(self, status: _Optional[_Union[_state_pb2.RunStatus, str]] = ..., workflow_type: _Optional[str] = ..., prefix: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., read: _Optional[_Union[_state_pb2.ReadOptions, _Mapping]] = ...) -> None: ...

class ListWorkflowRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token", "header")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[RunSummary]
    next_page_token: str
    header: _state_pb2.ResponseHeader
    def __init__(self, runs: _Optional[_Iterable[_Union[RunSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class CancelWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "reason", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    reason: str
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelWorkflowResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    header: _state_pb2.ResponseHeader
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class ReleaseWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReleaseWorkflowResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    header: _state_pb2.ResponseHeader
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class PollWorkRequest(_message.Message):
    __slots__ = ("worker_id", "workflow_types", "lease_timeout_ms", "wait_ms", "request_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_TYPES_FIELD_NUMBER: _ClassVar[int]
    LEASE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    workflow_types: _containers.RepeatedScalarFieldContainer[str]
    lease_timeout_ms: int
    wait_ms: int
    request_id: str
    def __init__(self, worker_id: _Optional[str] = ..., workflow_types: _Optional[_Iterable[str]] = ..., lease_timeout_ms: _Optional[int] = ..., wait_ms: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class WorkTask(_message.Message):
    __slots__ = ("state", "lease")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    lease: Lease
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ...) -> None: ...

class PollWorkResponse(_message.Message):
    __slots__ = ("task", "header")
    TASK_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    task: WorkTask
    header: _state_pb2.ResponseHeader
    def __init__(self, task: _Optional[_Union[WorkTask, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class LeaseRef(_message.Message):
    __slots__ = ("workflow_id", "fencing_token")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "leases", "request_id")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    leases: _containers.RepeatedCompositeFieldContainer[LeaseRef]
    request_id: str
    def __init__(self, worker_id: _Optional[str] = ..., leases: _Optional[_Iterable[_Union[LeaseRef, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class HeartbeatResult(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "extended", "expires_at", "error")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    extended: bool
    expires_at: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., extended: _Optional[bool] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("results", "header")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[HeartbeatResult]
    header: _state_pb2.ResponseHeader
    def __init__(self, results: _Optional[_Iterable[_Union[HeartbeatResult, _Mapping]]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class RecordStepRequest(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "step_name", "result", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STEP_NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    step_name: str
    result: _struct_pb2.Value
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., step_name: _Optional[str] = ..., result: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RecordStepResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    header: _state_pb2.ResponseHeader
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class CompleteWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "output", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    output: _struct_pb2.Value
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CompleteWorkflowResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    header: _state_pb2.ResponseHeader
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...

class FailWorkflowRequest(_message.Message):
    __slots__ = ("workflow_id", "fencing_token", "error", "non_retryable", "request_id")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    fencing_token: int
    error: str
    non_retryable: bool
    request_id: str
    def __init__(self, workflow_id: _Optional[str] = ..., fencing_token: _Optional[int] = ..., error: _Optional[str] = ..., non_retryable: _Optional[bool] = ..., request_id: _Optional[str] = ...) -> None: ...

class FailWorkflowResponse(_message.Message):
    __slots__ = ("state", "header")
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    state: _state_pb2.WorkflowState
    header: _state_pb2.ResponseHeader
    def __init__(self, state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., header: _Optional[_Union[_state_pb2.ResponseHeader, _Mapping]] = ...) -> None: ...
