"""Shared test helpers: polling with a deadline (never sleeps that make races pass) and a cluster handle."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cairn import Client, NodeStatus
from cairn.worker import worker_command
from cairn_server.local_cluster import LocalCluster, free_base_port

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, message: str, interval: float = 0.05) -> T:
    """Poll until predicate() is truthy; fail with `message` (and the last error) at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # remembered for the failure message
            last_error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (after {timeout}s; last error: {last_error!r})")
        time.sleep(interval)


@dataclass
class ClusterHandle:
    """A LocalCluster plus the operations tests need: find the leader, kill, restart, read one node."""

    cluster: LocalCluster
    client: Client
    extra_clients: list[Client] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.cluster.nodes

    def endpoint(self, i: int) -> str:
        return self.cluster.specs[i].grpc_address

    def node_client(self, i: int, timeout: float = 5.0) -> Client:
        c = self.cluster.client([self.endpoint(i)], timeout=timeout)
        self.extra_clients.append(c)
        return c

    def status(self, i: int, timeout: float = 1.0) -> NodeStatus:
        return self.client.node_status(self.endpoint(i), timeout=timeout)

    def leader_index(self, among: list[int] | None = None) -> int | None:
        """The node that is leader by its own account and recognised by every other live node asked."""
        return self.cluster.leader(among)

    def wait_leader(self, timeout: float = 20.0, among: list[int] | None = None) -> int:
        try:
            return self.cluster.wait_leader(timeout, among)
        except TimeoutError as exc:
            raise AssertionError(str(exc)) from None

    def followers(self) -> list[int]:
        leader = self.wait_leader()
        return [i for i in range(self.size) if i != leader]

    def kill(self, i: int) -> None:
        self.cluster.kill_node(i)

    def restart(self, i: int) -> None:
        self.cluster.kill_node(i)
        self.cluster.start_node(i)

    def wait_applied(self, i: int, index: int, timeout: float = 20.0) -> NodeStatus:
        return wait_until(
            lambda: (s := self.status(i)).applied_index >= index and s, timeout, f"node {i} did not apply index {index}"
        )

    def log(self, i: int) -> str:
        return self.cluster.specs[i].log_path.read_text(errors="replace")

    def close(self) -> None:
        for c in [self.client, *self.extra_clients]:
            c.close()
        self.cluster.stop()


def start_cluster(
    path: Path,
    nodes: int = 3,
    overrides: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    *,
    secure: bool = False,
    **kwargs: Any,
) -> ClusterHandle:
    """`secure`: mTLS, auth and encryption (LocalCluster.secure); the handle's clients use the admin certificate."""
    base = kwargs.pop("base_port", None) or free_base_port(nodes)
    cluster = LocalCluster(
        path, nodes=nodes, base_port=base, overrides=overrides or {}, env=env or {}, secure=secure, **kwargs
    )
    handle = ClusterHandle(cluster, cluster.client(timeout=20.0))
    try:
        cluster.start_and_wait(30)
    except BaseException:
        handle.close()
        raise
    return handle


def peer_certificate(endpoint: str, *, ca: Path, cert: Path | None = None, key: Path | None = None) -> bytes:
    """A NEW TLS handshake with `endpoint` (verified against `ca`, with a client certificate when given):
    the certificate the server presents, DER. Offers ALPN h2 as gRPC clients do."""
    host, _, port = endpoint.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


# ---- workflow workers as real processes (tests/integration/test_workflows.py) ------------------------


def stays_true(predicate: Callable[[], Any], duration: float, message: str, interval: float = 0.05) -> None:
    """Check that predicate() holds at every poll for `duration` seconds (a negative claim: nothing happens)."""
    deadline = time.monotonic() + duration
    while True:
        value = predicate()
        if not value:
            raise AssertionError(f"{message} (value {value!r})")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


@dataclass
class WorkerProcess:
    """One `cairn worker run APP` process: output captured to a file, killed/stopped/resumed by signal."""

    name: str
    app: Path
    endpoints: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    lease_timeout: str = "2s"
    concurrency: int = 4
    proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return worker_command(
            str(self.app),
            self.endpoints,
            worker_id=self.name,
            lease_timeout=self.lease_timeout,
            concurrency=self.concurrency,
        )

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env, "CAIRN_TEST_WORKER": self.name, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGCONT, in case it is stopped, then SIGTERM) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()

    def stop(self, timeout: float = 5.0) -> int | None:
        """A graceful stop, then SIGKILL after `timeout`; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
