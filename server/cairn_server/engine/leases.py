"""Leases: who may write for a running workflow, until when, and what happens when a lease expires.

- A claim (ClaimRunOp) takes the first ready run of the queue and leases it: the fencing token is the
  Raft index of the claim entry, so it strictly rises across every lease a run ever gets; the expiry is
  the leader's clock plus the requested duration, stamped before proposing.
- Records: `lease` (workflow id -> cairn.v1.Lease) and the due-time index `lease_due` (expiry, id).
  A heartbeat moves both; no new version is written (a heartbeat changes nothing a reader sees but the
  expiry).
- Fencing: every worker write names its token; it is accepted only while the run is RUNNING under that
  token and the command's time (the leader's stamp) is not past the lease's expiry. Anything else is
  FAILED_PRECONDITION "lease lost" and changes nothing. A heartbeat renews a lease that has not been
  expired yet (its record still exists), even past its stamped expiry: after a leader change the election
  can outlast what was left of a lease, and the new leader's grace keeps it from being expired meanwhile;
  a renewed lease is still the only lease of the run.
- Expiry (ExpireLeasesOp, proposed by the leader's scheduler from `lease_due`): a lease whose token still
  matches and whose expiry the command's time has reached ends; the run goes back to PENDING with
  attempt + 1 (recovery.auto_recovery) or to QUARANTINED (auto_recovery off, or max_attempts used), and
  in checkpoint mode (recovery.resume_from) its state is first restored to its latest checkpoint.
  Apply compares only the command's stamped time with the stored expiry, never its own clock, and skips a
  lease whose expiry a heartbeat moved after the leader decided (the entry names the expiry it saw).
- When to propose an expiry is the leader's decision (scheduler.py), made on its monotonic clock so that a
  wall-clock skew or jump cannot expire a lease early: `RenewalTimes` remembers when this node applied
  each lease's latest grant or extension, which is after its worker sent it, and the scheduler waits a
  full lease duration from there, besides the leader-change grace (a full duration after taking office).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from cairn.v1 import state_pb2, workflow_pb2
from cairn.wire import REASON_LEASE_LOST
from cairn_server.internal import command_pb2

from ..statemachine import FAILED_PRECONDITION, NOT_FOUND, OK, StateMachine, reject
from ..storage import Batch, RocksStore
from ..storage.keys import due_key
from . import queue
from .due import due_entries
from .policy import after_failed_attempt


def get_lease(store: RocksStore, workflow_id: str) -> workflow_pb2.Lease | None:
    raw = store.get("lease", workflow_id.encode())
    return workflow_pb2.Lease.FromString(raw) if raw is not None else None


def put_lease(batch: Batch, workflow_id: str, lease: workflow_pb2.Lease, previous: workflow_pb2.Lease | None) -> None:
    if previous is not None:
        batch.delete("lease_due", due_key(previous.expires_at.ToNanoseconds(), workflow_id))
    batch.put("lease", workflow_id.encode(), lease.SerializeToString(deterministic=True))
    batch.put("lease_due", due_key(lease.expires_at.ToNanoseconds(), workflow_id), b"")


def drop_lease(batch: Batch, store: RocksStore, workflow_id: str) -> None:
    lease = get_lease(store, workflow_id)
    if lease is not None:
        batch.delete("lease_due", due_key(lease.expires_at.ToNanoseconds(), workflow_id))
        batch.delete("lease", workflow_id.encode())


def due_leases(store: RocksStore, now_ns: int, limit: int) -> list[tuple[int, str]]:
    """(expiry, workflow id) of leases expired at `now_ns`, earliest first: a seek, not a scan of all runs."""
    return due_entries(store, "lease_due", now_ns, limit)


def _lost(message: str, version: int = 0) -> command_pb2.ApplyResult:
    result = reject(FAILED_PRECONDITION, f"lease lost: {message}", version)
    result.reason = REASON_LEASE_LOST
    return result


def lease_lost(
    store: RocksStore,
    state: state_pb2.WorkflowState | None,
    workflow_id: str,
    token: int,
    now_ns: int,
    *,
    renewing: bool = False,
) -> command_pb2.ApplyResult | None:
    """None when the writer holds the run's live lease under `token`; otherwise the precise refusal.

    A write needs the lease unexpired at the command's time. A renewal (heartbeat) needs only that the lease
    still exists: until the leader's ExpireLeasesOp removes it, nobody else can hold the run, and a leader
    change can leave a live worker's lease past its stamped expiry while the new leader waits out its grace.
    """
    if state is None:
        return reject(NOT_FOUND, f"workflow {workflow_id!r} does not exist")
    if not state.HasField("run"):
        return reject(FAILED_PRECONDITION, f"workflow {workflow_id!r} is not a workflow run")
    run = state.run
    if run.status != state_pb2.RUNNING:
        return _lost(f"run {workflow_id!r} is {state_pb2.RunStatus.Name(run.status)}, not RUNNING", state.version)
    if token != run.fencing_token:
        return _lost(
            f"fencing token {token} is stale; run {workflow_id!r} is leased under {run.fencing_token}", state.version
        )
    lease = get_lease(store, workflow_id)
    if lease is None or (not renewing and now_ns > lease.expires_at.ToNanoseconds()):
        return _lost(f"the lease on run {workflow_id!r} has expired", state.version)
    return None


class RenewalTimes:
    """Monotonic time at which this node applied each lease's current expiry. Not replicated and never read
    by apply: only the leader's scheduler uses it, to decide when an expiry may be proposed."""

    def __init__(self, limit: int = 200_000):
        self._at: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._limit = limit  # a forgotten lease only falls back to the leader-change grace
        self._lock = threading.Lock()

    def note(self, workflow_id: str, expires_ns: int) -> None:
        with self._lock:
            self._at[workflow_id] = (expires_ns, time.monotonic())
            self._at.move_to_end(workflow_id)
            while len(self._at) > self._limit:
                self._at.popitem(last=False)

    def elapsed(self, workflow_id: str, expires_ns: int) -> float | None:
        """Seconds since this node applied the lease with this expiry; None if it has not seen that one."""
        with self._lock:
            seen = self._at.get(workflow_id)
        if seen is None or seen[0] != expires_ns:
            return None
        return time.monotonic() - seen[1]


class LeaseOps:
    """Apply handlers for claim, heartbeat and expiry."""

    def __init__(self, machine: StateMachine, renewals: RenewalTimes | None = None):
        self.m = machine
        self.store = machine.store
        self.renewals = renewals if renewals is not None else RenewalTimes()

    def install(self) -> None:
        self.m.register("claim_run", self.claim)
        self.m.register("heartbeat", self.heartbeat)
        self.m.register("expire_leases", self.expire)
        self.m.on_delete(lambda batch, wid: drop_lease(batch, self.store, wid))

    def claim(self, cmd: command_pb2.Command, batch: Batch, index: int) -> command_pb2.ApplyResult:
        op = cmd.claim_run
        state = self.m.get_state(op.workflow_id)
        if state is None or not state.HasField("run"):
            return reject(NOT_FOUND, f"run {op.workflow_id!r} does not exist")
        run = state.run
        if run.status != state_pb2.PENDING or run.ready_at.ToNanoseconds() > cmd.time_ns:
            return reject(
                FAILED_PRECONDITION,
                f"run {op.workflow_id!r} is not claimable ({state_pb2.RunStatus.Name(run.status)})",
                state.version,
            )
        queue.dequeue(batch, run.workflow_type, run.ready_at.ToNanoseconds(), op.workflow_id)
        new_run = state_pb2.WorkflowRun()
        new_run.CopyFrom(run)
        new_run.status = state_pb2.RUNNING
        new_run.fencing_token = index
        new_run.lease_holder = op.worker_id
        lease = workflow_pb2.Lease(
            lease_id=op.lease_id,
            fencing_token=index,
            worker_id=op.worker_id,
            duration_ms=op.duration_ns // 1_000_000,
        )
        lease.granted_at.FromNanoseconds(cmd.time_ns)
        lease.expires_at.FromNanoseconds(op.expires_ns)
        put_lease(batch, op.workflow_id, lease, get_lease(self.store, op.workflow_id))
        self.renewals.note(op.workflow_id, op.expires_ns)
        change = state_pb2.StateChange(kind=state_pb2.RUN_CLAIMED)
        result = self.m.write_version(cmd, batch, state, workflow_id=op.workflow_id, change=change, run=new_run)
        return command_pb2.ApplyResult(
            code=OK, current_version=result.current_version, task=workflow_pb2.WorkTask(state=result.state, lease=lease)
        )

    def heartbeat(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        outcome = command_pb2.HeartbeatOutcome()
        for ref in cmd.heartbeat.leases:
            result = workflow_pb2.HeartbeatResult(workflow_id=ref.workflow_id, fencing_token=ref.fencing_token)
            state = self.m.get_state(ref.workflow_id)
            refused = lease_lost(self.store, state, ref.workflow_id, ref.fencing_token, cmd.time_ns, renewing=True)
            if refused is not None:
                result.error = refused.message
            else:
                lease = get_lease(self.store, ref.workflow_id)
                assert lease is not None  # lease_lost checked it
                extended = workflow_pb2.Lease()
                extended.CopyFrom(lease)
                extended.expires_at.FromNanoseconds(cmd.time_ns + lease.duration_ms * 1_000_000)
                put_lease(batch, ref.workflow_id, extended, lease)
                self.renewals.note(ref.workflow_id, extended.expires_at.ToNanoseconds())
                result.extended = True
                result.expires_at.CopyFrom(extended.expires_at)
            outcome.results.append(result)
        return command_pb2.ApplyResult(code=OK, heartbeat=outcome)

    def expire(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        outcome = command_pb2.BatchOutcome()
        for entry in cmd.expire_leases.leases:
            if self._expire_one(cmd, batch, entry):
                outcome.applied += 1
            else:
                outcome.skipped += 1
        return command_pb2.ApplyResult(code=OK, batch=outcome)

    def _expire_one(self, cmd: command_pb2.Command, batch: Batch, entry: command_pb2.ExpiredLease) -> bool:
        wid = entry.workflow_id
        state = self.m.get_state(wid)
        lease = get_lease(self.store, wid)
        if (
            state is None
            or lease is None
            or not state.HasField("run")
            or state.run.status != state_pb2.RUNNING
            or state.run.fencing_token != entry.fencing_token
            or lease.fencing_token != entry.fencing_token
            or cmd.time_ns < lease.expires_at.ToNanoseconds()
            or (entry.expires_ns and entry.expires_ns != lease.expires_at.ToNanoseconds())
        ):
            return False  # extended, finished or already expired since the leader looked: nothing to do
        drop_lease(batch, self.store, wid)
        run = state_pb2.WorkflowRun()
        run.CopyFrom(state.run)
        step, variables, labels = state.current_step, state.variables, state.metadata.labels
        change = state_pb2.StateChange(kind=state_pb2.LEASE_EXPIRED)
        if entry.HasField("restore"):
            # recovery.resume_from: checkpoint -- back to the checkpoint; the steps after it run again.
            cp_state = entry.restore.state
            step, variables, labels = cp_state.current_step, cp_state.variables, cp_state.metadata.labels
            del run.steps[:]
            run.steps.extend(cp_state.run.steps)
            change.checkpoint_id = entry.restore.id
        error = f"lease of worker {lease.worker_id!r} expired (attempt {run.attempt})"
        if cmd.policy.auto_recovery:
            after_failed_attempt(run, cmd.policy, cmd.time_ns, error, crashed=True)
        else:
            run.last_error = f"{error}; recovery.auto_recovery is off: release it to run it again"
            run.status = state_pb2.QUARANTINED
        if run.status == state_pb2.PENDING:
            queue.enqueue(batch, run.workflow_type, run.ready_at.ToNanoseconds(), wid)
        self.m.write_version(
            cmd, batch, state, workflow_id=wid, change=change, run=run, step=step, variables=variables, labels=labels
        )
        return True
