"""The run's report: a summary table (report.md) and a plot of throughput and latency (report.png)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .checkers import Verdict
from .history import OK, Operation
from .nemesis import FAULTS


def failover_times(ops: list[Operation], faults: list[Any]) -> dict[str, list[float]]:
    """Per fault name: seconds from injection until a write invoked after it was acknowledged.

    Only writes invoked after the fault count: an acknowledgement already on its way when the leader was
    killed says nothing about how soon the cluster accepts writes again.
    """
    writes = sorted(
        (op.call, op.ret) for op in ops if op.outcome == OK and op.f in ("write", "cas", "recover") and op.ret
    )
    out: dict[str, list[float]] = defaultdict(list)
    for fault in faults:
        if fault.name in FAULTS and FAULTS[fault.name].removes_leader and not fault.error:
            after = [ret for call, ret in writes if call > fault.start_ns]
            if after:
                out[fault.name].append((min(after) - fault.start_ns) / 1e9)
    return dict(out)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def write_report(
    out: Path,
    ops: list[Operation],
    faults: list[Any],
    verdicts: list[Verdict],
    meta: dict,
    workflow_counts: dict | None = None,
) -> None:
    by = Counter((op.f, op.outcome) for op in ops)
    kinds = sorted({f for f, _ in by})
    lines = [
        f"# Chaos run: {meta['nodes']} nodes, {meta['duration']:.0f}s, faults {meta['faults']}, seed {meta['seed']}",
        "",
        f"Network namespaces: {'yes' if meta['netns'] else 'no (loopback: kills and pauses only)'}; "
        f"workload {meta.get('workload', 'state')}; clients {meta['clients']}, keys {meta['keys']}"
        + (
            f"; workers {meta.get('workers')}, {meta.get('workflow_steps')} steps per run, "
            f"lease {meta.get('lease_timeout')}s"
            if meta.get("workload") in ("workflows", "both")
            else ""
        )
        + ("; UNSAFE local reads (test-only mode)" if meta.get("unsafe_reads") else ""),
        "",
    ]
    lines += [f"- {note}" for note in meta.get("notes", [])]
    lines += ["", "## Verdicts", "", "| checker | verdict | violations | details |", "| --- | --- | --- | --- |"]
    for v in verdicts:
        lines.append(f"| {v.name} | {v.status} | {len(v.violations)} | {v.details} |")
    for v in verdicts:
        for violation in v.violations[:10]:
            lines.append(f"- **{v.name}**: {violation}")
    lines += ["", "## Operations", "", "| op | ok | fail | info |", "| --- | --- | --- | --- |"]
    for f in kinds:
        lines.append(f"| {f} | {by[(f, 'ok')]} | {by[(f, 'fail')]} | {by[(f, 'info')]} |")
    lines.append(
        f"| all | {sum(n for (_, o), n in by.items() if o == 'ok')} | "
        f"{sum(n for (_, o), n in by.items() if o == 'fail')} | "
        f"{sum(n for (_, o), n in by.items() if o == 'info')} |"
    )
    if workflow_counts is not None:
        lines += ["", "## Workflows", "", "| count | value |", "| --- | --- |"]
        lines += [f"| {name} | {value} |" for name, value in workflow_counts.items()]
    families = Counter(FAULTS[f.name].family if f.name in FAULTS else "?" for f in faults)
    by_family = ", ".join(f"{k} {n}" for k, n in sorted(families.items())) or "none"
    lines += ["", "## Faults", "", f"By family: {by_family}"]
    lines += ["", "| fault | injected | description (last) |", "| --- | --- | --- |"]
    counts = Counter(f.name for f in faults)
    for name, n in sorted(counts.items()):
        last = [f for f in faults if f.name == name][-1]
        lines.append(f"| {name} | {n} | {last.description or last.error} |")
    failovers = failover_times(ops, faults)
    if failovers:
        lines += [
            "",
            "## Failover (fault injected → first write invoked after it is acknowledged)",
            "",
            "| fault | samples | p50 s | p99 s | max s |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, times in sorted(failovers.items()):
            lines.append(
                f"| {name} | {len(times)} | {statistics.median(times):.2f} | {_pct(times, 0.99):.2f} | "
                f"{max(times):.2f} |"
            )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    _plot(out / "report.png", ops, faults, meta)


def _plot(path: Path, ops: list[Operation], faults: list[Any], meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not ops:
        return
    t0 = min(op.call for op in ops)
    seconds = int(max((op.ret or op.call) for op in ops) - t0) // 10**9 + 1
    series: dict[str, list[int]] = {o: [0] * seconds for o in ("ok", "fail", "info")}
    latency: dict[int, list[float]] = defaultdict(list)
    for op in ops:
        end = op.ret if op.ret is not None else op.call
        s = min(seconds - 1, int((end - t0) // 10**9))
        series[op.outcome][s] += 1
        if op.outcome == OK and op.ret is not None:
            latency[s].append((op.ret - op.call) / 1e6)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(12, 6), sharex=True)
    xs = list(range(seconds))
    for outcome, color in (("ok", "tab:green"), ("fail", "tab:orange"), ("info", "tab:red")):
        ax1.plot(xs, series[outcome], label=outcome, color=color)
    ax1.set_ylabel("operations / s")
    ax1.legend(loc="upper right")
    p50 = [statistics.median(latency[s]) if latency[s] else float("nan") for s in xs]
    p99 = [_pct(latency[s], 0.99) if latency[s] else float("nan") for s in xs]
    ax2.plot(xs, p50, label="p50", color="tab:blue")
    ax2.plot(xs, p99, label="p99", color="tab:purple")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency of ok ops (ms)")
    ax2.set_xlabel("seconds")
    ax2.legend(loc="upper right")
    for fault in faults:
        a, b = (fault.start_ns - t0) / 1e9, ((fault.end_ns or fault.start_ns) - t0) / 1e9
        for ax in (ax1, ax2):
            ax.axvspan(a, b, color="grey", alpha=0.2)
        ax1.annotate(fault.name, (a, ax1.get_ylim()[1] * 0.9), fontsize=7, rotation=90, va="top")
    fig.suptitle(f"{meta['nodes']} nodes, faults {meta['faults']}, seed {meta['seed']} (shaded: fault windows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
