"""AuditService: this node's replica of the audit chain, listed, exported and verified (admin only)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from cairn.v1 import audit_pb2, audit_pb2_grpc

from ..audit.chain import CF, AuditLog
from ..audit.verify import ANCHOR, HEAD, RECORD, Head, decode_anchor, record_key, verify_chain
from ..config import Config
from ..errors import InvalidArgument
from ..membership import Membership
from ..statemachine import StateMachine
from ..storage import RocksStore, StorageError
from .status import handles_errors

_MAX_LIST = 1000
_LAST_SEQ = 2**64 - 1


def verify_store(store: RocksStore) -> audit_pb2.VerifyAuditResponse:
    """Check the chain in `store` (a live node's or a stopped node's, opened read-only). One iterator over the
    whole family reads the anchor (`a`), the head (`h`) and the records (`r...`), in that key order, from one
    point-in-time view, so appends and pruning while it runs can neither hide a break nor fake one."""
    items = iter(store.scan(CF))
    anchor_raw = head_raw = None
    first_record: list[tuple[bytes, bytes]] = []
    for key, value in items:
        if key == ANCHOR:
            anchor_raw = value
        elif key == HEAD:
            head_raw = value
        else:
            first_record.append((key, value))
            break
    try:
        anchor = decode_anchor(anchor_raw)
    except StorageError as exc:
        return audit_pb2.VerifyAuditResponse(ok=False, broken_seq=0, problem=str(exc))
    head = Head.decode(head_raw)
    verdict = verify_chain(itertools.chain(first_record, items), head, [anchor])
    return audit_pb2.VerifyAuditResponse(
        ok=verdict.ok,
        checked=verdict.checked,
        first_seq=verdict.first_seq,
        head_seq=head.seq,
        head_hash=head.hash,
        broken_seq=verdict.broken_seq,
        problem=verdict.problem,
    )


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, *, machine: StateMachine, audit: AuditLog, membership: Membership, config: Config):
        self.machine = machine
        self.audit = audit
        self.membership = membership
        self.config = config

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.membership.leader_grpc(raft_address)

    def _records(self, after_seq: int) -> Iterator[audit_pb2.AuditRecord]:
        if after_seq >= _LAST_SEQ:
            return  # nothing can come after the largest sequence number
        start = record_key(after_seq + 1)
        for _, value in self.machine.store.scan(CF, RECORD, start=start):
            yield audit_pb2.AuditRecord.FromString(value)

    @handles_errors
    def ListAudit(self, request: audit_pb2.ListAuditRequest, context):
        if request.limit > _MAX_LIST:
            raise InvalidArgument(f"limit {request.limit} is over the maximum of {_MAX_LIST}")
        limit = request.limit or 100
        head = self.audit.head.seq
        after = max(0, head - limit) if request.tail else request.after_seq
        records = []
        for record in self._records(after):
            if len(records) == limit:
                break
            records.append(record)
        return audit_pb2.ListAuditResponse(records=records, head_seq=head)

    def ExportAudit(self, request: audit_pb2.ExportAuditRequest, context):
        yield from self._records(request.after_seq)

    @handles_errors
    def VerifyAudit(self, request, context):
        response = verify_store(self.machine.store)
        response.node_id = self.config.cluster.node_id
        response.applied_index = self.machine.applied_index
        return response
