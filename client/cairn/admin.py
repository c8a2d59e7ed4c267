"""The Client's admin calls: roles, bindings and tokens (AuthService) and the audit log (AuditService).

A mixin, so that client.py keeps the data-plane calls and this module the operator's; both share the
Client's retries, leader following and credentials through `_call`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .v1 import audit_pb2, auth_pb2

OPERATIONS = ("read", "write", "checkpoint", "recover", "admin", "work")
_OP_ENUM = {name: getattr(auth_pb2, f"OP_{name.upper()}") for name in OPERATIONS}
_OP_NAME = {value: name for name, value in _OP_ENUM.items()}


@dataclass(frozen=True)
class Grant:
    """Operations on every workflow whose id starts with `namespace` ("" = all)."""

    operations: tuple[str, ...]
    namespace: str = ""

    def to_proto(self) -> auth_pb2.Grant:
        unknown = [o for o in self.operations if o not in _OP_ENUM]
        if unknown:
            raise ValueError(f"unknown operation {unknown[0]!r}; one of {', '.join(OPERATIONS)}")
        return auth_pb2.Grant(operations=[_OP_ENUM[o] for o in self.operations], namespace=self.namespace)

    @classmethod
    def from_proto(cls, g: auth_pb2.Grant) -> Grant:
        return cls(tuple(_OP_NAME.get(o, str(o)) for o in g.operations), g.namespace)

    @classmethod
    def parse(cls, text: str) -> Grant:
        """`read,write:billing/` (operations, then the namespace after a colon; no colon = every workflow)."""
        ops, _, namespace = text.partition(":")
        return cls(tuple(o.strip() for o in ops.split(",") if o.strip()), namespace)


@dataclass(frozen=True)
class Role:
    name: str
    grants: tuple[Grant, ...]

    @classmethod
    def from_proto(cls, r: auth_pb2.Role) -> Role:
        return cls(r.name, tuple(Grant.from_proto(g) for g in r.grants))


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    identity: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def from_proto(cls, t: auth_pb2.TokenInfo) -> TokenInfo:
        expires = t.expires_at.ToDatetime() if t.HasField("expires_at") else None
        return cls(t.token_id, t.identity, t.created_at.ToDatetime(), expires)


@dataclass(frozen=True)
class WhoAmI:
    identity: str
    source: str
    auth_enabled: bool
    admin: bool
    grants: tuple[Grant, ...] = field(default=())


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time: datetime
    identity: str
    operation: str
    workflow_id: str
    request_id: str
    code: int
    message: str
    raft_index: int
    prev_hash: str
    hash: str

    @classmethod
    def from_proto(cls, r: audit_pb2.AuditRecord) -> AuditRecord:
        return cls(
            r.seq,
            r.time.ToDatetime(),
            r.identity,
            r.operation,
            r.workflow_id,
            r.request_id,
            r.code,
            r.message,
            r.raft_index,
            r.prev_hash.hex(),
            r.hash.hex(),
        )


@dataclass(frozen=True)
class AuditVerification:
    endpoint: str
    node_id: str
    ok: bool
    checked: int
    first_seq: int
    head_seq: int
    head_hash: str
    broken_seq: int
    problem: str
    applied_index: int

    @classmethod
    def from_proto(cls, endpoint: str, r: audit_pb2.VerifyAuditResponse) -> AuditVerification:
        return cls(
            endpoint, r.node_id, r.ok, r.checked, r.first_seq, r.head_seq, r.head_hash.hex(), r.broken_seq, r.problem,
            r.applied_index,
        )  # fmt: skip


class AdminCalls:
    """Mixed into Client: everything here needs an admin identity when auth is on (WhoAmI aside)."""

    # Provided by Client.
    endpoints: list[str]
    _call: Callable[..., Any]
    _stub: Callable[[str, str], Any]

    def put_role(self, name: str, grants: Iterable[Grant | str], *, timeout: float | None = None) -> Role:
        """Create or replace a role; a grant as `Grant(...)` or text (`read,write:billing/`)."""
        parsed = [g if isinstance(g, Grant) else Grant.parse(g) for g in grants]
        role = auth_pb2.Role(name=name, grants=[g.to_proto() for g in parsed])
        response = self._call("auth", "PutRole", auth_pb2.PutRoleRequest(role=role), timeout)
        return Role.from_proto(response.role)

    def delete_role(self, name: str, *, timeout: float | None = None) -> None:
        self._call("auth", "DeleteRole", auth_pb2.DeleteRoleRequest(name=name), timeout)

    def list_roles(self, *, timeout: float | None = None) -> list[Role]:
        return [Role.from_proto(r) for r in self._call("auth", "ListRoles", auth_pb2.ListRolesRequest(), timeout).roles]

    def bind(self, identity: str, role: str, *, timeout: float | None = None) -> list[str]:
        """Give `identity` the role; returns all of its roles."""
        request = auth_pb2.BindRequest(identity=identity, role=role)
        return list(self._call("auth", "Bind", request, timeout).binding.roles)

    def unbind(self, identity: str, role: str, *, timeout: float | None = None) -> list[str]:
        request = auth_pb2.UnbindRequest(identity=identity, role=role)
        return list(self._call("auth", "Unbind", request, timeout).binding.roles)

    def list_bindings(self, *, timeout: float | None = None) -> dict[str, list[str]]:
        response = self._call("auth", "ListBindings", auth_pb2.ListBindingsRequest(), timeout)
        return {b.identity: list(b.roles) for b in response.bindings}

    def create_token(
        self, identity: str, *, ttl_seconds: int = 0, timeout: float | None = None
    ) -> tuple[str, TokenInfo]:
        """A new bearer token for `identity` (shown once: the cluster keeps only a salted hash)."""
        request = auth_pb2.CreateTokenRequest(identity=identity, ttl_seconds=ttl_seconds)
        response = self._call("auth", "CreateToken", request, timeout)
        return response.token, TokenInfo.from_proto(response.info)

    def revoke_token(self, token_id: str, *, timeout: float | None = None) -> None:
        self._call("auth", "RevokeToken", auth_pb2.RevokeTokenRequest(token_id=token_id), timeout)

    def list_tokens(self, *, timeout: float | None = None) -> list[TokenInfo]:
        response = self._call("auth", "ListTokens", auth_pb2.ListTokensRequest(), timeout)
        return [TokenInfo.from_proto(t) for t in response.tokens]

    def whoami(self, *, timeout: float | None = None, endpoint: str | None = None) -> WhoAmI:
        r = self._call("auth", "WhoAmI", auth_pb2.WhoAmIRequest(), timeout, endpoint)
        return WhoAmI(r.identity, r.source, r.auth_enabled, r.admin, tuple(Grant.from_proto(g) for g in r.grants))

    # ---- audit -----------------------------------------------------------------------------------

    def audit_records(
        self, *, after_seq: int = 0, limit: int = 100, tail: bool = False, endpoint: str | None = None,
        timeout: float | None = None,
    ) -> list[AuditRecord]:  # fmt: skip
        """Records after `after_seq` (or the newest `limit` with `tail`), from one node's replica of the chain."""
        request = audit_pb2.ListAuditRequest(after_seq=after_seq, limit=limit, tail=tail)
        response = self._call("audit", "ListAudit", request, timeout, endpoint)
        return [AuditRecord.from_proto(r) for r in response.records]

    def audit_export(self, *, after_seq: int = 0, endpoint: str | None = None) -> Iterator[AuditRecord]:
        """Every record after `after_seq`, streamed from one node (the first endpoint by default)."""
        stub = self._stub("audit", endpoint or self.endpoints[0])
        for record in stub.ExportAudit(audit_pb2.ExportAuditRequest(after_seq=after_seq)):
            yield AuditRecord.from_proto(record)

    def audit_heads_agree(self, results: Sequence[AuditVerification]) -> dict[str, Any]:
        """Whether every node holds the same record at the lowest head among them (replicas apply at different
        moments, so their heads differ; the chains must not)."""
        if not results:
            return {"ok": False, "seq": 0, "message": "no node answered"}
        seq = min(r.head_seq for r in results)
        if seq == 0:
            return {"ok": True, "seq": 0, "message": "the audit log is empty"}
        hashes = {}
        for r in results:
            found = self.audit_records(after_seq=seq - 1, limit=1, endpoint=r.endpoint)
            hashes[r.node_id] = found[0].hash if found and found[0].seq == seq else ""
        ok = len(set(hashes.values())) == 1 and "" not in hashes.values()
        detail = ", ".join(f"{node}={h[:12] or 'missing'}" for node, h in sorted(hashes.items()))
        message = f"record {seq}: " + ("every node holds the same hash" if ok else f"replicas differ ({detail})")
        return {"ok": ok, "seq": seq, "message": message, "hashes": hashes}

    def audit_verify(self, endpoints: Sequence[str] | None = None, *, timeout: float = 60.0) -> list[AuditVerification]:
        """Each node checks its own chain; compare the answers with `audit_heads_agree`."""
        return [
            AuditVerification.from_proto(
                e, self._call("audit", "VerifyAudit", audit_pb2.VerifyAuditRequest(), timeout, e)
            )
            for e in (endpoints or self.endpoints)
        ]
