"""Checkpoints at intervals: checkpointing.interval and checkpointing.every_versions.

Records: `cp_sched` (workflow id -> due time, 8 bytes) and the due-time index `cp_due` (due time, id).
A workflow is scheduled when it changes (in the same batch as the change) and only if it is not already
scheduled earlier; a checkpoint of it, manual or periodic, clears its schedule. So an idle workflow
costs nothing per tick, and a workflow is checkpointed only if it changed since its last checkpoint.

Due time after a change at `now`: with `interval`, the last checkpoint's time + interval (now + interval
when it has none), never before now; with `every_versions` N, now once the version is N past the last
checkpoint's. The leader's scheduler proposes PeriodicCheckpointsOp for entries due; apply takes one
only if the scheduled due time is still the one the leader saw, so a leader change (or a re-proposal)
never takes two checkpoints for one due time.
"""

from __future__ import annotations

from cairn.v1 import state_pb2
from cairn_server.internal import command_pb2

from ..statemachine import OK, StateMachine
from ..storage import Batch, RocksStore
from ..storage.keys import due_key, read_u64, u64
from .due import due_entries


def scheduled_due(store: RocksStore, workflow_id: str) -> int | None:
    raw = store.get("cp_sched", workflow_id.encode())
    return read_u64(raw) if raw is not None else None


def due_checkpoints(store: RocksStore, now_ns: int, limit: int) -> list[tuple[int, str]]:
    """(due time, workflow id) of checkpoints due at `now_ns`, earliest first."""
    return due_entries(store, "cp_due", now_ns, limit)


def next_due(policy: command_pb2.Policy, state: state_pb2.WorkflowState, now_ns: int) -> int | None:
    """When `state` (just written at `now_ns`) should be checkpointed; None: no periodic checkpoint."""
    if not policy.checkpoints_enabled:
        return None
    has_cp = state.HasField("checkpoint") and bool(state.checkpoint.id)
    candidates = []
    if policy.checkpoint_every_versions:
        base = state.checkpoint.version if has_cp else 0
        if state.version - base >= policy.checkpoint_every_versions:
            candidates.append(now_ns)
    if policy.checkpoint_interval_ns:
        since = state.checkpoint.timestamp.ToNanoseconds() if has_cp else now_ns
        candidates.append(max(now_ns, since + policy.checkpoint_interval_ns))
    return min(candidates) if candidates else None


class PeriodicCheckpoints:
    def __init__(self, machine: StateMachine):
        self.m = machine
        self.store = machine.store

    def install(self) -> None:
        self.m.register("periodic_checkpoints", self.apply)
        self.m.on_change(self.schedule)
        self.m.on_checkpoint(self.clear)
        self.m.on_delete(self.clear)

    def schedule(self, cmd: command_pb2.Command, batch: Batch, state: state_pb2.WorkflowState) -> None:
        due = next_due(cmd.policy, state, cmd.time_ns)
        if due is None:
            return
        wid = state.workflow_id
        current = scheduled_due(self.store, wid)
        if current is not None and current <= due:
            return
        if current is not None:
            batch.delete("cp_due", due_key(current, wid))
        batch.put("cp_sched", wid.encode(), u64(due))
        batch.put("cp_due", due_key(due, wid), b"")

    def clear(self, batch: Batch, workflow_id: str) -> None:
        current = scheduled_due(self.store, workflow_id)
        if current is not None:
            batch.delete("cp_due", due_key(current, workflow_id))
            batch.delete("cp_sched", workflow_id.encode())

    def apply(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.periodic_checkpoints
        outcome = command_pb2.BatchOutcome()
        handled: set[str] = set()  # reads see the store, not this batch: one entry per workflow per op
        for due in op.due:
            if due.workflow_id in handled or scheduled_due(self.store, due.workflow_id) != due.due_ns:
                outcome.skipped += 1  # already taken for this due time, or rescheduled/deleted since
                continue
            state = self.m.get_state(due.workflow_id)
            if state is None:
                outcome.skipped += 1
                continue
            if state.HasField("checkpoint") and state.checkpoint.version == state.version:
                self.clear(batch, due.workflow_id)  # unchanged since its last checkpoint
                outcome.skipped += 1
                continue
            self.m.take_checkpoint(cmd, batch, state, due.checkpoint_id, op.compress, op.retain_after_ns)
            handled.add(due.workflow_id)
            outcome.applied += 1
        return command_pb2.ApplyResult(code=OK, batch=outcome)
