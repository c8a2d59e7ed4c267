"""WorkflowService: start, inspect, cancel and release runs; workers poll, heartbeat and write under leases.

Every write goes through the shared Writer (forward on a follower, stamp, dedup, propose); the rules live
in the apply handlers of `engine/`. PollWork is the one write that loops: it claims the earliest ready
run for the worker, or waits for one (a long poll) until its wait ends.
"""

from __future__ import annotations

import secrets
import time

import grpc

from cairn.v1 import state_pb2, workflow_pb2, workflow_pb2_grpc
from cairn_server.internal import command_pb2

from .. import clock, workflow
from ..auth import identity
from ..auth.interceptor import Authorizer
from ..auth.model import READ, WORK
from ..config import Config
from ..engine.dispatch import Dispatcher
from ..engine.leases import get_lease
from ..errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from ..membership import Membership
from ..statemachine import StateMachine
from .reads import Reader
from .status import handles_errors
from .writes import Writer

_MAX_LIST = 1000
_MAX_TYPES = 64
_MAX_HEARTBEAT_LEASES = 10_000
_MAX_ERROR_CHARS = 4096
_POLL_MARGIN = 0.1


def _still_leased(task: workflow_pb2.WorkTask) -> bool:
    """A claim answered from its dedup record is only worth handing out while that lease is the run's lease:
    otherwise the worker would replay a state that has moved on (its writes would be refused anyway)."""
    run = task.state.run
    return (
        task.state.HasField("run") and run.status == state_pb2.RUNNING and run.fencing_token == task.lease.fencing_token
    )


class WorkflowService(workflow_pb2_grpc.WorkflowServiceServicer):
    def __init__(
        self,
        *,
        machine: StateMachine,
        writer: Writer,
        reader: Reader,
        membership: Membership,
        dispatcher: Dispatcher,
        config: Config,
        authorizer: Authorizer,
    ):
        self.authorizer = authorizer
        self.machine = machine
        self.writer = writer
        self.reader = reader
        self.membership = membership
        self.dispatcher = dispatcher
        self.config = config

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.membership.leader_grpc(raft_address)

    # ---- plumbing --------------------------------------------------------------------------------

    def _header(self) -> state_pb2.ResponseHeader:
        return self.membership.header(self.machine.applied_index)

    def _submit(self, method: str, request, context: grpc.ServicerContext, build, respond):
        return self.writer.submit(method, request, context, build, respond, stub=workflow_pb2_grpc.WorkflowServiceStub)

    def _state_reply(self, response_cls):
        return lambda result: response_cls(state=result.state, header=self._header())

    def _check_size(self, what: str, extra: int, workflow_id: str | None = None) -> None:
        """Refuse a value that would take the run's state over limits.max_state_bytes."""
        cap = self.config.limits.max_state_bytes
        current = self.machine.get_state(workflow_id) if workflow_id else None
        size = extra + (current.ByteSize() if current is not None else 0)
        if extra > cap or size > cap:
            raise ResourceExhausted(
                f"{what} is {extra} bytes and would make the state {size} bytes; the cap is {cap} "
                "(limits.max_state_bytes)"
            )

    # ---- clients ---------------------------------------------------------------------------------

    @handles_errors
    def StartWorkflow(self, request: workflow_pb2.StartWorkflowRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        workflow.validate_workflow_type(request.workflow_type)
        workflow.validate_json_value(request.input, "input")
        workflow.validate_labels(dict(request.labels))
        probe = state_pb2.WorkflowState(workflow_id=request.workflow_id)
        probe.metadata.labels.update(request.labels)
        probe.run.input.CopyFrom(request.input)
        self._check_size("input and labels", probe.ByteSize())

        def build(cmd: command_pb2.Command, _now: int) -> None:
            op = cmd.start_run
            op.workflow_id, op.workflow_type = request.workflow_id, request.workflow_type
            op.input.CopyFrom(request.input)
            op.labels.update(request.labels)

        return self._submit(
            "StartWorkflow", request, context, build, self._state_reply(workflow_pb2.StartWorkflowResponse)
        )

    def _run(self, workflow_id: str) -> state_pb2.WorkflowState:
        state = self.machine.get_state(workflow_id)
        if state is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist")
        if not state.HasField("run"):
            raise NotFound(f"workflow {workflow_id!r} exists but was not started as a run (StartWorkflow)")
        return state

    @handles_errors
    def GetWorkflow(self, request: workflow_pb2.GetWorkflowRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        self.reader.prepare(request.read, context)
        state = self._run(request.workflow_id)
        response = workflow_pb2.GetWorkflowResponse(state=state, header=self._header())
        if state.run.status == state_pb2.RUNNING:
            lease = get_lease(self.machine.store, request.workflow_id)
            if lease is not None:
                response.lease.CopyFrom(lease)
        return response

    @handles_errors
    def ListWorkflowRuns(self, request: workflow_pb2.ListWorkflowRunsRequest, context):
        if request.limit > _MAX_LIST:
            raise InvalidArgument(f"limit {request.limit} is over the maximum of {_MAX_LIST}")
        if request.page_token:
            workflow.validate_workflow_id(request.page_token, "page_token")
        if request.workflow_type:
            workflow.validate_workflow_type(request.workflow_type)
        if request.status and request.status not in state_pb2.RunStatus.values():
            raise InvalidArgument(f"status {request.status} is not a RunStatus")
        self.reader.prepare(request.read, context)
        limit = request.limit or 100
        runs: list[workflow_pb2.RunSummary] = []
        token = ""
        caller = identity.current()
        for state in self.machine.iter_workflows(request.prefix, request.page_token):
            if not state.HasField("run") or not self.authorizer.may(caller, READ, state.workflow_id):
                continue
            if request.status and state.run.status != request.status:
                continue
            if request.workflow_type and state.run.workflow_type != request.workflow_type:
                continue
            if len(runs) == limit:
                token = runs[-1].workflow_id
                break
            runs.append(
                workflow_pb2.RunSummary(
                    workflow_id=state.workflow_id,
                    workflow_type=state.run.workflow_type,
                    status=state.run.status,
                    attempt=state.run.attempt,
                    current_step=state.current_step,
                    version=state.version,
                    updated_at=state.metadata.updated_at,
                )
            )
        return workflow_pb2.ListWorkflowRunsResponse(runs=runs, next_page_token=token, header=self._header())

    @handles_errors
    def CancelWorkflow(self, request: workflow_pb2.CancelWorkflowRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        if len(request.reason) > _MAX_ERROR_CHARS:
            raise InvalidArgument(f"reason is over {_MAX_ERROR_CHARS} characters")

        def build(cmd: command_pb2.Command, _now: int) -> None:
            cmd.cancel_run.workflow_id, cmd.cancel_run.reason = request.workflow_id, request.reason

        return self._submit(
            "CancelWorkflow", request, context, build, self._state_reply(workflow_pb2.CancelWorkflowResponse)
        )

    @handles_errors
    def ReleaseWorkflow(self, request: workflow_pb2.ReleaseWorkflowRequest, context):
        workflow.validate_workflow_id(request.workflow_id)

        def build(cmd: command_pb2.Command, _now: int) -> None:
            cmd.release_run.workflow_id = request.workflow_id

        return self._submit(
            "ReleaseWorkflow", request, context, build, self._state_reply(workflow_pb2.ReleaseWorkflowResponse)
        )

    # ---- workers ---------------------------------------------------------------------------------

    def _validate_poll(self, request: workflow_pb2.PollWorkRequest) -> list[str]:
        workflow.validate_workflow_id(request.worker_id, "worker_id")
        types = list(request.workflow_types)
        if not types:
            raise InvalidArgument("workflow_types is empty: name the workflow types this worker runs")
        if len(types) > _MAX_TYPES or len(set(types)) != len(types):
            raise InvalidArgument(f"workflow_types: at most {_MAX_TYPES}, each once")
        for t in types:
            workflow.validate_workflow_type(t)
        ex = self.config.execution
        seconds = request.lease_timeout_ms / 1000
        if not ex.min_lease_timeout <= seconds <= ex.max_lease_timeout:
            raise InvalidArgument(
                f"lease_timeout_ms {request.lease_timeout_ms} is outside the cluster's bounds "
                f"({ex.min_lease_timeout}s .. {ex.max_lease_timeout}s: execution.min_lease_timeout/max_lease_timeout)"
            )
        workflow.validate_request_id(request.request_id)
        return types

    @handles_errors
    def PollWork(self, request: workflow_pb2.PollWorkRequest, context):
        types = self._validate_poll(request)
        if not self.writer.replica.is_leader():
            return self.writer.forward("PollWork", request, context, workflow_pb2_grpc.WorkflowServiceStub)
        hit = self.writer.recorded("PollWork", request)  # a retried poll whose claim happened gets that claim back
        if hit is not None and hit.code == 0:
            task = hit.task if _still_leased(hit.task) else None
            return workflow_pb2.PollWorkResponse(task=task, header=self._header())
        remaining = context.time_remaining()
        budget = min(request.wait_ms / 1000, self.config.execution.max_poll_wait)
        if remaining is not None:
            budget = min(budget, max(0.0, remaining - _POLL_MARGIN))
        deadline = time.monotonic() + budget
        lease_ns = request.lease_timeout_ms * 1_000_000
        missed: set[str] = set()
        caller = identity.current()
        context.add_callback(self.dispatcher.wake)  # a caller that goes away ends its wait at once
        while True:
            if not context.is_active():
                # The worker is gone (killed, timed out): claiming now would lease a run to nobody.
                return workflow_pb2.PollWorkResponse(header=self._header())
            if not self.writer.replica.is_leader():
                raise Unavailable("leadership moved while the poll waited; poll again", leader=None)
            seen = self.dispatcher.generation
            with self.dispatcher.candidate(types, clock.now_ns(), missed) as workflow_id:
                if workflow_id is not None and not self.authorizer.may(caller, WORK, workflow_id):
                    missed.add(workflow_id)  # a run outside the worker's namespaces: leave it to others
                    continue
                if workflow_id is not None:
                    task = self._claim(request, context, workflow_id, lease_ns)
                    if task is not None:
                        return workflow_pb2.PollWorkResponse(task=task, header=self._header())
                    missed.add(workflow_id)
                    continue
            if time.monotonic() >= deadline:
                return workflow_pb2.PollWorkResponse(header=self._header())
            self.dispatcher.wait(types, deadline, seen)

    def _claim(self, request, context, workflow_id: str, lease_ns: int) -> workflow_pb2.WorkTask | None:
        def build(cmd: command_pb2.Command, now: int) -> None:
            op = cmd.claim_run
            op.workflow_id, op.worker_id = workflow_id, request.worker_id
            op.lease_id = secrets.token_hex(8)
            op.expires_ns, op.duration_ns = now + lease_ns, lease_ns

        try:
            task = self.writer.propose("PollWork", request, context, build).task
        except (FailedPrecondition, NotFound):
            return None  # claimed, cancelled or deleted since we looked: try the next one
        return task if _still_leased(task) else None

    @handles_errors
    def Heartbeat(self, request: workflow_pb2.HeartbeatRequest, context):
        workflow.validate_workflow_id(request.worker_id, "worker_id")
        if len(request.leases) > _MAX_HEARTBEAT_LEASES:
            raise InvalidArgument(f"leases: {len(request.leases)} given; at most {_MAX_HEARTBEAT_LEASES} per heartbeat")
        ids = [ref.workflow_id for ref in request.leases]
        for wid in ids:
            workflow.validate_workflow_id(wid, "leases.workflow_id")
        if len(set(ids)) != len(ids):
            raise InvalidArgument("leases: a workflow is listed twice")

        def build(cmd: command_pb2.Command, _now: int) -> None:
            cmd.heartbeat.worker_id = request.worker_id
            cmd.heartbeat.leases.extend(request.leases)

        # Extending a lease twice is harmless, so heartbeats leave no dedup record (thousands a minute would).
        return self.writer.submit(
            "Heartbeat",
            request,
            context,
            build,
            lambda r: workflow_pb2.HeartbeatResponse(results=r.heartbeat.results, header=self._header()),
            stub=workflow_pb2_grpc.WorkflowServiceStub,
            dedup=False,
        )

    def _validate_fenced(self, workflow_id: str, token: int) -> None:
        workflow.validate_workflow_id(workflow_id)
        if token <= 0:
            raise InvalidArgument("fencing_token is missing: every worker write names the lease it holds")

    @handles_errors
    def RecordStep(self, request: workflow_pb2.RecordStepRequest, context):
        self._validate_fenced(request.workflow_id, request.fencing_token)
        if not request.step_name:
            raise InvalidArgument("step_name is empty")
        workflow.validate_step(request.step_name, "step_name")
        workflow.validate_json_value(request.result, f"result of step {request.step_name!r}")

        def build(cmd: command_pb2.Command, _now: int) -> None:
            self._check_size(
                f"the result of step {request.step_name!r}", request.result.ByteSize(), request.workflow_id
            )
            op = cmd.record_step
            op.workflow_id, op.fencing_token, op.step_name = (
                request.workflow_id,
                request.fencing_token,
                request.step_name,
            )
            op.result.CopyFrom(request.result)

        return self._submit("RecordStep", request, context, build, self._state_reply(workflow_pb2.RecordStepResponse))

    @handles_errors
    def CompleteWorkflow(self, request: workflow_pb2.CompleteWorkflowRequest, context):
        self._validate_fenced(request.workflow_id, request.fencing_token)
        workflow.validate_json_value(request.output, "output")

        def build(cmd: command_pb2.Command, _now: int) -> None:
            self._check_size("output", request.output.ByteSize(), request.workflow_id)
            op = cmd.complete_run
            op.workflow_id, op.fencing_token = request.workflow_id, request.fencing_token
            op.output.CopyFrom(request.output)

        return self._submit(
            "CompleteWorkflow", request, context, build, self._state_reply(workflow_pb2.CompleteWorkflowResponse)
        )

    @handles_errors
    def FailWorkflow(self, request: workflow_pb2.FailWorkflowRequest, context):
        self._validate_fenced(request.workflow_id, request.fencing_token)

        def build(cmd: command_pb2.Command, _now: int) -> None:
            op = cmd.fail_run
            op.workflow_id, op.fencing_token = request.workflow_id, request.fencing_token
            op.error = request.error[:_MAX_ERROR_CHARS]
            op.non_retryable = request.non_retryable

        return self._submit(
            "FailWorkflow", request, context, build, self._state_reply(workflow_pb2.FailWorkflowResponse)
        )


__all__ = ["WorkflowService"]
