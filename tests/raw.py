"""Raw gRPC stubs to every node of a test cluster: no SDK, so request ids, deadlines and bytes are the test's."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from cairn.v1 import cluster_pb2, cluster_pb2_grpc, state_pb2_grpc, workflow_pb2_grpc
from cairn_server.internal import command_pb2_grpc
from tests.support import ClusterHandle, wait_until


def pvalue(value: Any) -> struct_pb2.Value:
    return json_format.ParseDict(value, struct_pb2.Value())


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_stopped(handle: ClusterHandle, i: int) -> None:
    """SIGSTOP takes effect asynchronously: on a loaded machine a thread of the node can run on for some
    milliseconds (long enough to acknowledge a Raft entry). Poll until every thread of node i is stopped."""
    tasks = Path(f"/proc/{handle.cluster.procs[i].pid}/task")

    def stopped() -> bool:
        # /proc/PID/task/TID/stat is "TID (COMM) STATE ...", and COMM may contain anything.
        states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
        return bool(states) and all(state in ("T", "t") for state in states)

    wait_until(stopped, 10, f"node {i} did not stop after SIGSTOP", interval=0.001)


@contextmanager
def stopped(handle: ClusterHandle, nodes: list[int]) -> Iterator[None]:
    """The nodes SIGSTOPped (every thread of each stopped) for the block, resumed after it whatever happens."""
    for i in nodes:
        handle.cluster.signal_node(i, signal.SIGSTOP)
    try:
        for i in nodes:
            wait_stopped(handle, i)
        yield
    finally:
        for i in nodes:
            handle.cluster.signal_node(i, signal.SIGCONT)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


@dataclass
class Raw:
    handle: ClusterHandle
    channels: list[grpc.Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.channels = [grpc.insecure_channel(self.handle.endpoint(i)) for i in range(self.handle.size)]

    def state(self, i: int) -> state_pb2_grpc.StateServiceStub:
        return state_pb2_grpc.StateServiceStub(self.channels[i])

    def flow(self, i: int) -> workflow_pb2_grpc.WorkflowServiceStub:
        return workflow_pb2_grpc.WorkflowServiceStub(self.channels[i])

    def node(self, i: int) -> command_pb2_grpc.NodeServiceStub:
        return command_pb2_grpc.NodeServiceStub(self.channels[i])

    def status(self, i: int) -> cluster_pb2.StatusResponse:
        return cluster_pb2_grpc.ClusterServiceStub(self.channels[i]).Status(cluster_pb2.StatusRequest(), timeout=2)

    def leader(self) -> int:
        return self.handle.wait_leader()

    def follower(self) -> int:
        leader = self.leader()
        return next(i for i in range(self.handle.size) if i != leader)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
