"""`python -m bench compare ...`: Cairn vs etcd 3.4 on fresh local 3-node clusters, the same load for both.
`python -m bench failover ...`: the leader SIGKILLed to the next acknowledged write, on each system.
`python -m bench security ...`: Cairn's persist with TLS, auth, encryption at rest and the audit log on and off.

Exit status 1 when any measurement had errors, a failover round never recovered or a security variant failed
(they are in the tables and the JSON, never dropped).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from rich.console import Console

from bench import signals
from bench.cairn_side import CAIRN_APIS
from bench.compare import OPS, CompareConfig, Result, environment, run_compare, write_json
from bench.etcd_cluster import ensure_etcd
from bench.failover import SYSTEMS, FailoverConfig, Round, defaults_note, load_average, run_failover
from bench.failover import print_report as print_failover_report
from bench.failover import write_json as write_failover_json
from bench.report import print_report
from bench.security import VARIANT_NAMES, Failure, SecurityConfig, run_security
from bench.security import Result as SecurityResult
from bench.security import print_report as print_security_report
from bench.security import write_json as write_security_json


def _csv(kind: type) -> click.types.FuncParamType:
    def parse(text: str) -> list:
        return [kind(part.strip()) for part in str(text).split(",") if part.strip()]

    return click.types.FuncParamType(parse)


@click.group()
def cli() -> None:
    """Benchmarks of Cairn against other systems."""


@cli.command()
@click.option("--ops", type=_csv(str), default=",".join(OPS), show_default=True, metavar="OP,...", help="ops to run")
@click.option(
    "--concurrency", type=_csv(int), default="1,32,64", show_default=True, metavar="N,...", help="concurrency levels"
)
@click.option("--duration", type=float, default=10.0, show_default=True, help="measured seconds per (op, level)")
@click.option("--warmup", type=float, default=2.0, show_default=True, help="unmeasured seconds before each")
@click.option("--repeats", type=int, default=3, show_default=True, help="fresh clusters each; order alternates")
@click.option("--value-size", type=int, default=1024, show_default=True, help="bytes per written value")
@click.option(
    "--cairn-api", type=click.Choice(sorted(CAIRN_APIS)), default="unary", show_default=True, help="Cairn call strategy"
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="deadline of each call, seconds")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="write every result here")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="parent of the clusters' temporary data directories (default: the system's temp dir); both fsync there",
)
def compare(
    ops: list[str],
    concurrency: list[int],
    duration: float,
    warmup: float,
    repeats: int,
    value_size: int,
    cairn_api: str,
    timeout: float,
    json_path: Path | None,
    data_dir: Path | None,
) -> None:
    """Cairn vs etcd: persist (Put), cas (Txn on mod_revision), get (linearizable Range), on 3-node clusters."""
    try:
        config = CompareConfig(ops, concurrency, duration, warmup, repeats, value_size, cairn_api, timeout, data_dir)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    console = Console(highlight=False)
    signals.install()  # Ctrl-C and SIGTERM unwind: every cluster started here is stopped on the way out
    try:
        etcd_binary = ensure_etcd(console.print)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        raise click.ClickException(str(exc)) from None
    env = environment(etcd_binary)
    console.print(
        f"etcd {env['etcd_version']} vs Cairn ({cairn_api}); ops {','.join(ops)}; concurrency "
        f"{','.join(map(str, concurrency))}; {warmup:g}s warm-up + {duration:g}s each; {repeats} repeat(s)"
    )
    results: list[Result] = []
    complete = False
    try:
        run_compare(config, etcd_binary, lambda line: console.print(line, soft_wrap=True), results)
        complete = True
    finally:
        if json_path is not None:
            write_json(json_path, config, env, results, complete)
        if results:
            print_report(results, ops, concurrency, console)
        if not complete:
            console.print(f"[bold red]incomplete run[/]: {len(results)} measurement(s) finished")
    if any(r.measurement.errors for r in results):
        sys.exit(1)


@cli.command()
@click.option(
    "--systems", type=_csv(str), default=",".join(SYSTEMS), show_default=True, metavar="SYSTEM,...", help="in order"
)
@click.option("--kills", type=int, default=20, show_default=True, help="leader kills per system")
@click.option("--writers", type=int, default=4, show_default=True, help="writer coroutines, one key each")
@click.option("--attempt-timeout", type=float, default=0.2, show_default=True, help="deadline of one attempt, s")
@click.option("--retry-pause", type=float, default=0.02, show_default=True, help="pause after a failed attempt, s")
@click.option("--max-wait", type=float, default=30.0, show_default=True, help="a round without an ack by then failed")
@click.option("--settle", type=float, default=3.0, show_default=True, help="seconds of steady writes before a kill")
@click.option("--value-size", type=int, default=1024, show_default=True, help="bytes per written value")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="write every round here")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="parent of the clusters' temporary data directories (default: the system's temp dir)",
)
@click.option("--keep-logs", is_flag=True, help="keep every cluster's server logs (always kept after a failed round)")
def failover(
    systems: list[str],
    kills: int,
    writers: int,
    attempt_timeout: float,
    retry_pause: float,
    max_wait: float,
    settle: float,
    value_size: int,
    json_path: Path | None,
    data_dir: Path | None,
    keep_logs: bool,
) -> None:
    """Leader SIGKILLed -> next acknowledged write (sent after the kill), on 3-node clusters with default config."""
    try:
        config = FailoverConfig(
            systems, kills, writers, attempt_timeout, retry_pause, max_wait, settle, value_size, data_dir, keep_logs
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    # Wide enough for the tables also when the output goes to a file or a pipe (rich would assume 80 columns).
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
    signals.install()  # Ctrl-C and SIGTERM unwind: every cluster started here is stopped on the way out
    etcd_binary = None
    if "etcd" in systems:
        try:
            etcd_binary = ensure_etcd(console.print)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            raise click.ClickException(str(exc)) from None
    env = environment(etcd_binary)
    env["load_average_start"] = load_average()
    console.print(
        f"failover: {kills} leader kill(s) per system, each system's kills in a block on its own fresh cluster, "
        f"in this order: {', '.join(systems)}" + (f" (etcd {env['etcd_version']})" if etcd_binary else "")
    )
    console.print(
        f"client: {writers} writers, attempt timeout {attempt_timeout * 1000:g} ms, retry pause "
        f"{retry_pause * 1000:g} ms (both systems); max wait {max_wait:g} s; {settle:g} s of steady writes per kill"
    )
    console.print(defaults_note())
    console.print(f"load average at start: {env['load_average_start']} ({env['cpu_count']} CPUs)")
    rounds: list[Round] = []
    totals: dict[str, dict] = {}
    complete = False
    try:
        run_failover(config, etcd_binary, lambda line: console.print(line, soft_wrap=True), rounds, totals)
        complete = True
    finally:
        env["load_average_end"] = load_average()
        if json_path is not None:
            write_failover_json(json_path, config, env, rounds, totals, complete)
        if rounds:
            print_failover_report(rounds, config, console)
        console.print(f"load average at the end: {env['load_average_end']}")
        if not complete:
            console.print(f"[bold red]incomplete run[/]: {len(rounds)} round(s) finished")
    if any(r.failed for r in rounds):
        sys.exit(1)


@cli.command()
@click.option(
    "--variants",
    type=_csv(str),
    default=",".join(VARIANT_NAMES),
    show_default=True,
    metavar="VARIANT,...",
    help="measured in this canonical order (reversed on odd repeats)",
)
@click.option(
    "--concurrency", type=_csv(int), default="1,32", show_default=True, metavar="N,...", help="concurrency levels"
)
@click.option("--duration", type=float, default=10.0, show_default=True, help="measured seconds per level")
@click.option("--warmup", type=float, default=2.0, show_default=True, help="unmeasured seconds before each")
@click.option("--repeats", type=int, default=3, show_default=True, help="a fresh cluster per variant per repeat")
@click.option("--value-size", type=int, default=1024, show_default=True, help="bytes per written value")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="deadline of each call, seconds")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="write every result here")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="parent of the clusters' temporary data directories (default: the system's temp dir)",
)
def security(
    variants: list[str],
    concurrency: list[int],
    duration: float,
    warmup: float,
    repeats: int,
    value_size: int,
    timeout: float,
    json_path: Path | None,
    data_dir: Path | None,
) -> None:
    """The cost of the audit log, TLS (mTLS), auth and encryption at rest on Cairn's persist (3-node clusters).

    Variants, each adding one mechanism to the one before: plain (all off), audit, tls, tls+auth,
    tls+auth+enc (= cluster up --secure). See bench/security.py for what each isolates.
    """
    try:
        config = SecurityConfig(variants, concurrency, duration, warmup, repeats, value_size, timeout, data_dir)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    signals.install()  # Ctrl-C and SIGTERM unwind: every cluster started here is stopped on the way out
    env = environment(None)
    env["load_average_start"] = load_average()
    console.print(
        f"security: persist ({config.value_size} B values, unary) on variants {','.join(config.variants)}; "
        f"concurrency {','.join(map(str, concurrency))}; {warmup:g}s warm-up + {duration:g}s each; "
        f"{repeats} repeat(s), a fresh 3-node cluster per variant per repeat"
    )
    results: list[SecurityResult] = []
    failures: list[Failure] = []
    complete = False
    try:
        run_security(config, lambda line: console.print(line, soft_wrap=True), results, failures)
        complete = True
    finally:
        env["load_average_end"] = load_average()
        if json_path is not None:
            write_security_json(json_path, config, env, results, failures, complete)
        if results or failures:
            print_security_report(results, failures, config, console)
        console.print(f"load average: {env['load_average_start']} at start, {env['load_average_end']} at the end")
        if not complete:
            console.print(f"[bold red]incomplete run[/]: {len(results)} measurement(s) finished")
    if failures or any(r.measurement.errors for r in results):
        sys.exit(1)


def main() -> None:
    cli(prog_name="python -m bench")


if __name__ == "__main__":
    main()
