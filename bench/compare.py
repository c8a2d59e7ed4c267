"""`python -m bench compare`: Cairn and etcd, each on a fresh 3-node cluster, under the same load generator.

Repeat r starts Cairn first when r is even and etcd first when odd, so neither system always runs on the
colder (or warmer) machine; only one cluster runs at a time. Within a system's turn each (op,
concurrency) measurement sends to the current leader over a new channel, with keys of its own: one key
per worker, written once before the warm-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import shutil
import string
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from bench.cairn_side import running_cairn
from bench.etcd_cluster import etcd_version
from bench.etcd_side import running_etcd_target
from bench.loadgen import Call, Measurement, measure
from bench.signals import deferred

OPS = ("persist", "cas", "get")
SYSTEMS = ("cairn", "etcd")


class Target(Protocol):
    """A running cluster of one system, as the comparison drives it."""

    name: str

    @property
    def pids(self) -> list[int]: ...

    def leader(self) -> tuple[str, int]: ...

    async def prepare(self, channel: grpc.aio.Channel, op: str, keys: list[str]) -> list[Call]: ...


@dataclass
class CompareConfig:
    ops: list[str] = field(default_factory=lambda: list(OPS))
    concurrency: list[int] = field(default_factory=lambda: [1, 32, 64])
    duration: float = 10.0
    warmup: float = 2.0
    repeats: int = 3
    value_size: int = 1024
    cairn_api: str = "unary"
    timeout: float = 10.0
    data_dir: Path | None = None  # parent of the clusters' temporary directories (default: the system's)

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in OPS]
        if unknown:
            raise ValueError(f"unknown op {unknown[0]!r}: choose from {', '.join(OPS)}")
        if not self.ops or not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("need at least one op and concurrency levels >= 1")
        if self.duration <= 0 or self.warmup < 0 or self.repeats < 1 or self.value_size < 1:
            raise ValueError("need duration > 0, warmup >= 0, repeats >= 1, value size >= 1")


@dataclass
class Result:
    """One measurement: one system, one op, one concurrency, one repeat."""

    repeat: int
    system: str
    position: int  # 0: this system ran first in the repeat
    api: str
    op: str
    concurrency: int
    leader: str
    term: int
    leader_changed: bool  # an election during the measurement (even one the same node won again)
    measurement: Measurement

    def flat(self) -> dict[str, Any]:
        row = asdict(self)
        row.update(row.pop("measurement"))
        return row


def make_value(size: int) -> str:
    """The same `size`-character value for both systems; random letters, so compression does not flatter."""
    return "".join(random.Random(0).choices(string.ascii_letters + string.digits, k=size))


def start_target(
    system: str, data_dir: Path, config: CompareConfig, etcd_binary: str
) -> AbstractContextManager[Target]:
    value = make_value(config.value_size)
    if system == "cairn":
        return running_cairn(data_dir, config.cairn_api, value, config.timeout)
    return running_etcd_target(data_dir, etcd_binary, value, config.timeout)


async def measure_system(
    target: Target,
    config: CompareConfig,
    repeat: int,
    position: int,
    echo: Callable[[str], None],
    results: list[Result],
) -> None:
    """Every (op, concurrency) of the config against one running cluster, appended to `results`."""
    api = config.cairn_api if target.name == "cairn" else "unary"
    for op in config.ops:
        for concurrency in config.concurrency:
            leader, term = await asyncio.to_thread(target.leader)
            async with grpc.aio.insecure_channel(leader) as channel:
                keys = [f"bench/{op}/c{concurrency}/w{i}" for i in range(concurrency)]
                calls = await target.prepare(channel, op, keys)
                m = await measure(calls, warmup=config.warmup, duration=config.duration, pids=target.pids)
            changed = (leader, term) != await asyncio.to_thread(target.leader)
            results.append(Result(repeat, target.name, position, api, op, concurrency, leader, term, changed, m))
            errors = f"  ERRORS {m.errors} {m.error_kinds}" if m.errors else ""
            echo(
                f"repeat {repeat + 1}/{config.repeats} {target.name:>5} {op:>7} c={concurrency:<3} "
                f"{m.ops_per_sec:9.1f} ops/s  p50 {m.p50_ms:7.2f}  p99 {m.p99_ms:7.2f} ms  "
                f"cpu {m.cpu_ms_per_op:6.3f} ms/op  client cpu {m.client_cpu_cores:4.0%}{errors}"
            )


def run_order(repeat: int) -> tuple[str, ...]:
    """Cairn first on even repeats, etcd first on odd ones."""
    return SYSTEMS if repeat % 2 == 0 else SYSTEMS[::-1]


def environment(etcd_binary: str | None) -> dict[str, Any]:
    """What the numbers depend on; without an etcd binary (a Cairn-only run) the etcd entries are left out."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cairn_durability": "fsync",
    }
    if etcd_binary is not None:
        env["etcd_binary"] = etcd_binary
        env["etcd_version"] = etcd_version(etcd_binary)
        env["etcd_fsync"] = "on (etcd default; --unsafe-no-fsync never passed)"
    return env


# The server logs in a cluster's directory (not RocksDB's own *.log files, which are its write-ahead log).
LOG_PATTERNS = ("node*/node.log", "etcd*.log")


def keep_logs(data_dir: Path, parent: Path | None, prefix: str = "bench-compare-logs") -> Path:
    """Copy a cluster's server logs out of its data directory (deleted next) into a new directory; its path."""
    kept = Path(tempfile.mkdtemp(prefix=f"{prefix}-{data_dir.name}-", dir=parent))
    for pattern in LOG_PATTERNS:
        for log in data_dir.glob(pattern):
            target = kept / log.relative_to(data_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(log, target)
    return kept


def run_compare(config: CompareConfig, etcd_binary: str, echo: Callable[[str], None], results: list[Result]) -> None:
    """Append each result to `results` as it is measured, so an interrupted run keeps what it measured.

    A system's turn that had errors, a leader change or an exception leaves its server logs behind
    (their path is printed); everything else is removed as soon as the turn ends.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bench-compare-", dir=config.data_dir))
    try:
        for repeat in range(config.repeats):
            for position, system in enumerate(run_order(repeat)):
                data_dir, first = tmp / f"r{repeat}-{system}", len(results)
                try:
                    with start_target(system, data_dir, config, etcd_binary) as target:
                        echo(f"repeat {repeat + 1}/{config.repeats}: {system} cluster up, pids {target.pids}")
                        asyncio.run(measure_system(target, config, repeat, position, echo, results))
                except Exception:
                    echo(f"{system} failed; its server logs are kept in {keep_logs(data_dir, config.data_dir)}")
                    raise
                if any(r.measurement.errors or r.leader_changed for r in results[first:]):
                    echo(f"{system} had errors; its server logs are kept in {keep_logs(data_dir, config.data_dir)}")
                shutil.rmtree(data_dir, ignore_errors=True)  # before the next cluster: disk stays small
    finally:
        with deferred():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, config: CompareConfig, env: dict[str, Any], results: list[Result], complete: bool) -> None:
    doc = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
        "environment": env,
        "complete": complete,
        "results": [r.flat() for r in results],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
