"""One PersistStream to the leader shared by every thread of a Client (`Client(..., stream_writes=True)`).

Concurrent `persist_state` calls from one process then travel as messages on one HTTP/2 stream instead
of one call each: the leader starts each as it arrives, so they share its group commits, and answers
them in order. The semantics are the unary call's: each write keeps its request id across retries, so a
write whose answer was lost with a broken stream or a leader change is retried on the new leader and
applied once; errors are the same types with the same values.
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING

import grpc

from .errors import CairnError, DeadlineExceededError, UnavailableError, error_for, status_code
from .v1 import state_pb2, state_pb2_grpc

if TYPE_CHECKING:
    from .client import Client

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# Retries (here and in Client) back off from 20 ms to this: a new leader is usually there within a few hundred
# milliseconds of the old one dying, and a longer pause would be most of a client's failover time.
MAX_BACKOFF = 0.25
_CLOSE = object()


class _Broken(Exception):
    """The stream ended before this request's answer came: its outcome is unknown (retry it)."""


class _Connection:
    """One open PersistStream call: requests go in through a queue, a thread matches answers to waiters."""

    def __init__(self, endpoint: str, channel: grpc.Channel):
        self.endpoint = endpoint
        self._outbox: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._waiting: dict[int, Future[state_pb2.PersistStreamResponse]] = {}
        self._sequence = itertools.count(1)
        self.broken = False
        self._call = state_pb2_grpc.StateServiceStub(channel).PersistStream(self._requests())
        threading.Thread(target=self._read, name=f"cairn-stream-{endpoint}", daemon=True).start()

    def _requests(self) -> Iterator[state_pb2.PersistStreamRequest]:
        while (item := self._outbox.get()) is not _CLOSE:
            yield item

    def send(self, request: state_pb2.PersistStateRequest) -> Future[state_pb2.PersistStreamResponse]:
        answer: Future[state_pb2.PersistStreamResponse] = Future()
        with self._lock:
            if self.broken:
                answer.set_exception(_Broken())
                return answer
            sequence = next(self._sequence)
            self._waiting[sequence] = answer
            self._outbox.put(state_pb2.PersistStreamRequest(sequence=sequence, persist=request))
        return answer

    def _read(self) -> None:
        try:
            for response in self._call:
                with self._lock:
                    answer = self._waiting.pop(response.sequence, None)
                if answer is not None:
                    answer.set_result(response)
        except grpc.RpcError:
            pass  # every request still waiting is failed below and retried by its caller
        finally:
            with self._lock:
                self.broken = True
                waiting, self._waiting = list(self._waiting.values()), {}
            for answer in waiting:
                answer.set_exception(_Broken())

    def close(self) -> None:
        self._outbox.put(_CLOSE)
        self._call.cancel()


class PersistStream:
    """Writes through one stream to the leader, reconnecting (to the leader it names) when it breaks."""

    def __init__(self, client: Client):
        self._client = client
        self._lock = threading.Lock()
        self._connection: _Connection | None = None

    def _connect(self) -> _Connection:
        with self._lock:
            if self._connection is None or self._connection.broken:
                target = self._client._order()[0]  # the leader when known, else the next endpoint in turn
                self._connection = _Connection(target, self._client._channel(target))
            return self._connection

    def _drop(self, connection: _Connection, *, suspect: bool) -> None:
        """Stop using `connection`; `suspect`: its node may not lead (or live), so do not go back to it first."""
        with self._lock:
            if self._connection is connection:
                self._connection = None
        if suspect:
            self._client._forget_leader(connection.endpoint)
        connection.close()

    def persist(self, request: state_pb2.PersistStateRequest, timeout: float) -> state_pb2.PersistStateResponse:
        """The unary PersistState's answer (or error), with the same retries until `timeout`."""
        deadline = time.monotonic() + timeout
        backoff = 0.02
        last: CairnError | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise last or DeadlineExceededError("no answer on the write stream before the deadline")
            connection = self._connect()
            try:
                answer = connection.send(request).result(left)
            except TimeoutError:
                raise DeadlineExceededError(
                    "the write was not answered before the deadline; its outcome is unknown "
                    "(retry with the same request_id)"
                ) from None
            except _Broken:
                last = UnavailableError(f"the write stream to {connection.endpoint} broke; retrying")
                self._drop(connection, suspect=True)
            else:
                if answer.WhichOneof("outcome") == "response":
                    return answer.response
                error = answer.error
                code = status_code(error.code)
                failure = error_for(
                    code,
                    error.message,
                    leader=error.leader or None,
                    current_version=error.current_version if error.HasField("current_version") else None,
                    reason=error.reason,
                )
                if code not in _RETRYABLE:
                    raise failure
                last = failure
                if error.leader and error.leader in self._client.endpoints and error.leader != connection.endpoint:
                    self._client._note_leader(error.leader)
                    self._drop(connection, suspect=False)
                    continue  # straight to the named leader
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._drop(connection, suspect=True)
            pause = min(backoff, max(0.0, deadline - time.monotonic()))
            time.sleep(pause * (0.5 + random.random()))
            backoff = min(backoff * 2, MAX_BACKOFF)

    def close(self) -> None:
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

