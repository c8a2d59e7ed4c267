"""`python -m chaos run ...` runs a scenario; `python -m chaos check DIR` re-checks a saved run;
`python -m chaos soak ...` runs scenarios one after another (seed, seed+1, ...) until enough faults ran."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType

from .nemesis import FAULTS
from .runner import RunConfig, check_dir, run

FAMILIES = sorted({f.family for f in FAULTS.values()})


def _scenario_args(r: argparse.ArgumentParser) -> None:
    r.add_argument("--nodes", type=int, default=3, choices=range(3, 10), metavar="{3..9}")
    r.add_argument("--duration", type=float, default=60.0, help="seconds of workload")
    r.add_argument(
        "--faults",
        default="kill,pause,partition",
        help=f"families ({', '.join(FAMILIES)}) or fault names, comma-separated",
    )
    r.add_argument(
        "--workload",
        choices=("state", "workflows", "both"),
        default="state",
        help="state: clients on shared workflow states; workflows: runs executed by worker processes",
    )
    r.add_argument("--workers", type=int, default=3, help="worker processes (workflow workload)")
    r.add_argument("--workflow-steps", type=int, default=3, help="steps per workflow run")
    r.add_argument("--workflow-rate", type=float, default=4.0, help="workflow starts per second")
    r.add_argument("--settle", type=float, default=120.0, help="seconds after healing for started runs to finish")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--clients", type=int, default=8)
    r.add_argument(
        "--stream-writes", action="store_true", help="clients persist over PersistStream (Client(stream_writes=True))"
    )
    r.add_argument(
        "--secure",
        action="store_true",
        help="mTLS only, access control and encryption at rest (LocalCluster(secure=True)); "
        "every client, worker and final read uses the admin's certificate",
    )
    r.add_argument("--keys", type=int, default=4)
    r.add_argument("--interval", default="6", help="seconds between fault injections, or a range such as 2-3")
    r.add_argument("--hold", default="3", help="seconds each fault is held before healing, or a range such as 1-1.5")
    r.add_argument(
        "--schedule",
        choices=("random", "cycle"),
        default="random",
        help="random: any chosen fault at each injection; cycle: each chosen fault in turn",
    )
    r.add_argument("--disk-mib", type=int, default=256, help="size of each node's data directory for disk faults")
    r.add_argument(
        "--recovery-timeout",
        type=float,
        default=30.0,
        help="seconds after a heal for a node a disk/fsync/corrupt fault stopped to be back and caught up",
    )
    r.add_argument("--no-netns", action="store_true", help="stay on loopback (kills and pauses only)")
    r.add_argument(
        "--unsafe-reads",
        action="store_true",
        help="TEST ONLY: nodes answer linearizable reads from their local replica (must be caught)",
    )
    r.add_argument("--checker-time-limit", type=float, default=60.0)
    r.add_argument("--net-prefix", default="czc", help="name prefix of the namespaces and links (<= 6 chars)")
    r.add_argument("--subnet", default="10.214.0", help="the /24 (first three octets) the nodes live in")
    r.add_argument("--out", type=Path, required=True)


def _config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        out=args.out,
        nodes=args.nodes,
        duration=args.duration,
        faults=args.faults,
        seed=args.seed,
        clients=args.clients,
        stream_writes=args.stream_writes,
        secure=args.secure,
        keys=args.keys,
        interval=args.interval,
        hold=args.hold,
        netns=not args.no_netns,
        unsafe_reads=args.unsafe_reads,
        checker_time_limit=args.checker_time_limit,
        net_prefix=args.net_prefix,
        subnet=args.subnet,
        workload=args.workload,
        workers=args.workers,
        workflow_steps=args.workflow_steps,
        workflow_rate=args.workflow_rate,
        settle=args.settle,
        schedule=args.schedule,
        disk_mib=args.disk_mib,
        recovery_timeout=args.recovery_timeout,
    )


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    """SIGINT or SIGTERM: the runner's finally blocks stop the nodes and remove every mount and namespace;
    a second signal must not cut that cleanup short, so both are ignored from here on."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def soak(args: argparse.Namespace, argv: list[str]) -> int:
    """Scenarios one after another, each in its own process and directory (OUT/seed-N), until `--runs` ran
    or `--min-faults` faults were injected; OUT/summary.md adds up faults per family and the verdicts."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    passthrough = _strip(argv, ("--runs", "--min-faults", "--seed", "--out"))
    per_family: Counter[str] = Counter()
    per_fault: Counter[str] = Counter()
    rows = []
    status = 0
    for k in range(args.runs):
        seed = args.seed + k
        run_dir = out / f"seed-{seed}"
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "chaos", "run", *passthrough, "--seed", str(seed), "--out", str(run_dir)]
        )
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # it cleans up (a Ctrl-C reached it already, too)
            proc.wait(300)
            raise
        status = status or code
        faults = []
        if (run_dir / "faults.jsonl").exists():
            faults = [json.loads(line) for line in (run_dir / "faults.jsonl").read_text().splitlines() if line]
        injected = [f for f in faults if not f.get("error")]
        per_family.update(f.get("family") or FAULTS[f["name"]].family for f in injected)
        per_fault.update(f["name"] for f in injected)
        verdicts = []
        if (run_dir / "verdicts.json").exists():
            verdicts = json.loads((run_dir / "verdicts.json").read_text())
        failing = [f"{v['name']} {v['status']}" for v in verdicts if v["status"] != "pass"]
        node_faults = sum(1 for f in injected if (f.get("family") or FAULTS[f["name"]].family) != "workers")
        rows.append(
            (seed, code, len(injected), node_faults, len(faults) - len(injected), time.monotonic() - started, failing)
        )
        _write_summary(out, args, rows, per_family, per_fault)
        if args.min_faults and sum(per_family.values()) >= args.min_faults:
            break
    return status


def _strip(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """argv without the given options (and their values): what each run of a soak gets."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in options:
            skip = "=" not in word
            continue
        kept.append(word)
    return kept


def _write_summary(out: Path, args: argparse.Namespace, rows: list, families: Counter, faults: Counter) -> None:
    lines = [
        f"# Soak: {len(rows)} runs, {sum(families.values())} faults injected",
        "",
        f"{args.nodes} nodes, {args.duration:.0f}s each, faults {args.faults}, interval {args.interval}s, "
        f"hold {args.hold}s, workload {args.workload}",
        "",
        "| seed | exit | faults injected | of them node faults | not injected | seconds | failing verdicts |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for seed, code, n, nodes, errors, secs, failing in rows:
        lines.append(f"| {seed} | {code} | {n} | {nodes} | {errors} | {secs:.0f} | {', '.join(failing) or '-'} |")
    lines.append(
        f"| all | {sum(r[1] != 0 for r in rows)} failed | {sum(r[2] for r in rows)} | {sum(r[3] for r in rows)} | "
        f"{sum(r[4] for r in rows)} | {sum(r[5] for r in rows):.0f} | |"
    )
    lines += ["", "| family | injected |", "| --- | --- |"]
    lines += [f"| {fam} | {n} |" for fam, n in sorted(families.items())]
    lines += ["", "| fault | injected |", "| --- | --- |"]
    lines += [f"| {name} | {n} |" for name, n in sorted(faults.items())]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a scenario against a fresh cluster")
    _scenario_args(r)
    s = sub.add_parser("soak", help="run scenarios with seeds seed, seed+1, ... (each its own cluster)")
    _scenario_args(s)
    s.add_argument("--runs", type=int, default=10, help="at most this many runs")
    s.add_argument("--min-faults", type=int, default=0, help="stop once this many faults were injected in all")
    c = sub.add_parser("check", help="re-run the checkers over a saved run")
    c.add_argument("dir", type=Path)
    c.add_argument("--checker-time-limit", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.command == "check":
        return check_dir(args.dir, args.checker_time_limit)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.command == "soak":
        try:
            return soak(args, argv[1:])
        except KeyboardInterrupt:  # the run in progress has cleaned up; summary.md has the runs so far
            print(f"soak interrupted; runs so far in {args.out / 'summary.md'}", file=sys.stderr)
            return 130
    return run(_config(args))


if __name__ == "__main__":
    sys.exit(main())
