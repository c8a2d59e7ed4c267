"""Appending to the audit chain, inside apply: one record per applied command, in the entry's own batch.

Each record's who/what/when comes from the command (the leader stamped the identity and the time), its
outcome from the apply result, and its place from the previous record's hash, so every replica appends the
same records with the same hashes. Pruning (audit.retention, stamped in the command's policy) deletes the
oldest records a few at a time and moves the anchor (first kept seq, the hash it follows) in the same
batch, so the rest of the chain still verifies.
"""

from __future__ import annotations

from cairn.v1 import audit_pb2
from cairn_server.internal import command_pb2

from ..statemachine import StateMachine, ts
from ..storage import Batch, StorageError
from .verify import ANCHOR, HEAD, Head, decode_anchor, record_key, sealed

CF = "audit"
_PRUNE_PER_APPLY = 64
_NO_WORKFLOW = ("heartbeat", "expire_leases", "periodic_checkpoints", "auth", "audit_reads", "barrier", "group")


def _workflow_id(cmd: command_pb2.Command, op: str) -> str:
    if op in _NO_WORKFLOW:
        return ""
    return getattr(getattr(cmd, op), "workflow_id", "")


def _target(cmd: command_pb2.Command) -> str:
    """What an admin change was about (the audit record's message when it succeeded): never a secret."""
    change = cmd.auth
    kind = change.WhichOneof("change")
    if kind == "put_role":
        return f"role {change.put_role.name[:128]}"
    if kind in ("bind", "unbind"):
        binding = getattr(change, kind)
        return f"identity {binding.identity[:256]} role {binding.role[:128]}"
    if kind == "create_token":
        return f"token {change.create_token.token_id} for {change.create_token.identity[:256]}"
    if kind == "delete_role":
        return f"role {change.delete_role[:128]}"
    if kind == "revoke_token":
        return f"token {change.revoke_token[:64]}"
    return ""


def _operation(cmd: command_pb2.Command, op: str) -> str:
    if op == "auth":
        return f"auth.{cmd.auth.WhichOneof('change')}"
    return op


class AuditLog:
    def __init__(self, machine: StateMachine):
        self.machine = machine
        self.store = machine.store
        self._head = Head.decode(self.store.get(CF, HEAD))
        self._pending: tuple[Batch, Head] | None = None  # the head as of the batch being built
        # The committed oldest record's time (None: not known): most writes prune nothing, and then need no read.
        self._oldest_ns: int | None = None
        # The anchor as moved by the batch being built: later commands of a group continue from it (never back).
        self._anchor: tuple[Batch, command_pb2.AuditAnchor] | None = None

    def install(self) -> None:
        self.machine.register("audit_reads", self._apply_reads)
        self.machine.on_executed(self._record)
        self.machine.on_written(self._written)
        self.machine.on_reset(self._reload)

    @property
    def head(self) -> Head:
        return self._head

    def _reload(self) -> None:
        self._head = Head.decode(self.store.get(CF, HEAD))
        self._pending = None
        self._anchor = None
        self._oldest_ns = None

    def _written(self, batch: Batch) -> None:
        if self._pending is not None and self._pending[0] is batch:
            self._head = self._pending[1]
        if self._anchor is not None and self._anchor[0] is batch:
            self._oldest_ns = None  # the oldest records went: read the new oldest when next needed
        self._pending = None
        self._anchor = None

    def _tip(self, batch: Batch) -> Head:
        if self._pending is None or self._pending[0] is not batch:
            self._pending = (batch, self._head)  # a new batch (or one rebuilt after a failure) starts at the head
        return self._pending[1]

    def _apply_reads(self, cmd: command_pb2.Command, batch: Batch, index: int) -> command_pb2.ApplyResult:
        """Reads a node served (audit.reads): one record each, stamped by that node."""
        for read in cmd.audit_reads.reads:
            self._append(batch, index, read.time_ns, read.identity, read.operation, read.workflow_id, "", read.code)
        return command_pb2.ApplyResult(code=0)

    def _record(self, cmd: command_pb2.Command, result: command_pb2.ApplyResult, batch: Batch, index: int) -> None:
        op = cmd.WhichOneof("op") or ""
        if op == "audit_reads" or not cmd.policy.audit_enabled:
            return
        self._append(
            batch,
            index,
            cmd.time_ns,
            cmd.identity or "anonymous",
            _operation(cmd, op),
            _workflow_id(cmd, op),
            cmd.request_id,
            result.code,
            result.message if result.code else (_target(cmd) if op == "auth" else ""),
        )
        if cmd.policy.audit_retention_ns > 0:
            self._prune(batch, cmd.time_ns - cmd.policy.audit_retention_ns)

    def _append(
        self,
        batch: Batch,
        index: int,
        time_ns: int,
        identity: str,
        operation: str,
        workflow_id: str,
        request_id: str,
        code: int,
        message: str = "",
    ) -> None:
        tip = self._tip(batch)
        record = audit_pb2.AuditRecord(
            seq=tip.seq + 1,
            time=ts(time_ns),
            identity=identity,
            operation=operation,
            workflow_id=workflow_id,
            request_id=request_id,
            code=code,
            message=message[:512],
            raft_index=index,
            prev_hash=tip.hash,
        )
        digest, encoded = sealed(record)
        batch.put(CF, record_key(record.seq), encoded)
        head = Head(record.seq, digest)
        batch.put(CF, HEAD, head.encode())
        self._pending = (batch, head)

    def _prune(self, batch: Batch, before_ns: int) -> None:
        """Delete up to a few committed records older than `before_ns`, oldest first, and move the anchor.

        Everything read here is committed state (or this batch's own anchor), never a cache that could differ
        between replicas: `_oldest_ns` is only trusted, and only set, when this batch has moved nothing yet."""
        moved_here = self._anchor is not None and self._anchor[0] is batch
        if not moved_here and self._oldest_ns is not None and before_ns <= self._oldest_ns:
            return  # the oldest committed record is recent enough (the store would say the same)
        anchor = self._anchor[1] if moved_here else decode_anchor(self._read(ANCHOR))
        seq, last_hash, pruned = anchor.first_seq, None, 0
        while pruned < _PRUNE_PER_APPLY and seq <= self._head.seq:
            raw = self._read(record_key(seq))
            if raw is None:
                break
            record = self._decode(raw, seq)
            if record.time.ToNanoseconds() >= before_ns:
                if pruned == 0 and not moved_here:
                    self._oldest_ns = record.time.ToNanoseconds()
                break
            batch.delete(CF, record_key(seq))
            last_hash, seq, pruned = record.hash, seq + 1, pruned + 1
        if last_hash is not None:
            moved = command_pb2.AuditAnchor(first_seq=seq, prev_hash=last_hash, pruned=anchor.pruned + pruned)
            batch.put(CF, ANCHOR, moved.SerializeToString(deterministic=True))
            self._anchor = (batch, moved)

    def _read(self, key: bytes) -> bytes | None:
        return self.store.get(CF, key)

    @staticmethod
    def _decode(raw: bytes, seq: int) -> audit_pb2.AuditRecord:
        """A stored record, or StorageError: an undecodable one is this replica's damaged data (apply stops the node
        rather than reject commands on this replica only)."""
        try:
            return audit_pb2.AuditRecord.FromString(raw)
        except Exception as exc:
            raise StorageError(f"audit record {seq} cannot be decoded ({type(exc).__name__}): damaged") from None
