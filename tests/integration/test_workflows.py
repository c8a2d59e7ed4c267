"""Durable execution on a real 3-node cluster with real worker processes (`cairn worker run`).

The workers serve tests/integration/workflow_apps/chain.py: every execution of a step's code appends a line
to an execution log, and the steps block, raise or crash as the run's input and the test's control files say.
So the tests count how often each step's code really ran, and act on a worker (kill -9, SIGSTOP) only once its
step has provably started. Workers are always stopped in the fixture; their logs are printed at teardown
(pytest shows them when a test fails).
"""

from __future__ import annotations

import itertools
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cairn import AlreadyExistsError, LeaseLostError
from cairn.v1 import state_pb2
from cairn_server import failpoints
from tests.support import ClusterHandle, WorkerProcess, start_cluster, stays_true, wait_until

pytestmark = pytest.mark.timeout(300)

APP = Path(__file__).parent / "workflow_apps" / "chain.py"
LEASE = 2.0
# Small attempt budget and short backoff so poison runs end quickly; short leases for crash loops.
ENGINE_OVERRIDES = {
    "recovery": {"max_attempts": 3, "retry_backoff": "100ms"},
    "execution": {"min_lease_timeout": "500ms"},
}


@dataclass(frozen=True)
class Execution:
    run: str
    step: str
    attempt: int
    pid: int
    worker: str


@dataclass
class Lab:
    """One test's workers, control files and execution log, against one cluster."""

    cluster: ClusterHandle
    dir: Path
    workflow_type: str
    workers: list[WorkerProcess] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def client(self):
        return self.cluster.client

    def worker(self, name: str, *, lease: str = "2s", concurrency: int = 4) -> WorkerProcess:
        w = WorkerProcess(
            name=name,
            app=APP,
            endpoints=self.cluster.cluster.endpoints,
            log_path=self.dir / f"worker-{name}.log",
            env={"CAIRN_TEST_DIR": str(self.dir), "CAIRN_TEST_TYPE": self.workflow_type},
            lease_timeout=lease,
            concurrency=concurrency,
        )
        self.workers.append(w)
        return w.start()

    def start(self, behaviour: dict[str, Any] | None = None, prefix: str = "run") -> str:
        run = f"{self.workflow_type}-{prefix}{next(self._ids)}"
        started = self.client.start_workflow(self.workflow_type, run, behaviour or {})
        assert started.status == "PENDING" and started.attempt == 1
        return run

    # ---- control files and the execution log ------------------------------------------------------

    def go(self, run: str, step: str, worker: str | None = None) -> None:
        """Let a blocked step finish (in every worker, or only in `worker`)."""
        (self.dir / (f"go.{run}.{step}" + (f".{worker}" if worker else ""))).touch()

    def allow(self, run: str, step: str) -> None:
        """Make a raising or crashing step succeed from now on."""
        (self.dir / f"ok.{run}.{step}").touch()

    def executions(self, run: str | None = None, step: str | None = None) -> list[Execution]:
        path = self.dir / "executions.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            r, s, attempt, pid, worker = line.split()
            if (run is None or r == run) and (step is None or s == step):
                out.append(Execution(r, s, int(attempt), int(pid), worker))
        return out

    def wait_started(self, run: str, step: str, worker: str | None = None, timeout: float = 30.0) -> Execution:
        """Until the step's code has started (in `worker`, when given)."""

        def started() -> Execution | None:
            return next((e for e in self.executions(run, step) if worker is None or e.worker == worker), None)

        return wait_until(started, timeout, f"step {step} of {run} did not start (worker {worker})")

    # ---- state --------------------------------------------------------------------------------------

    def history(self, run: str) -> list[state_pb2.StateChange]:
        """The engine's history entries (raw: attempt, fencing_token and step_name are there)."""
        state = self.client.get_state(run)
        assert state.raw is not None
        return list(state.raw.history)

    def kinds(self, run: str) -> list[str]:
        return [state_pb2.ChangeKind.Name(h.kind) for h in self.history(run)]

    def dropped_line(self, worker: WorkerProcess, run: str) -> str | None:
        """The worker's log line saying it dropped `run` (lease lost), if any."""
        return next((ln for ln in worker.log().splitlines() if f"run {run}:" in ln and ln.endswith("; dropped")), None)

    def close(self, timeout: float = 4.0) -> None:
        """Stop every worker: gracefully all at once, killed at the deadline (a blocked step never ends)."""
        for w in self.workers:
            w.terminate()
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.stop(max(0.1, deadline - time.monotonic()))


@pytest.fixture(scope="module")
def engine_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """One cluster for the tests that only kill or stop workers, never nodes (each test has its own type)."""
    handle = start_cluster(tmp_path_factory.mktemp("engine"), 3, ENGINE_OVERRIDES)
    yield handle
    handle.close()


@pytest.fixture
def make_lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[ClusterHandle], Lab]]:
    labs: list[Lab] = []
    base = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name.removeprefix("test_"))[:40]

    def make(cluster: ClusterHandle) -> Lab:
        d = tmp_path / f"lab{len(labs)}"
        d.mkdir()
        lab = Lab(cluster, d, f"{base}-{uuid.uuid4().hex[:6]}")
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
        for w in lab.workers:
            exit_code = w.proc.returncode if w.proc else None
            print(f"\n---- worker {w.name} (pid {w.proc.pid if w.proc else '-'}, exit {exit_code}) ----")
            print("\n".join(w.log().splitlines()[-40:]))
        log = lab.dir / "executions.log"
        print(f"\n---- executions ----\n{log.read_text() if log.exists() else ''}")
        for i in range(lab.cluster.size):
            print(f"\n---- {lab.cluster.cluster.specs[i].node_id} log tail ----\n{lab.cluster.cluster.log_tail(i, 25)}")


def step_results(run) -> dict[str, dict[str, Any]]:
    return {s.name: s.result for s in run.steps}


# ---- 1. kill -9 mid-step ----------------------------------------------------------------------------------


def test_a_worker_killed_mid_step_is_replaced_and_persisted_steps_never_run_again(engine_cluster, make_lab) -> None:
    lab = make_lab(engine_cluster)
    # concurrency 1: no long poll of the killed worker is left open on the cluster to claim the run again
    # (that is a separate bug, see test_a_killed_workers_open_poll_claims_nothing).
    first = lab.worker("first", concurrency=1)
    run = lab.start({"block": ["s2"]})
    lab.wait_started(run, "s2", worker="first")
    assert [s.name for s in lab.client.get_workflow(run).steps] == ["s1"]  # s1 persisted before s2 began

    first.kill()
    lab.go(run, "s2")
    second = lab.worker("second")
    final = lab.client.wait_workflow(run, timeout=30)

    assert final.status == "COMPLETED", final
    assert final.attempt == 2, f"one lease expiry, so attempt 2; history {lab.kinds(run)}"
    ran = Counter(e.step for e in lab.executions(run))
    assert ran["s1"] == 1, "a persisted step's code never runs again"
    assert ran["s2"] == 2, "the interrupted step ran again (at least once), and only once more"
    assert ran["s3"] == 1
    assert [e.worker for e in lab.executions(run, "s2")] == ["first", "second"]
    kinds = lab.kinds(run)
    assert kinds.count("LEASE_EXPIRED") == 1, kinds
    recorded = [h.step_name for h in lab.history(run) if h.kind == state_pb2.STEP_RECORDED]
    assert recorded == ["s1", "s2", "s3"], "each step's result is recorded exactly once"
    results = step_results(final)
    assert results["s1"]["worker"] == "first" and results["s1"]["attempt"] == 1
    assert results["s2"]["worker"] == "second" and results["s2"]["attempt"] == 2
    assert final.output["finished_by"] == "second"
    assert second.alive()


def test_a_killed_workers_open_poll_claims_nothing(engine_cluster, make_lab) -> None:
    """A worker killed while its long poll waits on the cluster must not be handed a run afterwards."""
    lab = make_lab(engine_cluster)
    ghost = lab.worker("ghost")  # concurrency 4: a free slot keeps a poll open while a run executes
    warm_up = lab.start({"steps": ["s1"]})
    assert lab.client.wait_workflow(warm_up, timeout=30).status == "COMPLETED"  # it polls, and polls again
    ghost.kill()
    run = lab.start({"steps": ["s1"]})

    def unclaimed() -> bool:
        r = lab.client.get_workflow(run)
        assert r.status == "PENDING", f"run {r.status}, claimed by {r.lease_holder!r}, a worker that was killed"
        return True

    stays_true(unclaimed, 2 * LEASE, "the run was claimed")
    lab.worker("live")
    final = lab.client.wait_workflow(run, timeout=30)
    assert final.status == "COMPLETED" and final.attempt == 1, lab.kinds(run)
    assert final.output["finished_by"] == "live"


# ---- 2. a paused worker past its lease -------------------------------------------------------------------


def test_a_worker_paused_past_its_lease_cannot_write_when_it_resumes(engine_cluster, make_lab) -> None:
    lab = make_lab(engine_cluster)
    # concurrency 1: while its one slot runs the step it holds no long poll open, so a paused worker cannot
    # win the re-claim (a poll held open by a paused process still looks alive to the cluster).
    stale = lab.worker("stale", concurrency=1)
    run = lab.start({"block": ["s2"]})
    lab.wait_started(run, "s2", worker="stale")
    stale_token = lab.client.get_workflow(run).fencing_token

    stale.signal(signal.SIGSTOP)
    wait_until(lambda: "LEASE_EXPIRED" in lab.kinds(run), 10 * LEASE, "the paused worker's lease never expired")
    lab.worker("fresh")
    lab.wait_started(run, "s2", worker="fresh")
    claimed = lab.client.get_workflow(run)
    assert claimed.status == "RUNNING" and claimed.lease_holder == "fresh" and claimed.attempt == 2
    assert claimed.fencing_token > stale_token
    before = lab.client.get_state(run)

    # The paused worker's step finishes as soon as it runs again; then it must write nothing.
    lab.go(run, "s2", worker="stale")
    stale.signal(signal.SIGCONT)
    line = wait_until(lambda: lab.dropped_line(stale, run), 15, "the resumed worker did not drop the run")
    assert "lease" in line, line
    after = lab.client.get_state(run)
    assert (after.version, after.checksum, after.current_step) == (before.version, before.checksum, before.current_step)
    assert after.raw.run == before.raw.run
    assert after.history == before.history

    # The cluster itself refuses the stale token (the SDK dropped the run before even asking).
    with pytest.raises(LeaseLostError):
        lab.client.record_step(run, stale_token, "s2", {"worker": "stale"})
    with pytest.raises(LeaseLostError):
        lab.client.complete_workflow(run, stale_token, {"finished_by": "stale"})
    assert lab.client.get_state(run).version == before.version

    lab.go(run, "s2", worker="fresh")
    final = lab.client.wait_workflow(run, timeout=30)
    assert final.status == "COMPLETED" and final.attempt == 2, final
    results = step_results(final)
    assert results["s1"]["worker"] == "stale"  # persisted under the first lease, before the pause
    assert results["s2"]["worker"] == "fresh" and results["s3"]["worker"] == "fresh"
    assert final.output["finished_by"] == "fresh"
    assert [e.worker for e in lab.executions(run, "s3")] == ["fresh"], "the stale worker went no further"
    assert stale.alive(), "losing a lease never crashes the worker"

    # History entries carry the lease's fencing token: both claims, and every step recorded after the
    # re-claim is under the new lease's token (the step before it under the old one).
    history = lab.history(run)
    claims = [h for h in history if h.kind == state_pb2.RUN_CLAIMED]
    shown = [(state_pb2.ChangeKind.Name(h.kind), h.attempt, h.fencing_token) for h in history]
    assert [(c.fencing_token, c.attempt) for c in claims] == [(stale_token, 1), (final.fencing_token, 2)], shown
    recorded = {h.step_name: h.fencing_token for h in history if h.kind == state_pb2.STEP_RECORDED}
    assert recorded == {"s1": stale_token, "s2": final.fencing_token, "s3": final.fencing_token}


# ---- 3. leader failover with live leases ---------------------------------------------------------------


def test_a_leader_failover_expires_no_live_lease(make_cluster, make_lab) -> None:
    c = make_cluster(3)
    lab = make_lab(c)
    runs = [lab.start({"block": ["s2"]}) for _ in range(4)]
    lab.worker("w1")
    lab.worker("w2")
    for run in runs:
        lab.wait_started(run, "s2")
    tokens = {run: lab.client.get_workflow(run).fencing_token for run in runs}

    old = c.wait_leader()
    c.kill(old)
    others = [i for i in range(c.size) if i != old]
    c.wait_leader(among=others, timeout=20)
    new_leader_seen = time.time()

    # The workers keep heartbeating through the new leader past its grace period (one lease duration in
    # office): every lease is extended beyond that, under the same token.
    def verdict() -> str | None:
        now = {run: lab.client.get_workflow(run) for run in runs}
        for run, r in now.items():
            if r.status != "RUNNING" or r.fencing_token != tokens[run]:
                return f"{run} lost its lease (now {r.status}, attempt {r.attempt}: {r.last_error!r})"
        past_grace = new_leader_seen + 2 * LEASE + 0.5
        extended = all(r.lease and r.lease.expires_at.timestamp() > past_grace for r in now.values())
        return "extended" if extended else None

    outcome = wait_until(verdict, 10 * LEASE, "leases were not extended by the new leader")
    assert outcome == "extended", outcome
    c.cluster.start_node(old)
    for run in runs:
        lab.go(run, "s2")
    for run in runs:
        final = lab.client.wait_workflow(run, timeout=30)
        assert final.status == "COMPLETED", final
        assert final.attempt == 1, f"{run}: {lab.kinds(run)}"
        assert "LEASE_EXPIRED" not in lab.kinds(run)
        assert Counter(e.step for e in lab.executions(run)) == {"s1": 1, "s2": 1, "s3": 1}


def test_a_new_leader_waits_a_full_lease_before_expiring_a_predecessors_lease(make_cluster, make_lab) -> None:
    # Quick elections: the new leader is in office well before the paused worker's lease runs out, so only
    # the grace (not a slow election) can keep it from expiring that lease under a lease duration.
    c = make_cluster(3, overrides={"raft": {"election_timeout": "400ms"}})
    lab = make_lab(c)
    paused = lab.worker("paused", concurrency=1)
    run = lab.start({"block": ["s1"]})
    lab.wait_started(run, "s1", worker="paused")
    paused.signal(signal.SIGSTOP)

    # Let some of the lease run out under the old leader, so that without the grace the new leader
    # would expire it well under a lease duration after the old leader died.
    def partly_used_lease():
        lease = lab.client.get_workflow(run).lease
        return lease if lease and lease.expires_at.timestamp() - time.time() < LEASE - 0.7 else None

    lease = wait_until(partly_used_lease, 10, "no lease")
    old = c.wait_leader()
    killed_at = time.time()
    c.kill(old)
    natural_expiry = lease.expires_at.timestamp()
    assert natural_expiry > killed_at, "the old leader's lease had already run out: too slow to be meaningful"
    c.wait_leader(among=[i for i in range(c.size) if i != old])
    new_leader_seen = time.time()

    entry = wait_until(
        lambda: next((h for h in lab.history(run) if h.kind == state_pb2.LEASE_EXPIRED), None),
        30,
        "the lease never expired",
    )
    expired_at = entry.time.ToNanoseconds() / 1e9
    assert expired_at - killed_at >= LEASE, (
        f"expired {expired_at - killed_at:.3f}s after the old leader died; the lease would have run out "
        f"{natural_expiry - killed_at:.3f}s after it, the new leader was seen {new_leader_seen - killed_at:.3f}s after"
    )
    c.cluster.start_node(old)
    lab.go(run, "s1")
    paused.signal(signal.SIGCONT)
    final = lab.client.wait_workflow(run, timeout=30)
    assert final.status == "COMPLETED" and final.attempt == 2, final


# ---- 4. poison workflows ----------------------------------------------------------------------------------


def test_a_step_that_always_raises_is_quarantined_and_can_be_released(engine_cluster, make_lab) -> None:
    lab = make_lab(engine_cluster)
    worker = lab.worker("poison")
    run = lab.start({"steps": ["s1", "s2"], "raise": ["s2"]})
    quarantined = lab.client.wait_workflow(run, timeout=30)
    assert quarantined.status == "QUARANTINED", quarantined
    assert quarantined.attempt == 3, "recovery.max_attempts is 3"
    assert "RuntimeError: poison step s2" in quarantined.last_error, quarantined.last_error
    assert lab.kinds(run).count("RUN_ATTEMPT_FAILED") == 3
    assert Counter(e.step for e in lab.executions(run)) == {"s1": 1, "s2": 3}
    stays_true(lambda: len(lab.executions(run)) == 4, 1.0, "a quarantined run ran again")
    assert worker.alive(), "a raising step never kills its worker"

    lab.allow(run, "s2")
    released = lab.client.release_workflow(run)
    assert released.status == "PENDING" and released.attempt == 4, released
    final = lab.client.wait_workflow(run, timeout=30)
    assert final.status == "COMPLETED" and final.attempt == 4, final
    assert Counter(e.step for e in lab.executions(run)) == {"s1": 1, "s2": 4}
    assert "RUN_RELEASED" in lab.kinds(run)


def test_a_step_that_kills_its_worker_every_time_is_quarantined(engine_cluster, make_lab) -> None:
    lab = make_lab(engine_cluster)
    stop = threading.Event()
    generation = itertools.count(1)
    started: list[WorkerProcess] = []

    def supervise() -> None:
        """Restart the worker whenever it dies, like a process manager would."""
        while not stop.is_set():
            if not started or not started[-1].alive():
                # concurrency 1: no open poll of a crashed process outlives it to claim the run again
                # (test_a_killed_workers_open_poll_claims_nothing)
                started.append(lab.worker(f"crashy-{next(generation)}", lease="1s", concurrency=1))
            stop.wait(0.05)

    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()
    try:
        run = lab.start({"steps": ["s1"], "crash": ["s1"]})
        final = lab.client.wait_workflow(run, timeout=60)
        assert final.status == "QUARANTINED", final
        assert final.attempt == 3, final
        assert "expired" in final.last_error, final.last_error
        assert lab.kinds(run).count("LEASE_EXPIRED") == 3
        execs = lab.executions(run)
        assert len(execs) == 3 and len({e.pid for e in execs}) == 3, execs
        # The supervisor keeps a live worker around; the quarantined run is not handed to it again.
        live = wait_until(lambda: started[-1].alive() and "serving" in started[-1].log() and started[-1], 20, "up")
        stays_true(lambda: len(lab.executions(run)) == 3 and live.alive(), 3.0, "the crashing run ran again")
    finally:
        stop.set()
        supervisor.join(5)


# ---- 5. periodic checkpoints -----------------------------------------------------------------------------


def test_checkpoints_by_interval_retention_idle_workflows_and_a_full_restart(make_cluster) -> None:
    interval, keep = 1.0, 3
    c = make_cluster(3, overrides={"checkpointing": {"interval": "1s", "max_per_workflow": keep}})
    client = c.client
    idle, busy = "cp-idle", "cp-busy"
    idle_written = client.persist_state(idle, variables={"n": 0})
    most = 0

    def checkpoints(wid: str) -> list:
        nonlocal most
        cps = sorted(client.list_checkpoints(wid), key=lambda cp: cp.timestamp)
        most = max(most, len(cps))
        assert len(cps) <= keep, f"{len(cps)} checkpoints of {wid}; max_per_workflow is {keep}"
        return cps

    first = client.persist_state(busy, variables={"n": 0})
    cp = wait_until(lambda: checkpoints(busy), 5 * interval, "no periodic checkpoint")[-1]
    assert cp.version == first.version
    assert (cp.timestamp - first.metadata.updated_at).total_seconds() >= interval * 0.99, "taken before it was due"
    for n in range(1, 5):
        written = client.persist_state(busy, variables={"n": n})
        v = written.version
        wait_until(lambda v=v: checkpoints(busy)[-1].version == v, 5 * interval, f"no checkpoint of v{v}")
    cps = checkpoints(busy)
    assert len(cps) == keep and most == keep
    assert [cp.version for cp in cps] == [3, 4, 5]
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in itertools.pairwise(cps)]
    assert all(g >= interval * 0.99 for g in gaps), f"periodic checkpoints closer than the interval: {gaps}"

    # The idle workflow changed once: one checkpoint, however many intervals went by since.
    idle_cps = checkpoints(idle)
    assert [cp.version for cp in idle_cps] == [idle_written.version]
    ids = {wid: [cp.id for cp in checkpoints(wid)] for wid in (idle, busy)}
    stays_true(
        lambda: {wid: [cp.id for cp in checkpoints(wid)] for wid in (idle, busy)} == ids,
        3 * interval,
        "a checkpoint was taken of a workflow that did not change",
    )

    c.cluster.stop()
    c.cluster.start()
    c.wait_leader(30)
    assert wait_until(lambda: {wid: [cp.id for cp in checkpoints(wid)] for wid in (idle, busy)}, 20, "read") == ids
    written = client.persist_state(busy, variables={"n": "after restart"})
    wait_until(lambda: checkpoints(busy)[-1].version == written.version, 5 * interval, "no checkpoint after restart")
    assert len(checkpoints(busy)) == keep
    assert [cp.id for cp in checkpoints(idle)] == ids[idle]


def test_checkpoints_every_n_versions(make_cluster) -> None:
    c = make_cluster(3, overrides={"checkpointing": {"every_versions": 3, "interval": 0}})
    client = c.client
    wid = "cp-every"

    def versions() -> list[int]:
        return sorted(cp.version for cp in client.list_checkpoints(wid))

    ticks = 0.5  # five scheduler intervals: long enough for a due checkpoint to be taken
    for v in range(1, 8):
        assert client.persist_state(wid, variables={"v": v}).version == v
        expected = [n for n in (3, 6) if n <= v]
        if v in (3, 6):
            wait_until(lambda e=expected: versions() == e, 5, f"no checkpoint at version {v}")
        else:
            stays_true(lambda e=expected: versions() == e, ticks, f"unexpected checkpoint at version {v}")
    stays_true(lambda: versions() == [3, 6], 4 * ticks, "a checkpoint was taken while the version did not move")


# ---- 6. idempotent start --------------------------------------------------------------------------------


def test_starting_a_run_is_idempotent_per_request_id(engine_cluster, make_lab) -> None:
    lab = make_lab(engine_cluster)
    client, run = lab.client, f"{lab.workflow_type}-once"
    first = client.start_workflow(lab.workflow_type, run, {"x": 1}, request_id=f"{run}-req")
    again = client.start_workflow(lab.workflow_type, run, {"x": 1}, request_id=f"{run}-req")
    assert (again.version, again.status, again.started_at, again.input) == (1, "PENDING", first.started_at, {"x": 1})
    assert again.metadata.checksum == first.metadata.checksum
    with pytest.raises(AlreadyExistsError):
        client.start_workflow(lab.workflow_type, run, {"x": 2}, request_id=f"{run}-other")
    now = client.get_workflow(run)
    assert (now.version, now.input, now.metadata.checksum) == (1, {"x": 1}, first.metadata.checksum)
    assert [r.workflow_id for r in client.list_workflow_runs(prefix=run)] == [run]
    assert lab.kinds(run) == ["RUN_STARTED"]


# ---- 7. cancel a running run --------------------------------------------------------------------------------


def test_cancelling_a_running_run_stops_its_worker_writing(engine_cluster, make_lab) -> None:
    lab = make_lab(engine_cluster)
    worker = lab.worker("cancelled")
    run = lab.start({"block": ["s2"]})
    lab.wait_started(run, "s2")
    token = lab.client.get_workflow(run).fencing_token
    cancelled = lab.client.cancel_workflow(run, reason="test")
    assert cancelled.status == "CANCELLED"

    lab.go(run, "s2")
    line = wait_until(lambda: lab.dropped_line(worker, run), 15, "the worker did not drop the cancelled run")
    assert "lease lost" in line and "CANCELLED" in line, line
    final = lab.client.get_workflow(run)
    assert final.status == "CANCELLED" and final.version == cancelled.version, final
    assert [s.name for s in final.steps] == ["s1"]
    assert lab.kinds(run)[-1] == "RUN_CANCELLED"
    with pytest.raises(LeaseLostError):
        lab.client.record_step(run, token, "s2", {"late": True})
    with pytest.raises(LeaseLostError):
        lab.client.complete_workflow(run, token, None)
    assert lab.client.get_workflow(run).version == cancelled.version
    assert [e.step for e in lab.executions(run)] == ["s1", "s2"], "the run went no further after the cancel"
    assert worker.alive()


def test_resume_from_checkpoint_restores_the_checkpoint_and_runs_later_steps_again(make_cluster, make_lab) -> None:
    overrides = {**ENGINE_OVERRIDES, "recovery": {**ENGINE_OVERRIDES["recovery"], "resume_from": "checkpoint"}}
    lab = make_lab(make_cluster(3, overrides))
    first = lab.worker("first", concurrency=1)
    run = lab.start({"block": ["s2", "s3"]})
    lab.wait_started(run, "s2", worker="first")
    cp = lab.client.create_checkpoint(run)  # captures s1 only
    assert [s.name for s in cp.state.raw.run.steps] == ["s1"]
    lab.go(run, "s2")
    lab.wait_started(run, "s3", worker="first")
    assert [s.name for s in lab.client.get_workflow(run).steps] == ["s1", "s2"]

    first.kill()
    lab.go(run, "s3")
    lab.worker("second")
    final = lab.client.wait_workflow(run, timeout=30)

    assert final.status == "COMPLETED" and final.attempt == 2, final
    expired = [h for h in lab.history(run) if h.kind == state_pb2.LEASE_EXPIRED]
    assert len(expired) == 1 and expired[0].checkpoint_id == cp.id, "the expiry restored the checkpoint"
    ran = Counter(e.step for e in lab.executions(run))
    assert ran == {"s1": 1, "s2": 2, "s3": 2}, "steps after the checkpoint ran again; the one before did not"
    results = step_results(final)
    assert results["s1"]["worker"] == "first"
    assert results["s2"]["worker"] == "second" and results["s3"]["worker"] == "second"
    recorded = [h.step_name for h in lab.history(run) if h.kind == state_pb2.STEP_RECORDED]
    assert recorded == ["s1", "s2", "s2", "s3"], recorded


@pytest.mark.parametrize("jump", ["60s", "-20s"])
def test_a_leader_clock_jump_expires_no_live_lease(make_cluster, make_lab, tmp_path: Path, jump: str) -> None:
    """The leader's wall clock (the `clock.offset` failpoint, as NTP stepping it) jumps while workers hold
    leases and heartbeat: no lease is expired early, no step runs twice, every run finishes in attempt 1."""
    files = [tmp_path / f"failpoints-{i}" for i in range(3)]
    for f in files:
        f.write_text("")
    c = make_cluster(3, node_env=lambda i: {failpoints.FILE_ENV: str(files[i])})
    elected = time.monotonic()
    lab = make_lab(c)
    runs = [lab.start({"block": ["s2"]}) for _ in range(3)]
    lab.worker("w1")
    for run in runs:
        lab.wait_started(run, "s2")
    tokens = {run: lab.client.get_workflow(run).fencing_token for run in runs}
    leader = c.wait_leader()
    # Past the leader-change grace (a lease duration in office), so that only the monotonic renewal rule
    # stands between the jump and an early expiry.
    wait_until(lambda: time.monotonic() - elected > 1.5 * LEASE, 3 * LEASE, "the leader's grace did not pass")
    files[leader].write_text(f"clock.offset=value({jump})")

    def held() -> bool:
        now = {run: lab.client.get_workflow(run) for run in runs}
        return all(r.status == "RUNNING" and r.fencing_token == tokens[run] for run, r in now.items())

    stays_true(held, 3 * LEASE, f"a live lease was expired after the leader's clock jumped {jump}")
    assert c.wait_leader() == leader  # the jump did not cost the leadership (so the check above was real)
    for run in runs:
        lab.go(run, "s2")
    for run in runs:
        final = lab.client.wait_workflow(run, timeout=30)
        assert final.status == "COMPLETED" and final.attempt == 1, final
        assert "LEASE_EXPIRED" not in lab.kinds(run)
        assert Counter(e.step for e in lab.executions(run)) == {"s1": 1, "s2": 1, "s3": 1}
