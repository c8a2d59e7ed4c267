"""The one place where a CairnError becomes a gRPC status (code, message, trailing metadata)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import grpc

from cairn.v1 import state_pb2
from cairn.wire import CURRENT_VERSION_KEY, FORWARDED_KEY, LEADER_KEY, REASON_KEY

from ..errors import CairnError

log = logging.getLogger(__name__)

__all__ = [
    "CURRENT_VERSION_KEY",
    "FORWARDED_KEY",
    "LEADER_KEY",
    "PassThrough",
    "abort_with",
    "handles_errors",
    "stream_error",
]


class PassThrough(Exception):
    """An error the leader already turned into a status; relay it unchanged."""

    def __init__(self, error: grpc.RpcError):
        super().__init__(error.details())
        self.error = error


def abort_with(context: grpc.ServicerContext, exc: Exception, leader_grpc: Callable[[str | None], str | None]) -> None:
    if isinstance(exc, PassThrough):
        err = exc.error
        context.set_trailing_metadata(tuple(err.trailing_metadata() or ()))
        context.abort(err.code(), err.details() or "")
    assert isinstance(exc, CairnError)
    metadata = []
    if exc.current_version is not None:
        metadata.append((CURRENT_VERSION_KEY, str(exc.current_version)))
    if exc.reason:
        metadata.append((REASON_KEY, exc.reason))
    hint = leader_grpc(exc.leader)
    if hint:
        metadata.append((LEADER_KEY, hint))
    if metadata:
        context.set_trailing_metadata(tuple(metadata))
    context.abort(exc.code, exc.message)


def stream_error(exc: Exception, leader_grpc: Callable[[str | None], str | None]) -> state_pb2.StreamError:
    """What `abort_with` would have sent as a call's status, as one answer of a stream."""
    if not isinstance(exc, CairnError):
        log.error("stream request failed", exc_info=exc)
        return state_pb2.StreamError(code=grpc.StatusCode.INTERNAL.value[0], message="failed on this node; see its log")
    error = state_pb2.StreamError(code=exc.code.value[0], message=exc.message, reason=exc.reason)
    if exc.current_version is not None:
        error.current_version = exc.current_version
    error.leader = leader_grpc(exc.leader) or ""
    return error


def handles_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Servicer method decorator: Cairn errors become precise statuses, anything else INTERNAL."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except (CairnError, PassThrough) as exc:
            abort_with(context, exc, self.leader_grpc)
        except Exception:
            if context.code() is not None:  # already aborted
                raise
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed on this node; see its log")

    return wrapper
