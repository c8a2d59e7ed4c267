"""StateService: the five specification functions plus get/list/delete, over the replicated state.

Writes: validated and stamped by the leader (time, ids, limits), proposed as one Raft command,
answered after the leader applied it. A follower forwards the unchanged request to the leader.
Reads: linearizable by default (read barrier), or serializable from the local replica.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from cairn.internal import command_pb2, command_pb2_grpc
from cairn.v1 import state_pb2, state_pb2_grpc

from .. import workflow
from ..errors import (
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    error_for_code,
)
from .status import handles_errors

if TYPE_CHECKING:
    from ..node import Node

_MAX_LIST = 1000
_REPLICA_TIMEOUT = 2.0


def new_checkpoint_id(now_ns: int) -> str:
    """Time-ordered, so that a workflow's checkpoints list oldest first in key order."""
    return f"cp-{now_ns:016x}{secrets.token_hex(4)}"


class StateService(state_pb2_grpc.StateServiceServicer):
    def __init__(self, node: Node):
        self.node = node
        self.machine = node.machine
        self.config = node.config

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.node.leader_grpc(raft_address)

    # ---- shared plumbing -----------------------------------------------------------------------

    def _timeout(self, context: grpc.ServicerContext) -> float:
        remaining = context.time_remaining()
        limit = self.config.limits.request_timeout
        return limit if remaining is None else max(0.0, min(limit, remaining))

    def _header(self) -> state_pb2.ResponseHeader:
        return self.node.response_header()

    def _read(self, read: state_pb2.ReadOptions, context: grpc.ServicerContext) -> None:
        """Make the local replica fit to answer with the requested consistency."""
        timeout = self._timeout(context)
        if read.consistency == state_pb2.SERIALIZABLE:
            if read.min_index and not self.machine.wait_applied(read.min_index, timeout):
                raise DeadlineExceeded(
                    f"this replica has applied {self.machine.applied_index}, not yet min_index {read.min_index}"
                )
            return
        if self.node.unsafe_local_reads:
            return  # test-only mode, see Node; never in production configs
        self.node.barrier.wait(timeout)

    def _write(
        self,
        method: str,
        request,
        context: grpc.ServicerContext,
        build: Callable[[command_pb2.Command, int], None],
        *,
        timeout: float | None = None,
    ) -> command_pb2.ApplyResult:
        """On the leader: stamp, propose and wait for the apply result."""
        now = time.time_ns()
        cmd = command_pb2.Command(
            request_id=request.request_id or f"srv-{secrets.token_hex(12)}",
            body_hash=workflow.body_hash(method, request),
            time_ns=now,
            dedup_expires_ns=now + int(self.config.limits.dedup_window * 1e9),
            history_limit=self.config.limits.history_limit,
            checkpoint_limit=self.config.checkpointing.max_per_workflow,
        )
        build(cmd, now)
        payload = cmd.SerializeToString()
        if len(payload) > self.config.limits.max_state_bytes + 64 * 1024:
            raise ResourceExhausted(
                f"the request is {len(payload)} bytes; the state size cap is "
                f"{self.config.limits.max_state_bytes} bytes (limits.max_state_bytes)"
            )
        result = self.machine.dedup_result(cmd)  # a retry of an applied request: answer at once
        if result is None:
            result = self.node.replica.propose(payload, self._timeout(context) if timeout is None else timeout)
        if result.code != 0:
            raise error_for_code(
                result.code,
                result.message,
                current_version=result.current_version if result.code == grpc.StatusCode.ABORTED.value[0] else None,
            )
        return result

    def _forward_unless_leader(self, method: str, request, context: grpc.ServicerContext):
        """A follower sends the (validated) write on to the leader and relays its answer; None on the leader."""
        workflow.validate_request_id(request.request_id)
        if self.node.replica.is_leader():
            return None
        return self.node.forwarder.forward(method, request, context, self.node.leader_grpc(None))

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

    def _check_state_size(self, workflow_id: str, step: str, variables, labels) -> None:
        probe = state_pb2.WorkflowState(workflow_id=workflow_id, version=1, current_step=step)
        probe.variables.CopyFrom(variables)
        probe.metadata.labels.update(labels)
        size = probe.ByteSize()
        if size > self.config.limits.max_state_bytes:
            raise ResourceExhausted(
                f"state of {workflow_id!r} would be {size} bytes; the cap is "
                f"{self.config.limits.max_state_bytes} (limits.max_state_bytes)"
            )

    # ---- writes --------------------------------------------------------------------------------

    @handles_errors
    def PersistState(self, request: state_pb2.PersistStateRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        workflow.validate_step(request.current_step)
        workflow.validate_variables(request.variables)
        workflow.validate_labels(dict(request.labels))
        workflow.validate_expected_version(request.HasField("expected_version"), request.expected_version)
        self._check_state_size(request.workflow_id, request.current_step, request.variables, request.labels)

        def build(cmd: command_pb2.Command, _now: int) -> None:
            op = cmd.persist
            op.workflow_id, op.current_step = request.workflow_id, request.current_step
            op.variables.CopyFrom(request.variables)
            op.labels.update(request.labels)
            if request.HasField("expected_version"):
                op.expected_version = request.expected_version

        if (forwarded := self._forward_unless_leader("PersistState", request, context)) is not None:
            return forwarded
        result = self._write("PersistState", request, context, build)
        return state_pb2.PersistStateResponse(state=result.state, header=self._header())

    @handles_errors
    def DeleteWorkflow(self, request: state_pb2.DeleteWorkflowRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        workflow.validate_expected_version(request.HasField("expected_version"), request.expected_version)

        def build(cmd: command_pb2.Command, _now: int) -> None:
            cmd.delete.workflow_id = request.workflow_id
            if request.HasField("expected_version"):
                cmd.delete.expected_version = request.expected_version

        if (forwarded := self._forward_unless_leader("DeleteWorkflow", request, context)) is not None:
            return forwarded
        result = self._write("DeleteWorkflow", request, context, build)
        return state_pb2.DeleteWorkflowResponse(
            deleted_version=result.deleted.deleted_version,
            deleted_checkpoints=result.deleted.deleted_checkpoints,
            header=self._header(),
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
            op.checkpoint_id = new_checkpoint_id(now)
            op.compress = self.config.checkpointing.compression == "zlib"
            op.retain_after_ns = now - retention_ns

        if (forwarded := self._forward_unless_leader("CreateCheckpoint", request, context)) is not None:
            return forwarded
        result = self._write("CreateCheckpoint", request, context, build)
        return state_pb2.CreateCheckpointResponse(checkpoint=result.checkpoint, header=self._header())

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
            if request.HasField("expected_version"):
                op.expected_version = request.expected_version

        if (forwarded := self._forward_unless_leader("RecoverFromCheckpoint", request, context)) is not None:
            return forwarded
        timeout = min(self._timeout(context), self.config.recovery.max_recovery_time)
        result = self._write("RecoverFromCheckpoint", request, context, build, timeout=timeout)
        return state_pb2.RecoverFromCheckpointResponse(state=result.state, header=self._header())

    # ---- reads ---------------------------------------------------------------------------------

    @handles_errors
    def GetState(self, request: state_pb2.GetStateRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        self._read(request.read, context)
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
        self._read(request.read, context)
        states, token = self.machine.list_workflows(request.prefix, request.limit or 100, request.page_token)
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
        self._read(request.read, context)
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
        self._read(request.read, context)
        cp = self._checkpoint(request.workflow_id, request.checkpoint_id)
        return state_pb2.GetCheckpointResponse(checkpoint=cp, header=self._header())

    @handles_errors
    def SynchronizeState(self, request: state_pb2.SynchronizeStateRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        started = time.monotonic()
        before = self.machine.applied_index
        self.node.barrier.wait(self._timeout(context))
        state = self.machine.get_state(request.workflow_id)
        replica = self.node.replica
        return state_pb2.SynchronizeStateResponse(
            node_id=self.config.cluster.node_id,
            leader_id=self.node.leader_id() or "",
            applied_index_before=before,
            applied_index_after=self.machine.applied_index,
            leader_commit_index=replica.raftCommitIndex,
            version=state.version if state else 0,
            exists=state is not None,
            duration_ms=(time.monotonic() - started) * 1000,
            header=self._header(),
        )

    @handles_errors
    def ValidateState(self, request: state_pb2.ValidateStateRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        self._read(state_pb2.ReadOptions(), context)
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
                reply = self.node.node_stub(peer.grpc_address).WorkflowDigest(request, timeout=_REPLICA_TIMEOUT)
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

    def __init__(self, node: Node):
        self.node = node

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.node.leader_grpc(raft_address)

    @handles_errors
    def WorkflowDigest(self, request: command_pb2.WorkflowDigestRequest, context):
        workflow.validate_workflow_id(request.workflow_id)
        machine = self.node.machine
        timeout = context.time_remaining() or _REPLICA_TIMEOUT
        if not machine.wait_applied(request.min_index, timeout):
            raise DeadlineExceeded(f"replica at {machine.applied_index}, behind {request.min_index}")
        exists, version, digest = machine.digest(request.workflow_id)
        return command_pb2.WorkflowDigestResponse(
            node_id=self.node.config.cluster.node_id,
            applied_index=machine.applied_index,
            exists=exists,
            version=version,
            digest=digest,
        )
