"""Checking an audit chain end to end: online (AuditService) and offline (`cairn audit verify --data-dir`).

Every record must sit at its own sequence number, follow the previous record's hash, and hash to what it
says; the first record kept must follow the anchor left by pruning, and the last must be the head. The
first record that breaks any of these is named, with what is wrong: altered, missing, or out of order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cairn.v1 import audit_pb2
from cairn_server.internal import command_pb2

from ..storage import StorageError
from ..storage.keys import read_u64, u64

RECORD, HEAD, ANCHOR = b"r", b"h", b"a"
GENESIS = b"\x00" * 32


def record_key(seq: int) -> bytes:
    return RECORD + u64(seq)


_HASH_FIELD = b"\x5a\x20"  # field 11 (hash), length-delimited, 32 bytes: always last in field-number order


def record_hash(record: audit_pb2.AuditRecord) -> bytes:
    body = audit_pb2.AuditRecord()
    body.CopyFrom(record)
    body.ClearField("hash")
    return hashlib.sha256(body.SerializeToString(deterministic=True)).digest()


def sealed(record: audit_pb2.AuditRecord) -> tuple[bytes, bytes]:
    """(hash, encoded record with that hash) for a record whose `hash` is empty, serializing it once: a
    deterministic encoding writes fields in number order, so the hash field goes last."""
    body = record.SerializeToString(deterministic=True)
    digest = hashlib.sha256(body).digest()
    return digest, body + _HASH_FIELD + digest


@dataclass(frozen=True)
class Head:
    seq: int
    hash: bytes

    def encode(self) -> bytes:
        return u64(self.seq) + self.hash

    @classmethod
    def decode(cls, raw: bytes | None) -> Head:
        return cls(read_u64(raw[:8]), raw[8:]) if raw else cls(0, GENESIS)


def decode_anchor(raw: bytes | None) -> command_pb2.AuditAnchor:
    if not raw:
        return command_pb2.AuditAnchor(first_seq=1, prev_hash=GENESIS)
    try:
        return command_pb2.AuditAnchor.FromString(raw)
    except Exception as exc:
        raise StorageError(f"the audit anchor cannot be decoded ({type(exc).__name__}): damaged") from None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    checked: int
    first_seq: int
    head: Head
    broken_seq: int = 0
    problem: str = ""


def verify_chain(
    records: Iterable[tuple[bytes, bytes]],
    head: Head,
    anchors: list[command_pb2.AuditAnchor],
    on_progress: Callable[[int], None] | None = None,
) -> Verdict:
    """`records`: (key, value) of the audit column family's records in key order; `head` and `anchors` (one, or
    any the chain may legitimately start from) read from the same point-in-time view as the records."""
    expected_prev: bytes | None = None
    expected_seq = 0
    first_seq = 0
    checked = 0

    def broken(seq: int, problem: str) -> Verdict:
        return Verdict(False, checked, first_seq, head, seq, problem)

    for key, value in records:
        if not key.startswith(RECORD) or len(key) != 9:
            continue
        position = read_u64(key[1:])
        if position > head.seq:
            return broken(position, f"record {position} is past the head (record {head.seq}): the head was rolled back")
        try:
            record = audit_pb2.AuditRecord.FromString(value)
        except Exception as exc:
            return broken(position, f"record {position} cannot be decoded ({type(exc).__name__})")
        if expected_prev is None:
            start = next((a for a in anchors if a.first_seq == position), None)
            if start is None:
                first = min(a.first_seq for a in anchors)
                return broken(first, f"record {first} is missing (the chain starts at record {position})")
            expected_prev, expected_seq, first_seq = start.prev_hash, position, position
        if position != expected_seq:
            return broken(expected_seq, f"record {expected_seq} is missing (found record {position} after it)")
        if record.seq != position:
            return broken(position, f"record {position} holds record {record.seq}'s content (records reordered)")
        if record.prev_hash != expected_prev:
            return broken(position, f"record {position} does not follow record {position - 1} (its prev_hash differs)")
        if record_hash(record) != record.hash:
            return broken(position, f"record {position} was altered (its content does not match its hash)")
        expected_prev, expected_seq = record.hash, position + 1
        checked += 1
        if on_progress is not None and checked % 10_000 == 0:
            on_progress(checked)
    if head.seq == 0:
        if any(a.first_seq != 1 for a in anchors):
            return broken(1, "the head says the log is empty but the anchor says records were pruned")
        return Verdict(True, 0, 0, head)
    if expected_prev is None:
        if any(a.first_seq == head.seq + 1 and a.prev_hash == head.hash for a in anchors):
            return Verdict(True, 0, head.seq + 1, head)  # every record pruned; the anchor carries the chain
        first = min(a.first_seq for a in anchors)
        return broken(first, f"records {first}..{head.seq} are missing")
    if expected_seq <= head.seq:
        return broken(expected_seq, f"records {expected_seq}..{head.seq} are missing (the head is {head.seq})")
    if expected_prev != head.hash:
        return broken(head.seq, f"record {head.seq} does not match the chain's recorded head hash")
    return Verdict(True, checked, first_seq, head)
