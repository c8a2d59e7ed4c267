"""The cluster under test: N real node processes, each in its own network namespace when running as root
(so links can be cut), otherwise on loopback with kills and pauses only.

For the storage and clock faults, a node can also get its own failpoint file (DATA_DIR/nodeN/failpoints,
outside its data directory so that a full disk never stops the nemesis from writing it; see
server/cairn_server/failpoints.py) and, as root, a size-limited data directory (a tmpfs at
DATA_DIR/nodeN/data that the disk faults fill with a ballast file). `stop()` removes every mount and
namespace, also after a failure.

A `secure` cluster is LocalCluster(secure=True): mTLS only (client certificates required), access control
and encryption at rest on, with its CA, node and admin certificates and key-encryption key under
DATA_DIR/tls. Every client of the run (workload, nemesis, final reads, workers) then uses the admin's
credentials, `client_tls` (for worker processes: `client_env`, CAIRN_CA, CAIRN_CERT and CAIRN_KEY).
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn import Client, NodeStatus
from cairn.cli_common import CA_ENV, CERT_ENV, KEY_ENV
from cairn_server.local_cluster import LocalCluster, free_base_port

from .netns import NetnsNetwork, netns_available
from .workers import WorkerPool

UNSAFE_READS_ENV = "CAIRN_TEST_ONLY_UNSAFE_LOCAL_READS"
FAILPOINTS_FILE_ENV = "CAIRN_FAILPOINTS_FILE"
BALLAST = "chaos-ballast"  # the file a disk fault fills a node's data directory with
NODE_OVERRIDES = {
    "limits": {"history_limit": 100_000, "request_timeout": "5s"},
    "raft": {"snapshot_entries": 300},
    "checkpointing": {"max_per_workflow": 10_000},
}
# The workflow workload: a short lease so recovery happens within a run; history kept whole (the checker
# reads every claim and expiry); attempts not capped at 5 (a run losing a lease in fault after fault is
# recovery working, not a verdict) and a short backoff, so every run can finish soon after healing.
WORKFLOW_OVERRIDES = {
    "limits": {"history_limit": 100_000},
    "execution": {"min_lease_timeout": "500ms"},
    "recovery": {"max_attempts": 1000, "retry_backoff": "200ms", "max_retry_backoff": "2s"},
}


def merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass
class ChaosCluster:
    data_dir: Path
    nodes: int = 3
    use_netns: bool = True
    unsafe_reads: bool = False
    prefix: str = "czc"
    subnet: str = "10.214.0"
    net: NetnsNetwork | None = None
    local: LocalCluster | None = None
    paused: set[int] = field(default_factory=set)
    overrides: dict[str, Any] = field(default_factory=dict)  # merged over NODE_OVERRIDES
    workers: WorkerPool | None = None  # the workflow workload's workers (their faults are the nemesis')
    failpoints: bool = False  # give every node its own failpoint file (fsync and clock faults)
    data_tmpfs_mib: int = 0  # > 0: every node's data directory is a tmpfs of this size (disk faults)
    # Nodes the nemesis stopped on purpose (kill -9, graceful stop); any other dead node exited by itself.
    downed: set[int] = field(default_factory=set)
    fault_seq: int = 0  # bumped at every node fault injection (recovery watchers stop at the next one)
    secure: bool = False  # mTLS, auth and encryption at rest (LocalCluster(secure=True))
    _armed: dict[int, dict[str, str]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def start(self) -> None:
        if self.use_netns and not netns_available():
            self.use_netns = False
        env = {UNSAFE_READS_ENV: "1"} if self.unsafe_reads else {}
        overrides = merged(NODE_OVERRIDES, self.overrides)
        extra = {
            "node_env": self._node_env if self.failpoints else None,
            "data_tmpfs_mib": self.data_tmpfs_mib,
            "secure": self.secure,
        }
        if self.use_netns:
            self.net = NetnsNetwork(self.nodes, prefix=self.prefix, subnet=self.subnet).create()
            self.local = LocalCluster(
                self.data_dir,
                nodes=self.nodes,
                base_port=50051,
                hosts=[self.net.address(i) for i in range(self.nodes)],
                wrap=self.net.exec_prefix,
                env=env,
                overrides=overrides,
                **extra,
            )
        else:
            self.local = LocalCluster(
                self.data_dir,
                nodes=self.nodes,
                base_port=free_base_port(self.nodes),
                env=env,
                overrides=overrides,
                **extra,
            )
        if self.failpoints:
            for i in range(self.nodes):
                self._write_failpoints(i)
        self.local.start_and_wait(60)

    def _node_env(self, i: int) -> dict[str, str]:
        return {FAILPOINTS_FILE_ENV: str(self.failpoints_file(i))}

    @property
    def cluster(self) -> LocalCluster:
        assert self.local is not None
        return self.local

    @property
    def endpoints(self) -> list[str]:
        return self.cluster.endpoints

    @property
    def client_tls(self) -> dict[str, Any]:
        """Client(..., **client_tls): the admin's credentials on a secure cluster, nothing otherwise."""
        return dict(self.cluster.client_tls)

    @property
    def client_env(self) -> dict[str, str]:
        """The same credentials for a `cairn` command (a worker process): CAIRN_CA, CAIRN_CERT, CAIRN_KEY."""
        tls = self.client_tls
        return {env: str(tls[k]) for k, env in (("ca", CA_ENV), ("cert", CERT_ENV), ("key", KEY_ENV)) if k in tls}

    def client(self, timeout: float = 5.0, attempt_timeout: float = 1.0, endpoints: list[str] | None = None) -> Client:
        return Client(endpoints or self.endpoints, timeout=timeout, attempt_timeout=attempt_timeout, **self.client_tls)

    def status(self, i: int, timeout: float = 0.5) -> NodeStatus | None:
        return None if i in self.paused else self.cluster.node_status(i, timeout)

    def leader(self, among: list[int] | None = None) -> int | None:
        """The node that says it leads and that every other (unpaused) node asked agrees on."""
        candidates = among if among is not None else list(range(self.nodes))
        return self.cluster.leader([i for i in candidates if i not in self.paused])

    def wait_leader(self, timeout: float = 30.0, among: list[int] | None = None) -> int:
        candidates = among if among is not None else list(range(self.nodes))
        try:
            return self.cluster.wait_leader(timeout, [i for i in candidates if i not in self.paused])
        except TimeoutError as exc:
            raise RuntimeError(str(exc)) from None

    def any_leader(self) -> int | None:
        """A node that believes it leads (enough to pick a fault target; may be stale)."""
        for i in range(self.nodes):
            s = self.status(i)
            if s is not None and s.role == "LEADER":
                return i
        return None

    # ---- process faults ------------------------------------------------------------------------

    def kill(self, i: int) -> None:
        self.resume(i)
        self.downed.add(i)
        self.cluster.kill_node(i)

    def stop_node(self, i: int) -> int | None:
        """A graceful stop (SIGTERM); the exit code."""
        self.resume(i)
        self.downed.add(i)
        return self.cluster.stop_node(i)

    def start_node(self, i: int) -> None:
        if not self.cluster.alive(i):
            self.downed.discard(i)
            self.cluster.start_node(i)

    def alive(self, i: int) -> bool:
        return self.cluster.alive(i)

    def exit_code(self, i: int) -> int | None:
        """Node i's exit code, or None while it runs (or never ran)."""
        proc = self.cluster.procs.get(i)
        return None if proc is None else proc.poll()

    def node_id(self, i: int) -> str:
        return self.cluster.specs[i].node_id

    def log_size(self, i: int) -> int:
        try:
            return self.cluster.specs[i].log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, i: int, offset: int) -> str:
        """Node i's log from byte `offset` on (what it said since a fault was injected)."""
        try:
            with open(self.cluster.specs[i].log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # ---- failpoints (server/cairn_server/failpoints.py) -----------------------------------------

    def failpoints_file(self, i: int) -> Path:
        return self.cluster.specs[i].data_dir / "failpoints"

    def set_failpoint(self, i: int, name: str, action: str | None) -> None:
        """Arm `name=action` on node i (None disarms it); the node sees it within about 50 ms."""
        if not self.failpoints:
            raise RuntimeError("this cluster was started without failpoint files")
        with self._lock:
            armed = self._armed.setdefault(i, {})
            if action is None:
                armed.pop(name, None)
            else:
                armed[name] = action
            self._write_failpoints(i)

    def clear_failpoints(self) -> None:
        if not self.failpoints:
            return
        with self._lock:
            for i in range(self.nodes):
                if self._armed.get(i):
                    self._armed[i] = {}
                    self._write_failpoints(i)

    def _write_failpoints(self, i: int) -> None:
        path = self.failpoints_file(i)
        text = "".join(f"{name}={action}\n" for name, action in sorted(self._armed.get(i, {}).items()))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # whole: the node never reads half a file

    # ---- disk space (a tmpfs per node) ----------------------------------------------------------

    def data_path(self, i: int) -> Path:
        return self.cluster.specs[i].node_data_dir

    def fill_disk(self, i: int) -> int:
        """Fill node i's data directory with a ballast file until the disk is full; bytes written."""
        if not self.data_tmpfs_mib:
            raise RuntimeError("this cluster was started without size-limited data directories")
        chunk = b"\0" * (1 << 20)
        written = 0
        with open(self.data_path(i) / BALLAST, "ab") as f:
            while True:
                try:
                    written += os.write(f.fileno(), chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            # The last partial page: the disk is then full to the byte, not to the MiB.
            for size in (65536, 4096, 512, 1):
                while True:
                    try:
                        written += os.write(f.fileno(), chunk[:size])
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        return written

    def free_disk(self, i: int) -> bool:
        """Delete node i's ballast; whether there was one."""
        try:
            (self.data_path(i) / BALLAST).unlink()
            return True
        except FileNotFoundError:
            return False

    def disk_free(self, i: int) -> int:
        st = os.statvfs(self.data_path(i))
        return st.f_bavail * st.f_frsize

    def pause(self, i: int) -> None:
        if self.cluster.alive(i):
            self.cluster.signal_node(i, signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i: int) -> None:
        if i in self.paused:
            self.cluster.signal_node(i, signal.SIGCONT)
            self.paused.discard(i)

    def graceful_restart(self, i: int) -> None:
        self.resume(i)
        self.cluster.stop_node(i)
        self.cluster.start_node(i)

    def compact(self, i: int) -> None:
        with self.client(timeout=10, attempt_timeout=3.0, endpoints=[self.endpoints[i]]) as c:
            c.snapshot(self.endpoints[i], timeout=10)

    def heal_everything(self) -> dict[str, int | None]:
        """Everything back: nodes resumed, links healed, failpoints off, ballast gone, dead nodes restarted.

        Returns the nodes that were found dead without the nemesis having stopped them (node id -> exit code).
        """
        for i in list(self.paused):
            self.resume(i)
        if self.net is not None:
            self.net.heal()
        self.clear_failpoints()
        if self.data_tmpfs_mib:
            for i in range(self.nodes):
                self.free_disk(i)
        exited: dict[str, int | None] = {}
        for i in range(self.nodes):
            if not self.cluster.alive(i) and i not in self.downed and i in self.cluster.procs:
                exited[self.node_id(i)] = self.exit_code(i)
            self.start_node(i)
        return exited

    def wait_caught_up(self, timeout: float = 60.0) -> bool:
        """Every node alive, one leader, and every node has applied the leader's commit index."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                statuses = [self.status(i) for i in range(self.nodes)]
                target = statuses[leader].commit_index if statuses[leader] else None
                if target and all(s is not None and s.applied_index >= target for s in statuses):
                    return True
            time.sleep(0.2)
        return False

    def stop(self) -> list[str]:
        """Stop every node, then remove every mount and namespace; returns mounts that would not go."""
        left: list[str] = []
        try:
            if self.local is not None:
                for i in list(self.paused):
                    self.resume(i)
                self.local.stop()
        finally:
            try:
                if self.local is not None:
                    left = self.local.unmount_data()
            finally:
                if self.net is not None:
                    self.net.destroy()
        return left
