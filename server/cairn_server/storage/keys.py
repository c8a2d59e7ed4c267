"""Key encodings: a prefix scan lists one workflow's records in order."""

from __future__ import annotations

import struct

SEP = b"\x00"  # never inside a workflow id (validated), so prefixes cannot collide
_U64 = struct.Struct(">Q")


def u64(value: int) -> bytes:
    return _U64.pack(value)


def read_u64(data: bytes) -> int:
    return _U64.unpack(data)[0]


def workflow_prefix(workflow_id: str) -> bytes:
    return workflow_id.encode() + SEP


def history_key(workflow_id: str, version: int) -> bytes:
    return workflow_prefix(workflow_id) + u64(version)


def checkpoint_key(workflow_id: str, checkpoint_id: str) -> bytes:
    return workflow_prefix(workflow_id) + checkpoint_id.encode()


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with `prefix` (prefix ends in SEP, so +1 is safe)."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def due_key(due_ns: int, workflow_id: str) -> bytes:
    """A due-time index entry: a scan from the start lists the earliest first."""
    return u64(due_ns) + workflow_id.encode()


def split_due_key(key: bytes) -> tuple[int, str]:
    return read_u64(key[:8]), key[8:].decode()


def queue_prefix(workflow_type: str) -> bytes:
    return workflow_type.encode() + SEP


def queue_key(workflow_type: str, ready_ns: int, workflow_id: str) -> bytes:
    """A pending run: per type, in the order it becomes ready."""
    return queue_prefix(workflow_type) + due_key(ready_ns, workflow_id)
