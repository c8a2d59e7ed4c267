"""`python -m bench.grpc_server` (the measurement behind keeping the thread-pool gRPC server) runs and reports
every server kind with real calls."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_it_measures_every_server_kind() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.grpc_server", "--duration", "0.5", "--repeats", "1", "--concurrency", "4"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for kind in ("sync", "aio-sync", "aio"):
        row = re.search(rf"│ {re.escape(kind)} +│ ([\d,]+) .*│ ([\d.]+) ", proc.stdout)
        assert row, proc.stdout
        assert int(row.group(1).replace(",", "")) > 0 and float(row.group(2)) > 0
