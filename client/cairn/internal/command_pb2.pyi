from google.protobuf import struct_pb2 as _struct_pb2
from cairn.v1 import state_pb2 as _state_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Command(_message.Message):
    __slots__ = ("request_id", "body_hash", "time_ns", "dedup_expires_ns", "history_limit", "checkpoint_limit", "persist", "delete", "checkpoint", "recover", "barrier")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_HASH_FIELD_NUMBER: _ClassVar[int]
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    DEDUP_EXPIRES_NS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_LIMIT_FIELD_NUMBER: _ClassVar[int]
    PERSIST_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    RECOVER_FIELD_NUMBER: _ClassVar[int]
    BARRIER_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    body_hash: bytes
    time_ns: int
    dedup_expires_ns: int
    history_limit: int
    checkpoint_limit: int
    persist: PersistOp
    delete: DeleteOp
    checkpoint: CheckpointOp
    recover: RecoverOp
    barrier: BarrierOp
    def __init__(self, request_id: _Optional[str] = ..., body_hash: _Optional[bytes] = ..., time_ns: _Optional[int] = ..., dedup_expires_ns: _Optional[int] = ..., history_limit: _Optional[int] = ..., checkpoint_limit: _Optional[int] = ..., persist: _Optional[_Union[PersistOp, _Mapping]] = ..., delete: _Optional[_Union[DeleteOp, _Mapping]] = ..., checkpoint: _Optional[_Union[CheckpointOp, _Mapping]] = ..., recover: _Optional[_Union[RecoverOp, _Mapping]] = ..., barrier: _Optional[_Union[BarrierOp, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("workflow_id", "checkpoint_id", "expected_version", "current_step", "variables", "labels")
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
    workflow_id: str
    checkpoint_id: str
    expected_version: int
    current_step: str
    variables: _struct_pb2.Struct
    labels: _containers.ScalarMap[str, str]
    def __init__(self, workflow_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., expected_version: _Optional[int] = ..., current_step: _Optional[str] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BarrierOp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ApplyResult(_message.Message):
    __slots__ = ("code", "message", "current_version", "state", "checkpoint", "deleted")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    current_version: int
    state: _state_pb2.WorkflowState
    checkpoint: _state_pb2.Checkpoint
    deleted: DeleteResult
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., current_version: _Optional[int] = ..., state: _Optional[_Union[_state_pb2.WorkflowState, _Mapping]] = ..., checkpoint: _Optional[_Union[_state_pb2.Checkpoint, _Mapping]] = ..., deleted: _Optional[_Union[DeleteResult, _Mapping]] = ...) -> None: ...

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
