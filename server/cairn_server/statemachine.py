"""The replicated state machine: a deterministic, idempotent `apply(payload, index)` over RocksDB.

- Deterministic: every input (times, ids, limits) comes from the command, stamped by the leader.
- Idempotent: the applied index is written in the same WriteBatch as the effects and the dedup
  record; an entry at or below it is skipped (replay after restart or snapshot install).
- Never raises: an undecodable or failing command becomes a recorded rejection, because an
  exception here would wedge every replica on the same entry (trap 4 in DESIGN.md).
- One registry: each command kind (the `op` oneof of `Command`) has one apply handler, registered
  with `register`; this module holds the state operations, `runs.py` the workflow engine's and
  `periodic.py` the scheduled checkpoints.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator

from google.protobuf import timestamp_pb2

from cairn.v1 import state_pb2
from cairn_server.internal import command_pb2

from . import workflow
from .storage import Batch, RocksStore, StorageError
from .storage.keys import checkpoint_key, history_key, read_u64, u64, workflow_prefix

log = logging.getLogger(__name__)

OK, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, ABORTED, FAILED_PRECONDITION, INTERNAL = 0, 3, 5, 6, 10, 9, 13
APPLIED_KEY = b"applied_index"
DEFAULT_HISTORY_LIMIT = 100
DEFAULT_CHECKPOINT_LIMIT = 100
_DEDUP_PURGE_PER_APPLY = 64
_PLAIN, _ZLIB = b"\x00", b"\x01"
_EMPTY_STATE = state_pb2.WorkflowState()


Handler = Callable[[command_pb2.Command, Batch, int], command_pb2.ApplyResult]
# Called after a new version of a workflow is written, in the same batch (periodic checkpoints).
ChangeHook = Callable[[command_pb2.Command, Batch, state_pb2.WorkflowState], None]
ExecutedHook = Callable[[command_pb2.Command, command_pb2.ApplyResult, Batch, int], None]


def ts(ns: int) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(ns)
    return out


def reject(code: int, message: str, current_version: int = 0) -> command_pb2.ApplyResult:
    return command_pb2.ApplyResult(code=code, message=message, current_version=current_version)


def encode_checkpoint(cp: state_pb2.Checkpoint, compress: bool) -> bytes:
    raw = cp.SerializeToString(deterministic=True)
    return _ZLIB + zlib.compress(raw, 6) if compress else _PLAIN + raw


def decode_checkpoint(data: bytes) -> state_pb2.Checkpoint:
    body = zlib.decompress(data[1:]) if data[:1] == _ZLIB else data[1:]
    return state_pb2.Checkpoint.FromString(body)


def _exit(reason: str, code: int) -> None:
    log.critical("%s; stopping the node", reason)
    logging.shutdown()
    os._exit(code)


class StateMachine:
    """Owns the state column families of a RocksStore; apply runs on the Raft thread only."""

    def __init__(self, store: RocksStore, on_fatal: Callable[[str, int], None] | None = None):
        self.store = store
        self._on_fatal = on_fatal or _exit  # the node's: it also remembers a corruption for the next start
        raw = store.get("meta", APPLIED_KEY)
        self._applied = read_u64(raw) if raw else 0
        self._applied_cond = threading.Condition()
        self._handlers: dict[str, Handler] = {
            "persist": self._persist,
            "delete": self._delete,
            "checkpoint": self._checkpoint,
            "recover": self._recover,
        }
        self._change_hooks: list[ChangeHook] = []
        self._delete_hooks: list[Callable[[Batch, str], None]] = []
        self._checkpoint_hooks: list[Callable[[Batch, str], None]] = []
        self._committed_hooks: list[Callable[[], None]] = []
        self._reset_hooks: list[Callable[[], None]] = []
        self._executed_hooks: list[ExecutedHook] = []
        self._written_hooks: list[Callable[[Batch], None]] = []

    def fatal(self, reason: str, code: int) -> None:
        """Stop the node: this replica's data cannot be trusted (a module's hook found it damaged)."""
        self._on_fatal(reason, code)

    def register(self, op: str, handler: Handler) -> None:
        """The one place a replicated operation is wired: `op` is its name in Command's oneof."""
        if op not in {f.name for f in command_pb2.Command.DESCRIPTOR.oneofs_by_name["op"].fields}:
            raise ValueError(f"{op!r} is not a Command op")
        if op in self._handlers:
            raise ValueError(f"{op!r} already has a handler")
        self._handlers[op] = handler

    def on_change(self, hook: ChangeHook) -> None:
        self._change_hooks.append(hook)

    def on_committed(self, hook: Callable[[], None]) -> None:
        """Called after each applied entry is durable in the store (wake whoever waits for its effects)."""
        self._committed_hooks.append(hook)

    def on_executed(self, hook: ExecutedHook) -> None:
        """Called after each command's handler ran (not for a retry answered from its dedup record), with its
        result, in the same batch: the audit log appends its record there."""
        self._executed_hooks.append(hook)

    def on_written(self, hook: Callable[[Batch], None]) -> None:
        """Called with the batch that was just written (an entry's effects are durable in the store)."""
        self._written_hooks.append(hook)

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Called after a snapshot install replaced the state wholesale (reload anything cached from it)."""
        self._reset_hooks.append(hook)

    def on_delete(self, hook: Callable[[Batch, str], None]) -> None:
        """Called when a workflow is deleted, to drop the records other modules keep for it."""
        self._delete_hooks.append(hook)

    # ---- applied index -------------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        return self._applied

    def _advance(self, index: int) -> None:
        with self._applied_cond:
            self._applied = index
            self._applied_cond.notify_all()

    def skip(self, index: int) -> None:
        """An entry without effect on the state (pysyncobj's no-op): the applied index moves, in memory only."""
        if index > self._applied:
            self._advance(index)

    def reset_applied(self, index: int) -> None:
        """After a snapshot install replaced the state wholesale."""
        for hook in self._reset_hooks:
            hook()
        self._advance(index)

    def wait_applied(self, index: int, timeout: float) -> bool:
        with self._applied_cond:
            return self._applied_cond.wait_for(lambda: self._applied >= index, timeout)

    # ---- apply ---------------------------------------------------------------------------------

    def apply(self, payload: bytes, index: int) -> command_pb2.ApplyResult:
        if index <= self._applied:
            return self._replayed(payload)
        try:
            cmd = command_pb2.Command.FromString(payload)
        except Exception:  # any garbage must become a rejection, not a wedge
            log.error("entry %d is not a Cairn command; recorded as rejected", index)
            return self._commit(self.store.batch(), index, reject(INVALID_ARGUMENT, "undecodable command"))
        if cmd.WhichOneof("op") == "barrier":
            self._advance(index)  # nothing to persist: replaying a barrier is harmless
            return command_pb2.ApplyResult(code=OK)
        if cmd.WhichOneof("op") == "group":
            return self._apply_group(cmd, index)
        batch = self.store.batch()
        try:
            result = self.dedup_result(cmd)
            # Purge first: a WriteBatch applies in order, so a request id recorded again below (reused after
            # its window) is not deleted with its own expired record.
            self._purge_dedup(cmd.time_ns, batch)
            if result is None:
                result = self._execute(cmd, batch, index)
                self._record_dedup(cmd, result, batch)
        except StorageError as exc:
            # The disk, not the command: a rejection here would let this replica diverge from the others.
            self._on_fatal(f"RocksDB read failed while applying entry {index} ({exc})", 74)
        except Exception as exc:  # see module docstring
            log.exception("apply of entry %d failed; recorded as rejected", index)
            batch = self.store.batch()
            result = reject(INTERNAL, f"apply failed: {type(exc).__name__}")
        return self._commit(batch, index, result)

    def _apply_group(self, group: command_pb2.Command, index: int) -> command_pb2.ApplyResult:
        """Every command of a group, in order, into one write batch (the group shares one index).

        The leader groups only writes to distinct workflows with distinct request ids, so each command reads the
        state as it was before the group and none sees another's effects: the same outcome as one entry each.
        Expired dedup records are purged once, first, by the group's clock. A command that raises (a bug, as in
        `apply`) is recorded as rejected and the batch is rebuilt without it, so the others still take effect."""
        commands = list(group.group.commands)
        failed: dict[int, str] = {}
        while True:
            batch = self.store.batch()
            results: list[command_pb2.ApplyResult] = []
            try:
                self._purge_dedup(group.time_ns, batch)
                for n, cmd in enumerate(commands):
                    if n in failed:
                        results.append(reject(INTERNAL, f"apply failed: {failed[n]}"))
                        continue
                    try:
                        result = self.dedup_result(cmd)
                        if result is None:
                            result = self._execute(cmd, batch, index)
                            self._record_dedup(cmd, result, batch)
                    except StorageError:
                        raise
                    except Exception as exc:
                        log.exception("apply of command %d of group entry %d failed; recorded as rejected", n, index)
                        failed[n] = type(exc).__name__
                        break
                    results.append(result)
                else:
                    break
            except StorageError as exc:
                self._on_fatal(f"RocksDB read failed while applying entry {index} ({exc})", 74)
                return reject(INTERNAL, "storage failed")  # only when on_fatal returns (tests): nothing written
        outcome = command_pb2.ApplyResult(code=OK)
        outcome.group.results.extend(results)
        return self._commit(batch, index, outcome)

    def _commit(self, batch: Batch, index: int, result: command_pb2.ApplyResult) -> command_pb2.ApplyResult:
        batch.put("meta", APPLIED_KEY, u64(index))
        try:
            self.store.write(batch)
        except Exception as exc:
            # The disk refused a write: continuing would leave this replica silently behind.
            self._on_fatal(f"RocksDB write failed at index {index} ({exc})", 75)
        for written in self._written_hooks:
            written(batch)
        self._advance(index)
        for hook in self._committed_hooks:
            hook()
        return result

    def _replayed(self, payload: bytes) -> command_pb2.ApplyResult:
        """An entry already in the state: answer with its recorded result if we have one."""
        try:
            cmd = command_pb2.Command.FromString(payload)
        except Exception:
            return reject(INVALID_ARGUMENT, "undecodable command")
        if cmd.WhichOneof("op") == "group":
            outcome = command_pb2.ApplyResult(code=OK)
            outcome.group.results.extend(self._replayed_one(sub) for sub in cmd.group.commands)
            return outcome
        return self._replayed_one(cmd)

    def _replayed_one(self, cmd: command_pb2.Command) -> command_pb2.ApplyResult:
        hit = self.dedup_result(cmd)
        return hit if hit is not None else command_pb2.ApplyResult(code=OK)

    def dedup_result(self, cmd: command_pb2.Command) -> command_pb2.ApplyResult | None:
        if not cmd.request_id:
            return None
        raw = self.store.get("dedup", cmd.request_id.encode())
        if raw is None:
            return None
        record = command_pb2.DedupRecord.FromString(raw)
        if record.expires_ns <= cmd.time_ns:
            return None
        if record.body_hash != cmd.body_hash:
            return reject(
                FAILED_PRECONDITION, f"request_id {cmd.request_id!r} was already used for a different request"
            )
        return self._expand(record.result)

    def _expand(self, result: command_pb2.ApplyResult) -> command_pb2.ApplyResult:
        """Refill what the dedup record left out, when the stored data still is what was returned."""
        kind = result.WhichOneof("value")
        if kind in ("state", "task"):
            target = result.state if kind == "state" else result.task.state
            current = self.get_state(target.workflow_id)
            if current is not None and current.version == target.version:
                target.CopyFrom(current)
        elif kind == "checkpoint":
            cp = self.get_checkpoint(result.checkpoint.workflow_id, result.checkpoint.id)
            if cp is not None:
                result.checkpoint.CopyFrom(cp)
        return result

    def _record_dedup(self, cmd: command_pb2.Command, result: command_pb2.ApplyResult, batch: Batch) -> None:
        if not cmd.request_id or cmd.dedup_expires_ns <= cmd.time_ns:
            return
        if result.code != OK and cmd.WhichOneof("op") == "claim_run":
            return  # a poll tries run after run under one request id; only the claim that happened counts
        # Kept small: a retry gets the variables back from the state (or checkpoint) it refers to.
        compact = command_pb2.ApplyResult()
        compact.CopyFrom(result)
        if compact.WhichOneof("value") == "state":
            compact.state.ClearField("variables")
            compact.state.ClearField("run")
        elif compact.WhichOneof("value") == "checkpoint":
            compact.checkpoint.ClearField("state")
        elif compact.WhichOneof("value") == "task":
            compact.task.state.ClearField("variables")
            compact.task.state.ClearField("run")
        record = command_pb2.DedupRecord(body_hash=cmd.body_hash, expires_ns=cmd.dedup_expires_ns, result=compact)
        rid = cmd.request_id.encode()
        batch.put("dedup", rid, record.SerializeToString(deterministic=True))
        batch.put("dedup_exp", u64(cmd.dedup_expires_ns) + rid, b"")

    def _purge_dedup(self, now_ns: int, batch: Batch) -> None:
        """Drop a bounded number of expired dedup records, by the command's own clock."""
        for n, (key, _) in enumerate(self.store.scan("dedup_exp")):
            expires = read_u64(key[:8])
            if expires > now_ns or n >= _DEDUP_PURGE_PER_APPLY:
                return
            rid = key[8:]
            raw = self.store.get("dedup", rid)
            if raw is not None and command_pb2.DedupRecord.FromString(raw).expires_ns == expires:
                batch.delete("dedup", rid)
            batch.delete("dedup_exp", key)

    def _execute(self, cmd: command_pb2.Command, batch: Batch, index: int) -> command_pb2.ApplyResult:
        op = cmd.WhichOneof("op")
        handler = self._handlers.get(op or "")
        if handler is None:
            return reject(INVALID_ARGUMENT, f"unknown command {op!r}")
        result = handler(cmd, batch, index)
        for hook in self._executed_hooks:
            hook(cmd, result, batch, index)
        return result

    # ---- the operations ------------------------------------------------------------------------

    @staticmethod
    def _cas_failure(
        current: state_pb2.WorkflowState | None, has_expected: bool, expected: int
    ) -> command_pb2.ApplyResult | None:
        if not has_expected:
            return None
        version = current.version if current is not None else 0
        if version == expected:
            return None
        what = f"is at version {version}" if current is not None else "does not exist"
        return reject(ABORTED, f"version conflict: expected version {expected}, but the workflow {what}", version)

    def _write_new_version(
        self,
        cmd: command_pb2.Command,
        batch: Batch,
        workflow_id: str,
        current: state_pb2.WorkflowState | None,
        step: str,
        variables,
        labels,
        change: state_pb2.StateChange,
        run: state_pb2.WorkflowRun | None = None,
    ) -> command_pb2.ApplyResult:
        """Write the next version (state, history entry, trimmed history) into `batch`.

        `run` replaces the run fields; by default the current ones are kept (a persist_state on a run
        changes its variables, never its execution)."""
        version = (current.version if current is not None else 0) + 1
        state = state_pb2.WorkflowState(workflow_id=workflow_id, version=version, current_step=step)
        state.variables.CopyFrom(variables)
        state.metadata.labels.update(labels)
        state.metadata.created_at.CopyFrom(current.metadata.created_at if current else ts(cmd.time_ns))
        state.metadata.updated_at.CopyFrom(ts(cmd.time_ns))
        if current is not None and current.HasField("checkpoint"):
            state.checkpoint.CopyFrom(current.checkpoint)
        if run is not None:
            state.run.CopyFrom(run)
        elif current is not None and current.HasField("run"):
            state.run.CopyFrom(current.run)
        state.metadata.checksum = workflow.checksum(state)
        state.metadata.size_bytes = state.ByteSize()
        change.version = version
        change.step = step
        change.changed_keys[:] = workflow.changed_keys(current.variables if current else None, variables)
        change.time.CopyFrom(ts(cmd.time_ns))
        change.request_id = cmd.request_id
        if state.HasField("run"):
            change.attempt, change.fencing_token = state.run.attempt, state.run.fencing_token
        batch.put("state", workflow_id.encode(), state.SerializeToString(deterministic=True))
        batch.put("history", history_key(workflow_id, version), change.SerializeToString(deterministic=True))
        limit = cmd.history_limit or DEFAULT_HISTORY_LIMIT
        if version > limit:
            batch.delete_range("history", history_key(workflow_id, 0), history_key(workflow_id, version - limit + 1))
        for hook in self._change_hooks:
            hook(cmd, batch, state)
        return command_pb2.ApplyResult(code=OK, current_version=version, state=state)

    def write_version(
        self,
        cmd: command_pb2.Command,
        batch: Batch,
        current: state_pb2.WorkflowState | None,
        *,
        workflow_id: str,
        change: state_pb2.StateChange,
        run: state_pb2.WorkflowRun,
        step: str | None = None,
        variables=None,
        labels=None,
    ) -> command_pb2.ApplyResult:
        """The engine's writes: a new version with new run fields, the rest kept unless given."""
        return self._write_new_version(
            cmd,
            batch,
            workflow_id,
            current,
            step if step is not None else (current.current_step if current else ""),
            variables if variables is not None else (current.variables if current else _EMPTY_STATE.variables),
            labels if labels is not None else (current.metadata.labels if current else {}),
            change,
            run,
        )

    def _persist(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.persist
        current = self.get_state(op.workflow_id)
        conflict = self._cas_failure(current, op.HasField("expected_version"), op.expected_version)
        if conflict:
            return conflict
        if refused := self._unconditional_refused(cmd, current, op.HasField("expected_version")):
            return refused
        change = state_pb2.StateChange(kind=state_pb2.PERSIST)
        return self._write_new_version(
            cmd, batch, op.workflow_id, current, op.current_step, op.variables, op.labels, change
        )

    def _recover(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.recover
        current = self.get_state(op.workflow_id)
        if self.store.get("checkpoint", checkpoint_key(op.workflow_id, op.checkpoint_id)) is None:
            return reject(
                NOT_FOUND,
                f"checkpoint {op.checkpoint_id!r} of workflow {op.workflow_id!r} no longer exists",
                current.version if current else 0,
            )
        conflict = self._cas_failure(current, op.HasField("expected_version"), op.expected_version)
        if conflict:
            return conflict
        if refused := self._unconditional_refused(cmd, current, op.HasField("expected_version")):
            return refused
        change = state_pb2.StateChange(kind=state_pb2.RECOVER, checkpoint_id=op.checkpoint_id)
        run = None
        if op.HasField("run") and current is not None and current.HasField("run"):
            # The checkpoint's steps come back; status, attempt and lease stay the run's own.
            run = state_pb2.WorkflowRun()
            run.CopyFrom(current.run)
            del run.steps[:]
            run.steps.extend(op.run.steps)
        return self._write_new_version(
            cmd, batch, op.workflow_id, current, op.current_step, op.variables, op.labels, change, run
        )

    @staticmethod
    def _unconditional_refused(
        cmd: command_pb2.Command, current: state_pb2.WorkflowState | None, has_expected: bool
    ) -> command_pb2.ApplyResult | None:
        """synchronization.conflict_resolution: reject refuses an update that does not say which version it
        replaces (creating a workflow needs no version)."""
        if not cmd.require_expected_version or has_expected or current is None:
            return None
        return reject(
            FAILED_PRECONDITION,
            f"workflow {current.workflow_id!r} exists (version {current.version}) and this cluster refuses updates "
            "without expected_version (synchronization.conflict_resolution: reject)",
            current.version,
        )

    def _delete(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.delete
        current = self.get_state(op.workflow_id)
        if current is None:
            return reject(NOT_FOUND, f"workflow {op.workflow_id!r} does not exist")
        conflict = self._cas_failure(current, op.HasField("expected_version"), op.expected_version)
        if conflict:
            return conflict
        prefix = workflow_prefix(op.workflow_id)
        checkpoints = sum(1 for _ in self.store.scan("checkpoint", prefix))
        batch.delete("state", op.workflow_id.encode())
        batch.delete_prefix("history", prefix)
        batch.delete_prefix("checkpoint", prefix)
        for hook in self._delete_hooks:
            hook(batch, op.workflow_id)
        return command_pb2.ApplyResult(
            code=OK,
            current_version=0,
            deleted=command_pb2.DeleteResult(deleted_version=current.version, deleted_checkpoints=checkpoints),
        )

    def _checkpoint(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.checkpoint
        current = self.get_state(op.workflow_id)
        if current is None:
            return reject(NOT_FOUND, f"workflow {op.workflow_id!r} does not exist")
        cp = self.take_checkpoint(cmd, batch, current, op.checkpoint_id, op.compress, op.retain_after_ns)
        return command_pb2.ApplyResult(code=OK, current_version=current.version, checkpoint=cp)

    def take_checkpoint(
        self,
        cmd: command_pb2.Command,
        batch: Batch,
        current: state_pb2.WorkflowState,
        checkpoint_id: str,
        compress: bool,
        retain_after_ns: int,
    ) -> state_pb2.Checkpoint:
        """Capture `current` (manual or periodic checkpoint), apply retention, point the state at it."""
        captured = state_pb2.WorkflowState()
        captured.CopyFrom(current)
        captured.ClearField("checkpoint")
        wid = current.workflow_id
        cp = state_pb2.Checkpoint(
            id=checkpoint_id,
            workflow_id=wid,
            timestamp=ts(cmd.time_ns),
            state=captured,
            checksum=workflow.checksum(captured),
            version=current.version,
        )
        batch.put("checkpoint", checkpoint_key(wid, checkpoint_id), encode_checkpoint(cp, compress))
        # Retention: ids sort by creation time, so the oldest come first.
        existing = [
            (k, decode_checkpoint(v).timestamp.ToNanoseconds())
            for k, v in self.store.scan("checkpoint", workflow_prefix(wid))
        ]
        limit = cmd.checkpoint_limit or DEFAULT_CHECKPOINT_LIMIT
        excess = len(existing) + 1 - limit
        for n, (key, taken_ns) in enumerate(existing):
            if n < excess or taken_ns < retain_after_ns:
                batch.delete("checkpoint", key)
        current.checkpoint.CopyFrom(state_pb2.CheckpointRef(id=cp.id, version=cp.version, timestamp=cp.timestamp))
        batch.put("state", wid.encode(), current.SerializeToString(deterministic=True))
        for hook in self._checkpoint_hooks:
            hook(batch, wid)
        return cp

    def on_checkpoint(self, hook: Callable[[Batch, str], None]) -> None:
        """Called when a checkpoint of a workflow is taken (the periodic schedule restarts from it)."""
        self._checkpoint_hooks.append(hook)

    # ---- reads (any thread) --------------------------------------------------------------------

    def get_state(self, workflow_id: str) -> state_pb2.WorkflowState | None:
        raw = self.store.get("state", workflow_id.encode())
        return state_pb2.WorkflowState.FromString(raw) if raw is not None else None

    def history(self, workflow_id: str) -> list[state_pb2.StateChange]:
        return [
            state_pb2.StateChange.FromString(v) for _, v in self.store.scan("history", workflow_prefix(workflow_id))
        ]

    def list_workflows(
        self, prefix: str, limit: int, after: str, keep: Callable[[str], bool] | None = None
    ) -> tuple[list[state_pb2.WorkflowState], str]:
        """A page of workflows; `keep(workflow_id)` leaves out the ones the caller may not see."""
        out: list[state_pb2.WorkflowState] = []
        for state in self.iter_workflows(prefix, after):
            if keep is not None and not keep(state.workflow_id):
                continue
            if len(out) == limit:
                return out, out[-1].workflow_id
            out.append(state)
        return out, ""

    def iter_workflows(self, prefix: str, after: str = "") -> Iterator[state_pb2.WorkflowState]:
        """Every workflow whose id starts with `prefix`, in id order, after `after` if given."""
        start = (after.encode() + b"\x00") if after else prefix.encode()
        for _, value in self.store.scan("state", prefix.encode(), start=start):
            yield state_pb2.WorkflowState.FromString(value)

    def checkpoints(self, workflow_id: str) -> list[state_pb2.Checkpoint]:
        return [decode_checkpoint(v) for _, v in self.store.scan("checkpoint", workflow_prefix(workflow_id))]

    def get_checkpoint(self, workflow_id: str, checkpoint_id: str) -> state_pb2.Checkpoint | None:
        raw = self.store.get("checkpoint", checkpoint_key(workflow_id, checkpoint_id))
        return decode_checkpoint(raw) if raw is not None else None

    def workflow_records(self, workflow_id: str) -> Iterator[tuple[str, bytes, bytes]]:
        state = self.store.get("state", workflow_id.encode())
        if state is not None:
            yield "state", workflow_id.encode(), state
        prefix = workflow_prefix(workflow_id)
        for cf in ("history", "checkpoint"):
            for key, value in self.store.scan(cf, prefix):
                yield cf, key, value

    def digest(self, workflow_id: str) -> tuple[bool, int, str]:
        """(exists, version, SHA-256 over every stored record of the workflow) for replica comparison.

        The lease and checkpoint-schedule records are left out: heartbeats and the scheduler move them without
        a new version, so two replicas at one version could differ there without diverging."""
        h = hashlib.sha256()
        version, exists = 0, False
        for cf, key, value in self.workflow_records(workflow_id):
            if cf == "state":
                exists = True
                version = state_pb2.WorkflowState.FromString(value).version
            for part in (cf.encode(), key, value):
                h.update(u64(len(part)) + part)
        return exists, version, h.hexdigest()
