"""The storage and clock fault families (disk, fsync, corrupt, clock) in short real scenarios, and netem's
NOT RUN report where the kernel lacks it.

Each scenario runs one family on 3 real nodes (`--schedule cycle`: every fault of the family in turn) and
asserts the run's exit status 0 AND that the family's faults were really injected and took effect (nodes
stopped on a full disk or a failed fsync, bits flipped and noticed, clocks offset), so that a nemesis that
silently did nothing fails here. The corruption helpers are also tried on real RocksDB files.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest
from rocksdict import Rdict

from chaos.checkers.workflows import early_expiry, true_time
from chaos.history import OK, Operation
from chaos.nemesis import _flip, sst_data_end, wal_records
from chaos.netns import netem_available

ROOT = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (tmpfs mounts, network namespaces): run as root, as .ci/run does"
)


def chaos(*args: str, timeout: float = 280) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chaos", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def scenario(out: Path, faults: str, prefix: str, subnet: str, *extra: str) -> subprocess.CompletedProcess:
    return chaos(
        "run",
        "--nodes",
        "3",
        "--faults",
        faults,
        "--schedule",
        "cycle",
        "--seed",
        "11",
        "--net-prefix",
        prefix,
        "--subnet",
        subnet,
        "--out",
        str(out),
        *extra,
    )


def faults_of(out: Path, family: str) -> list[dict]:
    records = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines() if line]
    return [f for f in records if f["family"] == family]


def verdicts_of(out: Path) -> dict[str, dict]:
    return {v["name"]: v for v in json.loads((out / "verdicts.json").read_text())}


def leftovers(out: Path, prefix: str) -> list[str]:
    """Mounts under the run's directory, its processes, namespaces and links named PREFIX...: none may stay."""
    left = [line for line in Path("/proc/mounts").read_text().splitlines() if str(out) in line]
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and str(out).encode() in (proc / "cmdline").read_bytes():
                left.append(f"process {proc.name}")
        except OSError:
            continue
    if shutil.which("ip") is not None:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        left += [n for n in names if n.startswith(prefix)] + [ln for ln in links.splitlines() if f" {prefix}" in ln]
    return left


def passed(proc: subprocess.CompletedProcess, out: Path) -> None:
    failing = {}
    if (out / "verdicts.json").exists():
        failing = {n: v["violations"][:3] for n, v in verdicts_of(out).items() if v["status"] != "pass"}
    assert proc.returncode == 0, f"{failing}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"


# ---- the corruption helpers on real RocksDB files ------------------------------------------------------


def test_an_sst_flip_lands_in_a_data_block_and_rocksdb_reads_it_as_corrupt(tmp_path: Path) -> None:
    db = Rdict(str(tmp_path / "db"))
    for k in range(3000):
        db[f"key{k:05d}"] = f"{'v' * 50}{k}"
    db.flush()
    db.close()
    sst = max((tmp_path / "db").glob("*.sst"), key=lambda p: p.stat().st_size)
    data = sst.read_bytes()
    end = sst_data_end(data)
    # The data blocks end where the index begins, well before the file's end (index, properties, footer).
    assert 0 < end < len(data) - 100
    flips = _flip(sst, [end // 2], random.Random(1))
    assert sst.read_bytes()[end // 2] == flips[0]["byte_before"] ^ (1 << flips[0]["bit"])
    db = Rdict(str(tmp_path / "db"))
    it = db.iter()
    try:
        it.seek_to_first()
        while it.valid():
            it.next()
        with pytest.raises(Exception, match="[Cc]orruption|checksum"):
            it.status()
    finally:
        del it
        db.close()


def test_wal_records_finds_every_record_of_a_real_log(tmp_path: Path) -> None:
    db = Rdict(str(tmp_path / "db"))
    for k in range(2000):  # more than one 32 KiB block
        db[f"k{k:05d}"] = "x" * 40
    log = max((tmp_path / "db").glob("*.log"), key=lambda p: p.stat().st_size)
    data = log.read_bytes()
    db.close()
    records = wal_records(data)
    # One record per write batch, a few of them in two fragments across a 32 KiB block boundary.
    assert 2000 <= len(records) <= 2000 + len(data) // 32768 + 1
    assert records[0][0] == 7 and all(start + length <= len(data) for start, length in records)
    assert records[-1][0] + records[-1][1] == len(data)  # walked to the very end


# ---- the early-expiry checker's reasoning under clock skew --------------------------------------------


def _run_history(t0: int, claim_stamp: int, expiry_stamp: int) -> dict:
    def h(version: int, kind: str, time_ns: int, token: int = 0) -> dict:
        return {"version": version, "kind": kind, "time_ns": time_ns, "token": token, "step_name": "", "attempt": 1}

    return {
        "status": "COMPLETED",
        "version": 4,
        "steps": [],
        "history": [
            h(1, "RUN_STARTED", t0),
            h(2, "RUN_CLAIMED", claim_stamp, token=5),
            h(3, "LEASE_EXPIRED", expiry_stamp, token=5),
            h(4, "RUN_CLAIMED", expiry_stamp + 1, token=9),
        ],
    }


def test_an_expiry_stamped_late_by_a_skewed_leader_is_still_caught_early() -> None:
    s = 1_000_000_000
    t0 = 1_800_000_000 * s  # wall clock
    offset = 1_000 * s  # wall - monotonic
    start = Operation(1, 101, "start", "wf-1", call=t0 - offset, ret=t0 - offset + s // 100, outcome=OK)
    skews = [(t0 + s // 5, t0 + 3 * s, 50.0)]  # a leader 50 s ahead from 0.2 s to 3 s
    # Claimed at once; expired by the skewed leader at true t0 + 0.5 s (stamped t0 + 50.5 s); the next lease's
    # code ran at t0 + 0.8 s: the lease lasted under 0.8 s of its 2 s, whatever the stamps say.
    final = {"wf-1": _run_history(t0, t0 + s // 100, t0 + 50 * s + s // 2)}
    events = [{"run": "wf-1", "step": "step-0", "token": 9, "time_ns": t0 + 8 * s // 10}]
    verdict = early_expiry(
        [start], final, events, lease_s=2.0, skews=skews, wall_offset_ns=offset, final_wall_ns=t0 + 60 * s
    )
    assert verdict.valid is False and "token 5" in verdict.violations[0], verdict
    assert verdict.details["expired_early_by_stamps"] == 0  # the stamps alone see nothing wrong
    # The same history with the next lease's code running 2.5 s in: nothing proves an early expiry.
    events = [{"run": "wf-1", "step": "step-0", "token": 9, "time_ns": t0 + 5 * s // 2}]
    verdict = early_expiry(
        [start], final, events, lease_s=2.0, skews=skews, wall_offset_ns=offset, final_wall_ns=t0 + 60 * s
    )
    assert verdict.valid is True, verdict
    assert true_time(t0, None) == (t0, t0) and true_time(t0 + 51 * s, skews) == (t0 + s, t0 + 51 * s)


# ---- one short scenario per family --------------------------------------------------------------------


@needs_root
def test_disk_full_on_a_follower_the_leader_and_a_majority(tmp_path: Path) -> None:
    out = tmp_path / "disk"
    proc = scenario(out, "disk", "cqd", "10.214.41", "--duration", "25", "--interval", "6", "--hold", "2")
    assert leftovers(out, "cqd") == []
    passed(proc, out)
    faults = faults_of(out, "disk")
    assert {f["name"] for f in faults if not f["error"]} == {
        "disk-full-follower",
        "disk-full-leader",
        "disk-full-majority",
    }, faults
    # The disks were really full, and the nodes that wrote to them stopped (fail-stop), then came back.
    assert all(sum(f["details"]["ballast_bytes"].values()) > 32 * 2**20 for f in faults)
    assert sum(len(f["details"].get("exits", {})) for f in faults) >= 2, faults
    assert any(f["details"].get("majority_down_ns") for f in faults if f["name"] == "disk-full-majority"), faults
    verdicts = verdicts_of(out)
    assert verdicts["disk-full"]["details"]["majority_down_windows"] >= 1
    assert verdicts["recovery"]["details"]["caught_up"] >= 2
    assert {"disk-full", "recovery", "node-exits", "convergence", "no-lost-writes"} <= set(verdicts)
    assert "### disk:" in (out / "report.md").read_text()


@needs_root
def test_slow_and_failing_fsync_on_the_leader_and_a_follower(tmp_path: Path) -> None:
    out = tmp_path / "fsync"
    proc = scenario(out, "fsync", "cqs", "10.214.42", "--duration", "25", "--interval", "5", "--hold", "2")
    assert leftovers(out, "cqs") == []
    passed(proc, out)
    faults = [f for f in faults_of(out, "fsync") if not f["error"]]
    assert {f["name"] for f in faults} == {
        "fsync-slow-leader",
        "fsync-slow-follower",
        "fsync-error-leader",
        "fsync-error-follower",
    }, faults
    for f in faults:
        d = f["details"]
        if d["failpoint"].endswith("=error"):  # hit, and the node stopped with a non-zero code
            assert all(d["error_logged"].values()) and d["exits"], f
            assert all(e["code"] not in (0, None) for e in d["exits"].values()), f
        else:
            assert d["exits"] == {}, f
    assert verdicts_of(out)["fsync"]["details"]["fail_stops"] >= 2


@needs_root
def test_corrupt_sst_wal_and_snapshot_of_a_follower(tmp_path: Path) -> None:
    out = tmp_path / "corrupt"
    proc = scenario(out, "corrupt", "cqc", "10.214.43", "--duration", "26", "--interval", "7", "--hold", "2")
    assert leftovers(out, "cqc") == []
    passed(proc, out)
    faults = [f for f in faults_of(out, "corrupt") if not f["error"]]
    assert {f["name"] for f in faults} == {"corrupt-sst", "corrupt-wal", "corrupt-snapshot"}, faults
    for f in faults:
        d = f["details"]
        assert d["flips"] and all(x["offset"] >= 0 for x in d["flips"]), f
        if f["name"] == "corrupt-sst":  # inside the data blocks, not only the index or footer
            assert all(x["offset"] < x["data_end"] for x in d["flips"]), f
        assert d["evidence"]["detected"], f  # the node noticed at start-up
        assert any("caught_up_s" in r for r in d["recovery"].values()), f
    assert verdicts_of(out)["corruption"]["details"]["detected"] == len(faults)


@needs_root
def test_clock_skews_and_jumps_under_both_workloads(tmp_path: Path) -> None:
    out = tmp_path / "clock"
    proc = scenario(
        out,
        "clock",
        "cqk",
        "10.214.44",
        "--workload",
        "both",
        "--duration",
        "26",
        "--interval",
        "5",
        "--hold",
        "2.5",
        "--settle",
        "60",
    )
    assert leftovers(out, "cqk") == []
    passed(proc, out)
    faults = [f for f in faults_of(out, "clock") if not f["error"]]
    assert {f["name"] for f in faults} == {
        "clock-skew-leader",
        "clock-skew-follower",
        "clock-jump-leader",
        "clock-jump-follower",
    }, faults
    for f in faults:
        segments = f["details"]["clock"]["segments"]
        # Offset, (jump to another offset,) back to zero at the heal; every offset 5-60 s one way or the other.
        assert len(segments) == (3 if "jump" in f["name"] else 2) and segments[-1][1] == 0, f
        assert all(5 <= abs(off) <= 60 for _, off in segments[:-1]), f
        if "jump" in f["name"]:  # from one side of the right time to the other
            assert segments[0][1] * segments[1][1] < 0, f
    verdicts = verdicts_of(out)
    assert verdicts["wf-lease-early-expiry"]["details"]["skew_windows"] >= len(faults)
    assert {"linearizable", "no-lost-writes", "wf-leases", "wf-no-reexecution"} <= set(verdicts)
    assert verdicts["wf-liveness"]["details"]["workflows_started"] >= 30


@needs_root
def test_netem_runs_or_is_reported_not_run(tmp_path: Path) -> None:
    out = tmp_path / "b"
    if netem_available():  # a kernel with netem: the family runs like any other
        proc = scenario(out, "netem", "cqn", "10.214.45", "--duration", "14", "--interval", "4")
        passed(proc, out)
        assert {f["name"] for f in faults_of(out, "netem") if not f["error"]} == {"netem-latency", "netem-loss"}
        assert leftovers(out, "cqn") == []
        return
    alone = chaos("run", "--faults", "netem", "--net-prefix", "cqn", "--out", str(tmp_path / "a"))
    assert alone.returncode == 2, alone.stdout + alone.stderr
    report = (tmp_path / "a" / "report.md").read_text()
    assert "NOT RUN" in report.splitlines()[0] and "`netem-loss`" in report and "`netem-latency`" in report
    mixed = scenario(out, "kill-follower,netem-loss", "cqn", "10.214.45", "--duration", "12", "--interval", "4")
    passed(mixed, out)
    report = (out / "report.md").read_text()
    head = report.split("## Verdicts")[0]
    assert "## NOT RUN" in head and "`netem-loss`" in head and "no netem qdisc" in head  # before the verdicts
    assert "| netem | netem-loss | **NOT RUN** |" in report
    assert json.loads((out / "run.json").read_text())["not_run"][0].startswith("netem-loss:")
    assert "WARNING: NOT RUN netem-loss" in mixed.stdout
    assert leftovers(out, "cqn") == []


@needs_root
def test_sigterm_in_the_middle_of_a_disk_fault_leaves_no_mount_process_or_namespace(tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "chaos", "run", "--nodes", "3", "--duration", "120", "--faults"]
    command += ["disk-full-majority", "--hold", "4", "--interval", "5", "--disk-mib", "64"]
    command += ["--net-prefix", "cqi", "--subnet", "10.214.46", "--out", str(out)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + 120
        while not any("disk-full-majority: disk full" in line for line in seen):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        # Mid-fault: three tmpfs data directories, two or three of them full, nodes running.
        assert len([m for m in Path("/proc/mounts").read_text().splitlines() if str(out) in m]) == 3
        proc.send_signal(signal.SIGTERM)  # to the runner alone, as a service manager would
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGINT, "".join(seen)  # the runner's KeyboardInterrupt, after cleanup
    assert leftovers(out, "cqi") == []
    recorded = [json.loads(line) for line in (out / "faults.jsonl").read_text().splitlines() if line]
    # The fault in force when the signal came is recorded too (undone, marked interrupted).
    assert recorded and recorded[-1]["name"] == "disk-full-majority" and recorded[-1]["details"]["interrupted"]


def _pump(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)
