"""`cairn bench`: ops/s and latency percentiles per operation, against a fresh or a running cluster.

`--ops workflow` measures the durable-execution engine instead: completed 3-step workflows per second with
real `cairn worker run` processes, and how long a run takes to make progress again after the worker
process holding it is SIGKILLed mid-step (see `run_workflow_bench`).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cairn.v1 import state_pb2

from .client import Client
from .errors import AlreadyExistsError, CairnError, InvalidArgumentError, NotFoundError
from .types import TERMINAL_STATUSES
from .worker import Context, worker_command, workflow

OPS = ("persist", "cas", "get", "checkpoint", "recover", "sync", "workflow")


@dataclass
class BenchResult:
    op: str
    count: int
    errors: int
    ops_per_sec: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def _measure(
    op: str, concurrency: int, duration: float, make_worker: Callable[[int], Callable[[], None]]
) -> BenchResult:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop_at = time.monotonic() + duration
    start_gate = threading.Barrier(concurrency + 1)

    def run(i: int) -> None:
        call = make_worker(i)
        start_gate.wait()
        mine = latencies[i]
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                call()
            except CairnError:
                errors[i] += 1
                continue
            mine.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    merged = sorted(x for lst in latencies for x in lst)
    return BenchResult(
        op,
        len(merged),
        sum(errors),
        len(merged) / elapsed if elapsed else 0.0,
        _percentile(merged, 0.50),
        _percentile(merged, 0.90),
        _percentile(merged, 0.99),
        merged[-1] if merged else 0.0,
    )


def _workers(client: Client, op: str, value: str, workflows: int) -> Callable[[int], Callable[[], None]]:
    ids = [f"bench-{n}" for n in range(workflows)]
    counter = iter(range(10**12))

    def pick() -> str:
        return ids[next(counter) % len(ids)]

    if op == "persist":
        return lambda i: lambda: client.persist_state(pick(), current_step="s", variables={"data": value})
    if op == "get":
        return lambda i: lambda: client.get_state(pick(), include_history=False)
    if op == "sync":
        return lambda i: lambda: client.synchronize_state(pick())
    if op == "checkpoint":
        return lambda i: lambda: client.create_checkpoint(pick())
    if op == "cas":

        def cas_worker(i: int) -> Callable[[], None]:
            wid = f"bench-cas-{i}"
            version = [client.persist_state(wid, current_step="s", variables={"data": value}).version]

            def call() -> None:
                version[0] = client.persist_state(
                    wid, current_step="s", variables={"data": value}, expected_version=version[0]
                ).version

            return call

        return cas_worker
    if op == "recover":

        def recover_worker(i: int) -> Callable[[], None]:
            wid = f"bench-recover-{i}"
            client.persist_state(wid, current_step="s", variables={"data": value})
            cp = client.create_checkpoint(wid)
            return lambda: client.recover_from_checkpoint(wid, cp.id)

        return recover_worker
    raise SystemExit(f"unknown op {op!r}: choose from {', '.join(OPS)}")


# ---- --ops workflow: the durable-execution engine, with real worker processes ----------------------

# Each bench invocation serves its own workflow type (its worker processes read it from this variable),
# so runs left on a shared cluster by another bench never reach these workers.
WORKFLOW_TYPE_ENV = "CAIRN_BENCH_WORKFLOW_TYPE"
WORKFLOW_TYPE = os.environ.get(WORKFLOW_TYPE_ENV, "cairn-bench-3step")
STEPS = ("s1", "s2", "s3")
HOLD = 60.0  # seconds a recovery run sits in step s2 on its first attempt: until its worker is killed


def _bump(n: int, hold: float) -> int:
    if hold:
        time.sleep(hold)
    return n + 1


@workflow(WORKFLOW_TYPE)
def three_steps(ctx: Context, input: Any) -> dict[str, int]:
    """Three trivial steps: the bench measures the engine, not the steps. A run started with {"hold": s}
    sleeps s seconds in step s2 on its first attempt only, so the recovery part can kill the worker
    holding it mid-step; the next attempt runs at full speed."""
    hold = float(input.get("hold", 0)) if isinstance(input, dict) and ctx.attempt == 1 else 0.0
    n = 0
    for name in STEPS:
        n = ctx.step(name, _bump, n, hold if name == "s2" else 0.0)
    return {"steps": n}


@dataclass
class WorkflowBenchResult(BenchResult):
    """`--ops workflow`. count and ops_per_sec (= workflows_per_sec) are the workflows completed in the
    measured window; p50..max_ms are a workflow's claim -> completion time (sampled); the rest is the
    recovery part, one sample per kill (kill -> lease expiry -> claimable -> claimed -> next step)."""

    workflows_per_sec: float = 0.0
    workers: int = 0
    worker_slots: int = 0
    window_s: float = 0.0
    warmup_s: float = 0.0
    started: int = 0
    completed: int = 0
    unfinished: dict[str, int] = field(default_factory=dict)
    start_errors: int = 0
    recovery_lease_s: float = 0.0
    recovery_load_per_sec: float = 0.0
    kills: int = 0
    recovery_p50_ms: float = 0.0
    recovery_p99_ms: float = 0.0
    recovery_max_ms: float = 0.0
    kill_to_expiry_p50_ms: float = 0.0
    kill_to_expiry_p99_ms: float = 0.0
    expiry_to_claimable_p50_ms: float = 0.0
    expiry_to_claimable_p99_ms: float = 0.0
    expiry_to_claimable_max_ms: float = 0.0
    claimable_to_claim_p50_ms: float = 0.0
    claimable_to_claim_p99_ms: float = 0.0
    claim_to_step_p50_ms: float = 0.0
    claim_to_step_p99_ms: float = 0.0
    recovery_ms: list[float] = field(default_factory=list)  # per kill, in kill order


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(t: datetime | None) -> int:
    return 0 if t is None else (t - _EPOCH) // timedelta(microseconds=1) * 1000


class _WorkerPool:
    """`python -m cairn.cli worker run cairn.bench` processes, by worker id; close() ends every one."""

    def __init__(
        self,
        endpoints: str,
        log_dir: Path,
        workflow_type: str,
        slots: int,
        lease: float,
        name: str,
        env: Mapping[str, str] | None = None,
    ):
        self.extra_env = dict(env or {})  # CAIRN_CA, ... for a secure cluster
        self.endpoints, self.log_dir, self.workflow_type = endpoints, log_dir, workflow_type
        self.slots, self.lease, self.name = slots, lease, name
        self.procs: dict[str, subprocess.Popen] = {}
        self._seq = itertools.count(1)

    def spawn(self) -> str:
        worker_id = f"{self.name}-{next(self._seq)}"
        cmd = worker_command(
            "cairn.bench",
            self.endpoints.split(","),
            worker_id=worker_id,
            lease_timeout=f"{round(self.lease * 1000)}ms",
            concurrency=self.slots,
            poll_wait=1,  # a SIGTERMed worker finishes its current long poll first: keep stops quick
        )
        env = {**os.environ, **self.extra_env, WORKFLOW_TYPE_ENV: self.workflow_type, "PYTHONUNBUFFERED": "1"}
        with open(self.log_dir / f"{worker_id}.log", "wb") as log:
            self.procs[worker_id] = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.log_dir,
                start_new_session=True,  # a Ctrl-C of the bench reaches the bench, which ends them
            )
        return worker_id

    def log_tail(self, worker_id: str, lines: int = 20) -> str:
        try:
            text = (self.log_dir / f"{worker_id}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_serving(self, timeout: float) -> None:
        """Until every process has said it is serving (its poller starts right after)."""
        deadline = time.monotonic() + timeout
        waiting = set(self.procs)
        while waiting:
            for worker_id in sorted(waiting):
                if self.procs[worker_id].poll() is not None:
                    raise RuntimeError(f"worker {worker_id} exited:\n{self.log_tail(worker_id)}")
                if "serving" in self.log_tail(worker_id, 50):
                    waiting.discard(worker_id)
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"workers {sorted(waiting)} did not start within {timeout}s")
            time.sleep(0.05)

    def kill(self, worker_id: str) -> int:
        """SIGKILL one worker; the kill time (time.time_ns, just before the signal)."""
        proc = self.procs.pop(worker_id)
        killed_at = time.time_ns()
        proc.kill()
        proc.wait(10)
        return killed_at

    def close(self, timeout: float = 5.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL whatever is still running after `timeout`."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()


class _Feeder:
    """Starts runs `prefix` + n (n = 0, 1, ...) in a background thread, either at a steady `rate` per
    second or as fast as they are claimed, keeping about `backlog` unclaimed: the queue hands out runs in
    start order, so once run n - backlog is claimed fewer than `backlog` wait (one point read to know)."""

    def __init__(self, client: Client, workflow_type: str, prefix: str, *, backlog: int = 0, rate: float | None = None):
        self.client, self.workflow_type, self.prefix = client, workflow_type, prefix
        self.backlog, self.rate = max(1, backlog), rate
        self.started = 0
        self.errors = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-feeder", daemon=True)

    def run_id(self, n: int) -> str:
        return f"{self.prefix}{n:08d}"

    def start(self) -> _Feeder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _start_one(self, n: int) -> None:
        run_id = self.run_id(n)
        try:
            self.client.start_workflow(self.workflow_type, run_id, request_id=f"{run_id}:start")
        except AlreadyExistsError:
            pass
        except CairnError:
            with self._lock:
                self.errors += 1

    def _unclaimed(self, n: int) -> bool:
        try:
            return self.client.get_workflow(self.run_id(n)).status == "PENDING"
        except NotFoundError:
            return False  # its start failed
        except CairnError:
            return True

    def _loop(self) -> None:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-start") as pool:
            if self.rate:
                began = time.monotonic()
                while not self._stop.wait(max(0.0, began + self.started / self.rate - time.monotonic())):
                    pool.submit(self._start_one, self.started)
                    self.started += 1
                return
            chunk = max(1, self.backlog // 2)
            while not self._stop.is_set():
                n = self.started
                if n >= self.backlog and self._unclaimed(n - self.backlog):
                    self._stop.wait(0.02)
                    continue
                list(pool.map(self._start_one, range(n, n + chunk)))
                self.started = n + chunk


def _drain(client: Client, prefix: str, timeout: float) -> list[Any]:
    """Every run under `prefix` once none is PENDING or RUNNING (or at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = client.list_workflow_runs(prefix=prefix)
        if all(r.status in TERMINAL_STATUSES for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def _history(client: Client, workflow_id: str) -> list[state_pb2.StateChange]:
    state = client.get_state(workflow_id)
    assert state.raw is not None
    return sorted(state.raw.history, key=lambda h: h.version)


def _claim_to_complete_ms(client: Client, workflow_id: str) -> float | None:
    """The last attempt's claim -> RUN_COMPLETED, from the run's history."""
    claimed = completed = None
    for h in _history(client, workflow_id):
        if h.kind == state_pb2.RUN_CLAIMED:
            claimed = h.time.ToNanoseconds()
        elif h.kind == state_pb2.RUN_COMPLETED:
            completed = h.time.ToNanoseconds()
    if claimed is None or completed is None:
        return None
    return (completed - claimed) / 1e6


@dataclass
class _Throughput:
    per_sec: float
    in_window: int
    latencies_ms: list[float]
    runs: list[Any]
    start_errors: int


def _measure_throughput(
    client: Client,
    pool: _WorkerPool,
    prefix: str,
    workers: int,
    warmup: float,
    duration: float,
    samples: int = 300,
) -> _Throughput:
    for _ in range(workers):
        pool.spawn()
    pool.wait_serving(60)
    feeder = _Feeder(client, pool.workflow_type, prefix, backlog=2 * workers * pool.slots).start()
    try:
        time.sleep(warmup)
        window_start = time.time_ns()
        time.sleep(duration)
        window_end = time.time_ns()
    finally:
        feeder.stop()
    runs = _drain(client, prefix, 60)
    # A completed run's updated_at is its RUN_COMPLETED time (on a cluster that checkpoints completed runs
    # through checkpointing.every_versions, the checkpoint's, a scheduler tick later).
    done = [r for r in runs if r.status == "COMPLETED" and window_start <= _ns(r.updated_at) < window_end]
    picked = done[:: max(1, len(done) // samples)][:samples]
    with ThreadPoolExecutor(max_workers=8) as reads:
        latencies = [
            ms for ms in reads.map(lambda r: _claim_to_complete_ms(client, r.workflow_id), picked) if ms is not None
        ]
    elapsed = (window_end - window_start) / 1e9
    return _Throughput(len(done) / elapsed, len(done), sorted(latencies), runs, feeder.errors)


@dataclass
class _Recovery:
    """One kill, times in ns (time.time_ns here; the history times are the leader's, on this machine)."""

    killed: int
    expires: int  # the dead worker's lease expiry
    expired: int  # LEASE_EXPIRED: claimable again
    claimed: int  # RUN_CLAIMED by the next attempt
    stepped: int  # the next attempt's first STEP_RECORDED (or RUN_COMPLETED if no step was left)


def _one_kill(client: Client, pool: _WorkerPool, workflow_id: str, timeout: float, rng: random.Random) -> _Recovery:
    """Start a run that sits in step s2 on its first attempt, SIGKILL the process holding it there, start a
    replacement process, and follow the run until its next attempt records a step."""
    client.start_workflow(pool.workflow_type, workflow_id, input={"hold": HOLD}, request_id=f"{workflow_id}:start")
    deadline = time.monotonic() + timeout
    while True:
        run = client.get_workflow(workflow_id)
        if run.status == "RUNNING" and run.lease is not None and run.step("s1") is not None:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {workflow_id} did not reach step s2 within {timeout}s (status {run.status})")
        time.sleep(0.01)
    holder, token, expires = run.lease.worker_id, run.lease.fencing_token, _ns(run.lease.expires_at)
    if holder not in pool.procs:
        raise RuntimeError(f"run {workflow_id} is held by {holder!r}, not one of this bench's workers")
    # Kill at a random point of the heartbeat cycle: right after the claim, the lease would always have
    # nearly its whole duration left.
    time.sleep(rng.uniform(0, pool.lease))
    killed = pool.kill(holder)
    pool.spawn()
    # A heartbeat sent just before the kill may still extend the lease: the last expiry seen under the
    # dead token is the one that ran out.
    deadline = time.monotonic() + pool.lease + timeout
    while True:
        run = client.get_workflow(workflow_id)
        if run.lease is not None and run.lease.fencing_token == token:
            expires = max(expires, _ns(run.lease.expires_at))
        elif run.fencing_token > token:
            history = _history(client, workflow_id)
            recovery = _recovery_times(history, token, killed, expires)
            if recovery is not None:
                return recovery
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {workflow_id} made no progress within {pool.lease + timeout}s of the kill")
        time.sleep(0.01)


def _recovery_times(history: list[state_pb2.StateChange], token: int, killed: int, expires: int) -> _Recovery | None:
    expired = claim = None
    for h in history:
        if expired is None:
            if h.kind == state_pb2.LEASE_EXPIRED and h.time.ToNanoseconds() >= killed:
                expired = h
        elif claim is None:
            if h.kind == state_pb2.RUN_CLAIMED and h.fencing_token > token:
                claim = h
        elif h.kind in (state_pb2.STEP_RECORDED, state_pb2.RUN_COMPLETED) and h.fencing_token == claim.fencing_token:
            return _Recovery(
                killed, expires, expired.time.ToNanoseconds(), claim.time.ToNanoseconds(), h.time.ToNanoseconds()
            )
    return None


def _recovery_lease(client: Client, workflow_type: str, own_cluster: bool, echo: Callable[..., None]) -> float:
    """1s; on a cluster whose execution.min_lease_timeout is longer, that minimum (read from the bounds a
    PollWork with a 1s lease is refused with). A poll that waits 0s for a type with no runs claims nothing."""
    if own_cluster:
        return 1.0
    try:
        client.poll_work("cairn-bench-probe", [workflow_type], lease_timeout=1.0, wait=0)
        return 1.0
    except InvalidArgumentError as err:
        found = re.search(r"\(([\d.]+)s \.\.", err.message)
        if found is None:
            raise
        lease = float(found.group(1))
        echo(f"the cluster's execution.min_lease_timeout is {lease}s: the recovery part uses leases of {lease}s")
        return lease


def run_workflow_bench(
    client: Client,
    *,
    workers: int,
    worker_slots: int = 8,
    duration: float,
    warmup: float = 1.0,
    kills: int = 10,
    recovery_lease: float,
    recovery_load: float = 0.5,
    seed: int | None = None,
    echo: Callable[..., None],
    worker_env: Mapping[str, str] | None = None,
) -> WorkflowBenchResult:
    """Two parts, each with its own `workers` worker processes of `worker_slots` runs at once:

    1. throughput: runs of a 3-step workflow are started as fast as they are claimed (a few per slot
       kept waiting); the RUN_COMPLETED times of the runs that finish in `duration` seconds after
       `warmup` give workflows/s; a sample of them gives the claim -> completion time.
    2. recovery, with leases of `recovery_lease` seconds and a background load of `recovery_load` x the
       measured throughput: `kills` times, a run that sits in step s2 gets its worker process SIGKILLed
       (a replacement process is started at once), and its history gives the kill -> next step time
       and its parts. Kills are sequential: each run recovers before the next kill.
    """
    workflow_type = f"{WORKFLOW_TYPE}-{os.getpid()}-{time.time_ns() % 10**6}"
    prefix = f"bench-{workflow_type}-"
    endpoints = ",".join(client.endpoints)
    with tempfile.TemporaryDirectory(prefix="cairn-bench-workers-") as logs:
        pool = _WorkerPool(endpoints, Path(logs), workflow_type, worker_slots, 10.0, "bench-tput", worker_env)
        try:
            tput = _measure_throughput(client, pool, f"{prefix}t-", workers, warmup, duration)
        finally:
            pool.close()
        echo(
            f"{'workflow':>10}: {tput.per_sec:8.1f} workflows/s ({tput.in_window} 3-step runs in {duration:g}s "
            f"after {warmup:g}s warm-up; {workers} worker processes x {worker_slots} slots)  claim->complete "
            f"p50 {_percentile(tput.latencies_ms, 0.5):.2f}  p99 {_percentile(tput.latencies_ms, 0.99):.2f} ms"
        )
        samples: list[_Recovery] = []
        runs, start_errors = list(tput.runs), tput.start_errors
        load = recovery_load * tput.per_sec
        if kills > 0:
            pool = _WorkerPool(
                endpoints, Path(logs), workflow_type, worker_slots, recovery_lease, "bench-recovery", worker_env
            )
            feeder = _Feeder(client, workflow_type, f"{prefix}r-load-", rate=load) if load > 0 else None
            try:
                for _ in range(workers):
                    pool.spawn()
                pool.wait_serving(60)
                if feeder is not None:
                    feeder.start()
                rng = random.Random(seed)
                for k in range(kills):
                    pool.wait_serving(60)  # the replacement for the last kill is up: always `workers` processes
                    samples.append(_one_kill(client, pool, f"{prefix}r-kill-{k:03d}", 30.0, rng))
                if feeder is not None:
                    feeder.stop()
                    start_errors += feeder.errors
                runs += _drain(client, f"{prefix}r-", 60)
            finally:
                if feeder is not None:
                    feeder.stop()
                pool.close()
    result = _workflow_result(tput, samples, runs, start_errors, workers, worker_slots, duration, warmup)
    result.recovery_lease_s, result.recovery_load_per_sec = recovery_lease, load
    if samples:
        echo(
            f"{'recovery':>10}: {len(samples)} kills, {recovery_lease:g}s leases, {load:.0f} workflows/s "
            f"background: kill -> next step elsewhere p50 {result.recovery_p50_ms:.0f}  "
            f"p99 {result.recovery_p99_ms:.0f}  max {result.recovery_max_ms:.0f} ms"
        )
        echo(
            f"{'':>10}  kill -> lease expiry p50 {result.kill_to_expiry_p50_ms:.0f}  "
            f"p99 {result.kill_to_expiry_p99_ms:.0f} ms; expiry -> claimable p50 "
            f"{result.expiry_to_claimable_p50_ms:.0f}  p99 {result.expiry_to_claimable_p99_ms:.0f}  "
            f"max {result.expiry_to_claimable_max_ms:.0f} ms (bounded by recovery.max_recovery_time)"
        )
        echo(
            f"{'':>10}  claimable -> claim p50 {result.claimable_to_claim_p50_ms:.1f}  "
            f"p99 {result.claimable_to_claim_p99_ms:.1f} ms; claim -> next step p50 "
            f"{result.claim_to_step_p50_ms:.1f}  p99 {result.claim_to_step_p99_ms:.1f} ms"
        )
    if result.unfinished or start_errors:
        echo(
            f"{'':>10}  {result.started} runs started, {result.completed} completed, "
            f"not completed: {result.unfinished}, start errors: {start_errors}"
        )
    return result


def _workflow_result(
    tput: _Throughput,
    samples: list[_Recovery],
    runs: list[Any],
    start_errors: int,
    workers: int,
    worker_slots: int,
    duration: float,
    warmup: float,
) -> WorkflowBenchResult:
    by_status = Counter(r.status for r in runs)
    completed = by_status.pop("COMPLETED", 0)
    lat = tput.latencies_ms

    def ms(parts: Callable[[_Recovery], int]) -> list[float]:
        return sorted(parts(s) / 1e6 for s in samples)

    recovery = ms(lambda s: s.stepped - s.killed)
    to_expiry = ms(lambda s: s.expires - s.killed)
    to_claimable = ms(lambda s: s.expired - s.expires)
    to_claim = ms(lambda s: s.claimed - s.expired)
    to_step = ms(lambda s: s.stepped - s.claimed)
    return WorkflowBenchResult(
        "workflow",
        tput.in_window,
        start_errors + sum(by_status.values()),
        tput.per_sec,
        _percentile(lat, 0.50),
        _percentile(lat, 0.90),
        _percentile(lat, 0.99),
        lat[-1] if lat else 0.0,
        workflows_per_sec=tput.per_sec,
        workers=workers,
        worker_slots=worker_slots,
        window_s=duration,
        warmup_s=warmup,
        started=len(runs),
        completed=completed,
        unfinished=dict(by_status),
        start_errors=start_errors,
        kills=len(samples),
        recovery_p50_ms=_percentile(recovery, 0.50),
        recovery_p99_ms=_percentile(recovery, 0.99),
        recovery_max_ms=recovery[-1] if recovery else 0.0,
        kill_to_expiry_p50_ms=_percentile(to_expiry, 0.50),
        kill_to_expiry_p99_ms=_percentile(to_expiry, 0.99),
        expiry_to_claimable_p50_ms=_percentile(to_claimable, 0.50),
        expiry_to_claimable_p99_ms=_percentile(to_claimable, 0.99),
        expiry_to_claimable_max_ms=to_claimable[-1] if to_claimable else 0.0,
        claimable_to_claim_p50_ms=_percentile(to_claim, 0.50),
        claimable_to_claim_p99_ms=_percentile(to_claim, 0.99),
        claim_to_step_p50_ms=_percentile(to_step, 0.50),
        claim_to_step_p99_ms=_percentile(to_step, 0.99),
        recovery_ms=[round((s.stepped - s.killed) / 1e6, 3) for s in samples],
    )


def run_bench(
    *,
    endpoints: str | None,
    nodes: int,
    ops: list[str],
    concurrency: int,
    value_size: int,
    duration: float,
    workflows: int,
    durability: str,
    echo: Callable[..., None],
    kills: int = 10,
    worker_slots: int = 8,
    warmup: float = 1.0,
    recovery_lease: float | None = None,
    seed: int | None = None,
    security: Mapping[str, str] | None = None,
) -> list[BenchResult]:
    """`security`: Client's ca/cert/key/token (paths and the token) for a cluster given by `endpoints`.

    One result per op. For `workflow` (a WorkflowBenchResult): max(2, concurrency) worker processes,
    `duration` seconds of throughput after `warmup`, then `kills` worker kills (see run_workflow_bench)."""
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise SystemExit(f"unknown op {unknown[0]!r}: choose from {', '.join(OPS)}")
    cluster = None
    tmp = None
    if endpoints is None:
        from cairn_server.local_cluster import LocalCluster, free_base_port

        tmp = tempfile.TemporaryDirectory(prefix="cairn-bench-")
        base = free_base_port(nodes)
        overrides: dict[str, Any] = {"state_storage": {"durability": durability}}
        if "workflow" in ops:  # the recovery part's 1s leases, under the default 1s minimum's margin
            overrides["execution"] = {"min_lease_timeout": "200ms"}
        cluster = LocalCluster(Path(tmp.name), nodes=nodes, base_port=base, overrides=overrides)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            tmp.cleanup()
            raise
        endpoints = ",".join(cluster.endpoints)
        echo(f"started a {nodes}-node cluster ({durability}) at {endpoints}")
    security = dict(security or {})
    client = Client(endpoints, timeout=30.0, **security)
    # The workflow op's worker processes get the same credentials (`cairn worker run` reads CAIRN_*).
    worker_env = {f"CAIRN_{k.upper()}": str(v) for k, v in security.items()}
    try:
        client.wait_ready(60)
        value = "x" * value_size
        if any(op != "workflow" for op in ops):
            for wid in (f"bench-{n}" for n in range(workflows)):
                client.persist_state(wid, current_step="s", variables={"data": value})
        results: list[BenchResult] = []
        for op in ops:
            if op == "workflow":
                lease = recovery_lease or _recovery_lease(client, WORKFLOW_TYPE, cluster is not None, echo)
                results.append(
                    run_workflow_bench(
                        client,
                        workers=max(2, concurrency),
                        worker_slots=worker_slots,
                        duration=duration,
                        warmup=warmup,
                        kills=kills,
                        recovery_lease=lease,
                        seed=seed,
                        echo=echo,
                        worker_env=worker_env,
                    )
                )
                continue
            result = _measure(op, concurrency, duration, _workers(client, op, value, workflows))
            echo(f"{op:>10}: {result.ops_per_sec:8.0f} ops/s  p50 {result.p50_ms:6.2f}  p99 {result.p99_ms:6.2f} ms")
            results.append(result)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            tmp.cleanup()


__all__ = ["BenchResult", "WorkflowBenchResult", "run_bench", "run_workflow_bench"]
