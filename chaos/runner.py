"""One chaos scenario from start to verdict: cluster, workload, faults on a schedule, final state, checkers."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cairn import Client

from .checkers import Verdict, linearizability, workflows
from .checkers.safety import convergence, exactly_once, liveness, no_lost_writes, per_key_final
from .cluster import WORKFLOW_OVERRIDES, ChaosCluster
from .history import HistoryRecorder, Operation, operations, read_events
from .nemesis import FAULTS, Fault, select
from .report import write_report
from .workers import WorkerPool, read_worker_events
from .workflow_workload import WorkflowWorkload, read_final
from .workload import WEIGHTS, Workload

WORKLOADS = ("state", "workflows", "both")
STATE_OPS = frozenset(WEIGHTS)  # the state workload's operations (the others are the workflow workload's)


@dataclass
class FaultRecord:
    name: str
    description: str
    start_ns: int
    end_ns: int = 0
    error: str = ""


@dataclass
class RunConfig:
    out: Path
    nodes: int = 3
    duration: float = 60.0
    faults: str = "kill,pause,partition"
    seed: int = 0
    clients: int = 8
    keys: int = 4
    interval: float = 6.0
    hold: float = 3.0
    netns: bool = True
    unsafe_reads: bool = False
    checker_time_limit: float = 60.0
    net_prefix: str = "czc"
    subnet: str = "10.214.0"
    workload: str = "state"  # state | workflows | both
    workers: int = 3
    workflow_steps: int = 3
    workflow_rate: float = 4.0  # starts per second
    lease_timeout: float = 2.0
    settle: float = 120.0  # seconds after healing for every started run to finish
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> bool:
        return self.workload in ("state", "both")

    @property
    def flows(self) -> bool:
        return self.workload in ("workflows", "both")


def _log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cfg: RunConfig) -> int:
    if cfg.workload not in WORKLOADS:
        raise SystemExit(f"unknown workload {cfg.workload!r}: one of {', '.join(WORKLOADS)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    cluster = ChaosCluster(
        cfg.out / "cluster",
        nodes=cfg.nodes,
        use_netns=cfg.netns,
        unsafe_reads=cfg.unsafe_reads,
        prefix=cfg.net_prefix,
        subnet=cfg.subnet,
        overrides=WORKFLOW_OVERRIDES if cfg.flows else {},
    )
    recorder = HistoryRecorder()
    faults: list[FaultRecord] = []
    faults_lock = threading.Lock()
    final: dict = {}
    digests: dict = {}
    runs: dict | None = None
    pool: WorkerPool | None = None
    try:
        cluster.start()
        if not cluster.use_netns:
            cfg.notes.append("no network namespaces (not root): loopback, kills and pauses only")
        chosen, left_out = select(cfg.faults, netns=cluster.use_netns, workers=cfg.flows)
        cfg.notes += [f"left out {why}" for why in left_out]
        if not chosen:
            raise SystemExit("no fault can run here: " + "; ".join(left_out))
        _log(
            f"{cfg.nodes} nodes ({'namespaces' if cluster.use_netns else 'loopback'}), workload {cfg.workload}, "
            f"faults: {', '.join(f.name for f in chosen)}"
        )
        if cfg.flows:
            cfg.notes.append(f"workflow cluster settings (over the defaults): {WORKFLOW_OVERRIDES}")
        keys = [f"chaos-{k}" for k in range(cfg.keys)] if cfg.state else []
        stop = threading.Event()
        workload = Workload(cluster.endpoints, recorder, keys, clients=cfg.clients, seed=cfg.seed)
        flows = WorkflowWorkload(
            cluster.endpoints, recorder, steps=cfg.workflow_steps, rate=cfg.workflow_rate, seed=cfg.seed
        )
        if cfg.flows:
            pool = WorkerPool(cluster.endpoints, cfg.out / "workers", cfg.workers, cfg.lease_timeout)
            cluster.workers = pool
            pool.start()
            flows.start(stop)
        if cfg.state:
            workload.setup()
            workload.start(stop)
        started = time.monotonic()
        time.sleep(min(2.0, cfg.duration / 10))
        node_faults = [f for f in chosen if not f.needs_workers]
        worker_faults = [f for f in chosen if f.needs_workers]
        nemeses = []
        if worker_faults:
            assert pool is not None
            # Held past the lease, so that a stopped worker's runs are recovered by the others.
            hold = max(cfg.hold, cfg.lease_timeout + 1.5)
            args = (cluster, worker_faults, random.Random(cfg.seed + 1), started, cfg, hold, faults, faults_lock)
            nemeses.append(
                threading.Thread(target=_nemesis, args=args, kwargs={"heal": pool.heal}, name="nemesis-workers")
            )
            nemeses[-1].daemon = True
            nemeses[-1].start()
        if node_faults:
            _nemesis(cluster, node_faults, rng, started, cfg, cfg.hold, faults, faults_lock, cluster.heal_everything)
        for t in nemeses:
            t.join()
        # The state liveness bound counts from the last heal of the cluster (a worker fault leaves it whole).
        last_heal = max((f.end_ns for f in faults if not FAULTS[f.name].needs_workers), default=None)
        time.sleep(max(0.0, cfg.duration - (time.monotonic() - started)))
        stop.set()
        workload.join()
        flows.join()
        end_ns = time.monotonic_ns()
        _log("workload stopped; reading the final state")
        cluster.heal_everything()
        if pool is not None:
            pool.heal()
        if not cluster.wait_caught_up(60):
            cfg.notes.append("the cluster did not fully catch up within 60s after healing")
        final, digests = _final_state(cluster, keys)
        if cfg.flows:
            with Client(cluster.endpoints, timeout=30) as client:
                _log(f"waiting up to {cfg.settle:.0f}s for {len(flows.ids())} started runs to finish")
                runs = read_final(client, flows.ids(), cfg.settle)
            if not cluster.wait_caught_up(60):
                cfg.notes.append("the cluster did not fully catch up within 60s after the runs finished")
            digests.update(_digests(cluster, [wid for wid, r in runs.items() if not r.get("missing")]))
    finally:
        if pool is not None:
            pool.stop()
        recorder.write(cfg.out / "history.jsonl")
        with faults_lock:
            ordered = sorted(faults, key=lambda f: f.start_ns)
        (cfg.out / "faults.jsonl").write_text("".join(json.dumps(asdict(f)) + "\n" for f in ordered))
        saved = {"final": final, "digests": digests} | ({"workflows": runs} if runs is not None else {})
        (cfg.out / "final.json").write_text(json.dumps(saved, indent=1))
        cluster.stop()
    meta = {
        "nodes": cfg.nodes,
        "duration": cfg.duration,
        "faults": cfg.faults,
        "seed": cfg.seed,
        "clients": cfg.clients,
        "keys": cfg.keys,
        "workload": cfg.workload,
        "workers": cfg.workers,
        "workflow_steps": cfg.workflow_steps,
        "workflow_rate": cfg.workflow_rate,
        "lease_timeout": cfg.lease_timeout,
        "netns": cluster.use_netns,
        "net_prefix": cfg.net_prefix,
        "subnet": cfg.subnet,
        "unsafe_reads": cfg.unsafe_reads,
        "notes": cfg.notes,
        "last_heal_ns": last_heal,
        "end_ns": end_ns,
    }
    (cfg.out / "run.json").write_text(json.dumps(meta, indent=1))
    return check_dir(cfg.out, cfg.checker_time_limit)


def _nemesis(
    cluster: ChaosCluster,
    chosen: list[Fault],
    rng: random.Random,
    started: float,
    cfg: RunConfig,
    hold: float,
    faults: list[FaultRecord],
    lock: threading.Lock,
    heal: Callable[[], None],
) -> None:
    """Inject one of `chosen` every `cfg.interval` seconds, hold it, heal it, until the run's end nears."""
    while time.monotonic() - started < cfg.duration - hold - 1:
        fault = rng.choice(chosen)
        record = FaultRecord(fault.name, "", time.monotonic_ns())
        try:
            record.description, undo = fault.inject(cluster, rng)
        except Exception as exc:  # a fault that could not be injected is reported, not fatal
            record.error, undo = f"{type(exc).__name__}: {exc}", (lambda: None)
        _log(f"{fault.name}: {record.description or record.error}")
        time.sleep(hold)
        try:
            undo()
        finally:
            heal()
            record.end_ns = time.monotonic_ns()
            with lock:
                faults.append(record)
        time.sleep(max(0.0, cfg.interval - hold))


def _final_state(cluster: ChaosCluster, keys: list[str]) -> tuple[dict, dict]:
    final = {}
    with Client(cluster.endpoints, timeout=30) as client:
        for key in keys:
            state = client.get_state(key)
            final[key] = {"version": state.version, "history": [(h.version, h.request_id) for h in state.history]}
    return final, _digests(cluster, keys)


def _digests(cluster: ChaosCluster, keys: list[str]) -> dict:
    """Every replica's (applied index, version, digest) of each key, for the convergence checker."""
    digests = {}
    with Client(cluster.endpoints, timeout=30) as client:
        for key in keys:
            result = client.validate_state(key)
            digests[key] = {
                d.node_id: (d.applied_index, d.version, d.digest if d.reachable else f"unreachable: {d.error}")
                for d in result.replicas
            }
    return digests


def check_dir(out: Path, time_limit: float = 60.0) -> int:
    """Run every checker over a saved run; write verdicts.json and the report; 0 only if all pass."""
    all_ops: list[Operation] = operations(read_events(out / "history.jsonl"))
    ops = [op for op in all_ops if op.f in STATE_OPS]
    saved = json.loads((out / "final.json").read_text())
    final = {
        k: {"version": v["version"], "history": [tuple(x) for x in v["history"]]} for k, v in saved["final"].items()
    }
    digests = {k: {n: tuple(v) for n, v in d.items()} for k, d in saved["digests"].items()}
    meta = json.loads((out / "run.json").read_text())
    faults = [FaultRecord(**json.loads(line)) for line in (out / "faults.jsonl").read_text().splitlines() if line]
    workload = meta.get("workload", "state")
    verdicts: list[Verdict] = []
    if workload in ("state", "both"):
        verdicts += [
            linearizability.check(ops, time_limit, applied=per_key_final(final) if final else None),
            no_lost_writes(ops, final) if final else Verdict("no-lost-writes", False, ["no final state was read"]),
            exactly_once(ops, final) if final else Verdict("exactly-once", False, ["no final state was read"]),
        ]
    no_digests = Verdict("convergence", False, ["no replica digests were read"])
    verdicts.append(convergence(digests) if digests else no_digests)
    if workload in ("state", "both"):
        verdicts.append(liveness(ops, meta.get("last_heal_ns"), meta.get("end_ns") or 0))
    counts = None
    if workload in ("workflows", "both"):
        runs = saved.get("workflows")
        if runs is None:
            verdicts.append(Verdict("workflows", False, ["no final state of the runs was read"]))
        else:
            flow_verdicts = workflows.check(
                all_ops, runs, read_worker_events(out / "workers"), meta.get("workflow_steps", 3)
            )
            verdicts += flow_verdicts
            counts = workflows.summary(flow_verdicts)
    (out / "verdicts.json").write_text(json.dumps([asdict(v) | {"status": v.status} for v in verdicts], indent=1))
    write_report(out, all_ops, faults, verdicts, meta, workflow_counts=counts)
    for v in verdicts:
        _log(f"{v.name}: {v.status}" + (f" — {v.violations[0]}" if v.violations else ""))
    return 0 if all(v.valid is True for v in verdicts) else 1
