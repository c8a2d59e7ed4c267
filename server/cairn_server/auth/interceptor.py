"""Enforcement: every RPC is authenticated and checked against rules.RULES before its handler runs.

With `auth.enabled: false` nothing is refused; the caller is still identified when it presents something,
so that audit records say who acted. The check runs on the node the client called and again on the leader
for a forwarded write (the follower's claim names the caller; the leader's own tables decide).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ..errors import CairnError, PermissionDenied, Unauthenticated, quoted
from .identity import (
    NOBODY,
    Caller,
    Claims,
    authenticate,
    reset_current,
    reset_recheck,
    set_current,
    set_recheck,
    still_valid,
)
from .model import ADMIN, READ
from .rules import ANY, NODE, OPEN, RULES, SOMEWHERE, Rule
from .store import AuthStore

log = logging.getLogger(__name__)


class Authorizer:
    """The node's access-control decisions, against the replicated tables."""

    def __init__(self, store: AuthStore, claims: Claims, enabled: bool, bootstrap_token: bytes | None = None):
        self.store = store
        self.claims = claims
        self.enabled = enabled
        self.bootstrap_token = bootstrap_token  # digest of auth.bootstrap_token_file's token

    def identify(self, context: grpc.ServicerContext, method: str, request: Any) -> Caller:
        try:
            return authenticate(context, method, request, self.store.table, self.claims, self.bootstrap_token)
        except Unauthenticated:
            if self.enabled:
                raise
            return NOBODY  # auth off: a bad token is nobody, as before auth existed

    def may(self, caller: Caller, operation: str, workflow_id: str = "") -> bool:
        if not self.enabled:
            return True
        # A node acting for itself (`cairn:node:*`) only ever passes NODE rules; no role can name it.
        return self.store.table.allows(caller.identity, operation, workflow_id)

    def require(self, caller: Caller, operation: str, workflow_id: str = "") -> None:
        """PermissionDenied unless the caller may do `operation` on this workflow."""
        if not self.may(caller, operation, workflow_id):
            where = f"workflow {quoted(workflow_id)}" if workflow_id else "the cluster"
            raise PermissionDenied(f"{quoted(caller.identity)} may not {operation} on {where} (no role grants it)")

    def may_somewhere(self, caller: Caller, operation: str) -> bool:
        return not self.enabled or self.store.table.allows_somewhere(caller.identity, operation)

    def check(self, method: str, request: Any, context: grpc.ServicerContext) -> Caller:
        """The caller, once it may make this call; Unauthenticated / PermissionDenied otherwise."""
        rule = RULES.get(method)
        if rule is not None and rule.operation == OPEN:
            return NOBODY
        caller = self.identify(context, method, request)
        if not self.enabled:
            return caller
        if rule is None:
            raise PermissionDenied(f"{method} has no access rule on this node")
        if not caller.identity:
            raise Unauthenticated(
                "this cluster requires authentication: present a client certificate or an authorization: Bearer token"
            )
        if rule.operation == NODE:
            if caller.source != "node":
                raise PermissionDenied(f"{method} is for cluster members only")
            return caller
        try:
            self._check_rule(rule, caller, request)
        except PermissionDenied as exc:
            exc.caller = caller  # type: ignore[attr-defined]  # for the read audit record
            raise
        return caller

    def _check_rule(self, rule: Rule, caller: Caller, request: Any) -> None:
        if rule.operation == ANY:
            return
        if rule.scope == SOMEWHERE:
            if not self.may_somewhere(caller, rule.operation):
                raise PermissionDenied(f"{quoted(caller.identity)} may not {rule.operation} on any workflow")
            return
        if rule.workflow_ids is None:
            self.require(caller, rule.operation)
            return
        ids = rule.workflow_ids(request)
        if not ids and not self.may_somewhere(caller, rule.operation):  # e.g. a heartbeat naming no lease
            raise PermissionDenied(f"{quoted(caller.identity)} may not {rule.operation} on any workflow")
        for workflow_id in ids:
            self.require(caller, rule.operation, workflow_id)

    def recheck(self, method: str, request: Any, caller: Caller) -> None:
        """`check` again for a caller already identified (after a read's barrier)."""
        if not self.enabled or caller.source == "node":
            return
        still_valid(caller, self.store.table, self.bootstrap_token)
        rule = RULES.get(method)
        if rule is not None and rule.operation not in (OPEN, NODE):
            self._check_rule(rule, caller, request)

    def is_admin(self, caller: Caller) -> bool:
        return self.may(caller, ADMIN)


def _abort(context: grpc.ServicerContext, exc: CairnError) -> None:
    context.abort(exc.code, exc.message)


OnRead = Callable[[Caller, str, Any, int], None]


class AuthInterceptor(grpc.ServerInterceptor):
    """Runs `Authorizer.check` before every handler; the handler sees the caller via identity.current().

    `on_read(caller, method, request, code)`: called after each read-rule call (allowed or refused), for
    audit.reads."""

    def __init__(self, authorizer: Authorizer, on_read: OnRead | None = None):
        self.authorizer = authorizer
        self.on_read = on_read

    def intercept_service(self, continuation, handler_call_details):  # grpc's signature
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        check = self.authorizer.check
        rule = RULES.get(method)
        on_read = self.on_read if rule is not None and rule.operation == READ else None
        if handler.unary_unary is not None:
            unary = _unary(handler.unary_unary, method, self.authorizer, on_read)
            return handler._replace(unary_unary=unary)
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=_unary(handler.unary_stream, method, self.authorizer))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=_stream(handler.stream_stream, method, check))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=_stream(handler.stream_unary, method, check))
        return handler


Check = Callable[[str, Any, grpc.ServicerContext], Caller]


def _unary(
    behavior: Callable[[Any, grpc.ServicerContext], Any],
    method: str,
    authorizer: Authorizer,
    on_read: OnRead | None = None,
) -> Callable[..., Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            caller = authorizer.check(method, request, context)
        except CairnError as exc:
            if on_read is not None and isinstance(exc, PermissionDenied):
                on_read(getattr(exc, "caller", NOBODY), method, request, exc.code.value[0])
            _abort(context, exc)
        token = set_current(caller)
        again = set_recheck(lambda: authorizer.recheck(method, request, caller))
        code = grpc.StatusCode.UNKNOWN.value[0]
        try:
            response = behavior(request, context)
            code = 0
            return response
        except Exception:
            status = context.code()
            code = status.value[0] if status is not None else code
            raise
        finally:
            reset_recheck(again)
            reset_current(token)
            if on_read is not None:
                on_read(caller, method, request, code)

    return handle


def _stream(behavior: Callable[[Iterator[Any], grpc.ServicerContext], Any], method: str, check: Check) -> Callable:
    """Stream calls are checked once, at the start (an empty request stands for the call); the handler
    checks each message against the caller it captured."""

    def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        try:
            caller = check(method, _EmptyRequest(), context)
        except CairnError as exc:
            _abort(context, exc)
        token = set_current(caller)
        try:
            return behavior(requests, context)
        finally:
            reset_current(token)

    return handle


class _EmptyRequest:
    """What a claim on a stream call signs: the call, not a message."""

    def SerializeToString(self, deterministic: bool = False) -> bytes:  # noqa: N802 (protobuf's name)
        return b""
