"""The cluster under test: N real node processes, each in its own network namespace when running as root
(so links can be cut), otherwise on loopback with kills and pauses only."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn import Client, NodeStatus
from cairn_server.local_cluster import LocalCluster, free_base_port

from .netns import NetnsNetwork, netns_available
from .workers import WorkerPool

UNSAFE_READS_ENV = "CAIRN_TEST_ONLY_UNSAFE_LOCAL_READS"
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

    def start(self) -> None:
        if self.use_netns and not netns_available():
            self.use_netns = False
        env = {UNSAFE_READS_ENV: "1"} if self.unsafe_reads else {}
        overrides = merged(NODE_OVERRIDES, self.overrides)
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
            )
        else:
            self.local = LocalCluster(
                self.data_dir, nodes=self.nodes, base_port=free_base_port(self.nodes), env=env, overrides=overrides
            )
        self.local.start_and_wait(60)

    @property
    def cluster(self) -> LocalCluster:
        assert self.local is not None
        return self.local

    @property
    def endpoints(self) -> list[str]:
        return self.cluster.endpoints

    def client(self, timeout: float = 5.0, attempt_timeout: float = 1.0) -> Client:
        return Client(self.endpoints, timeout=timeout, attempt_timeout=attempt_timeout)

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
        self.cluster.kill_node(i)

    def start_node(self, i: int) -> None:
        if not self.cluster.alive(i):
            self.cluster.start_node(i)

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
        with Client([self.endpoints[i]], timeout=10) as c:
            c.snapshot(self.endpoints[i], timeout=10)

    def heal_everything(self) -> None:
        for i in list(self.paused):
            self.resume(i)
        if self.net is not None:
            self.net.heal()
        for i in range(self.nodes):
            self.start_node(i)

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

    def stop(self) -> None:
        try:
            if self.local is not None:
                for i in list(self.paused):
                    self.resume(i)
                self.local.stop()
        finally:
            if self.net is not None:
                self.net.destroy()
