"""A local cluster of node processes on one machine: `cairn cluster up`, the tests and the chaos suite.

The layout (node count, ports, cluster secret) is written to DATA_DIR/cluster.yaml on first start
and reused afterwards, because Raft identifies members by address: a restarted cluster must come
back on the same Raft ports to keep its log and votes meaningful.

Each node keeps its config and log in DATA_DIR/nodeN and its data (RocksDB, Raft snapshot) in
DATA_DIR/nodeN/data. A `secure` cluster also has DATA_DIR/tls (made once, then reused; see certs.py): a CA,
a certificate per node, the admin's client certificate and a key-encryption key; its nodes serve mTLS only,
with access control and encryption at rest on, and this module's own calls use the admin certificate.

For the chaos suite, a node can get an environment of its own (`node_env`, for
example its own failpoint file) and, as root, a size-limited data directory (`data_tmpfs_mib`: a tmpfs
mounted at DATA_DIR/nodeN/data before the node first starts, so that a test can fill its disk);
`unmount_data()` removes those mounts and is safe to call twice and after a failure.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .certs import ADMIN, ClusterTls, ensure_cluster_tls


def free_base_port(count: int, host: str = "127.0.0.1") -> int:
    """A base port with `count` consecutive free ports after it (for clusters started side by side)."""

    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind((host, port))
                return True
            except OSError:
                return False

    for _ in range(200):
        base = random.randrange(20000, 40000)
        if all(free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def agreed_leader(views: Mapping[int, Any]) -> int | None:
    """Of node index -> status (role, node_id, leader_id): the one leader that every node asked agrees on."""
    leaders = [i for i, s in views.items() if s.role == "LEADER"]
    if len(leaders) != 1:
        return None
    leader_id = views[leaders[0]].node_id
    return leaders[0] if all(s.leader_id == leader_id for s in views.values()) else None


def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, Mapping) else value
    return out


@dataclass
class NodeSpec:
    node_id: str
    grpc_address: str
    raft_address: str
    data_dir: Path
    bind_grpc: str = ""

    @property
    def config_path(self) -> Path:
        return self.data_dir / "node.yaml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "node.log"

    @property
    def node_data_dir(self) -> Path:
        """The node's data directory (state_storage.connection): RocksDB in db/, the Raft snapshot file."""
        return self.data_dir / "data"


@dataclass
class LocalCluster:
    """N node processes; start, kill (any signal), restart and stop them individually."""

    data_dir: Path
    nodes: int = 3
    base_port: int = 50051
    host: str = "127.0.0.1"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    # Per-node hosts (for example network-namespace addresses): every node then uses base_port for
    # gRPC and raft_port for Raft on its own address, and `wrap(i)` prefixes its command line.
    hosts: list[str] | None = None
    raft_port: int = 7100
    wrap: Callable[[int], list[str]] | None = None
    # Per-node environment, over `env` (for example CAIRN_FAILPOINTS_FILE, one file per node).
    node_env: Callable[[int], Mapping[str, str]] | None = None
    # > 0 (root only): each node's data directory is a tmpfs of this many MiB, mounted before it starts.
    data_tmpfs_mib: int = 0
    mounted: list[Path] = field(default_factory=list)
    specs: list[NodeSpec] = field(default_factory=list)
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)
    secret: str = ""
    # mTLS between everyone, auth and encryption at rest, with material made under DATA_DIR/tls.
    secure: bool = False
    tls: ClusterTls | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._layout()

    # ---- layout and configs ----------------------------------------------------------------------

    def _layout(self) -> None:
        if self.hosts is not None:
            self._layout_hosts()
            return
        layout_file = self.data_dir / "cluster.yaml"
        if layout_file.exists():
            layout = yaml.safe_load(layout_file.read_text())
            if layout["nodes"] != self.nodes or layout["base_port"] != self.base_port:
                raise SystemExit(
                    f"{self.data_dir} holds a cluster of {layout['nodes']} nodes on base port {layout['base_port']}; "
                    f"use --nodes {layout['nodes']} --base-port {layout['base_port']}, or another --data-dir"
                )
            # Its data is encrypted, and its clients hold its certificates: the mode is the directory's.
            if layout.get("secure", False) != self.secure:
                was = "with --secure" if layout.get("secure", False) else "without --secure"
                raise SystemExit(
                    f"{self.data_dir} holds a cluster made {was}; start it the same way, or use another --data-dir"
                )
        else:
            layout = {
                "nodes": self.nodes,
                "base_port": self.base_port,
                "raft_ports": [free_base_port(1, self.host) for _ in range(self.nodes)],
                "secret": secrets.token_urlsafe(32),
                "secure": self.secure,
            }
            layout_file.write_text(yaml.safe_dump(layout))
            layout_file.chmod(0o600)
        self.secret = layout["secret"]
        self.specs = [
            NodeSpec(
                f"node{i + 1}",
                f"{self.host}:{self.base_port + i}",
                f"{self.host}:{layout['raft_ports'][i]}",
                self.data_dir / f"node{i + 1}",
            )
            for i in range(self.nodes)
        ]
        self._write_configs()

    def _layout_hosts(self) -> None:
        assert self.hosts is not None and len(self.hosts) == self.nodes
        secret_file = self.data_dir / "cluster.secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_urlsafe(32))
        elif (self.data_dir / "tls" / "kek.key").exists() != self.secure:
            # As in _layout: its data is encrypted or not, and its clients hold its certificates or not.
            was = "without" if self.secure else "with"
            raise SystemExit(
                f"{self.data_dir} holds a cluster made {was} secure; start it the same way, or use another one"
            )
        self.secret = secret_file.read_text()
        self.specs = [
            NodeSpec(f"node{i + 1}", f"{h}:{self.base_port}", f"{h}:{self.raft_port}", self.data_dir / f"node{i + 1}")
            for i, h in enumerate(self.hosts)
        ]
        self._write_configs()

    def _write_configs(self) -> None:
        if self.secure:
            hosts = [(s.node_id, (s.grpc_address.rpartition(":")[0],)) for s in self.specs]
            self.tls = ensure_cluster_tls(self.data_dir / "tls", hosts)
        for spec in self.specs:
            spec.data_dir.mkdir(parents=True, exist_ok=True)
            self.write_config(spec)

    def node_config(self, spec: NodeSpec) -> dict[str, Any]:
        peers = [
            {"node_id": s.node_id, "grpc_address": s.grpc_address, "raft_address": s.raft_address}
            for s in self.specs
            if s is not spec
        ]
        base = {
            "cluster": {
                "node_id": spec.node_id,
                "grpc_address": spec.bind_grpc or spec.grpc_address,
                "advertise_grpc_address": spec.grpc_address,
                "raft_address": spec.raft_address,
                "peers": peers,
                "secret": self.secret,
            },
            "state_storage": {"type": "rocksdb", "connection": str(spec.node_data_dir), "durability": "fsync"},
        }
        if self.tls is not None:
            base["tls"] = {
                "cert": str(self.tls.node_cert(spec.node_id)),
                "key": str(self.tls.node_key(spec.node_id)),
                "ca": str(self.tls.ca),
                "client_auth": "require",
            }
            base["auth"] = {"enabled": True, "bootstrap_admin": ADMIN}
            base["state_storage"]["encryption"] = {"enabled": True, "key_file": str(self.tls.kek)}
        return _merge(base, self.overrides)

    def write_config(self, spec: NodeSpec) -> None:
        spec.config_path.write_text(yaml.safe_dump(self.node_config(spec), sort_keys=False))
        spec.config_path.chmod(0o600)

    @property
    def endpoints(self) -> list[str]:
        return [s.grpc_address for s in self.specs]

    @property
    def client_tls(self) -> dict[str, Path]:
        """Client(**cluster.client_tls): the admin's credentials on a secure cluster, nothing otherwise."""
        if self.tls is None:
            return {}
        return {"ca": self.tls.ca, "cert": self.tls.admin_cert, "key": self.tls.admin_key}

    def client(self, endpoints: list[str] | None = None, **kwargs: Any) -> Any:
        """A cairn.Client to these nodes (or `endpoints`), with the admin's credentials when secure."""
        from cairn import Client

        return Client(endpoints or self.endpoints, **self.client_tls, **kwargs)

    # ---- processes -----------------------------------------------------------------------------

    def command(self, i: int) -> list[str]:
        prefix = self.wrap(i) if self.wrap else []
        return [*prefix, sys.executable, "-m", "cairn_server", "--config", str(self.specs[i].config_path)]

    def start_node(self, i: int) -> subprocess.Popen:
        spec = self.specs[i]
        if self.data_tmpfs_mib:
            self.mount_data(i)
        log = open(spec.log_path, "ab")  # noqa: SIM115 - owned by the child process
        proc = subprocess.Popen(
            self.command(i),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env, **(self.node_env(i) if self.node_env else {})},
            start_new_session=True,
        )
        log.close()
        self.procs[i] = proc
        return proc

    def start(self) -> None:
        for i in range(self.nodes):
            self.start_node(i)

    def alive(self, i: int) -> bool:
        proc = self.procs.get(i)
        return proc is not None and proc.poll() is None

    def signal_node(self, i: int, sig: int) -> None:
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)

    def kill_node(self, i: int) -> None:
        """kill -9: no clean shutdown, nothing flushed beyond what the node already made durable."""
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def stop_node(self, i: int, timeout: float = 10.0) -> int | None:
        proc = self.procs.get(i)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        for i in self.procs:
            self.signal_node(i, signal.SIGCONT)
            self.signal_node(i, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {}
        for i, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            codes[self.specs[i].node_id] = proc.returncode
        return codes

    # ---- size-limited data directories ------------------------------------------------------------

    def mount_data(self, i: int) -> Path:
        """Mount a tmpfs of `data_tmpfs_mib` MiB at node i's data directory (once; root only)."""
        target = self.specs[i].node_data_dir
        if target in self.mounted:
            return target
        if os.geteuid() != 0:
            raise PermissionError("a size-limited data directory (tmpfs mount) needs root")
        target.mkdir(parents=True, exist_ok=True)
        if os.path.ismount(target):
            raise RuntimeError(f"{target} is already a mount point (left by an interrupted run? umount it)")
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.data_tmpfs_mib}m,mode=0755", "tmpfs", str(target)],
            check=True,
            capture_output=True,
            text=True,
            timeout=20,
        )
        self.mounted.append(target)
        return target

    def unmount_data(self) -> list[str]:
        """Unmount every data directory mounted here (lazily if still busy); what could not be is returned."""
        failed = []
        for target in list(self.mounted):
            done = subprocess.run(["umount", str(target)], capture_output=True, text=True, timeout=20)
            if done.returncode != 0:
                done = subprocess.run(["umount", "-l", str(target)], capture_output=True, text=True, timeout=20)
            if done.returncode == 0 or not os.path.ismount(target):
                self.mounted.remove(target)
            else:
                failed.append(f"{target}: {done.stderr.strip()}")
        return failed

    # ---- leadership (the one "start and wait for an agreed leader" of the bench, tests and chaos) ----

    def node_status(self, i: int, timeout: float = 0.5) -> Any:
        """Node i's own view (cairn.NodeStatus), or None when it is not running or does not answer."""
        if not self.alive(i):
            return None
        endpoint = self.specs[i].grpc_address
        try:
            with self.client([endpoint], timeout=timeout) as client:
                return client.node_status(endpoint, timeout=timeout)
        except Exception:  # unreachable, paused, starting: no view
            return None

    def leader(self, among: list[int] | None = None) -> int | None:
        """The node that says it leads and that every other node asked (default: all running) agrees on."""
        candidates = among if among is not None else [i for i in range(self.nodes) if self.alive(i)]
        return agreed_leader({i: s for i in candidates if (s := self.node_status(i)) is not None})

    def wait_leader(self, timeout: float = 30.0, among: list[int] | None = None) -> int:
        deadline = time.monotonic() + timeout
        while True:
            leader = self.leader(among)
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no agreed leader within {timeout}s (node logs under {self.data_dir})")
            time.sleep(0.1)

    def start_and_wait(self, timeout: float = 60.0) -> int:
        """Start every node and return the index of the leader they agree on."""
        self.start()
        return self.wait_leader(timeout)

    def log_tail(self, i: int, lines: int = 30) -> str:
        try:
            return "\n".join(self.specs[i].log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def run_cluster_up(
    nodes: int,
    data_dir: str,
    base_port: int,
    echo=print,
    overrides: Mapping[str, Any] | None = None,
    secure: bool = False,
) -> int:
    """Foreground: start the nodes, print endpoints, stop them all on SIGINT/SIGTERM.

    `overrides` (nested, like the node config) is merged into every node's config; every node's
    config is validated before any node starts. `secure`: mTLS, auth and encryption (DATA_DIR/tls).
    """
    from .config import ConfigError, parse_config

    cluster = LocalCluster(
        Path(data_dir), nodes=nodes, base_port=base_port, overrides=dict(overrides or {}), secure=secure
    )
    for spec in cluster.specs:
        try:
            parse_config(cluster.node_config(spec))
        except ConfigError as exc:
            echo(f"invalid configuration for {spec.node_id} ({spec.config_path}): {exc}")
            echo("no node was started")
            return 2
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cluster.start()
    echo(f"Cairn local cluster: {nodes} nodes, data under {cluster.data_dir}")
    for spec in cluster.specs:
        echo(f"  {spec.node_id}  gRPC {spec.grpc_address}  Raft {spec.raft_address}  log {spec.log_path}")
    echo(f"endpoints: {','.join(cluster.endpoints)}")
    if cluster.tls is not None:
        t = cluster.tls
        echo(f"TLS only (mTLS required); certificates, the CA key and the encryption key are in {t.dir}")
        flags = f"--ca {t.ca} --cert {t.admin_cert} --key {t.admin_key}"
        echo(f"  connect: cairn status --endpoints {','.join(cluster.endpoints)} {flags}")
        echo(f"  or: export CAIRN_CA={t.ca} CAIRN_CERT={t.admin_cert} CAIRN_KEY={t.admin_key}")
        echo(f"  Python: Client([...], ca={str(t.ca)!r}, cert={str(t.admin_cert)!r}, key={str(t.admin_key)!r})")
    echo("Ctrl-C stops every node.")
    reported: set[int] = set()
    while not stopping:
        time.sleep(0.2)
        for i in range(nodes):
            if i not in reported and not cluster.alive(i):
                reported.add(i)
                echo(
                    f"{cluster.specs[i].node_id} exited with {cluster.procs[i].returncode}; see "
                    f"{cluster.specs[i].log_path}\n{cluster.log_tail(i, 10)}"
                )
        if len(reported) == nodes:
            echo("every node has exited")
            return 1
    echo("stopping...")
    codes = cluster.stop()
    echo("stopped: " + ", ".join(f"{k} exit {v}" for k, v in codes.items()))
    crashed = {cluster.specs[i].node_id for i in reported}
    return 0 if all(code == 0 for node, code in codes.items() if node not in crashed) else 1
