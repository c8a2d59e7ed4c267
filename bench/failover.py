"""`python -m bench failover`: how long a client's writes stall when the leader is SIGKILLed, Cairn and etcd.

It measures the performance target "failover (leader killed to the next acknowledged write) p99 < 2 s with
the default config". Each system gets a fresh 3-node cluster with its defaults and, from this one asyncio
process, `writers` coroutines that each write their own key in a closed loop through raw grpc.aio stubs,
with a short per-attempt timeout and a fixed pause before a retry (the same two numbers for both systems).

A round waits until the cluster is healthy (every member answers, agrees on one leader and has applied what
was committed when it first agreed) and every writer has had a write acknowledged since, lets the load run
`settle` seconds, SIGKILLs the leader and measures, on time.monotonic in this process, from the kill to the
first acknowledged write whose attempt was *sent* after the kill: an answer from the old leader to a write
sent before it died does not end the outage. Meanwhile the survivors are polled for the new leader (when one
first reports itself leader in a later term). The killed member is then restarted on its own data and the
round ends when the cluster is healthy again, so the next kill starts from three caught-up members.

Systems run one after the other, each one's rounds in a block on its own cluster (one cluster at a time on
the machine). A round with no acknowledged write within `max_wait` is a failure: it is reported, counted in
the percentiles as never recovering, and makes the command exit 1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf.struct_pb2 import Struct
from rich.console import Console
from rich.table import Table

from bench.cairn_side import STEP, running_cairn
from bench.compare import keep_logs, make_value
from bench.etcd_cluster import EtcdCluster, running_etcd
from bench.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from bench.loadgen import percentile
from bench.signals import deferred
from cairn.client import CHANNEL_OPTIONS
from cairn.v1 import cluster_pb2, cluster_pb2_grpc, state_pb2, state_pb2_grpc
from cairn.wire import LEADER_KEY
from cairn_server.config import RaftConfig
from cairn_server.local_cluster import LocalCluster

SYSTEMS = ("cairn", "etcd")
# The codes a client retries as "outcome unknown, try again"; any other code is counted as unexpected.
RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
TARGET_P99_MS = 2000.0
STATUS_TIMEOUT = 0.5  # one status call while waiting for a healthy cluster
HEALTH_POLL = 0.1
HEALTH_TIMEOUT = 60.0  # a cluster that is not healthy again this long after a restart stops the run
LEADER_POLL = 0.025  # the survivors' status during a failover: the new leader's time is this coarse
LEADER_GRACE = 2.0  # after the first ack, how long the new leader may still take to show in a status


def defaults_note() -> str:
    """Both systems' failover-relevant defaults, as printed with the results (Cairn's read from its config)."""
    raft = RaftConfig()
    return (
        f"Cairn defaults: election timeout {raft.election_timeout:g} s (pysyncobj waits a random "
        f"{raft.election_timeout:g}-{2 * raft.election_timeout:g} s), heartbeat {raft.heartbeat_interval:g} s; "
        "etcd defaults: election timeout 1000 ms (randomized up to 2x), heartbeat 100 ms"
    )


@dataclass
class FailoverConfig:
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    kills: int = 20
    writers: int = 4
    attempt_timeout: float = 0.2
    retry_pause: float = 0.02
    max_wait: float = 30.0
    # Steady writes before each kill, so that the kill finds a settled cluster, as a long-running one would be,
    # not one whose connections the previous round's restart just made: with 1 s, Cairn survivors whose link
    # was a second old still got each other's vote request (~0.2 s failover); an idle link loses it (~1.5 s).
    settle: float = 3.0
    value_size: int = 1024
    data_dir: Path | None = None  # parent of the clusters' temporary directories (default: the system's)
    keep_logs: bool = False  # keep every system's server logs, not only those of a system with a failed round

    def __post_init__(self) -> None:
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown:
            raise ValueError(f"unknown system {unknown[0]!r}: choose from {', '.join(SYSTEMS)}")
        if not self.systems or len(set(self.systems)) != len(self.systems):
            raise ValueError("name each system once")
        if self.kills < 1 or self.writers < 1 or self.value_size < 1:
            raise ValueError("need kills >= 1, writers >= 1, value size >= 1")
        if self.attempt_timeout <= 0 or self.retry_pause < 0 or self.max_wait <= 0 or self.settle < 0:
            raise ValueError("need attempt timeout > 0, retry pause >= 0, max wait > 0, settle >= 0")


# ---- one member's view, one answer, one failed attempt ----------------------------------------------------


@dataclass(frozen=True)
class View:
    """One member's own account: who it is, whom it names leader ("" for none), its term and log progress."""

    me: str
    leader: str
    term: int
    commit: int
    applied: int

    @property
    def leads(self) -> bool:
        return bool(self.leader) and self.leader == self.me


def agreed(views: Sequence[View | None]) -> int | None:
    """The index of the leader when every member answers, all name it in one term and it says it leads."""
    if not views or any(v is None for v in views):
        return None
    present = [v for v in views if v is not None]
    if len({(v.leader, v.term) for v in present}) != 1:
        return None
    return next((i for i, v in enumerate(present) if v.leads), None)


@dataclass(frozen=True)
class Ack:
    """A write's answer: who answered, in which term, and where the answer says the leader is (if it says)."""

    member: str
    term: int
    leader: int | None = None


class AttemptFailed(Exception):
    """One attempt of a write failed; `hint` is the member the error names as leader (Cairn's x-cairn-leader)."""

    def __init__(self, kind: str, detail: str, hint: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.hint = kind, hint


# ---- the two systems, as the failover drives them --------------------------------------------------------


class Members(Protocol):
    """A running 3-member cluster: its processes, a write attempt and a status call per member."""

    name: str
    endpoints: list[str]

    def member(self, i: int) -> str: ...

    def process(self, i: int) -> subprocess.Popen: ...

    def restart(self, i: int) -> None: ...

    def log_tail(self, i: int) -> str: ...

    def connect(self) -> None: ...

    async def close(self) -> None: ...

    def new_write(self, key: str) -> Any: ...

    async def attempt(self, i: int, write: Any, timeout: float) -> Ack: ...

    async def view(self, i: int, timeout: float) -> View | None: ...


class Channels:
    """One grpc.aio channel per member, opened inside the running loop (as one client would hold them).

    The SDK's channel options: a restarted member is reconnected within a second, not after gRPC's default
    backoff, for both systems alike."""

    endpoints: list[str]
    channels: list[grpc.aio.Channel]

    def open_channels(self) -> list[grpc.aio.Channel]:
        self.channels = [grpc.aio.insecure_channel(e, options=CHANNEL_OPTIONS) for e in self.endpoints]
        return self.channels

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    def index(self, address: str | None) -> int | None:
        """The member at a gRPC address, or None (an address we were not given is never followed)."""
        return self.endpoints.index(address) if address in self.endpoints else None


class CairnMembers(Channels):
    """Cairn: PersistState with a request_id that every retry of the write keeps (exactly-once), and Status."""

    name = "cairn"

    def __init__(self, cluster: LocalCluster, value: str) -> None:
        self.cluster = cluster
        self.endpoints = cluster.endpoints
        self.variables = Struct()
        self.variables.update({"data": value})
        self._ids = itertools.count()
        self._run = uuid.uuid4().hex[:12]

    def member(self, i: int) -> str:
        return self.cluster.specs[i].node_id

    def process(self, i: int) -> subprocess.Popen:
        return self.cluster.procs[i]

    def restart(self, i: int) -> None:
        self.cluster.start_node(i)

    def log_tail(self, i: int) -> str:
        return self.cluster.log_tail(i)

    def connect(self) -> None:
        channels = self.open_channels()
        self.state = [state_pb2_grpc.StateServiceStub(c) for c in channels]
        self.status = [cluster_pb2_grpc.ClusterServiceStub(c) for c in channels]

    def new_write(self, key: str) -> state_pb2.PersistStateRequest:
        request_id = f"failover-{self._run}-{next(self._ids)}"
        return state_pb2.PersistStateRequest(
            workflow_id=key, current_step=STEP, variables=self.variables, request_id=request_id
        )

    async def attempt(self, i: int, write: state_pb2.PersistStateRequest, timeout: float) -> Ack:
        try:
            response = await self.state[i].PersistState(write, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            hint = next((v for k, v in exc.trailing_metadata() or () if k == LEADER_KEY), None)
            raise AttemptFailed(exc.code().name, exc.details() or "", self.index(hint)) from None
        header = response.header
        return Ack(header.node_id, header.term, self.index(header.leader_grpc_address))

    async def view(self, i: int, timeout: float) -> View | None:
        try:
            s = await self.status[i].Status(cluster_pb2.StatusRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return None
        leader = s.node_id if s.role == cluster_pb2.LEADER else s.leader_id
        return View(s.node_id, leader, s.term, s.commit_index, s.applied_index)


class EtcdMembers(Channels):
    """etcd: KV.Put (no idempotency key: a retry is another Put) and Maintenance.Status."""

    name = "etcd"

    def __init__(self, cluster: EtcdCluster, value: str) -> None:
        self.cluster = cluster
        self.endpoints = cluster.endpoints
        self.value = value.encode()
        self.names: dict[str, str] = {}  # member id (hex) -> name, learned from the members' status

    def member(self, i: int) -> str:
        return self.cluster.name(i)

    def process(self, i: int) -> subprocess.Popen:
        return self.cluster.procs[i]

    def restart(self, i: int) -> None:
        self.cluster.start_member(i)

    def log_tail(self, i: int) -> str:
        return self.cluster.log_tail(i)

    def connect(self) -> None:
        channels = self.open_channels()
        self.kv = [rpc_pb2_grpc.KVStub(c) for c in channels]
        self.maintenance = [rpc_pb2_grpc.MaintenanceStub(c) for c in channels]

    def new_write(self, key: str) -> rpc_pb2.PutRequest:
        return rpc_pb2.PutRequest(key=key.encode(), value=self.value)

    async def attempt(self, i: int, write: rpc_pb2.PutRequest, timeout: float) -> Ack:
        try:
            response = await self.kv[i].Put(write, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise AttemptFailed(exc.code().name, exc.details() or "") from None
        member = f"{response.header.member_id:x}"
        return Ack(self.names.get(member, member), response.header.raft_term)

    async def view(self, i: int, timeout: float) -> View | None:
        try:
            s = await self.maintenance[i].Status(rpc_pb2.StatusRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return None
        me, leader = f"{s.header.member_id:x}", f"{s.leader:x}" if s.leader else ""
        self.names[me] = self.member(i)
        return View(me, leader, s.raftTerm, s.raftIndex, s.raftAppliedIndex)


@contextmanager
def start_members(system: str, data_dir: Path, config: FailoverConfig, etcd_binary: str | None) -> Iterator[Members]:
    """A fresh 3-member cluster of `system` with its default config, with an agreed leader; stopped on exit."""
    value = make_value(config.value_size)
    if system == "cairn":
        with running_cairn(data_dir, "unary", value, config.attempt_timeout) as target:
            yield CairnMembers(target.cluster, value)
        return
    assert etcd_binary is not None
    with running_etcd(data_dir, etcd_binary) as cluster:
        yield EtcdMembers(cluster, value)


# ---- the load -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstAck:
    """The ack that ended an outage: when its attempt was sent and answered, by whom, in which term."""

    sent: float
    acked: float
    endpoint: int
    ack: Ack


class Load:
    """The writers: one coroutine per key; each write is retried, the same request, until acknowledged.

    They act like one client instance: they share a guess of the leader. An attempt goes to the guessed
    leader or, without a guess, to the writer's current member (writers start spread over the members). A
    failed attempt whose error names another member as leader (Cairn's x-cairn-leader) moves the guess there;
    any other failure drops the guess if it was that member and moves the writer to the next member. Every
    failed attempt is followed by `retry_pause`. An answer that names the leader (Cairn's response header)
    sets the guess; etcd's answers name none, so an etcd writer stays on its member until an attempt there
    fails (etcd followers forward a Put to the leader, as Cairn's do a PersistState).
    """

    def __init__(self, members: Members, config: FailoverConfig) -> None:
        self.members, self.config = members, config
        self.leader_guess: int | None = None
        self.acked_sent = [0.0] * config.writers  # per writer: when its last acknowledged attempt was sent
        self.acks = 0
        self.errors: Counter[str] = Counter()
        self.first_errors: dict[str, str] = {}
        self.armed_at: float | None = None
        self.first_ack: FirstAck | None = None
        self.window_errors: Counter[str] = Counter()
        self._recovered = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer(w)) for w in range(self.config.writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def check(self) -> None:
        """A writer that died of a bug stops the run instead of quietly thinning the load."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("a writer failed") from task.exception()

    def arm(self, killed_at: float) -> None:
        """From now on, the first ack of an attempt sent after `killed_at` ends the outage."""
        self.armed_at, self.first_ack = killed_at, None
        self.window_errors = Counter()
        self._recovered.clear()

    def disarm(self) -> None:
        self.armed_at = None

    async def recovered(self, timeout: float) -> FirstAck | None:
        try:
            await asyncio.wait_for(self._recovered.wait(), timeout)
        except TimeoutError:
            return None
        return self.first_ack

    async def flowing(self, since: float, timeout: float) -> None:
        """Until every writer has had an attempt acknowledged that it sent after `since`."""
        deadline = time.monotonic() + timeout
        while min(self.acked_sent) <= since:
            self.check()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.members.name}: writes did not flow on a healthy cluster within {timeout}s")
            await asyncio.sleep(0.02)

    async def _writer(self, w: int) -> None:
        n = len(self.members.endpoints)
        cursor, key = w % n, f"failover/w{w}"
        while True:
            write = self.members.new_write(key)
            while True:
                target = self.leader_guess if self.leader_guess is not None else cursor
                sent = time.monotonic()
                try:
                    ack = await self.members.attempt(target, write, self.config.attempt_timeout)
                except AttemptFailed as failed:
                    self._failed(failed)
                    if failed.hint is not None and failed.hint != target:
                        self.leader_guess = failed.hint
                    else:
                        if self.leader_guess == target:
                            self.leader_guess = None
                        cursor = (target + 1) % n
                    await asyncio.sleep(self.config.retry_pause)
                    continue
                self._acked(w, target, sent, ack)
                if ack.leader is not None:
                    self.leader_guess = ack.leader
                cursor = target
                break

    def _failed(self, failed: AttemptFailed) -> None:
        self.errors[failed.kind] += 1
        self.first_errors.setdefault(failed.kind, str(failed)[:300])
        if self.armed_at is not None and self.first_ack is None:
            self.window_errors[failed.kind] += 1

    def _acked(self, w: int, endpoint: int, sent: float, ack: Ack) -> None:
        self.acks += 1
        self.acked_sent[w] = max(self.acked_sent[w], sent)
        if self.armed_at is not None and self.first_ack is None and sent > self.armed_at:
            self.first_ack = FirstAck(sent, time.monotonic(), endpoint, ack)
            self._recovered.set()


# ---- rounds ---------------------------------------------------------------------------------------------


@dataclass
class Round:
    """One kill: what was killed, how long until the next acknowledged write and the new leader, the rejoin."""

    system: str
    round: int
    killed: str
    killed_term: int
    recovery_ms: float | None  # kill -> first ack of an attempt sent after the kill; None: not within max_wait
    new_leader_ms: float | None  # kill -> a survivor first reported itself leader in a later term
    new_leader: str | None
    ack_member: str | None  # who answered that first write (a follower that forwarded it, or the leader)
    ack_term: int | None
    window_errors: dict[str, int]  # failed attempts between the kill and that ack, by status code
    rejoin_ms: float | None  # restart of the killed member -> the cluster healthy and caught up again
    killed_at: float = 0.0  # wall clock (time.time()) of the kill, to find it in the server logs

    @property
    def failed(self) -> bool:
        return self.recovery_ms is None

    @property
    def stale_term(self) -> bool:
        """The first ack came in the killed leader's term: the killed member was not (or no longer) the leader."""
        return self.ack_term is not None and self.ack_term <= self.killed_term


def check_running(members: Members) -> None:
    for i in range(len(members.endpoints)):
        code = members.process(i).poll()
        if code is not None:
            raise RuntimeError(f"{members.name} {members.member(i)} exited ({code}):\n{members.log_tail(i)}")


async def views(members: Members, indexes: Sequence[int], timeout: float) -> list[View | None]:
    return list(await asyncio.gather(*(members.view(i, timeout) for i in indexes)))


async def wait_healthy(members: Members, load: Load | None, timeout: float = HEALTH_TIMEOUT) -> tuple[int, list[View]]:
    """(leader index, every member's view) once every member is up, agrees on the leader and has applied what
    was committed when they first agreed (so a restarted member has caught up on what it missed)."""
    deadline = time.monotonic() + timeout
    caught_up_to: int | None = None
    everyone = range(len(members.endpoints))
    while True:
        check_running(members)
        if load is not None:
            load.check()
        seen = await views(members, everyone, STATUS_TIMEOUT)
        leader = agreed(seen)
        if leader is not None:
            current = [v for v in seen if v is not None]
            if caught_up_to is None:
                caught_up_to = current[leader].commit
            if all(v.applied >= caught_up_to for v in current):
                return leader, current
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{members.name}: not healthy within {timeout}s; last views {seen}")
        await asyncio.sleep(HEALTH_POLL)


async def watch_new_leader(members: Members, survivors: Sequence[int], old_term: int) -> tuple[float, str]:
    """(when, who): the first survivor status that reports itself leader in a term after `old_term`."""
    while True:
        for i, view in zip(survivors, await views(members, survivors, LEADER_POLL * 8), strict=True):
            if view is not None and view.leads and view.term > old_term:
                return time.monotonic(), members.member(i)
        await asyncio.sleep(LEADER_POLL)


async def failover_round(
    members: Members, load: Load, config: FailoverConfig, number: int, rounds: list[Round]
) -> Round:
    """Healthy cluster with writes flowing, SIGKILL the leader, time the outage, restart it, wait for health.

    The round is appended to `rounds` as soon as the outage is measured, so a rejoin that fails keeps it."""
    await wait_healthy(members, load)
    await load.flowing(time.monotonic(), HEALTH_TIMEOUT)
    await asyncio.sleep(config.settle)
    leader, before = await wait_healthy(members, load)  # the leader as of now, just before the kill
    term, proc = before[leader].term, members.process(leader)
    # No await between the kill and arming: no ack can be handled in between.
    proc.send_signal(signal.SIGKILL)
    killed_at, killed_at_wall = time.monotonic(), time.time()
    load.arm(killed_at)
    survivors = [i for i in range(len(members.endpoints)) if i != leader]
    watcher = asyncio.create_task(watch_new_leader(members, survivors, term))
    try:
        first = await load.recovered(config.max_wait)
        if first is not None and not watcher.done():
            await asyncio.wait({watcher}, timeout=LEADER_GRACE)
    finally:
        load.disarm()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    elected = watcher.result() if watcher.done() and not watcher.cancelled() else None
    done = Round(
        system=members.name,
        round=number,
        killed=members.member(leader),
        killed_term=term,
        recovery_ms=None if first is None else (first.acked - killed_at) * 1000,
        new_leader_ms=None if elected is None else (elected[0] - killed_at) * 1000,
        new_leader=None if elected is None else elected[1],
        ack_member=None if first is None else first.ack.member,
        ack_term=None if first is None else first.ack.term,
        window_errors=dict(load.window_errors),
        rejoin_ms=None,
        killed_at=killed_at_wall,
    )
    rounds.append(done)
    await asyncio.to_thread(proc.wait, 10)
    restarted_at = time.monotonic()
    members.restart(leader)
    await wait_healthy(members, load)
    done.rejoin_ms = (time.monotonic() - restarted_at) * 1000
    return done


def describe(r: Round, kills: int) -> str:
    def ms(value: float | None) -> str:
        return "never" if value is None else f"{value:7.0f} ms"

    line = (
        f"{r.system:>5} kill {r.round + 1}/{kills}: {r.killed} (term {r.killed_term}) -> new leader {r.new_leader} "
        f"seen {ms(r.new_leader_ms)}, next ack {ms(r.recovery_ms)} (from {r.ack_member}, term {r.ack_term}); "
        f"failed attempts {sum(r.window_errors.values())}; rejoined in {ms(r.rejoin_ms).strip()}"
    )
    if r.failed:
        line += "  [bold red]NO WRITE ACKNOWLEDGED[/]"
    if r.stale_term:
        line += "  [bold red]ack in the killed leader's term: it was not the leader[/]"
    return line


async def drive(members: Members, config: FailoverConfig, echo: Callable[[str], None], rounds: list[Round]) -> dict:
    """Every kill of one system against its running cluster, appended to `rounds`; the load's totals."""
    members.connect()
    load = Load(members, config)
    try:
        await wait_healthy(members, None)
        load.start()
        for number in range(config.kills):
            echo(describe(await failover_round(members, load, config, number, rounds), config.kills))
    finally:
        await load.stop()
        await members.close()
    return {"acknowledged_writes": load.acks, "failed_attempts": dict(load.errors), "first_errors": load.first_errors}


def run_failover(
    config: FailoverConfig,
    etcd_binary: str | None,
    echo: Callable[[str], None],
    rounds: list[Round],
    totals: dict[str, dict],
) -> None:
    """Each system's kills in a block on its own fresh cluster, in `config.systems` order.

    Rounds are appended as they finish, so an interrupted run keeps them. A system that failed, had a round
    without recovery or an ack in the old term (or any system, with keep_logs) leaves its server logs behind.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bench-failover-", dir=config.data_dir))
    try:
        for system in config.systems:
            data_dir, first = tmp / system, len(rounds)
            try:
                with start_members(system, data_dir, config, etcd_binary) as members:
                    pids = [members.process(i).pid for i in range(len(members.endpoints))]
                    echo(f"{system}: cluster up, pids {pids}")
                    totals[system] = asyncio.run(drive(members, config, echo, rounds))
            except Exception:
                kept = keep_logs(data_dir, config.data_dir, "bench-failover-logs")
                echo(f"{system} failed; its server logs are kept in {kept}")
                raise
            if any(r.failed or r.stale_term for r in rounds[first:]) or config.keep_logs:
                kept = keep_logs(data_dir, config.data_dir, "bench-failover-logs")
                echo(f"{system}: its server logs are kept in {kept}")
            shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        with deferred():
            shutil.rmtree(tmp, ignore_errors=True)


# ---- summary and output ---------------------------------------------------------------------------------


@dataclass
class Summary:
    """One system's rounds. Percentiles are nearest-rank over every round, a failed one counting as infinite,
    so a failure can never improve them (with fewer than 100 rounds, p99 is the slowest round)."""

    system: str
    kills: int
    failed: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    new_leader_p50_ms: float | None
    leader_to_ack_p50_ms: float | None
    stale_term: int
    multi_election: int  # rounds whose first ack came more than one term after the killed leader's (split votes)

    @property
    def meets_target(self) -> bool:
        return self.kills > 0 and self.p99_ms < TARGET_P99_MS


def summarize(system: str, rounds: Sequence[Round]) -> Summary:
    mine = [r for r in rounds if r.system == system]
    times = sorted(float("inf") if r.recovery_ms is None else r.recovery_ms for r in mine)
    leaders = sorted(r.new_leader_ms for r in mine if r.new_leader_ms is not None)
    gaps = sorted(
        r.recovery_ms - r.new_leader_ms for r in mine if r.recovery_ms is not None and r.new_leader_ms is not None
    )
    return Summary(
        system=system,
        kills=len(mine),
        failed=sum(r.failed for r in mine),
        p50_ms=percentile(times, 0.50),
        p90_ms=percentile(times, 0.90),
        p99_ms=percentile(times, 0.99),
        max_ms=times[-1] if times else 0.0,
        new_leader_p50_ms=percentile(leaders, 0.50) if leaders else None,
        leader_to_ack_p50_ms=percentile(gaps, 0.50) if gaps else None,
        stale_term=sum(r.stale_term for r in mine),
        multi_election=sum(r.ack_term is not None and r.ack_term > r.killed_term + 1 for r in mine),
    )


def write_json(
    path: Path,
    config: FailoverConfig,
    env: dict[str, Any],
    rounds: Sequence[Round],
    totals: dict[str, dict],
    complete: bool,
) -> None:
    def finite(value: float | None) -> float | None:
        return None if value is None or value == float("inf") else value

    summaries = []
    for system in config.systems:
        s = summarize(system, rounds)
        row = {k: finite(v) if isinstance(v, float) else v for k, v in asdict(s).items()}
        summaries.append({**row, "meets_target": s.meets_target, **totals.get(system, {})})
    doc = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "environment": env,
        "complete": complete,
        "target_p99_ms": TARGET_P99_MS,
        "summary": summaries,
        "rounds": [{**asdict(r), "failed": r.failed, "stale_term": r.stale_term} for r in rounds],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value:,.0f}"


SHORT_CODES = {"UNAVAILABLE": "unavail", "DEADLINE_EXCEEDED": "deadline"}


def summary_table(summaries: Sequence[Summary], config: FailoverConfig) -> Table:
    t = Table(
        title=(
            f"Leader SIGKILLed -> next acknowledged write, ms ({config.writers} writers, attempt timeout "
            f"{config.attempt_timeout * 1000:g} ms, retry pause {config.retry_pause * 1000:g} ms)"
        ),
        caption="p99 is nearest-rank: with fewer than 100 kills it is the slowest; a failed kill counts as never",
    )
    for title in ("system", "kills", "failed", "p50", "p90", "p99", "max", "leader seen p50", "seen->ack p50"):
        t.add_column(title, justify="left" if title == "system" else "right")
    t.add_column(">1 election", justify="right")
    t.add_column(f"p99 < {TARGET_P99_MS / 1000:g} s", justify="center")
    for s in summaries:
        failed = f"[bold red]{s.failed}[/]" if s.failed else "0"
        verdict = "[green]yes[/]" if s.meets_target else "[bold red]no[/]"
        cells = [_ms(v) for v in (s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms)]
        leader_cells = [_ms(s.new_leader_p50_ms), _ms(s.leader_to_ack_p50_ms)]
        t.add_row(s.system, str(s.kills), failed, *cells, *leader_cells, str(s.multi_election), verdict)
    return t


def rounds_table(system: str, rounds: Sequence[Round]) -> Table:
    """Per kill: what the outage was made of (until a new leader showed, then until the first ack)."""
    t = Table(
        title=f"{system}: every kill (ms after the SIGKILL)",
        caption="leader seen: first survivor status naming itself leader (polled every "
        f"{LEADER_POLL * 1000:g} ms, so it can trail the ack)",
    )
    for title in ("kill", "killed", "terms", "new leader", "leader seen", "first ack", "ack from", "failed attempts"):
        t.add_column(title, justify="right" if title in ("kill", "leader seen", "first ack") else "left")
    t.add_column("rejoin", justify="right")
    for r in rounds:
        if r.system != system:
            continue
        ack = "[bold red]never[/]" if r.failed else _ms(r.recovery_ms)
        terms = f"{r.killed_term}->{r.ack_term}" if r.ack_term is not None else f"{r.killed_term}->?"
        errors = ", ".join(f"{SHORT_CODES.get(k, k)} {v}" for k, v in sorted(r.window_errors.items())) or "-"
        t.add_row(
            str(r.round + 1),
            r.killed,
            terms,
            r.new_leader or "-",
            _ms(r.new_leader_ms),
            ack,
            r.ack_member or "-",
            errors,
            _ms(r.rejoin_ms),
        )
    return t


def print_report(rounds: Sequence[Round], config: FailoverConfig, console: Console) -> None:
    for system in config.systems:
        if any(r.system == system for r in rounds):
            console.print(rounds_table(system, rounds))
    summaries = [summarize(system, rounds) for system in config.systems if any(r.system == system for r in rounds)]
    if summaries:
        console.print(summary_table(summaries, config))
    for r in rounds:
        if r.failed:
            console.print(
                f"[bold red]never recovered[/]: {r.system} kill {r.round + 1} ({r.killed}): no write acknowledged "
                f"within {config.max_wait:g} s; failed attempts {r.window_errors}"
            )
        if r.stale_term:
            console.print(
                f"[bold red]suspect round[/]: {r.system} kill {r.round + 1}: the first ack came in term {r.ack_term}, "
                f"not after the killed member's term {r.killed_term}"
            )
