"""Who is calling: a bearer token, the mTLS client certificate, or a node vouching for its caller.

- `authorization: Bearer <token>`: the token's identity, if the hash matches a stored, unexpired token.
- A verified client certificate (gRPC's auth context): its common name, else its first subject alt name.
- A node forwarding a caller's request (or calling a peer for itself) sends the caller's identity with an
  HMAC, keyed from the cluster secret, over the method, the identity and the request's bytes. The leader
  checks the HMAC and then the caller's rights against its own tables: a follower is never a way around
  them, and a captured claim cannot be replayed for any other request.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from .. import clock
from ..errors import Unauthenticated, quoted
from . import tokens
from .model import AuthTable

CALLER_KEY = "x-cairn-caller-bin"  # binary metadata: an identity may be any printable Unicode
CALLER_SOURCE_KEY = "x-cairn-caller-source"
CALLER_TOKEN_KEY = "x-cairn-caller-token"
CALLER_MAC_KEY = "x-cairn-caller-mac"
BOOTSTRAP = "bootstrap"  # the token id a caller of auth.bootstrap_token_file carries
SCHEDULER = "cairn:scheduler"
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    identity: str  # "" when nothing was presented
    source: str  # "token", "certificate", "node", "none"
    token_id: str = ""  # with source "token": which token (the leader checks it is still valid)


NOBODY = Caller("", "none")
_current: contextvars.ContextVar[Caller] = contextvars.ContextVar("cairn_caller", default=NOBODY)


def current() -> Caller:
    """The caller of the RPC this thread is serving (set by the interceptor)."""
    return _current.get()


def set_current(caller: Caller) -> contextvars.Token:
    return _current.set(caller)


def reset_current(token: contextvars.Token) -> None:
    _current.reset(token)


_recheck: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("cairn_recheck", default=None)


def set_recheck(check: Callable[[], None] | None) -> contextvars.Token:
    return _recheck.set(check)


def reset_recheck(token: contextvars.Token) -> None:
    _recheck.reset(token)


def recheck() -> None:
    """Check the current call again against this node's tables as they are now. A read calls it after its
    barrier: a revocation or unbind committed before the read started has then been applied here."""
    check = _recheck.get()
    if check is not None:
        check()


def audit_identity(caller: Caller) -> str:
    return caller.identity or ANONYMOUS


def _metadata(context: grpc.ServicerContext) -> dict[str, Any]:
    """The first value of each key: text, or bytes for a `-bin` key."""
    out: dict[str, Any] = {}
    for key, value in context.invocation_metadata() or ():
        if isinstance(value, str) or key.endswith("-bin"):
            out.setdefault(key, value)
    return out


def certificate_identity(context: grpc.ServicerContext) -> str | None:
    """The verified client certificate's name (gRPC fills the auth context only after verifying it)."""
    auth = context.auth_context() or {}
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth.get(key, ()):
            name = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            if name:
                return name
    return None


class Claims:
    """A node's signed statement of whom it calls for (forwarding, peer calls)."""

    def __init__(self, secret: str | None):
        self._key = hashlib.sha256(b"cairn-caller-claim\x00" + secret.encode()).digest() if secret else None

    def _mac(self, method: str, caller: Caller, request: Any) -> str:
        assert self._key is not None
        body = hashlib.sha256(request.SerializeToString(deterministic=True)).digest()
        parts = (method, caller.identity, caller.source, caller.token_id)
        message = b"\x00".join((*(hashlib.sha256(p.encode()).digest() for p in parts), body))
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, method: str, caller: Caller, request: Any) -> tuple[tuple[str, Any], ...]:
        if self._key is None:
            return ()
        return (
            (CALLER_KEY, caller.identity.encode()),
            (CALLER_SOURCE_KEY, caller.source),
            (CALLER_TOKEN_KEY, caller.token_id),
            (CALLER_MAC_KEY, self._mac(method, caller, request)),
        )

    def verify(self, method: str, metadata: dict[str, Any], request: Any) -> Caller | None:
        """The vouched-for caller; None when the call carries no claim; Unauthenticated for a bad one."""
        mac = metadata.get(CALLER_MAC_KEY)
        if mac is None:
            return None
        raw = metadata.get(CALLER_KEY, b"")
        try:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            raise Unauthenticated("the forwarded caller's name is not UTF-8") from None
        caller = Caller(name, str(metadata.get(CALLER_SOURCE_KEY, "none")), str(metadata.get(CALLER_TOKEN_KEY, "")))
        if self._key is None or not hmac.compare_digest(str(mac), self._mac(method, caller, request)):
            raise Unauthenticated("the forwarded caller's signature does not verify (not a member of this cluster?)")
        return caller


def token_digest(token: str) -> bytes:
    return hashlib.sha256(b"cairn-bootstrap-token\x00" + token.encode()).digest()


def authenticate(
    context: grpc.ServicerContext,
    method: str,
    request: Any,
    table: AuthTable,
    claims: Claims,
    bootstrap_token: bytes | None = None,
) -> Caller:
    """The caller of this RPC; Unauthenticated for a bad token or claim. NOBODY when nothing was presented.
    `bootstrap_token`: the digest of auth.bootstrap_token_file's token, which stands for the bootstrap admin."""
    metadata = _metadata(context)
    claimed = claims.verify(method.rsplit("/", 1)[-1], metadata, request)
    if claimed is not None:
        still_valid(claimed, table, bootstrap_token)
        return claimed
    header = metadata.get("authorization")
    if isinstance(header, str):
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
        text = value.strip()
        if bootstrap_token is not None and table.bootstrap_admin and hmac.compare_digest(
            token_digest(text), bootstrap_token
        ):
            return Caller(table.bootstrap_admin, "token", BOOTSTRAP)
        return _token_caller(text, table)
    name = certificate_identity(context)
    return Caller(name, "certificate") if name else NOBODY


def _token_caller(text: str, table: AuthTable) -> Caller:
    parsed = tokens.parse(text)
    if parsed is None:
        raise Unauthenticated("the bearer token is malformed (expected cairn.<id>.<secret>)")
    token_id, secret = parsed
    stored = table.tokens.get(token_id)
    if stored is None or not tokens.matches(stored, secret):
        raise Unauthenticated(f"token {quoted(token_id)} is not valid (revoked, or never issued by this cluster)")
    if tokens.expired(stored, clock.now_ns()):
        raise Unauthenticated(f"token {quoted(token_id)} has expired")
    return Caller(stored.identity, "token", token_id)


def still_valid(caller: Caller, table: AuthTable, bootstrap_token: bytes | None) -> None:
    """A token caller's token is still issued, unexpired and its identity's, by this node's tables: the leader
    checks this for a forwarded caller (a follower's tables may be behind a revocation), and every node again
    after a read's barrier. Unauthenticated otherwise."""
    if caller.source != "token":
        return
    if caller.token_id == BOOTSTRAP:
        if bootstrap_token is None or caller.identity != table.bootstrap_admin:
            raise Unauthenticated("the bootstrap token is not accepted by this node")
        return
    stored = table.tokens.get(caller.token_id)
    if stored is None or stored.identity != caller.identity:
        raise Unauthenticated(f"token {quoted(caller.token_id)} is not valid (revoked, or not this identity's)")
    if tokens.expired(stored, clock.now_ns()):
        raise Unauthenticated(f"token {quoted(caller.token_id)} has expired")
