"""A fresh local etcd cluster (3 members on loopback) for the comparison, started and stopped like LocalCluster.

Members run with etcd's defaults (in particular fsync on every commit: `--unsafe-no-fsync` is never
passed and ETCD_* variables from the caller's environment are dropped, so nothing can turn it off), on
free loopback ports, with their data and logs under one directory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bench.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from bench.signals import deferred
from cairn_server.local_cluster import free_base_port

ETCD_PACKAGE = "etcd-server"  # Debian's package with /usr/bin/etcd (3.4 on bookworm)


def ensure_etcd(echo: Callable[[str], None] = print) -> str:
    """The etcd binary; installed with apt-get when missing (root only), so a fresh machine can run the bench."""
    found = shutil.which("etcd")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(
            f"etcd is not installed and installing it needs root: run `apt-get install -y {ETCD_PACKAGE}` "
            "as root (or run this benchmark as root), then try again"
        )
    echo(f"etcd not found: installing {ETCD_PACKAGE} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", ETCD_PACKAGE]
    if subprocess.run(install, env=env, capture_output=True, text=True).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True, text=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install {ETCD_PACKAGE} failed:\n{done.stdout}\n{done.stderr}")
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError(f"{ETCD_PACKAGE} is installed but there is no etcd on PATH")
    return found


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=20).stdout
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("etcd Version:").strip() or "unknown"


@dataclass
class EtcdCluster:
    """`nodes` etcd members on 127.0.0.1: client ports base..base+n-1, peer ports after them."""

    data_dir: Path
    binary: str
    nodes: int = 3
    host: str = "127.0.0.1"
    base_port: int = 0
    token: str = field(default_factory=lambda: f"cairn-bench-{secrets.token_hex(6)}")
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.base_port:
            self.base_port = free_base_port(2 * self.nodes, self.host)

    def name(self, i: int) -> str:
        return f"etcd{i + 1}"

    def client_url(self, i: int) -> str:
        return f"http://{self.host}:{self.base_port + i}"

    def peer_url(self, i: int) -> str:
        return f"http://{self.host}:{self.base_port + self.nodes + i}"

    @property
    def endpoints(self) -> list[str]:
        """gRPC targets (etcd serves gRPC and HTTP on the client URL)."""
        return [f"{self.host}:{self.base_port + i}" for i in range(self.nodes)]

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs.values()]

    def log_path(self, i: int) -> Path:
        return self.data_dir / f"{self.name(i)}.log"

    def command(self, i: int) -> list[str]:
        initial = ",".join(f"{self.name(j)}={self.peer_url(j)}" for j in range(self.nodes))
        return [
            self.binary,
            f"--name={self.name(i)}",
            f"--data-dir={self.data_dir / self.name(i)}",
            f"--listen-client-urls={self.client_url(i)}",
            f"--advertise-client-urls={self.client_url(i)}",
            f"--listen-peer-urls={self.peer_url(i)}",
            f"--initial-advertise-peer-urls={self.peer_url(i)}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-token={self.token}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-outputs=stderr",
        ]

    def start(self) -> None:
        for i in range(self.nodes):
            self.start_member(i)

    def start_member(self, i: int) -> None:
        """Start member i; on an existing data directory (a restart) etcd ignores the --initial-cluster flags."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(self.log_path(i), "ab") as log:
            self.procs[i] = subprocess.Popen(
                self.command(i),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C reaches the bench, which stops the members in order
            )

    def alive(self, i: int) -> bool:
        proc = self.procs.get(i)
        return proc is not None and proc.poll() is None

    def status(self, i: int, timeout: float = 1.0) -> rpc_pb2.StatusResponse | None:
        """Member i's Maintenance.Status, or None when it does not answer."""
        if not self.alive(i):
            return None
        with grpc.insecure_channel(self.endpoints[i]) as channel:
            try:
                return rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=timeout)
            except grpc.RpcError:
                return None

    def leadership(self) -> tuple[int, int] | None:
        """(leader index, its Raft term) when every member answers and names the same leader (by member id)."""
        views = {i: self.status(i) for i in range(self.nodes)}
        if any(v is None for v in views.values()):
            return None
        named = {(v.leader, v.raftTerm) for v in views.values() if v is not None}
        if len(named) != 1:
            return None
        leader_id, term = named.pop()
        if leader_id == 0:
            return None
        index = next((i for i, v in views.items() if v is not None and v.header.member_id == leader_id), None)
        return None if index is None else (index, term)

    def leader(self) -> int | None:
        leadership = self.leadership()
        return None if leadership is None else leadership[0]

    def wait_leadership(self, timeout: float = 30.0) -> tuple[int, int]:
        """(leader index, term), once the members agree; raises if one exits or at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self.nodes):
                if not self.alive(i):
                    raise RuntimeError(f"{self.name(i)} exited:\n{self.log_tail(i)}")
            leadership = self.leadership()
            if leadership is not None:
                return leadership
            if time.monotonic() >= deadline:
                raise TimeoutError(f"etcd: no agreed leader within {timeout}s (logs under {self.data_dir})")
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Followers first, then the leader; SIGKILL what is left after `timeout`. Safe to call twice.

        A leader told to stop first hands leadership to a connected follower; when those are stopping
        too, that takes etcd's request timeout (about 7 s here). Without followers it just exits.
        """
        leader = self.leader() if all(self.alive(i) for i in self.procs) else None
        followers = [i for i in self.procs if i != leader]
        deadline = time.monotonic() + timeout
        for batch in (followers, [] if leader is None else [leader]):
            for i in batch:
                if self.alive(i):
                    self.procs[i].send_signal(signal.SIGCONT)
                    self.procs[i].terminate()
            for i in batch:
                try:
                    self.procs[i].wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.procs[i].kill()
                    self.procs[i].wait(10)

    def log_tail(self, i: int, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path(i).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def running_etcd(data_dir: Path, binary: str, timeout: float = 30.0) -> Iterator[EtcdCluster]:
    """A started cluster with an agreed leader; every member is stopped on exit, also on error or Ctrl-C."""
    cluster = EtcdCluster(data_dir, binary)
    try:
        cluster.start()
        cluster.wait_leadership(timeout)
        yield cluster
    finally:
        with deferred():
            cluster.stop()
