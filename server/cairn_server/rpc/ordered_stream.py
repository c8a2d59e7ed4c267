"""Serving a bidirectional stream of independent requests: many in flight, answers in request order.

A reader thread takes each request as it arrives and starts it (validation, stamping, joining the next
group commit: no waiting), then queues a function that waits for its answer; the response iterator calls
those in order. So a client's writes on one stream are proposed as fast as they come and share log
entries, while it reads the answers in the order it sent the requests. The queue is bounded: a client
that sends faster than the cluster commits is slowed by gRPC flow control, not by this node's memory.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import grpc

from ..errors import CairnError

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")

_END = object()


def serve_ordered(
    requests: Iterable[Request],
    context: grpc.ServicerContext,
    start: Callable[[Request], Callable[[], Response]],
    *,
    max_in_flight: int,
) -> Iterator[Response]:
    """Answers to `requests` in their order; `start(request)` must not block for long and must return a
    function that waits for the answer and never raises (it turns failures into answers)."""
    waiting: queue.Queue = queue.Queue(maxsize=max_in_flight)
    failure: list[Exception] = []

    def put(item: object) -> bool:
        while context.is_active():
            try:
                waiting.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for request in requests:
                if not put(start(request)):
                    return
        except grpc.RpcError:
            pass  # the client went away: nothing more to answer
        except CairnError as exc:  # an undecodable request (rpc/decoding.py)
            failure.append(exc)
        except Exception as exc:
            log.exception("stream reader failed")
            failure.append(exc)
        finally:
            put(_END)

    threading.Thread(target=read, name="stream-reader", daemon=True).start()
    while True:
        try:
            item = waiting.get(timeout=0.5)
        except queue.Empty:
            if not context.is_active():
                return
            continue
        if item is _END:
            break
        yield item()
    if failure:  # after every answer to the requests before it
        exc = failure[0]
        if isinstance(exc, CairnError):
            context.abort(exc.code, exc.message)
        context.abort(grpc.StatusCode.INTERNAL, "the stream failed on this node; see its log")
