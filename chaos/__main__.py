"""`python -m chaos run ...` runs a scenario; `python -m chaos check DIR` re-checks a saved run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .runner import RunConfig, check_dir, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a scenario against a fresh cluster")
    r.add_argument("--nodes", type=int, default=3, choices=range(3, 10), metavar="{3..9}")
    r.add_argument("--duration", type=float, default=60.0, help="seconds of workload")
    r.add_argument(
        "--faults",
        default="kill,pause,partition",
        help="families (kill, pause, partition, restart, transfer, netem, workers) or fault names",
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
    r.add_argument("--keys", type=int, default=4)
    r.add_argument("--interval", type=float, default=6.0, help="seconds between fault injections")
    r.add_argument("--hold", type=float, default=3.0, help="seconds each fault is held before healing")
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
    c = sub.add_parser("check", help="re-run the checkers over a saved run")
    c.add_argument("dir", type=Path)
    c.add_argument("--checker-time-limit", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.command == "check":
        return check_dir(args.dir, args.checker_time_limit)
    return run(
        RunConfig(
            out=args.out,
            nodes=args.nodes,
            duration=args.duration,
            faults=args.faults,
            seed=args.seed,
            clients=args.clients,
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
        )
    )


if __name__ == "__main__":
    sys.exit(main())
