"""`python -m bench.grpc_server`: what one unary call costs each kind of Python gRPC server, handler aside.

The performance issue proposed moving the node to an asyncio (`grpc.aio`) server. This measures the three
ways to serve Cairn's StateService on this machine with a trivial GetState handler, so that only the
framework is measured: the thread-pool server the node uses (`sync`), `grpc.aio` running the same
synchronous handler in its migration thread pool (`aio-sync`, what a drop-in switch would be) and `grpc.aio`
with an `async def` handler (`aio`, what rewriting every handler would give). Each server runs in its own
process; the same grpc.aio load generator drives it at the given concurrency; the table shows calls/s and the
server process's CPU per call (median and spread over the repeats).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from concurrent import futures

import click
import grpc
from rich.console import Console
from rich.table import Table

from bench.cpu import process_cpu_seconds
from cairn.v1 import state_pb2, state_pb2_grpc
from cairn_server.local_cluster import free_base_port

KINDS = ("sync", "aio-sync", "aio")


def _answer(request: state_pb2.GetStateRequest) -> state_pb2.GetStateResponse:
    return state_pb2.GetStateResponse(state=state_pb2.WorkflowState(workflow_id=request.workflow_id, version=1))


class _Sync(state_pb2_grpc.StateServiceServicer):
    def GetState(self, request, context):  # noqa: N802 (gRPC's name)
        return _answer(request)


class _Async(state_pb2_grpc.StateServiceServicer):
    async def GetState(self, request, context):  # noqa: N802
        return _answer(request)


def serve(kind: str, port: int) -> None:
    """Run one server until killed."""
    if kind == "sync":
        server = grpc.server(futures.ThreadPoolExecutor(64))
        state_pb2_grpc.add_StateServiceServicer_to_server(_Sync(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        server.wait_for_termination()
        return

    async def main() -> None:
        pool = {"migration_thread_pool": futures.ThreadPoolExecutor(64)} if kind == "aio-sync" else {}
        server = grpc.aio.server(**pool)
        state_pb2_grpc.add_StateServiceServicer_to_server(_Sync() if kind == "aio-sync" else _Async(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


async def _drive(port: int, pid: int, concurrency: int, duration: float) -> tuple[float, float]:
    """(calls/s, server CPU ms per call) over `duration` seconds after a short warm-up."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = state_pb2_grpc.StateServiceStub(channel)
        request = state_pb2.GetStateRequest(workflow_id="bench")
        deadline = time.monotonic() + 10
        while True:  # the server process is starting
            try:
                await stub.GetState(request, timeout=1)
                break
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        calls = 0
        measuring = False

        async def worker(stop: float) -> None:
            nonlocal calls
            while time.monotonic() < stop:
                await stub.GetState(request, timeout=10)
                if measuring:
                    calls += 1

        warm = time.monotonic() + 0.5
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        measuring = True
        cpu0 = process_cpu_seconds(pid)
        await asyncio.gather(*(worker(time.monotonic() + duration) for _ in range(concurrency)))
        cpu = process_cpu_seconds(pid) - cpu0
    return calls / duration, 1000 * cpu / max(calls, 1)


def measure(kind: str, concurrency: int, duration: float) -> tuple[float, float]:
    port = free_base_port(1)
    proc = subprocess.Popen([sys.executable, "-m", "bench.grpc_server", "serve", kind, str(port)])
    try:
        return asyncio.run(_drive(port, proc.pid, concurrency, duration))
    finally:
        proc.kill()
        proc.wait()


@click.group(invoke_without_command=True)
@click.option("--concurrency", default=32, show_default=True)
@click.option("--duration", default=4.0, show_default=True, help="seconds measured per run")
@click.option("--repeats", default=3, show_default=True)
@click.pass_context
def main(ctx: click.Context, concurrency: int, duration: float, repeats: int) -> None:
    """Per-call cost of each Python gRPC server kind (a trivial handler)."""
    if ctx.invoked_subcommand is not None:
        return
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    for repeat in range(repeats):
        order = KINDS if repeat % 2 == 0 else tuple(reversed(KINDS))
        for kind in order:
            results[kind].append(measure(kind, concurrency, duration))
    table = Table(title=f"one unary call, trivial handler, concurrency {concurrency}, {repeats} repeats")
    for column in ("server", "calls/s median (min-max)", "server CPU ms/call median (min-max)"):
        table.add_column(column)
    for kind, runs in results.items():
        rates, cpus = [r for r, _ in runs], [c for _, c in runs]
        table.add_row(
            kind,
            f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})",
            f"{statistics.median(cpus):.3f} ({min(cpus):.3f}-{max(cpus):.3f})",
        )
    Console().print(table)


@main.command("serve", hidden=True)
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("port", type=int)
def serve_command(kind: str, port: int) -> None:
    serve(kind, port)


if __name__ == "__main__":
    main()
