"""Requests protobuf cannot decode get INVALID_ARGUMENT, not gRPC's INTERNAL "Exception deserializing request!".

gRPC decodes a request before any handler or interceptor code sees it, so a string field that is not
UTF-8, or variables nested deeper than protobuf's recursion limit, would otherwise reach the caller as an
internal error. This interceptor swaps each handler's deserializer for one that keeps the decode error, and
the handler then refuses the request with a message that says what was wrong (a request stream: its iterator
raises InvalidArgument at the bad message, and the stream ends with that status).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ..errors import InvalidArgument


class _Undecodable:
    def __init__(self, error: Exception):
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data) if deserializer is not None else data
        except Exception as exc:  # protobuf's DecodeError, or a RecursionError on deep nesting
            return _Undecodable(exc)

    return decode


_UNDECODABLE = (
    "the request could not be decoded ({error}): a string field that is not UTF-8, "
    "or values nested deeper than protobuf allows (variables nested over 32 levels)"
)


def _guarded(behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _UNDECODABLE.format(error=request.error))
        return behavior(request, context)

    return handle


def _checked(requests: Iterator[Any], context: grpc.ServicerContext, ours: bool) -> Iterator[Any]:
    for request in requests:
        if isinstance(request, _Undecodable):
            message = _UNDECODABLE.format(error=request.error)
            if not ours:  # a library's handler (reflection) would turn an exception into UNKNOWN
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
            raise InvalidArgument(message)
        yield request


def _guarded_stream(
    behavior: Callable[[Iterator[Any], grpc.ServicerContext], Any], ours: bool
) -> Callable[..., Any]:
    """A Cairn stream handler sees InvalidArgument raised by its request iterator at an undecodable message (it
    ends the stream with it after the answers before); any other handler's call is aborted INVALID_ARGUMENT."""

    def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return behavior(_checked(requests, context, ours), context)

    return handle


class DecodeErrorsAreInvalidArgument(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):  # grpc's signature
        handler = continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=_guarded(handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
            )
        if handler.unary_stream is not None:
            return handler._replace(
                unary_stream=_guarded(handler.unary_stream),
                request_deserializer=_tolerant(handler.request_deserializer),
            )
        if handler.stream_stream is not None:
            ours = handler_call_details.method.startswith("/cairn.")
            return handler._replace(
                stream_stream=_guarded_stream(handler.stream_stream, ours),
                request_deserializer=_tolerant(handler.request_deserializer),
            )
        return handler
