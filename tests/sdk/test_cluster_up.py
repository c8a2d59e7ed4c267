"""`cairn cluster up` (what `make up` runs): prints endpoints, stops every node on SIGINT, keeps state."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from cairn import Client
from cairn_server.local_cluster import free_base_port

CAIRN = str(Path(sys.executable).parent / "cairn")


def up(data: Path, base: int) -> subprocess.Popen:
    return subprocess.Popen(
        [CAIRN, "cluster", "up", "--data-dir", str(data), "--base-port", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen, marker: str) -> str:
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError("".join(seen))


def test_cluster_up_stops_cleanly_on_sigint_and_keeps_state(tmp_path: Path) -> None:
    base = free_base_port(3)
    endpoints = [f"127.0.0.1:{base + i}" for i in range(3)]
    proc = up(tmp_path, base)
    try:
        banner = read_until(proc, "Ctrl-C stops every node")
        assert f"endpoints: {','.join(endpoints)}" in banner
        with Client(endpoints, timeout=30) as c:
            c.wait_ready(30)
            written = c.persist_state("kept", current_step="before-restart")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopped: node1 exit 0, node2 exit 0, node3 exit 0" in out
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "secret" in (tmp_path / "cluster.yaml").read_text()
    proc = up(tmp_path, base)
    try:
        read_until(proc, "Ctrl-C stops every node")
        with Client(endpoints, timeout=30) as c:
            assert c.get_state("kept").version == written.version
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cluster_up_refuses_a_data_dir_of_another_shape(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text("nodes: 5\nbase_port: 40000\nraft_ports: [1, 2, 3, 4, 5]\nsecret: x\n")
    proc = subprocess.run(
        [CAIRN, "cluster", "up", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode != 0 and "holds a cluster of 5 nodes" in proc.stdout + proc.stderr
