"""What roles allow: an immutable table of roles, bindings and token hashes, swapped whole on change.

A grant is a set of operations on a namespace (a workflow-id prefix; "" is every workflow). `admin` implies
every operation. The bootstrap admin from the config is an admin on everything, always (like etcd's root), so
that a fresh cluster is closed and someone can create the first roles; remove it from the config to retire it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cairn.v1 import auth_pb2
from cairn_server.internal import command_pb2

READ, WRITE, CHECKPOINT, RECOVER, ADMIN, WORK = "read", "write", "checkpoint", "recover", "admin", "work"
OPERATIONS = (READ, WRITE, CHECKPOINT, RECOVER, ADMIN, WORK)
_BY_ENUM = {
    auth_pb2.OP_READ: READ,
    auth_pb2.OP_WRITE: WRITE,
    auth_pb2.OP_CHECKPOINT: CHECKPOINT,
    auth_pb2.OP_RECOVER: RECOVER,
    auth_pb2.OP_ADMIN: ADMIN,
    auth_pb2.OP_WORK: WORK,
}
ENUM_FOR = {name: value for value, name in _BY_ENUM.items()}


def operation_name(value: int) -> str | None:
    return _BY_ENUM.get(value)


@dataclass(frozen=True)
class Grant:
    operations: frozenset[str]
    namespace: str

    def allows(self, operation: str, workflow_id: str) -> bool:
        return (operation in self.operations or ADMIN in self.operations) and workflow_id.startswith(self.namespace)


ADMIN_GRANT = Grant(frozenset({ADMIN}), "")


def grants_of(role: auth_pb2.Role) -> tuple[Grant, ...]:
    return tuple(
        Grant(frozenset(n for n in (operation_name(o) for o in g.operations) if n), g.namespace) for g in role.grants
    )


@dataclass(frozen=True)
class AuthTable:
    roles: dict[str, auth_pb2.Role] = field(default_factory=dict)
    bindings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tokens: dict[str, command_pb2.StoredToken] = field(default_factory=dict)
    bootstrap_admin: str | None = None

    def grants(self, identity: str) -> tuple[Grant, ...]:
        out: list[Grant] = [ADMIN_GRANT] if identity and identity == self.bootstrap_admin else []
        for name in self.bindings.get(identity, ()):
            role = self.roles.get(name)
            if role is not None:
                out.extend(grants_of(role))
        return tuple(out)

    def allows(self, identity: str, operation: str, workflow_id: str = "") -> bool:
        """May `identity` do `operation` on this workflow ("" with an operation that names no workflow: on
        every workflow, as cluster-wide calls need)."""
        return any(g.allows(operation, workflow_id) for g in self.grants(identity))

    def allows_somewhere(self, identity: str, operation: str) -> bool:
        """Some grant of `operation`, on any namespace (a worker's poll, a filtered list)."""
        return any(operation in g.operations or ADMIN in g.operations for g in self.grants(identity))

    def is_admin(self, identity: str) -> bool:
        return self.allows(identity, ADMIN)


def role_name_problem(name: str) -> str | None:
    if not name or len(name) > 128 or not name.isprintable():
        return "role name: 1 to 128 printable characters"
    return None


def role_problem(role: auth_pb2.Role) -> str | None:
    """Why a role cannot be stored, or None."""
    problem = role_name_problem(role.name)
    if problem:
        return problem
    if not role.grants:
        return f"role {role.name!r} has no grants"
    for n, grant in enumerate(role.grants):
        if not grant.operations:
            return f"role {role.name!r} grant {n}: no operations"
        bad = [o for o in grant.operations if operation_name(o) is None]
        if bad:
            return f"role {role.name!r} grant {n}: unknown operation {bad[0]}"
        if len(grant.namespace) > 256 or "\x00" in grant.namespace:
            return f"role {role.name!r} grant {n}: namespace must be at most 256 characters, without NUL"
    return None


def identity_problem(identity: str) -> str | None:
    if not identity or len(identity) > 256 or not identity.isprintable():
        return "identity: 1 to 256 printable characters"
    if identity.startswith("cairn:"):
        return "identity: names starting with 'cairn:' are the cluster's own"
    return None


def sorted_roles(roles: Iterable[auth_pb2.Role]) -> list[auth_pb2.Role]:
    return sorted(roles, key=lambda r: r.name)
