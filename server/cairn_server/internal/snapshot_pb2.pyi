from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogEntryRef(_message.Message):
    __slots__ = ("command", "index", "term")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    command: bytes
    index: int
    term: int
    def __init__(self, command: _Optional[bytes] = ..., index: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class SnapshotHeader(_message.Message):
    __slots__ = ("format", "last", "previous", "cluster", "records", "created_ns", "key_rotation_index")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_NS_FIELD_NUMBER: _ClassVar[int]
    KEY_ROTATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    format: int
    last: LogEntryRef
    previous: LogEntryRef
    cluster: _containers.RepeatedScalarFieldContainer[str]
    records: int
    created_ns: int
    key_rotation_index: int
    def __init__(self, format: _Optional[int] = ..., last: _Optional[_Union[LogEntryRef, _Mapping]] = ..., previous: _Optional[_Union[LogEntryRef, _Mapping]] = ..., cluster: _Optional[_Iterable[str]] = ..., records: _Optional[int] = ..., created_ns: _Optional[int] = ..., key_rotation_index: _Optional[int] = ...) -> None: ...
