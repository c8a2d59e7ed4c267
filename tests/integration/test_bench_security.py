"""`python -m bench security` end to end, briefly: the baseline and the fully secured variant (mTLS, auth,
encryption at rest, audit) each on a real 3-node cluster, persist measured with no errors, the table printed,
and nothing left running or on disk afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("plain", "tls+auth+enc")


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


def test_security_measures_plain_and_fully_secured(tmp_path: Path) -> None:
    out, data = tmp_path / "out.json", tmp_path / "data"
    data.mkdir()
    args = ["--duration", "0.5", "--warmup", "0.2", "--concurrency", "1", "--repeats", "1"]
    args += ["--variants", ",".join(VARIANTS), "--json", str(out), "--data-dir", str(data)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "security", *args], cwd=ROOT, capture_output=True, text=True, timeout=150
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    doc = json.loads(out.read_text())
    assert doc["complete"]
    assert doc["failures"] == []
    assert [v["name"] for v in doc["variants"]] == list(VARIANTS)
    secured = doc["variants"][1]
    assert (secured["tls"], secured["auth"], secured["encryption"], secured["audit"]) == (True, True, True, True)
    rows = doc["results"]
    assert sorted((r["variant"], r["concurrency"]) for r in rows) == sorted((v, 1) for v in VARIANTS)
    for r in rows:
        assert r["ops"] > 0, r["variant"]
        assert r["errors"] == 0, (r["variant"], r["error_kinds"], r["first_errors"])
        assert r["cpu_ms_per_op"] > 0, r["variant"]
    # The secured variant is compared with plain, paired within the repeat.
    (summary,) = [s for s in doc["summary"] if s["variant"] == "tls+auth+enc"]
    assert summary["vs_plain"] == "plain" and len(summary["ops_per_sec_change_pct_vs_plain"]) == 1

    assert "Δops/s vs plain" in proc.stdout
    assert processes_mentioning(data) == []
    assert list(data.iterdir()) == []
