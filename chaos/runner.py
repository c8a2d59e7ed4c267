"""One chaos scenario from start to verdict: cluster, workload, faults on a schedule, final state, checkers."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .checkers import Verdict, linearizability, workflows
from .checkers import faults as fault_checks
from .checkers.safety import audit_log, convergence, exactly_once, liveness, no_lost_writes, per_key_final
from .cluster import WORKFLOW_OVERRIDES, ChaosCluster
from .history import HistoryRecorder, Operation, operations, read_events
from .nemesis import FAULTS, Fault, corruption_evidence, select
from .netns import netns_available
from .report import write_not_run_report, write_report
from .workers import WorkerPool, read_worker_events
from .workflow_workload import WorkflowWorkload, read_final
from .workload import WEIGHTS, Workload

WORKLOADS = ("state", "workflows", "both")
STATE_OPS = frozenset(WEIGHTS)  # the state workload's operations (the others are the workflow workload's)


@dataclass
class FaultRecord:
    name: str
    description: str
    start_ns: int  # monotonic, like the history's times
    end_ns: int = 0
    error: str = ""
    family: str = ""
    start_wall_ns: int = 0  # wall clock at injection (the clock faults' windows are wall-clock times)
    details: dict[str, Any] = field(default_factory=dict)  # what the fault did and saw (nemesis.py)


def parse_range(text: str | float) -> tuple[float, float]:
    """'2.5' -> (2.5, 2.5); '2-3' -> (2.0, 3.0): seconds, drawn uniformly (seeded) for every fault."""
    if isinstance(text, int | float):
        return float(text), float(text)
    lo, sep, hi = str(text).partition("-")
    low, high = float(lo), float(hi) if sep else float(lo)
    if low <= 0 or high < low:
        raise ValueError(f"{text!r}: expected SECONDS or LOW-HIGH with 0 < LOW <= HIGH")
    return low, high


@dataclass
class RunConfig:
    out: Path
    nodes: int = 3
    duration: float = 60.0
    faults: str = "kill,pause,partition"
    seed: int = 0
    clients: int = 8
    stream_writes: bool = False  # the clients' writes go over PersistStream (Client(stream_writes=True))
    secure: bool = False  # mTLS, auth and encryption at rest; every client uses the admin's certificate
    keys: int = 4
    interval: float | str = 6.0  # seconds between injections, or a range "2-3"
    hold: float | str = 3.0  # seconds each fault is held, or a range "1-1.5"
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
    schedule: str = "random"  # random: any chosen fault each time; cycle: each in turn
    disk_mib: int = 256  # size of each node's data directory (a tmpfs) when disk faults run
    recovery_timeout: float = 30.0  # seconds after a heal for a disk/fsync/corrupt target to catch up
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
    interval, hold_range = parse_range(cfg.interval), parse_range(cfg.hold)
    rng = random.Random(cfg.seed)
    use_netns = cfg.netns and netns_available()
    chosen, left_out = select(cfg.faults, netns=use_netns, workers=cfg.flows)
    for why in left_out:
        _log(f"WARNING: NOT RUN {why}")
    if not chosen:
        write_not_run_report(cfg.out, cfg.faults, left_out)
        _log("no requested fault can run here; see report.md")
        return 2
    cluster = ChaosCluster(
        cfg.out / "cluster",
        nodes=cfg.nodes,
        use_netns=use_netns,
        unsafe_reads=cfg.unsafe_reads,
        prefix=cfg.net_prefix,
        subnet=cfg.subnet,
        overrides=WORKFLOW_OVERRIDES if cfg.flows else {},
        failpoints=any(f.needs_failpoints for f in chosen),
        data_tmpfs_mib=cfg.disk_mib if any(f.needs_tmpfs for f in chosen) else 0,
        secure=cfg.secure,
    )
    recorder = HistoryRecorder()
    faults: list[FaultRecord] = []
    faults_lock = threading.Lock()
    watchers: list[threading.Thread] = []
    final: dict = {}
    digests: dict = {}
    runs: dict | None = None
    pool: WorkerPool | None = None
    last_heal = end_ns = None
    caught_up = False
    exits_at_end: dict = {}
    left_mounted: list[str] = []
    wall_offset_ns = time.time_ns() - time.monotonic_ns()
    final_wall_ns = 0
    audit: dict | None = None
    try:
        cluster.start()
        if not cluster.use_netns:
            cfg.notes.append("no network namespaces (not root): loopback, kills and pauses only")
        if cluster.data_tmpfs_mib:
            cfg.notes.append(f"each node's data directory is a {cluster.data_tmpfs_mib} MiB tmpfs (disk faults)")
        _log(
            f"{cfg.nodes} nodes ({'namespaces' if cluster.use_netns else 'loopback'}), workload {cfg.workload}, "
            f"faults: {', '.join(f.name for f in chosen)}"
        )
        if cluster.secure:
            cfg.notes.append(
                "secure cluster: mTLS only (client certificates required), access control and encryption at rest on;"
                " every client, worker and final read uses the admin's certificate"
            )
        if cfg.flows:
            cfg.notes.append(f"workflow cluster settings (over the defaults): {WORKFLOW_OVERRIDES}")
        keys = [f"chaos-{k}" for k in range(cfg.keys)] if cfg.state else []
        stop = threading.Event()
        workload = Workload(
            cluster.endpoints,
            recorder,
            keys,
            clients=cfg.clients,
            seed=cfg.seed,
            stream_writes=cfg.stream_writes,
            tls=cluster.client_tls,
        )
        flows = WorkflowWorkload(
            cluster.endpoints,
            recorder,
            steps=cfg.workflow_steps,
            rate=cfg.workflow_rate,
            seed=cfg.seed,
            tls=cluster.client_tls,
        )
        if cfg.flows:
            pool = WorkerPool(
                cluster.endpoints, cfg.out / "workers", cfg.workers, cfg.lease_timeout, env=cluster.client_env
            )
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
            worker_hold = (max(hold_range[0], cfg.lease_timeout + 1.5), max(hold_range[1], cfg.lease_timeout + 1.5))
            nemesis = Nemesis(
                cluster, worker_faults, random.Random(cfg.seed + 1), cfg, interval, worker_hold, faults, faults_lock
            )
            nemesis.heal, nemesis.node_faults = pool.heal, False
            nemeses.append(threading.Thread(target=nemesis.run, args=(started,), name="nemesis-workers", daemon=True))
            nemeses[-1].start()
        if node_faults:
            nemesis = Nemesis(cluster, node_faults, rng, cfg, interval, hold_range, faults, faults_lock)
            nemesis.heal, nemesis.watchers = cluster.heal_everything, watchers
            nemesis.run(started)
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
        exits_at_end = cluster.heal_everything()
        if exits_at_end:
            _log(f"nodes found exited at the end, not by the nemesis: {exits_at_end}")
        if pool is not None:
            pool.heal()
        caught_up = cluster.wait_caught_up(60)
        if not caught_up:
            cfg.notes.append("the cluster did not fully catch up within 60s after healing")
        final, digests = _final_state(cluster, keys)
        if cfg.flows:
            with cluster.client(timeout=30, attempt_timeout=3.0) as client:
                _log(f"waiting up to {cfg.settle:.0f}s for {len(flows.ids())} started runs to finish")
                runs = read_final(client, flows.ids(), cfg.settle)
            if not cluster.wait_caught_up(60):
                caught_up = False
                cfg.notes.append("the cluster did not fully catch up within 60s after the runs finished")
            digests.update(_digests(cluster, [wid for wid, r in runs.items() if not r.get("missing")]))
        audit = _audit_state(cluster)
        final_wall_ns = time.time_ns()
    finally:
        try:
            if not final_wall_ns:  # interrupted or failed: recovery watchers stop now, not at their timeout
                cluster.fault_seq += 1
            if pool is not None:
                pool.stop()
            for t in watchers:
                t.join(cfg.recovery_timeout + 10)
            recorder.write(cfg.out / "history.jsonl")
            with faults_lock:
                ordered = sorted(faults, key=lambda f: f.start_ns)
            (cfg.out / "faults.jsonl").write_text("".join(json.dumps(asdict(f)) + "\n" for f in ordered))
            saved = {"final": final, "digests": digests} | ({"workflows": runs} if runs is not None else {})
            if audit is not None:
                saved["audit"] = audit
            (cfg.out / "final.json").write_text(json.dumps(saved, indent=1))
        finally:
            left_mounted = cluster.stop()
    if left_mounted:
        cfg.notes.append(f"could not unmount: {'; '.join(left_mounted)}")
    meta = {
        "nodes": cfg.nodes,
        "duration": cfg.duration,
        "faults": cfg.faults,
        "seed": cfg.seed,
        "clients": cfg.clients,
        "stream_writes": cfg.stream_writes,
        "secure": cluster.secure,
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
        "interval": str(cfg.interval),
        "hold": str(cfg.hold),
        "schedule": cfg.schedule,
        "notes": cfg.notes,
        "not_run": left_out,
        "families": sorted({f.family for f in chosen}),
        "disk_mib": cluster.data_tmpfs_mib,
        "last_heal_ns": last_heal,
        "end_ns": end_ns,
        "caught_up_at_end": caught_up,
        "recovery_timeout": cfg.recovery_timeout,
        "exits_at_end": exits_at_end,
        "wall_offset_ns": wall_offset_ns,  # time.time_ns() - time.monotonic_ns() on this machine
        "final_wall_ns": final_wall_ns,
    }
    (cfg.out / "run.json").write_text(json.dumps(meta, indent=1))
    return check_dir(cfg.out, cfg.checker_time_limit)


@dataclass
class Nemesis:
    """Injects one of `chosen` every `interval` seconds, holds it, heals it, until the run's end nears."""

    cluster: ChaosCluster
    chosen: list[Fault]
    rng: random.Random
    cfg: RunConfig
    interval: tuple[float, float]
    hold: tuple[float, float]
    faults: list[FaultRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    heal: Callable[[], Any] = lambda: None
    node_faults: bool = True  # node faults bump the cluster's fault sequence (recovery watchers stop there)
    watchers: list[threading.Thread] = field(default_factory=list)

    def run(self, started: float) -> None:
        # "cycle": every chosen fault in turn (in an order the seed shuffles), so a short run covers them all.
        order = self.rng.sample(self.chosen, len(self.chosen)) if self.cfg.schedule == "cycle" else []
        k = 0
        while time.monotonic() - started < self.cfg.duration - self.hold[1] - 1:
            fault = order[k % len(order)] if order else self.rng.choice(self.chosen)
            k += 1
            hold = self.rng.uniform(*self.hold)
            self.one(fault, hold)
            # The interval counts from this injection (the hold is part of it).
            time.sleep(max(0.0, self.rng.uniform(*self.interval) - hold))

    def one(self, fault: Fault, hold: float) -> FaultRecord:
        cluster = self.cluster
        record = FaultRecord(fault.name, "", time.monotonic_ns(), family=fault.family, start_wall_ns=time.time_ns())
        record.details["hold_s"] = round(hold, 3)
        if self.node_faults:
            cluster.fault_seq += 1
        seq = cluster.fault_seq
        try:
            record.description, undo = fault.inject(cluster, self.rng, record.details)
        except Exception as exc:  # a fault that could not be injected is reported, not fatal
            record.error, undo = f"{type(exc).__name__}: {exc}", (lambda: None)
        _log(f"{fault.name}: {record.description or record.error}")
        try:
            time.sleep(hold)
        except BaseException:  # Ctrl-C or SIGTERM mid-fault: undo it and keep its record; the cluster stops next
            record.details["interrupted"] = True
            with contextlib.suppress(Exception):
                undo()
            record.end_ns = time.monotonic_ns()
            with self.lock:
                self.faults.append(record)
            raise
        record.details["heal_ns"] = time.monotonic_ns()
        try:
            undo()
        finally:
            exited = self.heal()
            if isinstance(exited, dict):
                expected = set(record.details.get("expects_exit", []))
                crashed = {node: code for node, code in exited.items() if node not in expected}
                if crashed:
                    record.details["unexpected_exits"] = {
                        node: {"code": code, "log": self._last_words(node)} for node, code in crashed.items()
                    }
                    _log(f"WARNING: {', '.join(f'{n} exited {c}' for n, c in crashed.items())} during {fault.name}")
            record.end_ns = time.monotonic_ns()
            with self.lock:
                self.faults.append(record)
        if self.node_faults and record.details.get("recover") and not record.error:
            t = threading.Thread(target=self._watch_recovery, args=(record, seq), name="recovery", daemon=True)
            t.start()
            self.watchers.append(t)
        return record

    def _last_words(self, node: str) -> list[str]:
        """The node's last log lines that say why it stopped (errors, criticals, the exception)."""
        i = next(k for k in range(self.cluster.nodes) if self.cluster.node_id(k) == node)
        tail = self.cluster.cluster.log_tail(i, 60).splitlines()
        return [ln[:300] for ln in tail if any(w in ln for w in ("CRITICAL", "ERROR", "Error", "Traceback"))][-5:]

    def _watch_recovery(self, record: FaultRecord, seq: int) -> None:
        """Seconds from the heal until each target runs and has applied the leader's commit index at the heal;
        given up at the next node fault (interrupted) or after cfg.recovery_timeout (not recovered)."""
        cluster = self.cluster
        index = {cluster.node_id(k): k for k in range(cluster.nodes)}
        pending = [n for n in record.details["recover"] if n in index]
        healed = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        target: int | None = None
        while pending:
            elapsed = round(time.monotonic() - healed, 2)
            if cluster.fault_seq != seq:
                out.update({n: {"interrupted_s": elapsed} for n in pending})
                break
            if elapsed > self.cfg.recovery_timeout:
                out.update({n: {"timeout_s": elapsed} for n in pending})
                break
            if target is None:
                leader = cluster.any_leader()
                status = cluster.status(leader) if leader is not None else None
                target = status.commit_index if status is not None and status.role == "LEADER" else None
            if target is not None:
                for n in list(pending):
                    status = cluster.status(index[n])
                    if status is not None and status.applied_index >= target:
                        seen = round(time.monotonic() - healed, 2)
                        out[n] = {"caught_up_s": seen, "applied_index": status.applied_index}
                        pending.remove(n)
            time.sleep(0.1)
        record.details["recovery"] = out
        if record.family == "corrupt":
            for n in record.details["recover"]:
                d = record.details
                d["evidence"] = corruption_evidence(cluster, n, d.get("log_offset", 0), d.get("aside_before", []))


def _final_state(cluster: ChaosCluster, keys: list[str]) -> tuple[dict, dict]:
    final = {}
    with cluster.client(timeout=30, attempt_timeout=3.0) as client:
        for key in keys:
            state = client.get_state(key)
            final[key] = {"version": state.version, "history": [(h.version, h.request_id) for h in state.history]}
    return final, _digests(cluster, keys)


def _audit_state(cluster: ChaosCluster) -> dict:
    """Every replica's verdict on its audit chain, whether the replicas hold the same chain, and the request ids
    the chain records as applied (OK), for the audit checker."""
    with cluster.client(timeout=60, attempt_timeout=10.0) as client:
        nodes = client.audit_verify()
        agree = client.audit_heads_agree(nodes)
        applied = sorted({r.request_id for r in client.audit_export() if r.code == 0 and r.request_id})
    return {
        "nodes": [{"node": n.node_id, "ok": n.ok, "head_seq": n.head_seq, "problem": n.problem} for n in nodes],
        "agree": {"ok": agree["ok"], "message": agree["message"]},
        "applied_request_ids": applied,
    }


def _digests(cluster: ChaosCluster, keys: list[str]) -> dict:
    """Every replica's (applied index, version, digest) of each key, for the convergence checker."""
    digests = {}
    with cluster.client(timeout=30, attempt_timeout=3.0) as client:
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
    if "audit" in saved:  # runs saved before the audit log existed have none
        verdicts.append(audit_log(saved["audit"], final))
    if workload in ("state", "both"):
        verdicts.append(liveness(ops, meta.get("last_heal_ns"), meta.get("end_ns") or 0))
    counts = None
    ran = {f.family or (FAULTS[f.name].family if f.name in FAULTS else "") for f in faults if not f.error}
    skews = fault_checks.clock_windows(faults, meta.get("final_wall_ns") or 0) if "clock" in ran else None
    if workload in ("workflows", "both"):
        runs = saved.get("workflows")
        if runs is None:
            verdicts.append(Verdict("workflows", False, ["no final state of the runs was read"]))
        else:
            events = read_worker_events(out / "workers")
            flow_verdicts = workflows.check(all_ops, runs, events, meta.get("workflow_steps", 3), skews=skews)
            if "clock" in ran:
                flow_verdicts.append(
                    workflows.early_expiry(
                        all_ops,
                        runs,
                        events,
                        lease_s=meta.get("lease_timeout", 2.0),
                        skews=skews or [],
                        wall_offset_ns=meta.get("wall_offset_ns", 0),
                        final_wall_ns=meta.get("final_wall_ns") or 0,
                    )
                )
            verdicts += flow_verdicts
            counts = workflows.summary(flow_verdicts)
    verdicts += fault_checks.check(all_ops, faults, meta, ran)
    (out / "verdicts.json").write_text(json.dumps([asdict(v) | {"status": v.status} for v in verdicts], indent=1))
    write_report(out, all_ops, faults, verdicts, meta, workflow_counts=counts)
    for why in meta.get("not_run", []):
        _log(f"WARNING: NOT RUN {why}")
    for v in verdicts:
        _log(f"{v.name}: {v.status}" + (f" — {v.violations[0]}" if v.violations else ""))
    return 0 if all(v.valid is True for v in verdicts) else 1
