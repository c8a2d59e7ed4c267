"""`python -m bench security`: what TLS, auth, encryption at rest and the audit log cost a Cairn write.

Every variant is a fresh 3-node LocalCluster on this machine (durability fsync, the default), measured with
the same persist op and load generator as `bench compare` (unary PersistState to the leader, one workflow
per worker written once before the warm-up, 1 KiB values), at each concurrency level. The variants add one
mechanism at a time, so each one's cost is its difference to the one before:

- `plain`: no TLS, auth off, encryption off, audit off. The baseline: Raft (group commit, fsync on every
  node) and RocksDB alone. Raft's own peer messages are encrypted by pysyncobj with the cluster secret in
  every variant (LocalCluster always sets one), so that cost is in the baseline, not in any step.
- `audit`: plain + the audit log (today's default). Isolates one hash-chained audit record per applied
  write, appended on every replica in the write's own RocksDB batch.
- `tls`: audit + TLS on the gRPC listener with mTLS (client_auth: require; the client presents the admin
  certificate). Isolates TLS record protection and the per-call cost of a TLS channel: the channel's
  handshake happens before the warm-up, so none is measured. Raft traffic is not gRPC and is unchanged.
- `tls+auth`: tls + access control on. Isolates the auth interceptor: the caller's identity from the client
  certificate (the bootstrap admin), checked on every call and stamped into the command and its audit record.
- `tls+auth+enc`: tls+auth + encryption at rest (= `cairn cluster up --secure`). Isolates AES-GCM sealing of
  every stored value (state, history, dedup records, indexes, the Raft journal) on every node.

Repeat r runs the variants in the order above when r is even and reversed when odd, one cluster at a time,
a fresh one per variant per repeat. Relative costs are paired within a repeat (variant / reference of the
same repeat) before their median and spread are taken, so a machine that was slower in one repeat shows as
spread rather than as a skewed ratio.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from bench.cairn_side import CairnTarget
from bench.compare import keep_logs, make_value
from bench.loadgen import Measurement, measure
from bench.report import spread
from bench.signals import deferred
from cairn_server.config import parse_config
from cairn_server.local_cluster import LocalCluster, free_base_port

OP = "persist"
API = "unary"


@dataclass(frozen=True)
class Variant:
    name: str
    secure: bool  # LocalCluster(secure=True): certificates, TLS with mTLS, auth and encryption, then overrides
    overrides: Mapping[str, Any]
    isolates: str
    # What the node configuration must say (checked before the nodes start, so an override that did not
    # take cannot pass for a measurement of the variant).
    tls: bool
    auth: bool
    encryption: bool
    audit: bool


_AUTH_OFF = {"auth": {"enabled": False}}
_ENC_OFF = {"state_storage": {"encryption": {"enabled": False}}}
_AUDIT_OFF = {"audit": {"enabled": False}}

VARIANTS: tuple[Variant, ...] = (
    Variant("plain", False, _AUDIT_OFF, "baseline: Raft + RocksDB, fsync", False, False, False, False),
    Variant("audit", False, {}, "one hash-chained audit record per write", False, False, False, True),
    Variant("tls", True, {**_AUTH_OFF, **_ENC_OFF}, "gRPC TLS with mTLS", True, False, False, True),
    Variant("tls+auth", True, _ENC_OFF, "identity + access check per call", True, True, False, True),
    Variant("tls+auth+enc", True, {}, "AES-GCM encryption at rest", True, True, True, True),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
BY_NAME = {v.name: v for v in VARIANTS}


@dataclass
class SecurityConfig:
    variants: list[str] = field(default_factory=lambda: list(VARIANT_NAMES))
    concurrency: list[int] = field(default_factory=lambda: [1, 32])
    duration: float = 10.0
    warmup: float = 2.0
    repeats: int = 3
    value_size: int = 1024
    timeout: float = 10.0
    data_dir: Path | None = None  # parent of the clusters' temporary directories (default: the system's)

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown variant {unknown[0]!r}: choose from {', '.join(VARIANT_NAMES)}")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError("a variant is named twice")
        # Always in the canonical order: "the previous variant" is the one with one mechanism less.
        self.variants = [v for v in VARIANT_NAMES if v in self.variants]
        if not self.variants or not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("need at least one variant and concurrency levels >= 1")
        if self.duration <= 0 or self.warmup < 0 or self.repeats < 1 or self.value_size < 1:
            raise ValueError("need duration > 0, warmup >= 0, repeats >= 1, value size >= 1")


@dataclass
class Result:
    """One measurement: one variant, one concurrency, one repeat."""

    repeat: int
    variant: str
    position: int  # the variant's place in its repeat's run order (0: first)
    concurrency: int
    leader: str
    term: int
    leader_changed: bool  # an election during the measurement (even one the same node won again)
    measurement: Measurement

    def flat(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(row.pop("measurement"))
        return row


@dataclass
class Failure:
    """A variant's cluster that did not start, or a measurement that raised: no numbers, its node logs."""

    repeat: int
    variant: str
    error: str
    logs_kept: str
    log_tails: dict[str, str]


def run_order(repeat: int, variants: Sequence[str]) -> list[str]:
    """The canonical order on even repeats, reversed on odd ones."""
    return list(variants) if repeat % 2 == 0 else list(variants)[::-1]


def check_config(cluster: LocalCluster, variant: Variant) -> None:
    """Every node's configuration validates and has exactly the variant's mechanisms on."""
    for spec in cluster.specs:
        config = parse_config(cluster.node_config(spec))
        have = {
            "tls": config.tls is not None and config.tls.client_auth == "require",
            "auth": config.auth.enabled,
            "encryption": bool(config.state_storage.encryption),
            "audit": config.audit.enabled,
        }
        want = {"tls": variant.tls, "auth": variant.auth, "encryption": variant.encryption, "audit": variant.audit}
        if have != want:
            raise RuntimeError(f"{variant.name}: {spec.node_id}'s configuration has {have}, the variant needs {want}")


def channel_credentials(cluster: LocalCluster) -> grpc.ChannelCredentials | None:
    """The admin's mTLS credentials on a secure cluster (CA, admin certificate and key); None for plaintext."""
    if cluster.tls is None:
        return None
    t = cluster.tls
    return grpc.ssl_channel_credentials(
        root_certificates=t.ca.read_bytes(),
        private_key=t.admin_key.read_bytes(),
        certificate_chain=t.admin_cert.read_bytes(),
    )


def start_and_wait(cluster: LocalCluster, timeout: float) -> None:
    """Start every node and wait for an agreed leader; a node that exits meanwhile fails at once."""
    cluster.start()
    deadline = time.monotonic() + timeout
    while True:
        exited = {cluster.specs[i].node_id: p.returncode for i, p in cluster.procs.items() if not cluster.alive(i)}
        if exited:
            raise RuntimeError(f"node(s) exited during start-up (exit codes {exited})")
        try:
            cluster.wait_leader(1.0)
            return
        except TimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no agreed leader within {timeout:g}s") from None


@contextmanager
def running_variant(variant: Variant, data_dir: Path, value: str, timeout: float) -> Iterator[CairnTarget]:
    """A fresh 3-node cluster of the variant with an agreed leader; stopped on exit."""
    cluster = LocalCluster(
        data_dir, nodes=3, base_port=free_base_port(3), overrides=dict(variant.overrides), secure=variant.secure
    )
    check_config(cluster, variant)
    try:
        start_and_wait(cluster, 60.0)
        yield CairnTarget(cluster, API, value, timeout)
    finally:
        with deferred():
            cluster.stop()


def log_tails(data_dir: Path, lines: int = 30) -> dict[str, str]:
    """The last lines of every node's log in a cluster's directory (node1: ..., node2: ...)."""
    tails = {}
    for log in sorted(data_dir.glob("node*/node.log")):
        try:
            tails[log.parent.name] = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            tails[log.parent.name] = f"(unreadable: {exc})"
    return tails


async def measure_variant(
    target: CairnTarget,
    variant: Variant,
    config: SecurityConfig,
    repeat: int,
    position: int,
    echo: Callable[[str], None],
    results: list[Result],
) -> None:
    """Persist at every concurrency level of the config, each over a new channel to the current leader."""
    credentials = channel_credentials(target.cluster)
    for concurrency in config.concurrency:
        leader, term = await asyncio.to_thread(target.leader)
        channel = (
            grpc.aio.secure_channel(leader, credentials)
            if credentials is not None
            else grpc.aio.insecure_channel(leader)
        )
        async with channel:
            keys = [f"bench/{OP}/c{concurrency}/w{i}" for i in range(concurrency)]
            calls = await target.prepare(channel, OP, keys)  # the TLS handshake happens here, unmeasured
            m = await measure(calls, warmup=config.warmup, duration=config.duration, pids=target.pids)
        changed = (leader, term) != await asyncio.to_thread(target.leader)
        results.append(Result(repeat, variant.name, position, concurrency, leader, term, changed, m))
        errors = f"  ERRORS {m.errors} {m.error_kinds}" if m.errors else ""
        echo(
            f"repeat {repeat + 1}/{config.repeats} {variant.name:>12} c={concurrency:<3} "
            f"{m.ops_per_sec:9.1f} ops/s  p50 {m.p50_ms:7.2f}  p99 {m.p99_ms:7.2f} ms  "
            f"cpu {m.cpu_ms_per_op:6.3f} ms/op  client cpu {m.client_cpu_cores:4.0%}{errors}"
        )


def _echo_tails(echo: Callable[[str], None], tails: Mapping[str, str]) -> None:
    for node, tail in tails.items():
        echo(f"--- {node}/node.log (last lines) ---\n{tail}")


def run_security(
    config: SecurityConfig, echo: Callable[[str], None], results: list[Result], failures: list[Failure]
) -> None:
    """Append each result to `results` as it is measured (an interrupted run keeps what it measured).

    A variant whose cluster fails to start or whose measurement raises is recorded in `failures` with its
    nodes' log tails (printed too) and the run goes on with the next variant. A cluster that had errors or a
    leader change keeps its server logs (their path is printed); every cluster's data is removed after it.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bench-security-", dir=config.data_dir))
    value = make_value(config.value_size)
    try:
        for repeat in range(config.repeats):
            for position, name in enumerate(run_order(repeat, config.variants)):
                variant = BY_NAME[name]
                data_dir, first = tmp / f"r{repeat}-{name.replace('+', '-')}", len(results)
                try:
                    with running_variant(variant, data_dir, value, config.timeout) as target:
                        echo(f"repeat {repeat + 1}/{config.repeats}: {name} cluster up, pids {target.pids}")
                        asyncio.run(measure_variant(target, variant, config, repeat, position, echo, results))
                except Exception as exc:
                    error = "".join(traceback.format_exception_only(exc)).strip()
                    kept = keep_logs(data_dir, config.data_dir, prefix="bench-security-logs")
                    tails = log_tails(data_dir)
                    failures.append(Failure(repeat, name, error, str(kept), tails))
                    echo(f"[bold red]{name} failed[/] (repeat {repeat + 1}): {error}; server logs kept in {kept}")
                    _echo_tails(echo, tails)
                else:
                    if any(r.measurement.errors or r.leader_changed for r in results[first:]):
                        kept = keep_logs(data_dir, config.data_dir, prefix="bench-security-logs")
                        echo(f"{name} had errors or an election; its server logs are kept in {kept}")
                        if any(r.measurement.errors for r in results[first:]):
                            _echo_tails(echo, log_tails(data_dir))
                shutil.rmtree(data_dir, ignore_errors=True)  # before the next cluster: disk stays small
    finally:
        with deferred():
            shutil.rmtree(tmp, ignore_errors=True)


# ---- summary and report ---------------------------------------------------------------------------------


def _by_repeat(results: Sequence[Result], variant: str, concurrency: int) -> dict[int, Result]:
    return {r.repeat: r for r in results if r.variant == variant and r.concurrency == concurrency}


def _paired_change(a: Mapping[int, Result], b: Mapping[int, Result], key: str) -> list[float]:
    """Per repeat that has both: a/b - 1, in percent (for ops/s negative is slower, for CPU/op positive costs)."""
    out = []
    for repeat in sorted(a.keys() & b.keys()):
        x, y = getattr(a[repeat].measurement, key), getattr(b[repeat].measurement, key)
        if y > 0:
            out.append((x / y - 1.0) * 100.0)
    return out


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(results: Sequence[Result], config: SecurityConfig) -> list[dict[str, Any]]:
    """Per (variant, concurrency): medians and spreads over repeats, and changes against plain and the previous
    variant (each paired within a repeat; the per-repeat values are kept)."""
    rows = []
    for concurrency in config.concurrency:
        for index, name in enumerate(config.variants):
            mine = _by_repeat(results, name, concurrency)
            if not mine:
                continue
            ms = [mine[k].measurement for k in sorted(mine)]
            row: dict[str, Any] = {
                "variant": name,
                "concurrency": concurrency,
                "repeats": len(ms),
                "ops_per_sec": [m.ops_per_sec for m in ms],
                "ops_per_sec_median": statistics.median(m.ops_per_sec for m in ms),
                "p50_ms_median": statistics.median(m.p50_ms for m in ms),
                "p99_ms_median": statistics.median(m.p99_ms for m in ms),
                "cpu_ms_per_op_median": statistics.median(m.cpu_ms_per_op for m in ms),
                "errors": sum(m.errors for m in ms),
                "leader_changed": any(r.leader_changed for r in mine.values()),
            }
            references = {"plain": "plain" if "plain" in config.variants else None}
            references["prev"] = config.variants[index - 1] if index > 0 else None
            for label, ref in references.items():
                row[f"vs_{label}"] = ref
                if ref is None or ref == name:
                    continue
                theirs = _by_repeat(results, ref, concurrency)
                for key in ("ops_per_sec", "p50_ms", "cpu_ms_per_op"):
                    changes = _paired_change(mine, theirs, key)
                    row[f"{key}_change_pct_vs_{label}"] = changes
                    row[f"{key}_change_pct_vs_{label}_median"] = _median(changes)
            rows.append(row)
    return rows


def _ops(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def _pct(v: float) -> str:
    return f"{v:+.1f}%"


def _pct_spread(values: Sequence[float]) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return _pct(values[0])
    return f"{_pct(statistics.median(values))} ({min(values):+.0f}..{max(values):+.0f})"


def table(summary: Sequence[dict[str, Any]], config: SecurityConfig) -> Table:
    t = Table(
        title=(
            f"persist ({API}, {config.value_size} B values): {config.warmup:g}s warm-up + {config.duration:g}s, "
            f"{config.repeats} repeat(s); median (min..max) over repeats; changes paired per repeat"
        ),
        caption=(
            "Δops/s: throughput change (negative: slower); ΔCPU/op: server CPU per op change (positive: costs more); "
            "vs plain / vs the variant above"
        ),
    )
    for title in ("variant", "c", "ops/s", "p50 ms", "p99 ms", "CPU ms/op"):
        t.add_column(title, justify="left" if title == "variant" else "right")
    for title in ("Δops/s vs plain", "Δops/s vs prev", "ΔCPU/op vs plain", "ΔCPU/op vs prev", "errors"):
        t.add_column(title, justify="right")
    last = len(summary) - 1
    for i, row in enumerate(summary):
        ms = row["ops_per_sec"]
        flags = " + election" if row["leader_changed"] else ""
        errors = f"[bold red]{row['errors']}{flags}[/]" if row["errors"] or flags else "0"
        cpu_plain = row.get("cpu_ms_per_op_change_pct_vs_plain_median")
        cpu_prev = row.get("cpu_ms_per_op_change_pct_vs_prev_median")
        t.add_row(
            row["variant"],
            str(row["concurrency"]),
            spread(ms, _ops),
            f"{row['p50_ms_median']:.2f}",
            f"{row['p99_ms_median']:.2f}",
            f"{row['cpu_ms_per_op_median']:.3f}",
            _pct_spread(row.get("ops_per_sec_change_pct_vs_plain", [])),
            _pct_spread(row.get("ops_per_sec_change_pct_vs_prev", [])),
            _pct(cpu_plain) if cpu_plain is not None else "",
            _pct(cpu_prev) if cpu_prev is not None else "",
            errors,
            end_section=i < last and summary[i + 1]["concurrency"] != row["concurrency"],
        )
    return t


def print_report(
    results: Sequence[Result], failures: Sequence[Failure], config: SecurityConfig, console: Console
) -> list[dict[str, Any]]:
    summary = summarize(results, config)
    if summary:
        console.print(table(summary, config))
    for r in results:
        where = f"repeat {r.repeat + 1} {r.variant} c={r.concurrency}"
        if r.measurement.errors:
            m = r.measurement
            console.print(f"[bold red]errors[/] {where}: {m.errors} {m.error_kinds} first: {m.first_errors}")
        if r.leader_changed:
            console.print(f"[bold red]leader election[/] during {where} (the Raft term changed)")
    for f in failures:
        console.print(f"[bold red]failed[/] repeat {f.repeat + 1} {f.variant}: {f.error} (logs: {f.logs_kept})")
    return summary


def write_json(
    path: Path,
    config: SecurityConfig,
    env: dict[str, Any],
    results: Sequence[Result],
    failures: Sequence[Failure],
    complete: bool,
) -> None:
    doc = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "environment": env,
        "variants": [
            {
                "name": v.name,
                "isolates": v.isolates,
                "secure": v.secure,
                "overrides": v.overrides,
                "tls": v.tls,
                "auth": v.auth,
                "encryption": v.encryption,
                "audit": v.audit,
            }
            for v in VARIANTS
            if v.name in config.variants
        ],
        "op": OP,
        "api": API,
        "complete": complete,
        "results": [r.flat() for r in results],
        "summary": summarize(results, config),
        "failures": [asdict(f) for f in failures],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
