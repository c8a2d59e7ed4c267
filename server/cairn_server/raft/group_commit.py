"""Group commit on the leader: client writes that arrive while an entry is in flight share the next entry.

One entry in flight at a time (`max_in_flight`), the next group forming behind it: at low load a write is
proposed at once and alone (no added latency); under load each journal record, fsync, append-entries
message, follower acknowledgement and RocksDB write batch carries many writes. Results fan back out in
order, each write still answered only after its group is committed and applied here.

Only writes that touch one workflow's records (persist, checkpoint, recover, delete) are grouped, and a
group never holds two writes to one workflow or two with one request id: those wait for the next group,
so that applying a group in order against the state before it is the same as one entry per write.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

from pysyncobj import FAIL_REASON

from cairn_server.internal import command_pb2

from .. import clock
from ..errors import DeadlineExceeded, Unavailable
from .replica import Replica, fail_reason_name

GROUPABLE = frozenset({"persist", "checkpoint", "recover", "delete"})
MAX_GROUP_BYTES = 1024 * 1024  # a group stays one ordinary append-entries message (see Replica)


def workflow_of(cmd: command_pb2.Command) -> str:
    op = cmd.WhichOneof("op")
    return getattr(cmd, op).workflow_id if op else ""


class Pending:
    __slots__ = ("cmd", "size", "future", "workflow_id")

    def __init__(self, cmd: command_pb2.Command, size: int):
        self.cmd = cmd
        self.size = size
        self.future: Future[command_pb2.ApplyResult] = Future()
        self.workflow_id = workflow_of(cmd)


class GroupCommitter:
    """Gathers groupable commands into CommandGroup entries; `submit` blocks like `Replica.propose`."""

    def __init__(self, replica: Replica, *, max_group: int, max_in_flight: int = 1):
        self._replica = replica
        self._max_group = max_group
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._waiting: deque[Pending] = deque()
        self._in_flight = 0
        self.groups = 0  # entries proposed by this committer (tests, benchmarks)
        self.grouped = 0  # commands they carried

    @staticmethod
    def groupable(cmd: command_pb2.Command) -> bool:
        return cmd.WhichOneof("op") in GROUPABLE

    def submit(self, cmd: command_pb2.Command, size: int, timeout: float) -> command_pb2.ApplyResult:
        """Replicate and apply `cmd` (serialized size `size`) in the next group; its own result."""
        return self.wait(self.enqueue(cmd, size), timeout)

    def enqueue(self, cmd: command_pb2.Command, size: int) -> Pending:
        """Queue `cmd` for the next group without waiting (streams); `wait` for its result."""
        pending = Pending(cmd, size)
        with self._lock:
            self._waiting.append(pending)
            ready = self._take_locked() if self._in_flight < self._max_in_flight else None
        if ready:
            self._propose(ready)
        return pending

    def wait(self, pending: Pending, timeout: float) -> command_pb2.ApplyResult:
        try:
            return pending.future.result(timeout)
        except TimeoutError:
            with self._lock:
                if pending in self._waiting:  # never proposed: it will not be now
                    self._waiting.remove(pending)
                    raise DeadlineExceeded(
                        "the write was not proposed in time (the leader is busy); it was not applied",
                        leader=self._replica.leader_address(),
                    ) from None
            raise DeadlineExceeded(
                "the write was not committed in time; its outcome is unknown (retry with the same request_id)",
                leader=self._replica.leader_address(),
            ) from None

    def _take_locked(self) -> list[Pending]:
        """The next group: waiting commands in arrival order, skipping (for later) a second write to a workflow
        or request id already in the group."""
        group: list[Pending] = []
        workflows: set[str] = set()
        request_ids: set[str] = set()
        size = 0
        kept: deque[Pending] = deque()
        while self._waiting:
            p = self._waiting.popleft()
            full = len(group) >= self._max_group or (group and size + p.size > MAX_GROUP_BYTES)
            clash = p.workflow_id in workflows or (p.cmd.request_id and p.cmd.request_id in request_ids)
            if full or clash:
                kept.append(p)
                if full:
                    break
                continue
            group.append(p)
            workflows.add(p.workflow_id)
            if p.cmd.request_id:
                request_ids.add(p.cmd.request_id)
            size += p.size
        kept.extend(self._waiting)
        self._waiting = kept
        if group:
            self._in_flight += 1
        return group

    def _propose(self, group: list[Pending]) -> None:
        if not self._replica.is_leader():
            # Deposed while these waited: pysyncobj would forward them to the new leader and drop them without
            # a word if that connection is down, leaving the callers waiting until their deadline. Nothing was
            # proposed: they fail at once and the clients retry at the leader.
            self._on_done(group)(None, FAIL_REASON.NOT_LEADER)
            return
        if len(group) == 1:
            payload = group[0].cmd.SerializeToString()
        else:
            entry = command_pb2.Command(time_ns=clock.now_ns())
            entry.group.commands.extend(p.cmd for p in group)
            payload = entry.SerializeToString()
        self.groups += 1
        self.grouped += len(group)
        self._replica.propose_async(payload, self._on_done(group))

    def _on_done(self, group: list[Pending]) -> Callable[[object, int], None]:
        def done(result: object, error: int) -> None:
            if error == FAIL_REASON.SUCCESS:
                assert isinstance(result, command_pb2.ApplyResult)
                results = list(result.group.results) if len(group) > 1 else [result]
                for p, r in zip(group, results, strict=True):
                    p.future.set_result(r)
            else:
                message = (
                    "this node is no longer the leader; the write was not applied (retry at the leader)"
                    if error == FAIL_REASON.NOT_LEADER
                    else f"replication failed ({fail_reason_name(error)}); the outcome is unknown "
                    "(retry with the same request_id)"
                )
                leader = self._replica.leader_address()
                for p in group:
                    p.future.set_exception(Unavailable(message, leader=leader))
            with self._lock:
                self._in_flight -= 1
                ready = self._take_locked() if self._waiting else None
            if ready:
                self._propose(ready)

        return done

