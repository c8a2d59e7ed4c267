"""The comparison's tables: per (op, concurrency), each system's median over repeats with its min-max spread.

Ratios are Cairn/etcd per repeat first (the two ran back to back on the same machine), then their median
and spread, so a machine that was slower in one repeat shows as a wide spread, not as a skewed ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

from bench.compare import SYSTEMS, Result

# Column title, the result field, how to print one value.
METRICS: tuple[tuple[str, str, Callable[[float], str]], ...] = (
    ("ops/s", "ops_per_sec", lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.1f}"),
    ("p50 ms", "p50_ms", lambda v: f"{v:.2f}"),
    ("p99 ms", "p99_ms", lambda v: f"{v:.2f}"),
    ("CPU ms/op", "cpu_ms_per_op", lambda v: f"{v:.3f}"),
)
# Cairn/etcd is shown for these (throughput: higher is better for Cairn; p99: lower is).
RATIOS = ("ops_per_sec", "p99_ms")


def spread(values: Sequence[float], fmt: Callable[[float], str]) -> str:
    """'median' for one value, 'median (min-max)' for more."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"


def _ratio_fmt(v: float) -> str:
    return f"{v:.2f}x"


def paired_ratios(cairn: dict[int, Result], etcd: dict[int, Result], key: str) -> list[float]:
    out = []
    for repeat in sorted(cairn.keys() & etcd.keys()):
        a, b = getattr(cairn[repeat].measurement, key), getattr(etcd[repeat].measurement, key)
        if b > 0:
            out.append(a / b)
    return out


def table(op: str, concurrency: int, results: Sequence[Result]) -> Table:
    """One (op, concurrency): a row per system, then the Cairn/etcd ratio row."""
    by_system = {
        system: {r.repeat: r for r in results if r.system == system and r.op == op and r.concurrency == concurrency}
        for system in SYSTEMS
    }
    repeats = len({r for rows in by_system.values() for r in rows})
    t = Table(title=f"{op} @ concurrency {concurrency}  ({repeats} repeat{'s' if repeats != 1 else ''})")
    t.add_column("system")
    for title, _, _ in METRICS:
        t.add_column(title, justify="right")
    t.add_column("errors", justify="right")
    for system in SYSTEMS:
        rows = [by_system[system][k] for k in sorted(by_system[system])]
        cells = [spread([getattr(r.measurement, key) for r in rows], fmt) for _, key, fmt in METRICS]
        errors = sum(r.measurement.errors for r in rows)
        flags = " + election" if any(r.leader_changed for r in rows) else ""
        error_cell = f"[bold red]{errors}{flags}[/]" if errors or flags else "0"
        t.add_row(system, *cells, error_cell)
    ratio_cells = [
        spread(paired_ratios(by_system["cairn"], by_system["etcd"], key), _ratio_fmt) if key in RATIOS else ""
        for _, key, _ in METRICS
    ]
    t.add_row("[bold]Cairn/etcd[/]", *ratio_cells, "", end_section=True)
    return t


def print_report(results: Sequence[Result], ops: Sequence[str], concurrency: Sequence[int], console: Console) -> None:
    for op in ops:
        for c in concurrency:
            if any(r.op == op and r.concurrency == c for r in results):
                console.print(table(op, c, results))
    failed = [r for r in results if r.measurement.errors]
    for r in failed:
        console.print(
            f"[bold red]errors[/] repeat {r.repeat + 1} {r.system} {r.op} c={r.concurrency}: "
            f"{r.measurement.errors} {r.measurement.error_kinds} first: {r.measurement.first_errors}"
        )
    for r in results:
        if r.leader_changed:
            where = f"repeat {r.repeat + 1} {r.system} {r.op} c={r.concurrency}"
            console.print(f"[bold red]leader election[/] during {where} (the Raft term changed)")
