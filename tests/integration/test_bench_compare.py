"""`python -m bench compare` end to end: a real etcd 3.4 cluster and a real Cairn cluster, briefly, under the
one load generator; every op measured on both with no errors, and nothing left running afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPS = ("persist", "cas", "get")
LEVELS = (1, 4)


def processes_mentioning(path: Path) -> list[str]:
    """Command lines of running processes that name `path`: cluster members the bench left behind."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if str(path) in text:
            found.append(text)
    return found


def test_compare_measures_every_op_on_both_systems(tmp_path: Path) -> None:
    out, data = tmp_path / "out.json", tmp_path / "data"
    data.mkdir()
    args = ["--duration", "1", "--warmup", "0.2", "--concurrency", ",".join(map(str, LEVELS))]
    args += ["--ops", ",".join(OPS), "--repeats", "1", "--json", str(out), "--data-dir", str(data)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "compare", *args], cwd=ROOT, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    doc = json.loads(out.read_text())
    assert doc["complete"]
    assert doc["environment"]["etcd_version"].startswith("3.4"), doc["environment"]
    rows = doc["results"]
    measured = sorted((r["system"], r["op"], r["concurrency"]) for r in rows)
    assert measured == sorted((s, op, c) for s in ("cairn", "etcd") for op in OPS for c in LEVELS)
    for r in rows:
        where = f"{r['system']} {r['op']} c={r['concurrency']}"
        assert r["ops"] > 0, where
        assert r["errors"] == 0, (where, r["error_kinds"], r["first_errors"])
        assert r["cpu_ms_per_op"] > 0, where
        assert not r["leader_changed"], where
    # Repeat 0 runs Cairn first (odd repeats run etcd first).
    assert {r["position"] for r in rows if r["system"] == "cairn"} == {0}

    for op in OPS:
        for c in LEVELS:
            assert f"{op} @ concurrency {c}" in proc.stdout
    assert "Cairn/etcd" in proc.stdout
    # Every node and etcd member was stopped, and the clusters' data removed.
    assert processes_mentioning(data) == []
    assert list(data.iterdir()) == []
