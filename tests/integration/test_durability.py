"""Durability of acknowledged writes, observed on real node processes.

README "Guarantees": with `durability: fsync` (the default) each node syncs its Raft journal before
acknowledging, so an acknowledged write was on stable storage on a majority before the client heard of it;
`durability: process` never syncs. Two independent observations:

- the journal's own trace hook (CAIRN_FAILPOINTS_TRACE, failpoints.py): every journal batch appends
  {"event": "journal.synced" | "journal.written", "mono", "pid", "last_index"} after the sync returned.
  CLOCK_MONOTONIC is system-wide on Linux, so a node's `mono` compares with this process's
  time.monotonic() taken right after the response arrived (later than the leader's send: the check errs
  towards passing by at most the response's transit, well under the sleep(5ms) the fsync run puts in
  front of every sync so that an acknowledgement that overtakes its sync shows as a gap of >= 5 ms);
- the kernel's: one node runs under `strace -f -y` and its fdatasync/fsync calls on RocksDB WAL files
  (*.log) are counted against the journal batches it traced.

Which Raft index an acknowledgement vouches for: a write's own index is not in its response. A claim's
fencing token *is* the claim entry's Raft index (DESIGN "Claims and fencing"), so claims are checked at
their exact index. Other writes are checked at the response header's `applied_index`: the answering
leader's applied index when it built the answer, which is >= the write's own index and every entry up to
it was committed before the answer, so requiring it synced on a majority is the same property for a
slightly later index (a stricter check, never a looser one).

`last_index` is the highest index in a synced batch; Raft appends contiguously and one node's batches are
written and synced in order under the journal lock, so a synced batch with last_index >= i means entries
up to i of that node's log are on disk (in these runs the leader never changes: the term is checked).
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cairn import Client
from tests.support import ClusterHandle, wait_until

TRACE_ENV = "CAIRN_FAILPOINTS_TRACE"
SLOW_SYNC = "journal.sync=sleep(5ms)"  # widens any acknowledge-before-sync window to >= 5 ms
WORKFLOW_TYPE = "durability-probe"
SYNCED, WRITTEN = "journal.synced", "journal.written"


@dataclass(frozen=True)
class Ack:
    """One acknowledged write: the Raft index it vouches for and when this process got the answer."""

    what: str
    index: int
    exact: bool  # True: the write's own index (a claim's fencing token); False: header.applied_index
    mono: float
    answered_by: int | None  # the node that answered (the leader), when the response says so


@dataclass(frozen=True)
class JournalBatch:
    node: int
    event: str
    mono: float
    last_index: int


# ---- the workload -------------------------------------------------------------------------------------


def _in_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(n)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a writer thread is still running after 60 s"
    assert not errors, f"writes failed: {errors[:3]!r}"


def run_workload(c: ClusterHandle, *, persists: int, runs: int, writers: int = 6) -> list[Ack]:
    """`persists` persist_state writes, then `runs` start_workflow writes and `runs` claims, from `writers`
    concurrent clients; every acknowledgement recorded with the time its response arrived."""
    node_of = {spec.node_id: i for i, spec in enumerate(c.cluster.specs)}
    acks: list[Ack] = []
    lock = threading.Lock()
    clients = [Client(c.cluster.endpoints, timeout=20.0) for _ in range(writers)]

    def record(ack: Ack) -> None:
        with lock:
            acks.append(ack)

    def persist(n: int) -> None:
        for k in range(n, persists, writers):
            state = clients[n].persist_state(f"dur-{k}", current_step="s", variables={"k": k})
            now = time.monotonic()
            record(Ack(f"persist dur-{k}", state.applied_index, False, now, node_of.get(state.served_by)))

    def start(n: int) -> None:
        for k in range(n, runs, writers):
            run = clients[n].start_workflow(WORKFLOW_TYPE, f"run-{k}", {"k": k})
            record(Ack(f"start run-{k}", run.applied_index, False, time.monotonic(), None))

    def claim(n: int) -> None:
        for _ in range(n, runs, writers):
            task = clients[n].poll_work(f"worker-{n}", [WORKFLOW_TYPE], lease_timeout=60.0, wait=5.0)
            now = time.monotonic()
            assert task is not None, "a started run was not handed out"
            record(Ack(f"claim {task.run.workflow_id}", task.lease.fencing_token, True, now, None))

    try:
        _in_threads(writers, persist)
        _in_threads(writers, start)
        _in_threads(writers, claim)
    finally:
        for client in clients:
            client.close()
    assert len(acks) == persists + 2 * runs
    assert all(a.index > 0 for a in acks), "an acknowledgement without a Raft index"
    return acks


# ---- the trace and the checker --------------------------------------------------------------------------


def read_trace(path: Path, node_of_pid: dict[int, int]) -> list[JournalBatch]:
    """The journal events of the nodes in `node_of_pid` (complete lines only; other events ignored)."""
    if not path.exists():
        return []
    batches = []
    for line in path.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # being appended right now
        event = json.loads(line)
        if event["event"] in (SYNCED, WRITTEN) and event["pid"] in node_of_pid:
            batches.append(JournalBatch(node_of_pid[event["pid"]], event["event"], event["mono"], event["last_index"]))
    return batches


class SyncedBefore:
    """Per node: the highest Raft index covered by a `journal.synced` batch before a given instant."""

    def __init__(self, batches: list[JournalBatch], nodes: int):
        self._monos: list[list[float]] = []
        self._best: list[list[int]] = []
        for node in range(nodes):
            mine = sorted((b.mono, b.last_index) for b in batches if b.node == node and b.event == SYNCED)
            best, running = [], 0
            for _, last in mine:
                running = max(running, last)
                best.append(running)
            self._monos.append([m for m, _ in mine])
            self._best.append(best)

    def index(self, node: int, before: float) -> int:
        pos = bisect.bisect_left(self._monos[node], before)
        return self._best[node][pos - 1] if pos else 0

    def first(self, node: int, index: int) -> float:
        """When `node` first had `index` synced (infinity: never)."""
        pos = bisect.bisect_left(self._best[node], index)
        return self._monos[node][pos] if pos < len(self._monos[node]) else float("inf")


def majority_lead_ms(acks: list[Ack], batches: list[JournalBatch], nodes: int) -> list[float]:
    """Per acknowledgement: how long before it arrived its index was synced on a majority (ms, sorted)."""
    synced = SyncedBefore(batches, nodes)
    majority = nodes // 2 + 1
    leads = [(a.mono - sorted(synced.first(n, a.index) for n in range(nodes))[majority - 1]) * 1000 for a in acks]
    return sorted(leads)


def unsynced_acknowledgements(acks: list[Ack], batches: list[JournalBatch], nodes: int) -> list[str]:
    """Every acknowledgement that a majority had not synced (or whose answering leader had not synced)
    before it arrived, as a readable line; empty when the durability promise held for every one."""
    synced = SyncedBefore(batches, nodes)
    majority = nodes // 2 + 1
    problems = []
    for ack in sorted(acks, key=lambda a: a.mono):
        holders = [n for n in range(nodes) if synced.index(n, ack.mono) >= ack.index]
        if len(holders) < majority:
            problems.append(f"{ack.what} (index {ack.index}) acknowledged while synced only on nodes {holders}")
        elif ack.answered_by is not None and ack.answered_by not in holders:
            problems.append(f"{ack.what} (index {ack.index}) answered by node {ack.answered_by} before its own sync")
    return problems


def wait_traced(path: Path, node_of_pid: dict[int, int], index: int, nodes: list[int]) -> list[JournalBatch]:
    """The trace once every node in `nodes` has journaled `index` (followers may trail the last answer)."""

    def reached() -> list[JournalBatch] | None:
        batches = read_trace(path, node_of_pid)
        tops = {n: max((b.last_index for b in batches if b.node == n), default=0) for n in nodes}
        return batches if all(top >= index for top in tops.values()) else None

    return wait_until(reached, 15.0, f"not every node journaled index {index}")


def start_traced_cluster(make_cluster: Callable[..., ClusterHandle], trace: Path, durability: str) -> ClusterHandle:
    env = {TRACE_ENV: str(trace)}
    if durability == "fsync":
        env["CAIRN_FAILPOINTS"] = SLOW_SYNC  # inert in process mode anyway: the failpoint sits before the sync
    return make_cluster(3, overrides={"state_storage": {"durability": durability}}, env=env)


def _summary(batches: list[JournalBatch], nodes: int) -> str:
    return ", ".join(
        f"node{n + 1}: {sum(b.node == n and b.event == SYNCED for b in batches)} synced/"
        f"{sum(b.node == n and b.event == WRITTEN for b in batches)} written"
        for n in range(nodes)
    )


# ---- 1 and 2: the trace ---------------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["fsync", "process"])
def test_every_acknowledged_write_was_synced_on_a_majority_first(
    make_cluster: Callable[..., ClusterHandle], tmp_path: Path, durability: str
) -> None:
    """fsync: every acknowledgement came after a majority (including the answering leader) had synced its
    index, and nothing was ever only written. process (the checker's negative case): nothing is ever
    synced, and the same checker flags every single acknowledgement."""
    trace = tmp_path / "journal-trace.jsonl"
    c = start_traced_cluster(make_cluster, trace, durability)
    leader = c.wait_leader()
    term = c.status(leader).term
    node_of_pid = {proc.pid: i for i, proc in c.cluster.procs.items()}

    acks = run_workload(c, persists=200, runs=30)
    assert c.status(leader).term == term and c.wait_leader() == leader, "leadership changed during the run"
    batches = wait_traced(trace, node_of_pid, max(a.index for a in acks), list(range(c.size)))
    problems = unsynced_acknowledgements(acks, batches, c.size)
    print(
        f"\n{durability}: {len(acks)} acknowledged writes ({sum(a.exact for a in acks)} at their exact index), "
        f"highest index {max(a.index for a in acks)}, leader node{leader + 1}; {_summary(batches, c.size)}; "
        f"{len(problems)} flagged"
    )

    if durability == "fsync":
        assert not [b for b in batches if b.event == WRITTEN], "a journal batch was not synced in fsync mode"
        assert not problems, f"{len(problems)} of {len(acks)} acknowledged too early, e.g. {problems[:5]}"
        leads = majority_lead_ms(acks, batches, c.size)
        print(f"majority synced before the answer by: min {leads[0]:.2f} ms, median {leads[len(leads) // 2]:.2f} ms")
    else:
        assert batches and all(b.event == WRITTEN for b in batches), "process mode synced a journal batch"
        # The checker is not vacuous: without syncs it flags every acknowledgement.
        assert len(problems) == len(acks), f"only {len(problems)} of {len(acks)} flagged without any sync"


# ---- 3: the kernel's view (strace) --------------------------------------------------------------------

_WAL_SYNC = re.compile(r"\b(fsync|fdatasync|sync_file_range)\(\d+<[^>]*\.log>")
_ANY_SYNC = re.compile(r"\b(fsync|fdatasync|sync_file_range)\(\d+<([^>]*)>")


def _strace_prefix(out: Path) -> list[str]:
    return ["strace", "-f", "--seccomp-bpf", "-qq", "-y", "-e", "trace=fsync,fdatasync,sync_file_range", "-o", str(out)]


def _child_of(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def _syncs(out: Path) -> tuple[int, dict[str, int]]:
    """(sync calls on WAL files, sync calls by file name) in the strace output so far."""
    text = out.read_text(errors="replace") if out.exists() else ""
    by_file: dict[str, int] = {}
    for match in _ANY_SYNC.finditer(text):
        name = f"{match[1]} {Path(match[2]).name}"
        by_file[name] = by_file.get(name, 0) + 1
    return len(_WAL_SYNC.findall(text)), by_file


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
@pytest.mark.parametrize("durability", ["fsync", "process"])
def test_the_kernel_sees_one_wal_sync_per_journal_batch(
    make_cluster: Callable[..., ClusterHandle], tmp_path: Path, durability: str
) -> None:
    """node1 runs under strace: in fsync mode its WAL syncs keep up with its synced journal batches (the
    syscalls, not our hook); in process mode its WAL is never synced however many batches it writes."""
    trace, out = tmp_path / "journal-trace.jsonl", tmp_path / "node1.strace"
    c = make_cluster(
        3,
        overrides={"state_storage": {"durability": durability}},
        env={TRACE_ENV: str(trace)},
        wrap=lambda i: _strace_prefix(out) if i == 0 else [],
    )
    strace_pid = c.cluster.procs[0].pid
    node1 = wait_until(lambda: _child_of(strace_pid), 10.0, "the node under strace has no process")
    try:
        run_workload(c, persists=60, runs=0, writers=4)
        final = c.status(c.wait_leader()).applied_index
        # node1's journal batches up to the last write, read first; its syscalls only grow after that.
        batches = wait_traced(trace, {node1: 0}, final, [0])
        event = SYNCED if durability == "fsync" else WRITTEN
        assert batches and all(b.event == event for b in batches)
        if durability == "fsync":
            deadline = time.monotonic() + 10.0  # strace writes its line when the call returns: poll for it
            while (seen := _syncs(out))[0] < len(batches) and time.monotonic() < deadline:
                time.sleep(0.05)
            wal, by_file = seen
            assert wal >= len(batches), f"{wal} WAL syncs for {len(batches)} synced journal batches: {by_file}"
        else:
            assert len(batches) >= 10, "too few journal batches for 'never synced' to mean anything"
            wal, by_file = _syncs(out)
            assert wal == 0, f"process mode synced the WAL {wal} times: {by_file}"
        print(f"\n{durability}: node1 (pid {node1}) {len(batches)} journal batches, {wal} WAL syncs; all: {by_file}")
    finally:
        # strace passes a SIGTERM on to the node it started, but stop the node first so that nothing is
        # left running untraced, then let the fixture reap strace.
        if not _gone(node1):
            os.kill(node1, signal.SIGTERM)
            wait_until(lambda: _gone(node1), 15.0, "the node under strace did not stop")
