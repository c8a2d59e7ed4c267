"""The run lifecycle as apply handlers: start, record a step, complete, fail an attempt, cancel, release.

A run is the workflow's own state: each of these writes a new version (history entry, checksum, the
periodic-checkpoint schedule) through StateMachine.write_version, with the run fields changed. Worker
writes are fenced (leases.lease_lost); a recorded step is never replaced.
"""

from __future__ import annotations

from cairn.v1 import state_pb2
from cairn_server.internal import command_pb2

from ..statemachine import ALREADY_EXISTS, FAILED_PRECONDITION, NOT_FOUND, StateMachine, reject
from ..storage import Batch
from . import queue
from .leases import drop_lease, lease_lost
from .policy import after_failed_attempt

_LIVE = (state_pb2.PENDING, state_pb2.RUNNING, state_pb2.QUARANTINED)


def _status(run: state_pb2.WorkflowRun) -> str:
    return state_pb2.RunStatus.Name(run.status)


class RunOps:
    def __init__(self, machine: StateMachine):
        self.m = machine
        self.store = machine.store

    def install(self) -> None:
        self.m.register("start_run", self.start)
        self.m.register("record_step", self.record_step)
        self.m.register("complete_run", self.complete)
        self.m.register("fail_run", self.fail)
        self.m.register("cancel_run", self.cancel)
        self.m.register("release_run", self.release)
        self.m.on_delete(self._forget)

    def _forget(self, batch: Batch, workflow_id: str) -> None:
        state = self.m.get_state(workflow_id)
        if state is not None and state.HasField("run") and state.run.status == state_pb2.PENDING:
            queue.dequeue(batch, state.run.workflow_type, state.run.ready_at.ToNanoseconds(), workflow_id)

    def _copy_run(self, state: state_pb2.WorkflowState) -> state_pb2.WorkflowRun:
        run = state_pb2.WorkflowRun()
        run.CopyFrom(state.run)
        return run

    # ---- client operations -----------------------------------------------------------------------

    def start(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.start_run
        current = self.m.get_state(op.workflow_id)
        if current is not None:
            return reject(
                ALREADY_EXISTS,
                f"workflow {op.workflow_id!r} already exists (version {current.version}); a start is refused",
                current.version,
            )
        run = state_pb2.WorkflowRun(workflow_type=op.workflow_type, status=state_pb2.PENDING, attempt=1)
        run.input.CopyFrom(op.input)
        run.started_at.FromNanoseconds(cmd.time_ns)
        run.ready_at.FromNanoseconds(cmd.time_ns)
        queue.enqueue(batch, op.workflow_type, cmd.time_ns, op.workflow_id)
        change = state_pb2.StateChange(kind=state_pb2.RUN_STARTED)
        return self.m.write_version(
            cmd, batch, None, workflow_id=op.workflow_id, change=change, run=run, labels=op.labels
        )

    def cancel(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.cancel_run
        state = self.m.get_state(op.workflow_id)
        if state is None or not state.HasField("run"):
            return reject(NOT_FOUND, f"run {op.workflow_id!r} does not exist")
        if state.run.status not in _LIVE:
            return reject(FAILED_PRECONDITION, f"run {op.workflow_id!r} is already {_status(state.run)}", state.version)
        run = self._copy_run(state)
        if run.status == state_pb2.PENDING:
            queue.dequeue(batch, run.workflow_type, run.ready_at.ToNanoseconds(), op.workflow_id)
        drop_lease(batch, self.store, op.workflow_id)
        run.status = state_pb2.CANCELLED
        run.last_error = f"cancelled: {op.reason}" if op.reason else "cancelled"
        run.finished_at.FromNanoseconds(cmd.time_ns)
        change = state_pb2.StateChange(kind=state_pb2.RUN_CANCELLED)
        return self.m.write_version(cmd, batch, state, workflow_id=op.workflow_id, change=change, run=run)

    def release(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.release_run
        state = self.m.get_state(op.workflow_id)
        if state is None or not state.HasField("run"):
            return reject(NOT_FOUND, f"run {op.workflow_id!r} does not exist")
        if state.run.status != state_pb2.QUARANTINED:
            return reject(
                FAILED_PRECONDITION,
                f"run {op.workflow_id!r} is {_status(state.run)}; only a QUARANTINED run can be released",
                state.version,
            )
        run = self._copy_run(state)
        run.attempt_base = run.attempt  # a fresh max_attempts budget
        run.attempt += 1
        run.status = state_pb2.PENDING
        run.ready_at.FromNanoseconds(cmd.time_ns)
        queue.enqueue(batch, run.workflow_type, cmd.time_ns, op.workflow_id)
        change = state_pb2.StateChange(kind=state_pb2.RUN_RELEASED)
        return self.m.write_version(cmd, batch, state, workflow_id=op.workflow_id, change=change, run=run)

    # ---- worker writes (fenced) ----------------------------------------------------------------------

    def _fenced(
        self, cmd: command_pb2.Command, workflow_id: str, token: int
    ) -> tuple[state_pb2.WorkflowState, command_pb2.ApplyResult | None]:
        """The run's state, and the refusal when the writer does not hold its live lease under `token`."""
        state = self.m.get_state(workflow_id)
        refused = lease_lost(self.store, state, workflow_id, token, cmd.time_ns)
        return state if state is not None else state_pb2.WorkflowState(), refused

    def record_step(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.record_step
        state, refused = self._fenced(cmd, op.workflow_id, op.fencing_token)
        if refused is not None:
            return refused
        if any(s.name == op.step_name for s in state.run.steps):
            return reject(
                FAILED_PRECONDITION,
                f"step {op.step_name!r} of run {op.workflow_id!r} is already recorded; a result is never replaced",
                state.version,
            )
        run = self._copy_run(state)
        step = run.steps.add(name=op.step_name, attempt=run.attempt)
        step.result.CopyFrom(op.result)
        step.completed_at.FromNanoseconds(cmd.time_ns)
        change = state_pb2.StateChange(kind=state_pb2.STEP_RECORDED, step_name=op.step_name)
        return self.m.write_version(
            cmd, batch, state, workflow_id=op.workflow_id, change=change, run=run, step=op.step_name
        )

    def complete(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.complete_run
        state, refused = self._fenced(cmd, op.workflow_id, op.fencing_token)
        if refused is not None:
            return refused
        drop_lease(batch, self.store, op.workflow_id)
        run = self._copy_run(state)
        run.status = state_pb2.COMPLETED
        run.output.CopyFrom(op.output)
        run.finished_at.FromNanoseconds(cmd.time_ns)
        change = state_pb2.StateChange(kind=state_pb2.RUN_COMPLETED)
        return self.m.write_version(cmd, batch, state, workflow_id=op.workflow_id, change=change, run=run)

    def fail(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.fail_run
        state, refused = self._fenced(cmd, op.workflow_id, op.fencing_token)
        if refused is not None:
            return refused
        drop_lease(batch, self.store, op.workflow_id)
        run = self._copy_run(state)
        after_failed_attempt(run, cmd.policy, cmd.time_ns, op.error, non_retryable=op.non_retryable)
        if run.status == state_pb2.PENDING:
            queue.enqueue(batch, run.workflow_type, run.ready_at.ToNanoseconds(), op.workflow_id)
        change = state_pb2.StateChange(kind=state_pb2.RUN_ATTEMPT_FAILED)
        return self.m.write_version(cmd, batch, state, workflow_id=op.workflow_id, change=change, run=run)
