"""`cairn bench --ops workflow`, short and real: its own 3-node cluster, real `cairn worker run` processes,
real SIGKILLs; the numbers are only checked for sense (this is not a performance test)."""

from __future__ import annotations

import os
from pathlib import Path

from cairn.bench import WorkflowBenchResult, run_bench


def _children() -> list[str]:
    """The command lines of this process's live children (nodes and workers the bench forgot)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue  # it exited while we looked
    return found


def test_workflow_bench_measures_throughput_and_recovery_and_cleans_up() -> None:
    lines: list[str] = []
    results = run_bench(
        endpoints=None,
        nodes=3,
        ops=["workflow"],
        concurrency=2,
        value_size=0,
        duration=2.0,
        workflows=1,
        durability="fsync",
        echo=lambda *args: lines.append(" ".join(map(str, args))),
        kills=3,
        worker_slots=4,
        warmup=0.5,
        seed=7,
    )
    output = "\n".join(lines)
    assert len(results) == 1, output
    r = results[0]
    assert isinstance(r, WorkflowBenchResult), r
    assert r.op == "workflow" and r.workers == 2 and r.worker_slots == 4
    # throughput: runs completed inside the window, and their claim -> completion time
    assert r.count > 0 and r.workflows_per_sec > 0 and r.ops_per_sec == r.workflows_per_sec, output
    assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms, r
    # recovery: one sample per kill, in order, and parts that add up
    assert r.kills == 3 and len(r.recovery_ms) == 3, r
    assert 0 < r.recovery_p50_ms <= r.recovery_p99_ms <= r.recovery_max_ms, r
    assert r.recovery_lease_s == 1.0
    # the lease was last extended by a heartbeat sent before the kill (the leader may stamp it a little after)
    assert 0 < r.kill_to_expiry_p50_ms <= r.kill_to_expiry_p99_ms < 1500, r
    assert 0 <= r.expiry_to_claimable_p50_ms <= r.expiry_to_claimable_p99_ms <= r.expiry_to_claimable_max_ms, r
    assert r.expiry_to_claimable_max_ms < 2000, r  # recovery.max_recovery_time (default 2s)
    assert 0 <= r.claimable_to_claim_p50_ms <= r.claimable_to_claim_p99_ms, r
    assert 0 < r.claim_to_step_p50_ms <= r.claim_to_step_p99_ms, r
    assert r.recovery_max_ms >= r.kill_to_expiry_p99_ms, r
    # every run started (throughput, background load, and the killed ones) completed
    assert r.started >= r.count + r.kills, r
    assert r.completed == r.started and r.unfinished == {} and r.start_errors == 0 and r.errors == 0, r
    assert "workflows/s" in output and "kill -> next step elsewhere" in output, output
    # every node and worker process the bench started is gone
    assert _children() == []
