"""`cairn cluster up` (what `make up` runs): prints endpoints, stops every node on SIGINT, keeps state."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import yaml

from cairn import Client
from cairn_server.local_cluster import free_base_port

CAIRN = str(Path(sys.executable).parent / "cairn")


def up(data: Path, base: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [CAIRN, "cluster", "up", "--data-dir", str(data), "--base-port", str(base), *extra],
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


def test_cluster_up_set_lands_in_every_node_config(tmp_path: Path) -> None:
    base = free_base_port(3)
    endpoints = [f"127.0.0.1:{base + i}" for i in range(3)]
    proc = up(
        tmp_path,
        base,
        "--set",
        "checkpointing.interval=2s",
        "--set",
        "recovery.max_attempts=3",
        "--set",
        "checkpointing.compression=false",
    )
    try:
        read_until(proc, "Ctrl-C stops every node")
        for i in range(3):
            node = yaml.safe_load((tmp_path / f"node{i + 1}" / "node.yaml").read_text())
            assert node["checkpointing"] == {"interval": "2s", "compression": False}
            assert node["recovery"] == {"max_attempts": 3}
            assert node["cluster"]["node_id"] == f"node{i + 1}"
        with Client(endpoints, timeout=30) as c:
            c.wait_ready(30)
            c.persist_state("configured", current_step="up")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cluster_up_bad_set_fails_fast_and_starts_no_node(tmp_path: Path) -> None:
    base = free_base_port(3)
    proc = subprocess.run(
        [CAIRN, "cluster", "up", "--data-dir", str(tmp_path), "--base-port", str(base)]
        + ["--set", "checkpointing.interval=banana"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "checkpointing.interval" in out and "banana" in out
    assert "endpoints:" not in out
    assert not list(tmp_path.glob("node*/node.log")), "a node was started"


def test_cluster_up_malformed_set_is_a_usage_error(tmp_path: Path) -> None:
    for bad in ("checkpointing.interval", "=2s", "checkpointing..interval=2s", "cluster.node_id=x"):
        proc = subprocess.run(
            [CAIRN, "cluster", "up", "--data-dir", str(tmp_path), "--set", bad],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 2, (bad, proc.stdout + proc.stderr)
        assert "--set" in proc.stderr
    assert not list(tmp_path.glob("node*/node.log"))
