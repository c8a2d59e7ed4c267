"""The storage and clock fault families' own invariants, over the history and what the nemesis recorded.

Each fault record (faults.jsonl) carries `details` written by chaos/nemesis.py at injection and heal:
targets, exits seen during the hold (exit code, when), ballast written, bits flipped, clock offsets, and
the runner's recovery watch (seconds from the heal until the target had applied the leader's commit
index). A verdict appears only when its family ran, one per family:

- disk-full: while a majority of the nodes had failed on full disks, no write was acknowledged (nothing
  can be committed without a majority); a node that stopped on a full disk stopped with a non-zero code.
- fsync: after an injected fsync error the node stopped (non-zero) instead of carrying on (it may have
  lost the dirty pages: the fsyncgate rule); a slow fsync stopped no node.
- corruption: every corrupt-* fault flipped bits (file, offset, bit recorded), and the node noticed at
  start-up (moved the damaged data aside, or logged the checksum failure); that the corruption reached no
  client or replica is the convergence, linearizability and no-lost-writes checkers' part.
- recovery: every node a disk, fsync or corrupt fault stopped or damaged was running and caught up
  within the recovery timeout after the heal (unless the next fault came first), and the whole cluster
  caught up at the end.
- node-exits: no node stopped on its own except where the fault expects it (fsync error, disk full).

`clock_windows` turns the clock faults' records into (wall from, wall to, offset) windows, for the
workflow checkers that compare leader-stamped times (workflows.py).
"""

from __future__ import annotations

import statistics
from typing import Any

from ..history import OK, Operation
from . import Verdict

WRITES = ("write", "cas", "recover", "checkpoint", "start")  # operations that commit something when ok
RECOVERING = ("disk", "fsync", "corrupt")
NEW_FAMILIES = ("disk", "fsync", "corrupt", "clock")

Skew = tuple[int, int, float]  # one node's clock: wall ns from, wall ns to, offset in seconds


def _family(f: Any) -> str:
    return f.family or f.name.split("-")[0]


def _injected(faults: list[Any], family: str) -> list[Any]:
    return [f for f in faults if _family(f) == family and not f.error]


def clock_windows(faults: list[Any], end_wall_ns: int = 0) -> list[Skew]:
    """Every span during which some node's clock was offset, from the clock faults' recorded segments."""
    windows: list[Skew] = []
    for f in _injected(faults, "clock"):
        segments = f.details.get("clock", {}).get("segments", [])
        for k, (at, offset) in enumerate(segments):
            if offset:
                until = segments[k + 1][0] if k + 1 < len(segments) else (end_wall_ns or 2**63 - 1)
                windows.append((int(at), int(until), float(offset)))
    return windows


def disk_full(ops: list[Operation], faults: list[Any], nodes: int) -> Verdict:
    violations = []
    windows = exits = 0
    for f in _injected(faults, "disk"):
        d = f.details
        for node, e in d.get("exits", {}).items():
            exits += 1
            if e.get("code") == 0:
                violations.append(f"{f.name}: {node} stopped on a full disk with exit code 0 (not a failure)")
        start, end = d.get("majority_down_ns"), d.get("heal_ns")
        if start is None or end is None:
            continue
        windows += 1
        for op in ops:
            if op.outcome == OK and op.f in WRITES and op.call > start and op.ret is not None and op.ret < end:
                violations.append(
                    f"{op.describe()} was acknowledged {(op.ret - start) / 1e9:.2f}s after a majority of the "
                    f"{nodes} nodes had failed on full disks ({f.name}: {f.description})"
                )
    details = {
        "faults": len(_injected(faults, "disk")),
        "majority_down_windows": windows,
        "node_exits": exits,
        "ballast_mib": round(
            sum(b for f in _injected(faults, "disk") for b in f.details.get("ballast_bytes", {}).values()) / 2**20
        ),
    }
    return Verdict("disk-full", not violations, violations, details)


def fsync(faults: list[Any]) -> Verdict:
    violations = []
    counts = {"errors": 0, "errors_hit": 0, "fail_stops": 0, "slow": 0}
    for f in _injected(faults, "fsync"):
        d = f.details
        exits = d.get("exits", {})
        if d.get("failpoint", "").endswith("=error"):
            counts["errors"] += 1
            for node, hit in d.get("error_logged", {}).items():
                counts["errors_hit"] += bool(hit)
                if node in exits:
                    counts["fail_stops"] += 1
                    if exits[node].get("code") == 0:
                        violations.append(f"{f.name}: {node} stopped with exit code 0 after a failed fsync")
                elif hit and node in d.get("alive_at_heal", []):
                    violations.append(
                        f"{f.name}: {node} kept running after an injected fsync error (it must stop: the kernel "
                        "may have dropped the unsynced pages)"
                    )
        else:
            counts["slow"] += 1
            serving = d.get("serving_at_injection", list(exits))
            for node, e in exits.items():
                if node in serving:  # a node that was not serving yet stopped for another reason (node-exits)
                    violations.append(f"{f.name}: a slow fsync stopped {node} (exit code {e.get('code')})")
    return Verdict("fsync", not violations, violations, counts)


def corruption(faults: list[Any]) -> Verdict:
    violations = []
    counts = {"faults": 0, "bits_flipped": 0, "detected": 0}
    for f in _injected(faults, "corrupt"):
        counts["faults"] += 1
        d = f.details
        flips = d.get("flips", [])
        counts["bits_flipped"] += len(flips)
        if not flips:
            violations.append(f"{f.name}: no bit was flipped ({f.description})")
        evidence = d.get("evidence")
        if evidence is None:
            continue  # no look was taken (the run ended first)
        if evidence.get("detected"):
            counts["detected"] += 1
        else:
            where = ", ".join(f"{x['file']}@{x['offset']}" for x in flips)
            violations.append(
                f"{f.name}: {', '.join(d.get('targets', []))} showed no sign of noticing the flipped bits "
                f"({where}): no data moved aside, no log line about corruption or checksums"
            )
    return Verdict("corruption", not violations, violations, counts)


def recovery(faults: list[Any], caught_up_at_end: bool | None, timeout_s: float | None = None) -> Verdict:
    violations = []
    times: list[float] = []
    interrupted = 0
    for f in faults:
        if _family(f) not in RECOVERING or f.error:
            continue
        for node, r in f.details.get("recovery", {}).items():
            if "caught_up_s" in r:
                times.append(r["caught_up_s"])
            elif "interrupted_s" in r:
                interrupted += 1
            else:
                violations.append(
                    f"{f.name}: {node} was not running and caught up {r.get('timeout_s')}s after the heal "
                    f"({f.description})"
                )
    if caught_up_at_end is False:
        violations.append("the cluster did not catch up after the final heal (a node not back, or behind)")
    details = {
        "caught_up": len(times),
        "interrupted_by_next_fault": interrupted,
        "p50_s": round(statistics.median(times), 2) if times else None,
        "max_s": max(times) if times else None,
    }
    if timeout_s is not None:
        details["timeout_s"] = timeout_s
    return Verdict("recovery", not violations, violations, details)


def node_exits(faults: list[Any], exits_at_end: dict[str, Any] | None) -> Verdict:
    violations = []
    for f in faults:
        for node, e in f.details.get("unexpected_exits", {}).items():
            why = "; ".join(e.get("log", [])[-2:])
            violations.append(f"{node} exited with code {e.get('code')} during {f.name}: {why}")
        for node, code in f.details.get("found_down", {}).items():
            violations.append(f"{node} was found exited (code {code}) when {f.name} was injected")
    for node, code in (exits_at_end or {}).items():
        violations.append(f"{node} had exited with code {code} by the end of the run (after the last heal)")
    return Verdict("node-exits", not violations, violations, {"unexpected_exits": len(violations)})


def check(ops: list[Operation], faults: list[Any], meta: dict, ran: set[str]) -> list[Verdict]:
    """The verdicts of the families that ran (none for a run of the older families only)."""
    out = []
    if "disk" in ran:
        out.append(disk_full(ops, faults, meta.get("nodes", 3)))
    if "fsync" in ran:
        out.append(fsync(faults))
    if "corrupt" in ran:
        out.append(corruption(faults))
    if ran & set(RECOVERING):
        out.append(recovery(faults, meta.get("caught_up_at_end"), meta.get("recovery_timeout")))
    if ran & set(NEW_FAMILIES):
        out.append(node_exits(faults, meta.get("exits_at_end")))
    return out
