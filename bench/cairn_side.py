"""Cairn's side of the comparison: a fresh LocalCluster and the calls each op makes against its leader.

How an op is called is pluggable (CAIRN_APIS: a name -> one small async function per op), so another
call strategy (say a streaming RPC) is one more entry and `--cairn-api NAME`; the load generator, the
keys, the setup and the accounting stay the same.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.struct_pb2 import Struct

from bench.loadgen import Call
from bench.signals import deferred
from cairn.errors import status_code
from cairn.v1 import state_pb2, state_pb2_grpc
from cairn.wire import CURRENT_VERSION_KEY
from cairn_server.local_cluster import LocalCluster, free_base_port

STEP = "bench"


@dataclass
class CairnConn:
    """What every call of one measurement shares: the stub on the leader's channel and the value."""

    channel: grpc.aio.Channel
    variables: Struct
    timeout: float
    stub: state_pb2_grpc.StateServiceStub = field(init=False)
    stream: PersistStreamWriter | None = field(default=None, init=False)
    # Writes are exactly-once by request id: each one gets its own, unique across runs.
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _run: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        self.stub = state_pb2_grpc.StateServiceStub(self.channel)

    def request_id(self) -> str:
        return f"bench-{self._run}-{next(self._ids)}"

    def persist_request(self, key: str, expected_version: int | None = None) -> state_pb2.PersistStateRequest:
        request = state_pb2.PersistStateRequest(
            workflow_id=key, current_step=STEP, variables=self.variables, request_id=self.request_id()
        )
        if expected_version is not None:
            request.expected_version = expected_version
        return request


@dataclass
class CairnSlot:
    """One worker's own workflow and the version it last wrote (for cas)."""

    key: str
    version: int = 0


CairnCall = Callable[[CairnConn, CairnSlot], Awaitable[None]]


async def _current_version(conn: CairnConn, slot: CairnSlot, exc: grpc.aio.AioRpcError) -> int:
    """After a failed cas: the stored version (ABORTED says it in trailing metadata; otherwise ask)."""
    for key, value in exc.trailing_metadata() or ():
        if key == CURRENT_VERSION_KEY:
            return int(value)
    response = await conn.stub.GetState(state_pb2.GetStateRequest(workflow_id=slot.key), timeout=conn.timeout)
    return response.state.version


async def unary_persist(conn: CairnConn, slot: CairnSlot) -> None:
    response = await conn.stub.PersistState(conn.persist_request(slot.key), timeout=conn.timeout)
    slot.version = response.state.version


async def unary_cas(conn: CairnConn, slot: CairnSlot) -> None:
    try:
        response = await conn.stub.PersistState(conn.persist_request(slot.key, slot.version), timeout=conn.timeout)
    except grpc.aio.AioRpcError as exc:
        # Another outcome than ours (none expected: the key is this worker's alone); the next call retries
        # from the stored version, and this one counts as an error.
        with suppress(grpc.aio.AioRpcError):
            slot.version = await _current_version(conn, slot, exc)
        raise
    slot.version = response.state.version


async def unary_get(conn: CairnConn, slot: CairnSlot) -> None:
    read = state_pb2.ReadOptions(consistency=state_pb2.LINEARIZABLE)
    response = await conn.stub.GetState(
        state_pb2.GetStateRequest(workflow_id=slot.key, read=read), timeout=conn.timeout
    )
    if response.state.version == 0:
        raise LookupError(f"{slot.key} not found")


class StreamRefused(Exception):
    """A PersistStream answer that carries an error (what the unary call would have raised)."""

    def __init__(self, error: state_pb2.StreamError):
        super().__init__(f"{status_code(error.code).name}: {error.message}")
        self.error = error


class PersistStreamWriter:
    """One PersistStream for every worker of a measurement (as Client(stream_writes=True) does): requests go
    in through a queue, a task hands each answer to the worker waiting for that sequence number."""

    def __init__(self, stub: state_pb2_grpc.StateServiceStub):
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._waiting: dict[int, asyncio.Future] = {}
        self._sequence = itertools.count(1)
        self._call = stub.PersistStream(self._requests())
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _requests(self):
        while (item := await self._outbox.get()) is not None:
            yield item

    async def _read(self) -> None:
        try:
            async for answer in self._call:
                future = self._waiting.pop(answer.sequence, None)
                if future is not None and not future.done():
                    future.set_result(answer)
        except grpc.aio.AioRpcError as exc:
            failure = exc
        else:
            failure = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(failure or ConnectionError("the stream ended"))
        self._waiting.clear()

    async def persist(self, request: state_pb2.PersistStateRequest, timeout: float) -> state_pb2.PersistStateResponse:
        sequence = next(self._sequence)
        future = asyncio.get_running_loop().create_future()
        self._waiting[sequence] = future
        await self._outbox.put(state_pb2.PersistStreamRequest(sequence=sequence, persist=request))
        answer = await asyncio.wait_for(future, timeout)
        if answer.WhichOneof("outcome") == "error":
            raise StreamRefused(answer.error)
        return answer.response


def _stream(conn: CairnConn) -> PersistStreamWriter:
    if conn.stream is None:
        conn.stream = PersistStreamWriter(conn.stub)
    return conn.stream


async def stream_persist(conn: CairnConn, slot: CairnSlot) -> None:
    response = await _stream(conn).persist(conn.persist_request(slot.key), conn.timeout)
    slot.version = response.state.version


async def stream_cas(conn: CairnConn, slot: CairnSlot) -> None:
    try:
        response = await _stream(conn).persist(conn.persist_request(slot.key, slot.version), conn.timeout)
    except StreamRefused as exc:
        if exc.error.HasField("current_version"):
            slot.version = exc.error.current_version
        raise
    slot.version = response.state.version


# --cairn-api: only what works. A new strategy maps every op in OPS to its call.
CAIRN_APIS: Mapping[str, Mapping[str, CairnCall]] = {
    "unary": {"persist": unary_persist, "cas": unary_cas, "get": unary_get},
    # Writes of all workers over one PersistStream to the leader; reads have no stream (unary GetState).
    "stream": {"persist": stream_persist, "cas": stream_cas, "get": unary_get},
}


class CairnTarget:
    """A running Cairn cluster as the comparison sees it: server pids, the leader, per-op calls."""

    name = "cairn"

    def __init__(self, cluster: LocalCluster, api: str, value: str, timeout: float) -> None:
        if api not in CAIRN_APIS:
            raise ValueError(f"unknown Cairn API {api!r}: choose from {', '.join(CAIRN_APIS)}")
        self.cluster, self.api, self.value, self.timeout = cluster, api, value, timeout

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.cluster.procs.values()]

    def leader(self, timeout: float = 30.0) -> tuple[str, int]:
        """The leader's endpoint and Raft term (as the leader reports it right after the others agreed)."""
        deadline = time.monotonic() + timeout
        while True:
            index = self.cluster.wait_leader(max(0.1, deadline - time.monotonic()))
            status = self.cluster.node_status(index)
            if status is not None and status.role == "LEADER":
                return self.cluster.specs[index].grpc_address, status.term
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no Cairn leader within {timeout}s")

    async def prepare(self, channel: grpc.aio.Channel, op: str, keys: list[str]) -> list[Call]:
        """Write every key once (unmeasured: persist then updates, cas has a version, get finds a state)."""
        variables = Struct()
        variables.update({"data": self.value})
        conn = CairnConn(channel, variables, self.timeout)
        slots = [CairnSlot(key) for key in keys]
        for slot in slots:
            await unary_persist(conn, slot)
        call = CAIRN_APIS[self.api][op]
        return [_bind(call, conn, slot) for slot in slots]


def _bind(call: CairnCall, conn: CairnConn, slot: CairnSlot) -> Call:
    return lambda: call(conn, slot)


@contextmanager
def running_cairn(data_dir: Path, api: str, value: str, timeout: float) -> Iterator[CairnTarget]:
    """A fresh 3-node cluster (durability: fsync, the default) with an agreed leader; stopped on exit."""
    cluster = LocalCluster(data_dir, nodes=3, base_port=free_base_port(3))
    try:
        cluster.start_and_wait(60)
        yield CairnTarget(cluster, api, value, timeout)
    finally:
        with deferred():
            cluster.stop()
