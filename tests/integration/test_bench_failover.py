"""`python -m bench failover` end to end: a real Cairn cluster and a real etcd 3.4 cluster each lose their leader
to SIGKILL twice; every kill is followed by an acknowledged write, and nothing is left running afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.test_bench_compare import ROOT, processes_mentioning

SYSTEMS = ("cairn", "etcd")
KILLS = 2


def test_failover_recovers_after_every_leader_kill(tmp_path: Path) -> None:
    out, data = tmp_path / "out.json", tmp_path / "data"
    data.mkdir()
    args = ["--kills", str(KILLS), "--systems", ",".join(SYSTEMS), "--settle", "0.5"]
    args += ["--json", str(out), "--data-dir", str(data)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "failover", *args], cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    doc = json.loads(out.read_text())
    assert doc["complete"]
    assert doc["environment"]["etcd_version"].startswith("3.4"), doc["environment"]
    rounds = doc["rounds"]
    assert sorted((r["system"], r["round"]) for r in rounds) == [(s, k) for s in SYSTEMS for k in range(KILLS)]
    for r in rounds:
        where = f"{r['system']} kill {r['round'] + 1}"
        assert not r["failed"], (where, r)
        assert 0 < r["recovery_ms"] < 30_000, (where, r)
        # The first ack came from a leader elected after the kill (the killed member really was the leader).
        assert r["ack_term"] > r["killed_term"] and not r["stale_term"], (where, r)
    assert [s["system"] for s in doc["summary"]] == list(SYSTEMS)
    assert all(s["kills"] == KILLS and s["failed"] == 0 and s["acknowledged_writes"] > 0 for s in doc["summary"])

    assert "Leader SIGKILLed -> next acknowledged write" in proc.stdout
    # Every node and etcd member was stopped (the killed ones too), and the clusters' data removed.
    assert processes_mentioning(data) == []
    assert list(data.iterdir()) == []
