"""The replicated access-control tables: roles, bindings and token hashes in the `auth` column family.

Changed only by `AuthOp` entries (an admin's call through AuthService), so every replica holds the same
tables. The in-memory `AuthTable` that calls are checked against is rebuilt from the store after an auth
entry is committed and after a snapshot install, and swapped whole (readers never see half a change).
"""

from __future__ import annotations

import threading

from cairn.v1 import auth_pb2
from cairn_server.internal import command_pb2

from ..errors import quoted
from ..statemachine import ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND, OK, StateMachine, reject
from ..storage import Batch, StorageError
from .model import AuthTable

CF = "auth"
_ROLE, _BIND, _TOKEN = b"role\x00", b"bind\x00", b"token\x00"


class AuthStore:
    def __init__(self, machine: StateMachine, bootstrap_admin: str | None):
        self.machine = machine
        self.bootstrap_admin = bootstrap_admin
        self._dirty = False
        self._lock = threading.Lock()
        self.table = self._load()

    def install(self) -> None:
        self.machine.register("auth", self._apply)
        self.machine.on_committed(self._after_commit)
        self.machine.on_reset(self._reload)

    # ---- reading -------------------------------------------------------------------------------

    def _load(self) -> AuthTable:
        """The tables from the store; a record that does not decode is this replica's damaged data (StorageError,
        and the node stops) rather than a table that silently differs from the other replicas'."""
        store = self.machine.store
        try:
            roles = {k[len(_ROLE) :].decode(): auth_pb2.Role.FromString(v) for k, v in store.scan(CF, _ROLE)}
            bindings = {
                k[len(_BIND) :].decode(): tuple(auth_pb2.Binding.FromString(v).roles) for k, v in store.scan(CF, _BIND)
            }
            tokens = {
                k[len(_TOKEN) :].decode(): command_pb2.StoredToken.FromString(v) for k, v in store.scan(CF, _TOKEN)
            }
        except StorageError:
            raise
        except Exception as exc:
            raise StorageError(f"the access-control tables cannot be decoded ({type(exc).__name__}): damaged") from None
        return AuthTable(roles, bindings, tokens, self.bootstrap_admin)

    def _reload(self) -> None:
        with self._lock:
            self.table = self._load()

    def _after_commit(self) -> None:
        if self._dirty:
            try:
                self._reload()
            except StorageError as exc:
                self.machine.fatal(f"{exc}; stopping", 74)
            self._dirty = False

    def _binding(self, identity: str) -> auth_pb2.Binding:
        raw = self.machine.store.get(CF, _BIND + identity.encode())
        if not raw:
            return auth_pb2.Binding(identity=identity)
        try:
            return auth_pb2.Binding.FromString(raw)
        except Exception as exc:
            raise StorageError(f"the binding of {quoted(identity)} cannot be decoded ({type(exc).__name__})") from None

    # ---- apply (Raft thread) -------------------------------------------------------------------

    def _apply(self, cmd: command_pb2.Command, batch: Batch, _index: int) -> command_pb2.ApplyResult:
        op = cmd.auth
        kind = op.WhichOneof("change")
        store = self.machine.store
        # The leader validated names and roles before proposing (auth_service.py); apply checks only what cannot
        # depend on the Python version (str.isprintable changes with Unicode versions, and replicas must agree).
        if kind == "put_role":
            if not op.put_role.name:
                return reject(INVALID_ARGUMENT, "role name: required")
            batch.put(CF, _ROLE + op.put_role.name.encode(), op.put_role.SerializeToString(deterministic=True))
        elif kind == "delete_role":
            name = op.delete_role
            if store.get(CF, _ROLE + name.encode()) is None:
                return reject(NOT_FOUND, f"role {quoted(name)} does not exist")
            bound = sorted(i for i, roles in self.table.bindings.items() if name in roles)
            if bound:
                who = ", ".join(quoted(b) for b in bound[:5])
                return reject(FAILED_PRECONDITION, f"role {quoted(name)} is bound to {who}: unbind it first")
            batch.delete(CF, _ROLE + name.encode())
        elif kind in ("bind", "unbind"):
            change = op.bind if kind == "bind" else op.unbind
            if not change.identity:
                return reject(INVALID_ARGUMENT, "identity: required")
            binding = self._binding(change.identity)
            if kind == "bind":
                if store.get(CF, _ROLE + change.role.encode()) is None:
                    return reject(NOT_FOUND, f"role {quoted(change.role)} does not exist")
                if change.role not in binding.roles:
                    binding.roles.append(change.role)
                    binding.roles.sort()
            else:
                if change.role not in binding.roles:
                    return reject(NOT_FOUND, f"{quoted(change.identity)} is not bound to role {quoted(change.role)}")
                binding.roles.remove(change.role)
            key = _BIND + change.identity.encode()
            if binding.roles:
                batch.put(CF, key, binding.SerializeToString(deterministic=True))
            else:
                batch.delete(CF, key)
            self._dirty = True
            return command_pb2.ApplyResult(code=OK, message=",".join(binding.roles))
        elif kind == "create_token":
            token = op.create_token
            key = _TOKEN + token.token_id.encode()
            if store.get(CF, key) is not None:
                return reject(ALREADY_EXISTS, f"token id {quoted(token.token_id)} is taken")
            batch.put(CF, key, token.SerializeToString(deterministic=True))
        elif kind == "revoke_token":
            key = _TOKEN + op.revoke_token.encode()
            if store.get(CF, key) is None:
                return reject(NOT_FOUND, f"token {quoted(op.revoke_token)} does not exist")
            batch.delete(CF, key)
        else:
            return reject(INVALID_ARGUMENT, "empty auth change")
        self._dirty = True
        return command_pb2.ApplyResult(code=OK)
