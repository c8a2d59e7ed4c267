from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RaftRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAFT_ROLE_UNSPECIFIED: _ClassVar[RaftRole]
    FOLLOWER: _ClassVar[RaftRole]
    CANDIDATE: _ClassVar[RaftRole]
    LEADER: _ClassVar[RaftRole]
RAFT_ROLE_UNSPECIFIED: RaftRole
FOLLOWER: RaftRole
CANDIDATE: RaftRole
LEADER: RaftRole

class Member(_message.Message):
    __slots__ = ("node_id", "raft_address", "grpc_address", "connected", "match_index", "is_self")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    IS_SELF_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    raft_address: str
    grpc_address: str
    connected: bool
    match_index: int
    is_self: bool
    def __init__(self, node_id: _Optional[str] = ..., raft_address: _Optional[str] = ..., grpc_address: _Optional[str] = ..., connected: _Optional[bool] = ..., match_index: _Optional[int] = ..., is_self: _Optional[bool] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "grpc_address", "raft_address", "role", "leader_id", "leader_grpc_address", "term", "commit_index", "applied_index", "log_entries", "snapshot_index", "has_quorum", "members", "workflows", "uptime_seconds", "version", "last_log_index")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RAFT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOG_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    HAS_QUORUM_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    grpc_address: str
    raft_address: str
    role: RaftRole
    leader_id: str
    leader_grpc_address: str
    term: int
    commit_index: int
    applied_index: int
    log_entries: int
    snapshot_index: int
    has_quorum: bool
    members: _containers.RepeatedCompositeFieldContainer[Member]
    workflows: int
    uptime_seconds: float
    version: str
    last_log_index: int
    def __init__(self, node_id: _Optional[str] = ..., grpc_address: _Optional[str] = ..., raft_address: _Optional[str] = ..., role: _Optional[_Union[RaftRole, str]] = ..., leader_id: _Optional[str] = ..., leader_grpc_address: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., log_entries: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., has_quorum: _Optional[bool] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., workflows: _Optional[int] = ..., uptime_seconds: _Optional[float] = ..., version: _Optional[str] = ..., last_log_index: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("index", "size_bytes", "duration_ms")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    index: int
    size_bytes: int
    duration_ms: float
    def __init__(self, index: _Optional[int] = ..., size_bytes: _Optional[int] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class TransferLeadershipRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class TransferLeadershipResponse(_message.Message):
    __slots__ = ("previous_leader_id", "leader_id", "duration_ms")
    PREVIOUS_LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    previous_leader_id: str
    leader_id: str
    duration_ms: float
    def __init__(self, previous_leader_id: _Optional[str] = ..., leader_id: _Optional[str] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class RotateKeysRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class RotateKeysResponse(_message.Message):
    __slots__ = ("rotation_index", "leader_key_id")
    ROTATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEADER_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    rotation_index: int
    leader_key_id: int
    def __init__(self, rotation_index: _Optional[int] = ..., leader_key_id: _Optional[int] = ...) -> None: ...

class KeyStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DataKey(_message.Message):
    __slots__ = ("key_id", "records", "created_ns", "rotation_index")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    ROTATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    key_id: int
    records: int
    created_ns: int
    rotation_index: int
    def __init__(self, key_id: _Optional[int] = ..., records: _Optional[int] = ..., created_ns: _Optional[int] = ..., rotation_index: _Optional[int] = ...) -> None: ...

class ReencryptionPass(_message.Message):
    __slots__ = ("target_key_id", "running", "complete", "rewritten_records", "rewritten_bytes", "scanned_records", "elapsed_seconds", "records_per_second", "bytes_per_second", "error")
    TARGET_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_RECORDS_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    SCANNED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECORDS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    target_key_id: int
    running: bool
    complete: bool
    rewritten_records: int
    rewritten_bytes: int
    scanned_records: int
    elapsed_seconds: float
    records_per_second: float
    bytes_per_second: float
    error: str
    def __init__(self, target_key_id: _Optional[int] = ..., running: _Optional[bool] = ..., complete: _Optional[bool] = ..., rewritten_records: _Optional[int] = ..., rewritten_bytes: _Optional[int] = ..., scanned_records: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., records_per_second: _Optional[float] = ..., bytes_per_second: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...

class KeyStatusResponse(_message.Message):
    __slots__ = ("node_id", "current_key_id", "kek_fingerprint", "keys", "old_records", "reencryption")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    KEK_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    OLD_RECORDS_FIELD_NUMBER: _ClassVar[int]
    REENCRYPTION_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    current_key_id: int
    kek_fingerprint: str
    keys: _containers.RepeatedCompositeFieldContainer[DataKey]
    old_records: int
    reencryption: ReencryptionPass
    def __init__(self, node_id: _Optional[str] = ..., current_key_id: _Optional[int] = ..., kek_fingerprint: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[DataKey, _Mapping]]] = ..., old_records: _Optional[int] = ..., reencryption: _Optional[_Union[ReencryptionPass, _Mapping]] = ...) -> None: ...
