"""Making the local replica fit to answer a read with the consistency asked for."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from cairn.v1 import state_pb2

from ..auth import identity
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
        self,
        *,
        machine: StateMachine,
        barrier: ReadBarrier,
        read_index: Callable[[float], int | None],
        config: Config,
        unsafe_local_reads: bool = False,
    ):
        self.machine = machine
        self.barrier = barrier
        self.read_index = read_index
        self.config = config
        # Test-only (CAIRN_TEST_ONLY_UNSAFE_LOCAL_READS): lets the chaos suite prove its checker catches stale reads.
        self.unsafe_local_reads = unsafe_local_reads

    def timeout(self, context: grpc.ServicerContext) -> float:
        return server_timeout(self.config, context)

    def prepare(self, read: state_pb2.ReadOptions, context: grpc.ServicerContext) -> None:
        """LINEARIZABLE: on the leader, the read index (a heartbeat round, no log entry); elsewhere, or before the
        leader has committed in its term, a read barrier. SERIALIZABLE: now, or once min_index is applied here."""
        timeout = self.timeout(context)
        if read.consistency == state_pb2.SERIALIZABLE:
            if read.min_index and not self.machine.wait_applied(read.min_index, timeout):
                raise DeadlineExceeded(
                    f"this replica has applied {self.machine.applied_index}, not yet min_index {read.min_index}"
                )
            return
        if self.unsafe_local_reads:
            return
        started = time.monotonic()
        index = self.read_index(timeout)
        if index is None:
            self.barrier.wait(timeout)
        elif not self.machine.wait_applied(index, max(0.0, timeout - (time.monotonic() - started))):
            raise DeadlineExceeded(f"this leader has not yet applied its commit index {index}")
        # The caller's rights as of now: an unbind or revocation committed before this read began is applied.
        identity.recheck()
