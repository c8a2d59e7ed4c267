"""The run's report: a summary table (report.md) and a plot of throughput and latency (report.png).

Requested faults that could not run here (no netem qdisc, no root, no workers) are listed first, as NOT
RUN with the reason, and again in the fault table: a run must not look as if it tested what it did not.
"""

from __future__ import annotations

import json
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


def _family(fault: Any) -> str:
    return getattr(fault, "family", "") or (FAULTS[fault.name].family if fault.name in FAULTS else "?")


FAMILY_COLORS = {
    "kill": "tab:red",
    "pause": "tab:orange",
    "partition": "tab:purple",
    "restart": "tab:brown",
    "transfer": "tab:pink",
    "netem": "tab:gray",
    "workers": "tab:olive",
    "disk": "tab:cyan",
    "fsync": "tab:blue",
    "corrupt": "black",
    "clock": "gold",
}


def _not_run_lines(not_run: list[str]) -> list[str]:
    if not not_run:
        return []
    lines = ["## NOT RUN", "", "**These requested faults were NOT injected in this run:**", ""]
    lines += [f"- **NOT RUN** `{why.split(':', 1)[0]}`:{why.split(':', 1)[1]}" for why in not_run]
    return [*lines, ""]


def write_not_run_report(out: Path, spec: str, not_run: list[str]) -> None:
    """The report of a run that never started: every requested fault was unavailable here."""
    lines = [f"# Chaos run NOT RUN: faults {spec}", "", "No requested fault can run on this machine.", ""]
    lines += _not_run_lines(not_run)
    (out / "report.md").write_text("\n".join(lines))
    (out / "run.json").write_text(json.dumps({"faults": spec, "not_run": not_run, "ran": False}, indent=1))


def _recovered(fault: Any) -> str:
    out = []
    for node, r in fault.details.get("recovery", {}).items():
        if "caught_up_s" in r:
            out.append(f"{node} {r['caught_up_s']}s")
        elif "interrupted_s" in r:
            out.append(f"{node} next fault at {r['interrupted_s']}s")
        else:
            out.append(f"{node} NOT in {r.get('timeout_s')}s")
    return ", ".join(out) or "-"


def _exits(fault: Any) -> str:
    return ", ".join(f"{n} {e['code']} at {e['after_s']}s" for n, e in fault.details.get("exits", {}).items()) or "-"


def _fault_details(faults: list[Any], per_family: int = 15) -> list[str]:
    """What each storage and clock fault did (the last `per_family` of each), recovery times, node crashes."""
    lines: list[str] = []
    tables = {
        "disk": ("| fault | targets | ballast MiB | exits (code, after) | majority down | caught up after heal |", 6),
        "fsync": ("| fault | targets | failpoint | error hit | exits (code, after) | caught up after heal |", 6),
        "corrupt": ("| fault | node, stop | bits flipped (file@offset bit) | noticed | caught up after heal |", 5),
        "clock": ("| fault | node | offsets (s from injection: offset) | description |", 4),
    }
    for family, (header, columns) in tables.items():
        of = [f for f in faults if _family(f) == family and not f.error]
        if not of:
            continue
        shown = of[-per_family:]
        more = f" (last {len(shown)} shown)" if len(of) > len(shown) else ""
        lines += ["", f"### {family}: {len(of)} injected{more}"]
        lines += ["", header, "| " + " | ".join(["---"] * columns) + " |"]
        for f in shown:
            d = f.details
            targets = ", ".join(d.get("targets", []))
            if family == "disk":
                mib = sum(d.get("ballast_bytes", {}).values()) / 2**20
                down = "yes" if d.get("majority_down_ns") else "no"
                lines.append(f"| {f.name} | {targets} | {mib:.0f} | {_exits(f)} | {down} | {_recovered(f)} |")
            elif family == "fsync":
                hit = ", ".join(n for n, h in d.get("error_logged", {}).items() if h) or "-"
                lines.append(
                    f"| {f.name} | {targets} | `{d.get('failpoint')}` | {hit} | {_exits(f)} | {_recovered(f)} |"
                )
            elif family == "corrupt":
                flips = ", ".join(f"{x['file']}@{x['offset']} bit {x['bit']}" for x in d.get("flips", []))
                ev = d.get("evidence") or {}
                noticed = ("yes: " + ", ".join(ev.get("moved_aside", [])[:2])) if ev.get("detected") else "NO"
                if ev.get("detected") and not ev.get("moved_aside"):
                    noticed = "yes (log)"
                lines.append(f"| {f.name} | {targets}, {d.get('stop')} | {flips} | {noticed} | {_recovered(f)} |")
            else:
                segments = d.get("clock", {}).get("segments", [])
                t0 = segments[0][0] if segments else 0
                offsets = ", ".join(f"{(at - t0) / 1e9:.1f}: {off:+}" for at, off in segments)
                lines.append(f"| {f.name} | {targets} | {offsets} | {f.description} |")
    samples: dict[str, list[float]] = defaultdict(list)
    other: Counter[str] = Counter()
    for f in faults:
        for r in f.details.get("recovery", {}).values():
            if "caught_up_s" in r:
                samples[_family(f)].append(r["caught_up_s"])
            else:
                other[(_family(f), "interrupted" if "interrupted_s" in r else "not recovered")] += 1
    if samples or other:
        lines += [
            "",
            "## Recovery (heal → the target runs and has applied the leader's commit index)",
            "",
            "| family | caught up | p50 s | p99 s | max s | next fault first | NOT recovered |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for family in sorted(set(samples) | {fam for fam, _ in other}):
            t = samples.get(family, [])
            stats = f"{statistics.median(t):.2f} | {_pct(t, 0.99):.2f} | {max(t):.2f}" if t else "- | - | -"
            lines.append(
                f"| {family} | {len(t)} | {stats} | {other[(family, 'interrupted')]} | "
                f"{other[(family, 'not recovered')]} |"
            )
    crashes = [(f, n, e) for f in faults for n, e in f.details.get("unexpected_exits", {}).items()]
    if crashes:
        lines += ["", "## Node exits the nemesis did not cause", ""]
        for f, node, e in crashes:
            lines.append(f"- {node} exited with code {e.get('code')} during {f.name}: {'; '.join(e.get('log', []))}")
    return lines


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
        + ("; UNSAFE local reads (test-only mode)" if meta.get("unsafe_reads") else "")
        + (
            "; secure: true (mTLS with client certificates, access control, encryption at rest)"
            if meta.get("secure")
            else "; secure: false"
        ),
        "",
    ]
    lines += [f"- {note}" for note in meta.get("notes", []) if not note.startswith("left out ")]
    lines += ["", *_not_run_lines(meta.get("not_run", []))]
    lines += ["## Verdicts", "", "| checker | verdict | violations | details |", "| --- | --- | --- | --- |"]
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
    families = Counter(_family(f) for f in faults)
    by_family = ", ".join(f"{k} {n}" for k, n in sorted(families.items())) or "none"
    lines += ["", "## Faults", "", f"By family: {by_family} (total {len(faults)})"]
    lines += [
        "",
        "| family | fault | injected | not injected (error) | description (last) |",
        "| --- | --- | --- | --- | --- |",
    ]
    counts = Counter(f.name for f in faults)
    for name, n in sorted(counts.items(), key=lambda kv: (FAULTS[kv[0]].family if kv[0] in FAULTS else "", kv[0])):
        of_name = [f for f in faults if f.name == name]
        errors = [f for f in of_name if f.error]
        last = of_name[-1]
        text = (last.description or last.error).replace("|", "\\|")
        lines.append(f"| {_family(last)} | {name} | {n - len(errors)} | {len(errors)} | {text} |")
    for why in meta.get("not_run", []):
        name = why.split(":", 1)[0]
        family = FAULTS[name].family if name in FAULTS else "?"
        lines.append(f"| {family} | {name} | **NOT RUN** | | {why.split(':', 1)[1].strip()} |")
    lines += _fault_details(faults)
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
    from matplotlib.patches import Patch

    counts = Counter(_family(f) for f in faults)
    label = len(faults) <= 60  # names on every window only while they stay readable
    for fault in faults:
        a, b = (fault.start_ns - t0) / 1e9, ((fault.end_ns or fault.start_ns) - t0) / 1e9
        color = FAMILY_COLORS.get(_family(fault), "grey")
        # Worker faults overlap the node faults (their own schedule): a strip along the bottom, not a band.
        height = 0.05 if _family(fault) == "workers" else 1.0
        for ax in (ax1, ax2):
            ax.axvspan(a, b, ymax=height, color=color, alpha=0.08 if fault.error else 0.2 if height == 1 else 0.5)
        if label:
            ax1.annotate(fault.name, (a, ax1.get_ylim()[1] * 0.9), fontsize=7, rotation=90, va="top")
    if counts:
        handles = [
            Patch(color=FAMILY_COLORS.get(fam, "grey"), alpha=0.3, label=f"{fam} ({n})")
            for fam, n in sorted(counts.items())
        ]
        handles += [Patch(color="white", label=f"NOT RUN: {w.split(':', 1)[0]}") for w in meta.get("not_run", [])]
        families = ax1.legend(handles=handles, loc="upper left", fontsize=7, title="fault windows", title_fontsize=7)
        ax1.add_artist(families)
        ax1.legend(loc="upper right")  # the ok/fail/info legend beside it
    fig.suptitle(f"{meta['nodes']} nodes, faults {meta['faults']}, seed {meta['seed']} (shaded: fault windows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
