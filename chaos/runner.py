"""One chaos scenario from start to verdict: cluster, workload, faults on a schedule, final state, checkers."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cairn import Client

from .checkers import Verdict, linearizability
from .checkers.safety import convergence, exactly_once, liveness, no_lost_writes, per_key_final
from .cluster import ChaosCluster
from .history import HistoryRecorder, Operation, operations, read_events
from .nemesis import select
from .report import write_report
from .workload import Workload


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
    notes: list[str] = field(default_factory=list)


def _log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cfg: RunConfig) -> int:
    cfg.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    cluster = ChaosCluster(
        cfg.out / "cluster",
        nodes=cfg.nodes,
        use_netns=cfg.netns,
        unsafe_reads=cfg.unsafe_reads,
        prefix=cfg.net_prefix,
        subnet=cfg.subnet,
    )
    recorder = HistoryRecorder()
    faults: list[FaultRecord] = []
    final: dict = {}
    digests: dict = {}
    try:
        cluster.start()
        if not cluster.use_netns:
            cfg.notes.append("no network namespaces (not root): loopback, kills and pauses only")
        chosen, left_out = select(cfg.faults, netns=cluster.use_netns)
        cfg.notes += [f"left out {why}" for why in left_out]
        if not chosen:
            raise SystemExit("no fault can run here: " + "; ".join(left_out))
        _log(
            f"{cfg.nodes} nodes ({'namespaces' if cluster.use_netns else 'loopback'}), faults: "
            f"{', '.join(f.name for f in chosen)}"
        )
        keys = [f"chaos-{k}" for k in range(cfg.keys)]
        workload = Workload(cluster.endpoints, recorder, keys, clients=cfg.clients, seed=cfg.seed)
        workload.setup()
        stop = threading.Event()
        workload.start(stop)
        started = time.monotonic()
        time.sleep(min(2.0, cfg.duration / 10))
        while time.monotonic() - started < cfg.duration - cfg.hold - 1:
            fault = rng.choice(chosen)
            record = FaultRecord(fault.name, "", time.monotonic_ns())
            try:
                record.description, heal = fault.inject(cluster, rng)
            except Exception as exc:  # a fault that could not be injected is reported, not fatal
                record.error, heal = f"{type(exc).__name__}: {exc}", (lambda: None)
            _log(f"{fault.name}: {record.description or record.error}")
            time.sleep(cfg.hold)
            try:
                heal()
            finally:
                cluster.heal_everything()
                record.end_ns = time.monotonic_ns()
                faults.append(record)
            time.sleep(max(0.0, cfg.interval - cfg.hold))
        last_heal = faults[-1].end_ns if faults else None
        time.sleep(max(0.0, cfg.duration - (time.monotonic() - started)))
        stop.set()
        workload.join()
        end_ns = time.monotonic_ns()
        _log("workload stopped; reading the final state")
        if not cluster.wait_caught_up(60):
            cfg.notes.append("the cluster did not fully catch up within 60s after healing")
        final, digests = _final_state(cluster, keys)
    finally:
        recorder.write(cfg.out / "history.jsonl")
        (cfg.out / "faults.jsonl").write_text("".join(json.dumps(asdict(f)) + "\n" for f in faults))
        (cfg.out / "final.json").write_text(json.dumps({"final": final, "digests": digests}, indent=1))
        cluster.stop()
    meta = {
        "nodes": cfg.nodes,
        "duration": cfg.duration,
        "faults": cfg.faults,
        "seed": cfg.seed,
        "clients": cfg.clients,
        "keys": cfg.keys,
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


def _final_state(cluster: ChaosCluster, keys: list[str]) -> tuple[dict, dict]:
    final, digests = {}, {}
    with Client(cluster.endpoints, timeout=30) as client:
        for key in keys:
            state = client.get_state(key)
            final[key] = {"version": state.version, "history": [(h.version, h.request_id) for h in state.history]}
            result = client.validate_state(key)
            digests[key] = {
                d.node_id: (d.applied_index, d.version, d.digest if d.reachable else f"unreachable: {d.error}")
                for d in result.replicas
            }
    return final, digests


def check_dir(out: Path, time_limit: float = 60.0) -> int:
    """Run every checker over a saved run; write verdicts.json and the report; 0 only if all pass."""
    ops: list[Operation] = operations(read_events(out / "history.jsonl"))
    saved = json.loads((out / "final.json").read_text())
    final = {
        k: {"version": v["version"], "history": [tuple(x) for x in v["history"]]} for k, v in saved["final"].items()
    }
    digests = {k: {n: tuple(v) for n, v in d.items()} for k, d in saved["digests"].items()}
    meta = json.loads((out / "run.json").read_text())
    faults = [FaultRecord(**json.loads(line)) for line in (out / "faults.jsonl").read_text().splitlines() if line]
    verdicts: list[Verdict] = [
        linearizability.check(ops, time_limit, applied=per_key_final(final) if final else None),
        no_lost_writes(ops, final) if final else Verdict("no-lost-writes", False, ["no final state was read"]),
        exactly_once(ops, final) if final else Verdict("exactly-once", False, ["no final state was read"]),
        convergence(digests) if digests else Verdict("convergence", False, ["no replica digests were read"]),
        liveness(ops, meta.get("last_heal_ns"), meta.get("end_ns") or 0),
    ]
    (out / "verdicts.json").write_text(json.dumps([asdict(v) | {"status": v.status} for v in verdicts], indent=1))
    write_report(out, ops, faults, verdicts, meta)
    for v in verdicts:
        _log(f"{v.name}: {v.status}" + (f" — {v.violations[0]}" if v.violations else ""))
    return 0 if all(v.valid is True for v in verdicts) else 1
