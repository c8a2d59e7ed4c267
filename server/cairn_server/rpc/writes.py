"""The one write path every servicer uses: validate the request id, forward to the leader (on a follower),
stamp the command, answer a retry from its dedup record, propose, and turn a rejection into its error."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from cairn.v1 import state_pb2_grpc
from cairn_server.internal import command_pb2

from .. import clock, workflow
from ..auth.identity import Caller, Claims, audit_identity, current
from ..commands import new_command
from ..config import Config
from ..errors import ResourceExhausted, error_for_code
from ..forwarding import Forwarder
from ..membership import Membership
from ..raft.group_commit import GroupCommitter, Pending
from ..raft.replica import Replica
from ..statemachine import StateMachine
from .reads import server_timeout

Build = Callable[[command_pb2.Command, int], None]
_ABORTED = grpc.StatusCode.ABORTED.value[0]
REQUEST_OVERHEAD = 64 * 1024  # a command beyond its state: ids, stamps, policy


class Writer:
    def __init__(
        self,
        *,
        machine: StateMachine,
        replica: Replica,
        forwarder: Forwarder,
        membership: Membership,
        config: Config,
        claims: Claims | None = None,
    ):
        self.machine = machine
        self.claims = claims or Claims(config.cluster.secret)
        self.replica = replica
        self.forwarder = forwarder
        self.membership = membership
        self.config = config
        # raft.group_commit: 1 means one entry per write, proposed at once (any number in flight).
        group = config.raft.group_commit
        self.group = GroupCommitter(replica, max_group=group, max_in_flight=1 if group > 1 else 1_000_000)

    def timeout(self, context: grpc.ServicerContext) -> float:
        return server_timeout(self.config, context)

    def submit(
        self,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        build: Build,
        respond: Callable[[command_pb2.ApplyResult], Any],
        *,
        stub: Callable[[grpc.Channel], Any] = state_pb2_grpc.StateServiceStub,
        timeout: float | None = None,
        dedup: bool = True,
    ) -> Any:
        """A validated write: on a follower, the leader's answer relayed; on the leader, `respond(result)`."""
        workflow.validate_request_id(request.request_id)
        if not self.replica.is_leader():
            return self.forward(method, request, context, stub)
        return respond(self.propose(method, request, context, build, timeout=timeout, dedup=dedup))

    def forward(self, method: str, request: Any, context: grpc.ServicerContext, stub: Callable[[grpc.Channel], Any]):
        """On a follower: the leader's answer to the unchanged request (deadline kept), with the caller's identity
        signed so that the leader checks the caller's rights again."""
        claim = self.claims.sign(method, current(), request)
        return self.forwarder.forward(method, request, context, self.membership.leader_grpc(), stub, claim)

    def recorded(self, method: str, request: Any) -> command_pb2.ApplyResult | None:
        """The recorded result of this request id and body, when it was applied already (a retry)."""
        if not request.request_id:
            return None
        probe = command_pb2.Command(
            request_id=request.request_id, body_hash=workflow.body_hash(method, request), time_ns=clock.now_ns()
        )
        return self.machine.dedup_result(probe)

    def propose(
        self,
        method: str,
        request: Any,
        context: grpc.ServicerContext,
        build: Build,
        *,
        timeout: float | None = None,
        dedup: bool = True,
    ) -> command_pb2.ApplyResult:
        """On the leader: stamp, propose and wait for the apply result (a rejection raises its error).

        `dedup=False` is for idempotent writes only: no request id, so no dedup record is kept."""
        ticket = self.start(method, request, build, dedup=dedup)
        return self.finish(ticket, self.timeout(context) if timeout is None else timeout)

    def start(
        self, method: str, request: Any, build: Build, *, dedup: bool = True, caller: Caller | None = None
    ) -> Ticket:
        """Stamp and build the command and set it going without waiting (`finish` waits): a retry of an
        applied request is answered from its dedup record, a groupable write joins the next group.
        `caller`: who asked (default: the caller of the RPC this thread serves)."""
        now = clock.now_ns()
        cmd = new_command(
            self.config,
            now,
            request_id=(request.request_id or f"srv-{secrets.token_hex(12)}") if dedup else "",
            body_hash=workflow.body_hash(method, request) if dedup else b"",
        )
        cmd.identity = audit_identity(caller or current())
        build(cmd, now)
        payload = cmd.SerializeToString()
        if len(payload) > self.config.limits.max_state_bytes + REQUEST_OVERHEAD:
            raise ResourceExhausted(
                f"the request is {len(payload)} bytes; the state size cap is "
                f"{self.config.limits.max_state_bytes} bytes (limits.max_state_bytes)"
            )
        recorded = self.machine.dedup_result(cmd)  # a retry of an applied request: answer at once
        if recorded is not None:
            return Ticket(result=recorded)
        if self.group.groupable(cmd):
            return Ticket(pending=self.group.enqueue(cmd, len(payload)))
        return Ticket(payload=payload)

    def finish(self, ticket: Ticket, timeout: float) -> command_pb2.ApplyResult:
        """The started write's result; a rejection raises its error."""
        if ticket.result is not None:
            result = ticket.result
        elif ticket.pending is not None:
            result = self.group.wait(ticket.pending, timeout)
        else:
            result = self.replica.propose(ticket.payload, timeout)
        if result.code != 0:
            raise error_for_code(
                result.code,
                result.message,
                current_version=result.current_version if result.code == _ABORTED else None,
                reason=result.reason,
            )
        return result


@dataclass
class Ticket:
    """A write set going by `Writer.start`: answered already, waiting in a group, or to propose alone."""

    result: command_pb2.ApplyResult | None = None
    pending: Pending | None = None
    payload: bytes = b""
