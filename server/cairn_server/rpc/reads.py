"""Making the local replica fit to answer a read with the consistency asked for."""

from __future__ import annotations

import grpc

from cairn.v1 import state_pb2

from ..config import Config
from ..errors import DeadlineExceeded
from ..raft.barrier import ReadBarrier
from ..statemachine import StateMachine


def server_timeout(config: Config, context: grpc.ServicerContext) -> float:
    """The server-side ceiling (limits.request_timeout), or the caller's deadline if sooner."""
    remaining = context.time_remaining()
    limit = config.limits.request_timeout
    return limit if remaining is None else max(0.0, min(limit, remaining))


class Reader:
    def __init__(
        self, *, machine: StateMachine, barrier: ReadBarrier, config: Config, unsafe_local_reads: bool = False
    ):
        self.machine = machine
        self.barrier = barrier
        self.config = config
        # Test-only (CAIRN_TEST_ONLY_UNSAFE_LOCAL_READS): lets the chaos suite prove its checker catches stale reads.
        self.unsafe_local_reads = unsafe_local_reads

    def timeout(self, context: grpc.ServicerContext) -> float:
        return server_timeout(self.config, context)

    def prepare(self, read: state_pb2.ReadOptions, context: grpc.ServicerContext) -> None:
        """LINEARIZABLE: wait for a read barrier; SERIALIZABLE: now, or once min_index is applied here."""
        timeout = self.timeout(context)
        if read.consistency == state_pb2.SERIALIZABLE:
            if read.min_index and not self.machine.wait_applied(read.min_index, timeout):
                raise DeadlineExceeded(
                    f"this replica has applied {self.machine.applied_index}, not yet min_index {read.min_index}"
                )
            return
        if self.unsafe_local_reads:
            return
        self.barrier.wait(timeout)
