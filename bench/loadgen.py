"""The one load generator both systems get: N coroutines in one asyncio process, each looping its own call.

Every coroutine starts together, runs through a warm-up, then a measured window of `duration` seconds.
A call counts in the window when it completes inside it (latency by perf_counter around the await); the
server processes' CPU time is read at the window's two ends, so CPU per op is the window's CPU over the
window's completed ops. Errors count over the whole run (warm-up too): a run with errors is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc

from bench.cpu import cpu_seconds

# One worker's next op: awaits one call, raises on failure.
Call = Callable[[], Awaitable[None]]
ERROR_PAUSE = 0.01  # after a failed call, so a dead server is not hammered in a tight loop


@dataclass
class Measurement:
    ops: int
    errors: int
    window_s: float
    ops_per_sec: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms: float
    cpu_ms_per_op: float
    # This process's CPU over the window, as a share of one core: near 1.0, the client may be the limit.
    client_cpu_cores: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)
    first_errors: dict[str, str] = field(default_factory=dict)  # one message per kind, to say what failed


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (the same rule as `cairn bench`)."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    return type(exc).__name__


async def measure(calls: Sequence[Call], *, warmup: float, duration: float, pids: Sequence[int]) -> Measurement:
    """Run every call in its own coroutine for warmup + duration seconds; what the window measured."""
    loop_start = time.perf_counter()
    window_start, window_end = loop_start + warmup, loop_start + warmup + duration
    window: list[tuple[float, float, float]] = []  # sample() at the window's start and end
    done: list[list[tuple[float, float]]] = [[] for _ in calls]  # per worker: (completed at, latency)
    kinds: Counter[str] = Counter()
    first_errors: dict[str, str] = {}

    async def worker(i: int, call: Call) -> None:
        mine = done[i]
        while (t0 := time.perf_counter()) < window_end:
            try:
                await call()
            except Exception as exc:  # counted and reported, never hidden
                kind = error_kind(exc)
                kinds[kind] += 1
                first_errors.setdefault(kind, str(exc)[:500])
                await asyncio.sleep(ERROR_PAUSE)
                continue
            t1 = time.perf_counter()
            if t1 >= window_start:
                mine.append((t1, t1 - t0))

    def sample() -> tuple[float, float, float]:
        """(now, the servers' CPU seconds, this process's CPU seconds)."""
        return time.perf_counter(), cpu_seconds(pids), time.process_time()

    async def cpu_sampler() -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        window.append(sample())
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        window.append(sample())

    await asyncio.gather(cpu_sampler(), *(worker(i, call) for i, call in enumerate(calls)))
    (t_start, servers_start, own_start), (t_end, servers_end, own_end) = window
    # In the window the CPU was sampled over (the sampler may wake a little after the planned times).
    merged = sorted(latency * 1000 for mine in done for at, latency in mine if t_start <= at < t_end)
    span = t_end - t_start
    cpu_ms = (servers_end - servers_start) * 1000
    return Measurement(
        ops=len(merged),
        errors=sum(kinds.values()),
        window_s=span,
        ops_per_sec=len(merged) / span if span > 0 else 0.0,
        p50_ms=percentile(merged, 0.50),
        p90_ms=percentile(merged, 0.90),
        p99_ms=percentile(merged, 0.99),
        max_ms=merged[-1] if merged else 0.0,
        cpu_ms=cpu_ms,
        cpu_ms_per_op=cpu_ms / len(merged) if merged else 0.0,
        client_cpu_cores=(own_end - own_start) / span if span > 0 else 0.0,
        error_kinds=dict(kinds),
        first_errors=first_errors,
    )
