"""etcd's side of the comparison: the calls each op makes against the etcd leader, with etcd's own messages.

persist = KV.Put; cas = KV.Txn comparing the key's mod_revision with the one this worker last saw, then
Put (on a failed compare the failure branch reads the key, so the worker learns the current revision in
the same round trip); get = KV.Range with serializable = false (linearizable, etcd's default).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.etcd_cluster import EtcdCluster, running_etcd
from bench.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from bench.loadgen import Call


class CompareFailed(Exception):
    """A cas whose compare did not hold: counted as an error, like Cairn's ABORTED."""


@dataclass
class EtcdConn:
    kv: rpc_pb2_grpc.KVStub
    value: bytes
    timeout: float


@dataclass
class EtcdSlot:
    """One worker's own key and the mod_revision it last wrote (for cas)."""

    key: bytes
    mod_revision: int = 0


EtcdCall = Callable[[EtcdConn, EtcdSlot], Awaitable[None]]


async def put(conn: EtcdConn, slot: EtcdSlot) -> None:
    response = await conn.kv.Put(rpc_pb2.PutRequest(key=slot.key, value=conn.value), timeout=conn.timeout)
    slot.mod_revision = response.header.revision  # a Put's revision is the key's new mod_revision


async def cas(conn: EtcdConn, slot: EtcdSlot) -> None:
    request = rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                result=rpc_pb2.Compare.EQUAL,
                target=rpc_pb2.Compare.MOD,
                key=slot.key,
                mod_revision=slot.mod_revision,
            )
        ],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=slot.key, value=conn.value))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=slot.key))],
    )
    response = await conn.kv.Txn(request, timeout=conn.timeout)
    if not response.succeeded:
        kvs = response.responses[0].response_range.kvs if response.responses else []
        slot.mod_revision = kvs[0].mod_revision if kvs else 0
        raise CompareFailed(f"{slot.key!r}: mod_revision is {slot.mod_revision}")
    slot.mod_revision = response.header.revision


async def get(conn: EtcdConn, slot: EtcdSlot) -> None:
    response = await conn.kv.Range(rpc_pb2.RangeRequest(key=slot.key, serializable=False), timeout=conn.timeout)
    if not response.kvs:
        raise LookupError(f"{slot.key!r} not found")


ETCD_CALLS: Mapping[str, EtcdCall] = {"persist": put, "cas": cas, "get": get}


class EtcdTarget:
    """A running etcd cluster as the comparison sees it: server pids, the leader, per-op calls."""

    name = "etcd"

    def __init__(self, cluster: EtcdCluster, value: str, timeout: float) -> None:
        self.cluster, self.value, self.timeout = cluster, value.encode(), timeout

    @property
    def pids(self) -> list[int]:
        return self.cluster.pids

    def leader(self) -> tuple[str, int]:
        """The leader's endpoint and Raft term."""
        index, term = self.cluster.wait_leadership(30)
        return self.cluster.endpoints[index], term

    async def prepare(self, channel: grpc.aio.Channel, op: str, keys: list[str]) -> list[Call]:
        """Write every key once (unmeasured), as on the Cairn side."""
        conn = EtcdConn(rpc_pb2_grpc.KVStub(channel), self.value, self.timeout)
        slots = [EtcdSlot(key.encode()) for key in keys]
        for slot in slots:
            await put(conn, slot)
        call = ETCD_CALLS[op]
        return [_bind(call, conn, slot) for slot in slots]


def _bind(call: EtcdCall, conn: EtcdConn, slot: EtcdSlot) -> Call:
    return lambda: call(conn, slot)


@contextmanager
def running_etcd_target(data_dir: Path, binary: str, value: str, timeout: float) -> Iterator[EtcdTarget]:
    with running_etcd(data_dir, binary) as cluster:
        yield EtcdTarget(cluster, value, timeout)
