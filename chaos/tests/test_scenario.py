"""Real chaos scenarios, short enough for CI. As root the nodes live in network namespaces (partitions);
otherwise the runner falls back to loopback with kills and pauses, and says so in its report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.netns import netns_available

ROOT = Path(__file__).resolve().parents[2]


def chaos(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chaos", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def leftovers(prefix: str) -> list[str]:
    if not netns_available():
        return []
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return [n for n in names if n.startswith(prefix)] + [ln for ln in links.splitlines() if f" {prefix}" in ln]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess]]:
    out = tmp_path_factory.mktemp("chaos") / "run"
    proc = chaos(
        "run",
        "--nodes",
        "3",
        "--duration",
        "40",
        "--faults",
        "kill,pause,partition",
        "--seed",
        "7",
        "--interval",
        "5",
        "--hold",
        "2.5",
        "--net-prefix",
        "czk",
        "--subnet",
        "10.214.9",
        "--out",
        str(out),
    )
    yield out, proc


def test_a_short_scenario_passes_every_checker(short_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, proc = short_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert {v["name"]: v["status"] for v in verdicts} == {
        "linearizable": "pass",
        "no-lost-writes": "pass",
        "exactly-once": "pass",
        "convergence": "pass",
        "liveness": "pass",
    }
    meta = json.loads((out / "run.json").read_text())
    assert (meta["net_prefix"], meta["subnet"]) == ("czk", "10.214.9")
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert len(faults) >= 4 and all(f["end_ns"] > f["start_ns"] for f in faults)
    kinds = {json.loads(line)["f"] for line in (out / "history.jsonl").read_text().splitlines()}
    assert kinds == {"read", "write", "cas", "checkpoint", "recover"}
    report = (out / "report.md").read_text()
    for section in ("## Verdicts", "## Operations", "## Faults"):
        assert section in report
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not netns_available():
        assert "loopback" in report
    assert leftovers("czk") == []


def test_check_reproduces_the_verdicts_from_the_saved_run(short_run: tuple[Path, subprocess.CompletedProcess]) -> None:
    out, first = short_run
    before = (out / "verdicts.json").read_text()
    again = chaos("check", str(out))
    assert again.returncode == first.returncode
    assert json.loads((out / "verdicts.json").read_text()) == json.loads(before)


def workers_of(out: Path) -> list[int]:
    """Processes whose environment points at this run's worker events (none may outlive the run)."""
    marker = f"CHAOS_EVENTS={out}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="module")
def workflow_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("chaos-wf") / "run"
    proc = chaos(
        "run",
        "--nodes",
        "3",
        "--duration",
        "35",
        "--workload",
        "workflows",
        "--faults",
        "kill,workers",
        "--seed",
        "1",
        "--interval",
        "5",
        "--hold",
        "2.5",
        "--net-prefix",
        "czf",
        "--subnet",
        "10.214.14",
        "--settle",
        "60",
        "--out",
        str(out),
    )
    return out, proc


def test_a_workflow_scenario_with_worker_faults_passes_every_checker(
    workflow_run: tuple[Path, subprocess.CompletedProcess],
) -> None:
    out, proc = workflow_run
    verdicts = {v["name"]: v for v in json.loads((out / "verdicts.json").read_text())}
    assert set(verdicts) == {
        "convergence",
        "wf-liveness",
        "wf-results-stable",
        "wf-no-reexecution",
        "wf-leases",
        "wf-step-order",
    }
    faults = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines()]
    assert any(f["name"].startswith("worker-") and not f["error"] for f in faults), faults
    assert any(f["name"].startswith("kill-") for f in faults), faults
    assert workers_of(out) == [] and leftovers("czf") == []
    counts = verdicts["wf-liveness"]["details"]
    assert counts["workflows_started"] >= 50
    assert verdicts["wf-no-reexecution"]["details"]["steps_persisted"] >= 3 * counts["workflows_started"]
    assert verdicts["wf-leases"]["details"]["recoveries"] >= 1, "no lease expired: no recovery was exercised"
    kinds = {json.loads(line)["f"] for line in (out / "history.jsonl").read_text().splitlines()}
    assert kinds == {"start", "wf-read"}
    assert "## Workflows" in (out / "report.md").read_text()
    failing = {name for name, v in verdicts.items() if v["status"] != "pass"}
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert failing == set(), {name: verdicts[name]["violations"][:3] for name in failing}
    assert counts["workflows_completed"] == counts["workflows_started"] + counts["unknown_starts_that_exist"]


def test_the_unsafe_read_mode_is_caught_as_stale_reads(tmp_path: Path) -> None:
    faults = "partition-leader" if netns_available() else "pause-leader-long"
    proc = chaos(
        "run",
        "--nodes",
        "3",
        "--duration",
        "20",
        "--faults",
        faults,
        "--seed",
        "3",
        "--interval",
        "7",
        "--hold",
        "4",
        "--unsafe-reads",
        "--net-prefix",
        "czu",
        "--subnet",
        "10.214.10",
        "--out",
        str(tmp_path / "unsafe"),
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    verdicts = {v["name"]: v for v in json.loads((tmp_path / "unsafe" / "verdicts.json").read_text())}
    assert verdicts["linearizable"]["status"] == "FAIL"
    assert any("read ->" in v and "cannot be linearized" in v for v in verdicts["linearizable"]["violations"])
    assert leftovers("czu") == []


def test_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chaos",
            "run",
            "--nodes",
            "3",
            "--duration",
            "60",
            "--faults",
            "kill,partition",
            "--net-prefix",
            "czi",
            "--subnet",
            "10.214.11",
            "--out",
            str(tmp_path / "interrupted"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "faults:" in line:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    nodes = subprocess.run(["pgrep", "-f", str(tmp_path / "interrupted")], capture_output=True, text=True).stdout
    assert nodes.strip() == "", f"node processes left: {nodes}"
    assert leftovers("czi") == []


@pytest.mark.skipif(not netns_available(), reason="needs root for network namespaces")
def test_a_second_network_with_a_taken_prefix_is_refused() -> None:
    from chaos.netns import NetnsNetwork

    with NetnsNetwork(2, prefix="czd", subnet="10.214.12") as first:
        with pytest.raises(RuntimeError, match="another run uses prefix 'czd'"):
            NetnsNetwork(2, prefix="czd", subnet="10.214.13").create()
        assert first.namespace(0) in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert leftovers("czd") == []
