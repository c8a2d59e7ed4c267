"""AuthService: an admin's changes to roles, bindings and tokens (replicated), and WhoAmI for anyone.

Changes go through the leader like any write (a follower forwards them); the interceptor has already
checked that the caller is an admin. Listing reads this node's replica of the tables.
"""

from __future__ import annotations

from collections.abc import Callable

from cairn.v1 import auth_pb2, auth_pb2_grpc
from cairn_server.internal import command_pb2

from ..auth import identity, tokens
from ..auth.interceptor import Authorizer
from ..auth.model import ENUM_FOR, identity_problem, role_name_problem, role_problem, sorted_roles
from ..errors import InvalidArgument
from ..membership import Membership
from ..statemachine import ts
from .status import handles_errors
from .writes import Writer

_MAX_TTL = 10 * 365 * 86400


def _token_info(stored: command_pb2.StoredToken) -> auth_pb2.TokenInfo:
    info = auth_pb2.TokenInfo(token_id=stored.token_id, identity=stored.identity, created_at=ts(stored.created_ns))
    if stored.expires_ns:
        info.expires_at.CopyFrom(ts(stored.expires_ns))
    return info


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, *, writer: Writer, authorizer: Authorizer, membership: Membership):
        self.writer = writer
        self.authorizer = authorizer
        self.membership = membership

    def leader_grpc(self, raft_address: str | None) -> str | None:
        return self.membership.leader_grpc(raft_address)

    def _change(
        self, method: str, request, context, fill: Callable[[command_pb2.AuthOp], None]
    ) -> command_pb2.ApplyResult:
        """Propose this change on the leader and wait for it to apply (a rejection raises its error)."""

        def build(cmd: command_pb2.Command, _now: int) -> None:
            fill(cmd.auth)

        return self.writer.propose(method, request, context, build, dedup=False)

    def _on_leader(self, method: str, request, context):
        """The leader's answer, relayed, when this node is a follower (None on the leader)."""
        if self.writer.replica.is_leader():
            return None
        return self.writer.forward(method, request, context, auth_pb2_grpc.AuthServiceStub)

    @handles_errors
    def PutRole(self, request: auth_pb2.PutRoleRequest, context):
        problem = role_problem(request.role)
        if problem:
            raise InvalidArgument(problem)
        relayed = self._on_leader("PutRole", request, context)
        if relayed is not None:
            return relayed
        self._change("PutRole", request, context, lambda op: op.put_role.CopyFrom(request.role))
        return auth_pb2.PutRoleResponse(role=request.role)

    @handles_errors
    def DeleteRole(self, request: auth_pb2.DeleteRoleRequest, context):
        problem = role_name_problem(request.name)
        if problem:
            raise InvalidArgument(problem)
        relayed = self._on_leader("DeleteRole", request, context)
        if relayed is not None:
            return relayed
        self._change("DeleteRole", request, context, lambda op: setattr(op, "delete_role", request.name))
        return auth_pb2.DeleteRoleResponse()

    @handles_errors
    def ListRoles(self, request, context):
        return auth_pb2.ListRolesResponse(roles=sorted_roles(self.authorizer.store.table.roles.values()))

    def _binding_change(self, method: str, request, context, kind: str):
        problem = identity_problem(request.identity)
        if problem:
            raise InvalidArgument(problem)
        problem = role_name_problem(request.role)
        if problem:
            raise InvalidArgument(problem)
        relayed = self._on_leader(method, request, context)
        if relayed is not None:
            return relayed

        def fill(op: command_pb2.AuthOp) -> None:
            getattr(op, kind).CopyFrom(command_pb2.AuthBindingChange(identity=request.identity, role=request.role))

        result = self._change(method, request, context, fill)
        roles = [r for r in result.message.split(",") if r]
        return auth_pb2.Binding(identity=request.identity, roles=roles)

    @handles_errors
    def Bind(self, request: auth_pb2.BindRequest, context):
        binding = self._binding_change("Bind", request, context, "bind")
        return binding if isinstance(binding, auth_pb2.BindResponse) else auth_pb2.BindResponse(binding=binding)

    @handles_errors
    def Unbind(self, request: auth_pb2.UnbindRequest, context):
        binding = self._binding_change("Unbind", request, context, "unbind")
        return binding if isinstance(binding, auth_pb2.UnbindResponse) else auth_pb2.UnbindResponse(binding=binding)

    @handles_errors
    def ListBindings(self, request, context):
        table = self.authorizer.store.table
        return auth_pb2.ListBindingsResponse(
            bindings=[auth_pb2.Binding(identity=i, roles=list(r)) for i, r in sorted(table.bindings.items())]
        )

    @handles_errors
    def CreateToken(self, request: auth_pb2.CreateTokenRequest, context):
        problem = identity_problem(request.identity)
        if problem:
            raise InvalidArgument(problem)
        if request.ttl_seconds > _MAX_TTL:
            raise InvalidArgument(f"ttl_seconds: at most {_MAX_TTL} (ten years); 0 means no expiry")
        relayed = self._on_leader("CreateToken", request, context)
        if relayed is not None:
            return relayed
        made: dict[str, object] = {}

        def build(cmd: command_pb2.Command, now: int) -> None:
            text, stored = tokens.new_token(request.identity, now, request.ttl_seconds)
            made["text"], made["stored"] = text, stored
            cmd.auth.create_token.CopyFrom(stored)

        self.writer.propose("CreateToken", request, context, build, dedup=False)
        stored = made["stored"]
        assert isinstance(stored, command_pb2.StoredToken)
        return auth_pb2.CreateTokenResponse(token=str(made["text"]), info=_token_info(stored))

    @handles_errors
    def RevokeToken(self, request: auth_pb2.RevokeTokenRequest, context):
        if not request.token_id or len(request.token_id) > 64 or not request.token_id.isalnum():
            raise InvalidArgument("token_id: the id `cairn auth token list` shows (letters and digits, 1 to 64)")
        relayed = self._on_leader("RevokeToken", request, context)
        if relayed is not None:
            return relayed
        self._change("RevokeToken", request, context, lambda op: setattr(op, "revoke_token", request.token_id))
        return auth_pb2.RevokeTokenResponse()

    @handles_errors
    def ListTokens(self, request, context):
        stored = sorted(self.authorizer.store.table.tokens.values(), key=lambda t: (t.identity, t.created_ns))
        return auth_pb2.ListTokensResponse(tokens=[_token_info(t) for t in stored])

    @handles_errors
    def WhoAmI(self, request, context):
        caller = identity.current()
        table = self.authorizer.store.table
        response = auth_pb2.WhoAmIResponse(
            identity=caller.identity,
            source=caller.source,
            auth_enabled=self.authorizer.enabled,
            admin=bool(caller.identity) and table.is_admin(caller.identity),
        )
        for grant in table.grants(caller.identity):
            response.grants.add(operations=sorted(ENUM_FOR[o] for o in grant.operations), namespace=grant.namespace)
        return response
