"""StateService: the five specification functions plus get/list/delete, over the replicated state.

Writes: validated and stamped by the leader (time, ids, limits), proposed as one Raft command,
answered after the leader applied it. A follower forwards the unchanged request to the leader.
Reads: linearizable by default (read barrier), or serializable from the local replica.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from cairn.v1 import state_pb2, state_pb2_grpc
from cairn_server.internal import command_pb2, command_pb2_grpc

from .. import workflow
from ..auth import identity
from ..auth.interceptor import Authorizer
from ..auth.model import READ, WRITE
from ..config import Config
from ..errors import (
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from ..membership import Membership
from ..statemachine import StateMachine
from .ordered_stream import serve_ordered
from .reads import Reader
from .status import handles_errors, stream_error
from .writes import Build, Writer

_MAX_LIST = 1000
_REPLICA_TIMEOUT = 2.0
_STREAM_IN_FLIGHT = 1024  # requests of one PersistStream started and not yet answered


class StateService(state_pb2_grpc.StateServiceServicer):
    def __init__(
        self,
        *,
        machine: StateMachine,
        writer: Writer,
        reader: Reader,
        membership: Membership,
        config: Config,
        peer_stub: Callable[[str], command_pb2_grpc.NodeServiceStub],
        authorizer: Authorizer,
    ):
        self.authorizer = authorizer
        self.machine = machine
        self.writer = writer
        self.reader = reader
        self.membership = membership
        self.config = config
        self.peer_stub = peer_stub

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.membership.leader_grpc(raft_address)

    @property
    def _node(self) -> identity.Caller:
        """This node, calling a peer for itself."""
        return identity.Caller(f"cairn:node:{self.config.cluster.node_id}", "node")

    # ---- shared plumbing -----------------------------------------------------------------------

    def _header(self) -> state_pb2.ResponseHeader:
        return self.membership.header(self.machine.applied_index)

    def _state(self, workflow_id: str) -> state_pb2.WorkflowState:
        state = self.machine.get_state(workflow_id)
        if state is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist")
        return state

    def _checkpoint(self, workflow_id: str, checkpoint_id: str) -> state_pb2.Checkpoint:
        cp = self.machine.get_checkpoint(workflow_id, checkpoint_id)
        if cp is None:
            raise NotFound(f"checkpoint {checkpoint_id!r} of workflow {workflow_id!r} does not exist")
        return cp

    def _check_state_size(self, workflow_id: str, step: str, variables, labels, run=None) -> None:
        probe = state_pb2.WorkflowState(workflow_id=workflow_id, version=1, current_step=step)
        probe.variables.CopyFrom(variables)
        probe.metadata.labels.update(labels)
        if run is not None:
            probe.run.CopyFrom(run)  # a persist keeps the run fields: they are part of the state
        size = probe.ByteSize()
        if size > self.config.limits.max_state_bytes:
            raise ResourceExhausted(
                f"state of {workflow_id!r} would be {size} bytes; the cap is "
                f"{self.config.limits.max_state_bytes} (limits.max_state_bytes)"
            )

    # ---- writes --------------------------------------------------------------------------------

    @handles_errors
    def PersistState(self, request: state_pb2.PersistStateRequest, context):
        return self.writer.submit(
            "PersistState",
            request,
            context,
            self._persist_build(request),
            lambda r: state_pb2.PersistStateResponse(state=r.state, header=self._header()),
        )

    def _persist_build(self, request: state_pb2.PersistStateRequest) -> Build:
        """Validate a persist request; the function that fills in its command."""
        workflow.validate_workflow_id(request.workflow_id)
        workflow.validate_step(request.current_step)
        workflow.validate_variables(request.variables)
        workflow.validate_labels(dict(request.labels))
        workflow.validate_expected_version(request.HasField("expected_version"), request.expected_version)
        self._check_state_size(request.workflow_id, request.current_step, request.variables, request.labels)

        def build(cmd: command_pb2.Command, _now: int) -> None:
            current = self.machine.get_state(request.workflow_id)
            if current is not None and current.HasField("run"):
                self._check_state_size(
                    request.workflow_id, request.current_step, request.variables, request.labels, current.run
                )
            op = cmd.persist
            op.workflow_id, op.current_step = request.workflow_id, request.current_step
            op.variables.CopyFrom(request.variables)
            op.labels.update(request.labels)
            if request.HasField("expected_version"):
                op.expected_version = request.expected_version

        return build

    def PersistStream(self, requests, context):
        """PersistState, many at a time over one stream: see `ordered_stream`."""
        timeout = self.config.limits.request_timeout
        caller = identity.current()  # the stream's requests are started on another thread
        return serve_ordered(
            requests, context, lambda item: self._stream_start(item, timeout, caller), max_in_flight=_STREAM_IN_FLIGHT
        )

    def _stream_start(
        self, item: state_pb2.PersistStreamRequest, timeout: float, caller: identity.Caller
    ) -> Callable[[], state_pb2.PersistStreamResponse]:
        sequence = item.sequence

        def failed(exc: Exception) -> Callable[[], state_pb2.PersistStreamResponse]:
            error = stream_error(exc, self.leader_grpc)
            return lambda: state_pb2.PersistStreamResponse(sequence=sequence, error=error)

        try:
            request = item.persist
            self.authorizer.require(caller, WRITE, request.workflow_id)
            workflow.validate_request_id(request.request_id)
            build = self._persist_build(request)
            if not self.writer.replica.is_leader():
                raise Unavailable(
                    "this node is not the leader: open the stream to the leader",
                    leader=self.writer.replica.leader_address(),
                )
            ticket = self.writer.start("PersistState", request, build, caller=caller)
        except Exception as exc:
            return failed(exc)

        def finish() -> state_pb2.PersistStreamResponse:
            try:
                result = self.writer.finish(ticket, timeout)
            except Exception as exc:
                return failed(exc)()
            response = state_pb2.PersistStateResponse(state=result.state, header=self._header())
            return state_pb2.PersistStreamResponse(sequence=sequence, response=response)

        return finish

    @handles_errors
    def DeleteWorkflow(self, request: state_pb2.DeleteWorkflowRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        workflow.validate_expected_version(request.HasField("expected_version"), request.expected_version)

        def build(cmd: command_pb2.Command, _now: int) -> None:
            cmd.delete.workflow_id = request.workflow_id
            if request.HasField("expected_version"):
                cmd.delete.expected_version = request.expected_version

        return self.writer.submit(
            "DeleteWorkflow",
            request,
            context,
            build,
            lambda r: state_pb2.DeleteWorkflowResponse(
                deleted_version=r.deleted.deleted_version,
                deleted_checkpoints=r.deleted.deleted_checkpoints,
                header=self._header(),
            ),
        )

    @handles_errors
    def CreateCheckpoint(self, request: state_pb2.CreateCheckpointRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        if not self.config.checkpointing.enabled:
            raise FailedPrecondition("checkpointing is disabled on this cluster (checkpointing.enabled)")
        retention_ns = int(self.config.checkpointing.retention * 1e9)

        def build(cmd: command_pb2.Command, now: int) -> None:
            op = cmd.checkpoint
            op.workflow_id = request.workflow_id
            op.checkpoint_id = workflow.new_checkpoint_id(now)
            op.compress = self.config.checkpointing.compression == "zlib"
            op.retain_after_ns = now - retention_ns

        return self.writer.submit(
            "CreateCheckpoint",
            request,
            context,
            build,
            lambda r: state_pb2.CreateCheckpointResponse(checkpoint=r.checkpoint, header=self._header()),
        )

    @handles_errors
    def RecoverFromCheckpoint(self, request: state_pb2.RecoverFromCheckpointRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        workflow.validate_checkpoint_id(request.checkpoint_id)
        workflow.validate_expected_version(request.HasField("expected_version"), request.expected_version)
        if not self.config.recovery.enabled:
            raise FailedPrecondition("recovery is disabled on this cluster (recovery.enabled)")

        def build(cmd: command_pb2.Command, _now: int) -> None:
            # The leader reads and verifies the checkpoint; its content travels in the command.
            cp = self._checkpoint(request.workflow_id, request.checkpoint_id)
            actual = workflow.checksum(cp.state)
            if actual != cp.checksum:
                raise DataLoss(
                    f"checkpoint {cp.id!r} is corrupt: its checksum is {cp.checksum[:16]}…, its "
                    f"content hashes to {actual[:16]}…; refusing to restore it"
                )
            op = cmd.recover
            op.workflow_id, op.checkpoint_id = request.workflow_id, request.checkpoint_id
            op.current_step = cp.state.current_step
            op.variables.CopyFrom(cp.state.variables)
            op.labels.update(cp.state.metadata.labels)
            if cp.state.HasField("run"):
                op.run.CopyFrom(cp.state.run)
            if request.HasField("expected_version"):
                op.expected_version = request.expected_version

        return self.writer.submit(
            "RecoverFromCheckpoint",
            request,
            context,
            build,
            lambda r: state_pb2.RecoverFromCheckpointResponse(state=r.state, header=self._header()),
            timeout=min(self.writer.timeout(context), self.config.recovery.max_recovery_time),
        )

    # ---- reads ---------------------------------------------------------------------------------

    @handles_errors
    def GetState(self, request: state_pb2.GetStateRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        self.reader.prepare(request.read, context)
        state = self._state(request.workflow_id)
        if request.include_history:
            state.history.extend(self.machine.history(request.workflow_id))
        return state_pb2.GetStateResponse(state=state, header=self._header())

    @handles_errors
    def ListWorkflows(self, request: state_pb2.ListWorkflowsRequest, context):
        if request.limit > _MAX_LIST:
            raise InvalidArgument(f"limit {request.limit} is over the maximum of {_MAX_LIST}")
        if request.page_token:
            workflow.validate_workflow_id(request.page_token, "page_token")
        self.reader.prepare(request.read, context)
        caller = identity.current()
        states, token = self.machine.list_workflows(
            request.prefix,
            request.limit or 100,
            request.page_token,
            keep=lambda workflow_id: self.authorizer.may(caller, READ, workflow_id),
        )
        return state_pb2.ListWorkflowsResponse(
            workflows=[
                state_pb2.WorkflowSummary(
                    workflow_id=s.workflow_id,
                    version=s.version,
                    current_step=s.current_step,
                    updated_at=s.metadata.updated_at,
                )
                for s in states
            ],
            next_page_token=token,
            header=self._header(),
        )

    @handles_errors
    def ListCheckpoints(self, request: state_pb2.ListCheckpointsRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        self.reader.prepare(request.read, context)
        self._state(request.workflow_id)
        checkpoints = self.machine.checkpoints(request.workflow_id)
        if not request.include_state:
            for cp in checkpoints:
                cp.ClearField("state")
        return state_pb2.ListCheckpointsResponse(checkpoints=checkpoints, header=self._header())

    @handles_errors
    def GetCheckpoint(self, request: state_pb2.GetCheckpointRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        workflow.validate_checkpoint_id(request.checkpoint_id)
        self.reader.prepare(request.read, context)
        cp = self._checkpoint(request.workflow_id, request.checkpoint_id)
        return state_pb2.GetCheckpointResponse(checkpoint=cp, header=self._header())

    @handles_errors
    def SynchronizeState(self, request: state_pb2.SynchronizeStateRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        started = time.monotonic()
        before = self.machine.applied_index
        self.reader.barrier.wait(self.reader.timeout(context))
        state = self.machine.get_state(request.workflow_id)
        return state_pb2.SynchronizeStateResponse(
            node_id=self.config.cluster.node_id,
            leader_id=self.membership.leader_id() or "",
            applied_index_before=before,
            applied_index_after=self.machine.applied_index,
            leader_commit_index=self.writer.replica.commit_index(),
            version=state.version if state else 0,
            exists=state is not None,
            duration_ms=(time.monotonic() - started) * 1000,
            header=self._header(),
        )

    @handles_errors
    def ValidateState(self, request: state_pb2.ValidateStateRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        self.reader.prepare(state_pb2.ReadOptions(), context)
        wid = request.workflow_id
        state = self._state(wid)
        me = self.config.cluster.node_id
        problems: list[state_pb2.ValidationProblem] = []

        def problem(code: str, message: str, node: str = me) -> None:
            problems.append(state_pb2.ValidationProblem(code=code, message=message, node_id=node))

        actual = workflow.checksum(state)
        if actual != state.metadata.checksum:
            problem(
                "CHECKSUM_MISMATCH",
                f"stored checksum {state.metadata.checksum[:16]}… but the state hashes to {actual[:16]}…",
            )
        history = self.machine.history(wid)
        for prev, cur in zip(history, history[1:], strict=False):
            if cur.version != prev.version + 1:
                problem("HISTORY_GAP", f"history jumps from version {prev.version} to {cur.version}")
        if not history:
            problem("HISTORY_MISMATCH", "the workflow has no history entries")
        elif history[-1].version != state.version or history[-1].step != state.current_step:
            problem(
                "HISTORY_MISMATCH",
                f"last history entry is version {history[-1].version} step "
                f"{history[-1].step!r}; the state is version {state.version} step "
                f"{state.current_step!r}",
            )
        checkpoints = self.machine.checkpoints(wid)
        for cp in checkpoints:
            if workflow.checksum(cp.state) != cp.checksum or cp.state.version != cp.version:
                problem("CHECKPOINT_CORRUPT", f"checkpoint {cp.id} does not match its checksum")
        replicas = self._compare_replicas(wid, problem)
        return state_pb2.ValidateStateResponse(
            valid=not problems,
            problems=problems,
            version=state.version,
            checksum=state.metadata.checksum,
            checkpoints_checked=len(checkpoints),
            history_entries_checked=len(history),
            replicas=replicas,
            header=self._header(),
        )

    def _compare_replicas(self, workflow_id: str, problem) -> list[state_pb2.ReplicaDigest]:
        index = self.machine.applied_index
        _, version, digest = self.machine.digest(workflow_id)
        out = [
            state_pb2.ReplicaDigest(
                node_id=self.config.cluster.node_id, reachable=True, applied_index=index, version=version, digest=digest
            )
        ]
        request = command_pb2.WorkflowDigestRequest(workflow_id=workflow_id, min_index=index)
        for peer in self.config.cluster.peers:
            try:
                claim = self.writer.claims.sign("WorkflowDigest", self._node, request)
                reply = self.peer_stub(peer.grpc_address).WorkflowDigest(
                    request, timeout=_REPLICA_TIMEOUT, metadata=claim
                )
            except grpc.RpcError as err:
                out.append(state_pb2.ReplicaDigest(node_id=peer.node_id, reachable=False, error=err.details() or ""))
                continue
            out.append(
                state_pb2.ReplicaDigest(
                    node_id=peer.node_id,
                    reachable=True,
                    applied_index=reply.applied_index,
                    version=reply.version,
                    digest=reply.digest,
                )
            )
            if reply.applied_index == index or reply.version == version:
                if reply.digest != digest:
                    problem(
                        "REPLICA_DIVERGED",
                        f"at version {version}, {peer.node_id} holds different data "
                        f"(digest {reply.digest[:16]}… vs {digest[:16]}…)",
                        peer.node_id,
                    )
            else:
                # The workflow changed between the two reads: compare only equal versions.
                _, version_now, digest_now = self.machine.digest(workflow_id)
                if version_now == reply.version and digest_now != reply.digest:
                    problem(
                        "REPLICA_DIVERGED",
                        f"at version {version_now}, {peer.node_id} holds different data",
                        peer.node_id,
                    )
        return out


class NodeService(command_pb2_grpc.NodeServiceServicer):
    """Node-to-node reads used by validation."""

    def __init__(self, *, machine: StateMachine, membership: Membership):
        self.machine = machine
        self.membership = membership

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.membership.leader_grpc(raft_address)

    @handles_errors
    def WorkflowDigest(self, request: command_pb2.WorkflowDigestRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        machine = self.machine
        timeout = context.time_remaining() or _REPLICA_TIMEOUT
        if not machine.wait_applied(request.min_index, timeout):
            raise DeadlineExceeded(f"replica at {machine.applied_index}, behind {request.min_index}")
        exists, version, digest = machine.digest(request.workflow_id)
        return command_pb2.WorkflowDigestResponse(
            node_id=self.membership.node_id,
            applied_index=machine.applied_index,
            exists=exists,
            version=version,
            digest=digest,
        )
