"""`cairn bench`: ops/s and latency percentiles per operation, against a fresh or a running cluster."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .client import Client
from .errors import CairnError


@dataclass
class BenchResult:
    op: str
    count: int
    errors: int
    ops_per_sec: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))]


def _measure(
    op: str, concurrency: int, duration: float, make_worker: Callable[[int], Callable[[], None]]
) -> BenchResult:
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    stop_at = time.monotonic() + duration
    start_gate = threading.Barrier(concurrency + 1)

    def run(i: int) -> None:
        call = make_worker(i)
        start_gate.wait()
        mine = latencies[i]
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                call()
            except CairnError:
                errors[i] += 1
                continue
            mine.append((time.perf_counter() - t0) * 1000)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    start_gate.wait()
    began = time.monotonic()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    merged = sorted(x for lst in latencies for x in lst)
    return BenchResult(
        op,
        len(merged),
        sum(errors),
        len(merged) / elapsed if elapsed else 0.0,
        _percentile(merged, 0.50),
        _percentile(merged, 0.90),
        _percentile(merged, 0.99),
        merged[-1] if merged else 0.0,
    )


def _workers(client: Client, op: str, value: str, workflows: int) -> Callable[[int], Callable[[], None]]:
    ids = [f"bench-{n}" for n in range(workflows)]
    counter = iter(range(10**12))

    def pick() -> str:
        return ids[next(counter) % len(ids)]

    if op == "persist":
        return lambda i: lambda: client.persist_state(pick(), current_step="s", variables={"data": value})
    if op == "get":
        return lambda i: lambda: client.get_state(pick(), include_history=False)
    if op == "sync":
        return lambda i: lambda: client.synchronize_state(pick())
    if op == "checkpoint":
        return lambda i: lambda: client.create_checkpoint(pick())
    if op == "cas":

        def cas_worker(i: int) -> Callable[[], None]:
            wid = f"bench-cas-{i}"
            version = [client.persist_state(wid, current_step="s", variables={"data": value}).version]

            def call() -> None:
                version[0] = client.persist_state(
                    wid, current_step="s", variables={"data": value}, expected_version=version[0]
                ).version

            return call

        return cas_worker
    if op == "recover":

        def recover_worker(i: int) -> Callable[[], None]:
            wid = f"bench-recover-{i}"
            client.persist_state(wid, current_step="s", variables={"data": value})
            cp = client.create_checkpoint(wid)
            return lambda: client.recover_from_checkpoint(wid, cp.id)

        return recover_worker
    raise SystemExit(f"unknown op {op!r}: choose from persist, cas, get, checkpoint, recover, sync")


def run_bench(
    *,
    endpoints: str | None,
    nodes: int,
    ops: list[str],
    concurrency: int,
    value_size: int,
    duration: float,
    workflows: int,
    durability: str,
    echo: Callable[..., None],
) -> list[BenchResult]:
    cluster = None
    tmp = None
    if endpoints is None:
        from cairn_server.local_cluster import LocalCluster, free_base_port

        tmp = tempfile.TemporaryDirectory(prefix="cairn-bench-")
        base = free_base_port(nodes)
        cluster = LocalCluster(
            Path(tmp.name), nodes=nodes, base_port=base, overrides={"state_storage": {"durability": durability}}
        )
        cluster.start()
        endpoints = ",".join(cluster.endpoints)
        echo(f"started a {nodes}-node cluster ({durability}) at {endpoints}")
    client = Client(endpoints, timeout=30.0)
    try:
        client.wait_ready(60)
        value = "x" * value_size
        for wid in (f"bench-{n}" for n in range(workflows)):
            client.persist_state(wid, current_step="s", variables={"data": value})
        results = []
        for op in ops:
            result = _measure(op, concurrency, duration, _workers(client, op, value, workflows))
            echo(f"{op:>10}: {result.ops_per_sec:8.0f} ops/s  p50 {result.p50_ms:6.2f}  p99 {result.p99_ms:6.2f} ms")
            results.append(result)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.stop()
        if tmp is not None:
            tmp.cleanup()


__all__ = ["BenchResult", "run_bench"]
