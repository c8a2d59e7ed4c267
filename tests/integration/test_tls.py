"""Transport security with real certificates and real node processes.

Two single-node clusters carry most tests: `mtls_node` (client_auth: require, the `--secure` layout, a reload
interval of an hour so that only SIGHUP can explain a reload) and `open_node` (client_auth: none, auth off,
files checked every 0.3 s). A 3-node secure cluster shows forwarding and digests over node-to-node mTLS, and
`cairn cluster up --secure` runs as a subprocess.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from cairn import Client, NotFoundError, UnavailableError, tls_credentials
from cairn.v1 import state_pb2, state_pb2_grpc
from cairn_server import certs
from cairn_server.internal import command_pb2, command_pb2_grpc
from cairn_server.local_cluster import free_base_port
from tests.support import ClusterHandle, WorkerProcess, peer_certificate, start_cluster, wait_until

CAIRN = str(Path(sys.executable).parent / "cairn")


def _handle(path: Path, **kwargs) -> Iterator[ClusterHandle]:
    handle = start_cluster(path, 1, secure=True, **kwargs)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture(scope="module")
def mtls_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    yield from _handle(tmp_path_factory.mktemp("mtls"), overrides={"tls": {"reload_interval": "1h"}})


@pytest.fixture(scope="module")
def open_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    overrides = {"tls": {"client_auth": "none", "reload_interval": "0.3s"}, "auth": {"enabled": False}}
    yield from _handle(tmp_path_factory.mktemp("open"), overrides=overrides)


def files(handle: ClusterHandle) -> certs.ClusterTls:
    assert handle.cluster.tls is not None
    return handle.cluster.tls


def serial_seen(handle: ClusterHandle) -> int:
    """The serial a NEW handshake is shown (as the admin, so that `require` completes it)."""
    t = files(handle)
    return certs.serial_of(peer_certificate(handle.endpoint(0), ca=t.ca, cert=t.admin_cert, key=t.admin_key))


def rotate(handle: ClusterHandle) -> int:
    """New node files from the same CA (key first, each replaced atomically); the new serial."""
    t = files(handle)
    new = certs.issue(t.load_ca(), "node1", hosts=["127.0.0.1", "localhost"])
    certs.write_private(t.node_key("node1"), new.key)
    certs.write_public(t.node_cert("node1"), new.cert)
    return certs.serial_of(new.cert)


def health_code(endpoint: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = grpc.secure_channel(endpoint, credentials) if credentials else grpc.insecure_channel(endpoint)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as err:
            return err.code()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK


def stranger(tmp_path: Path, common_name: str) -> tuple[Path, Path]:
    """A client certificate from another CA, made to look like a cluster member (same name, same host)."""
    issued = certs.issue(certs.new_ca("Cairn local CA"), common_name, hosts=["127.0.0.1"])
    (tmp_path / "s.pem").write_bytes(issued.cert)
    (tmp_path / "s-key.pem").write_bytes(issued.key)
    return tmp_path / "s.pem", tmp_path / "s-key.pem"


# ---- who gets in ------------------------------------------------------------------------------------


def test_plaintext_is_refused_unavailable_and_writes_nothing(mtls_node: ClusterHandle) -> None:
    endpoint = mtls_node.endpoint(0)
    with grpc.insecure_channel(endpoint) as channel:
        with pytest.raises(grpc.RpcError) as info:
            state_pb2_grpc.StateServiceStub(channel).PersistState(
                state_pb2.PersistStateRequest(workflow_id="plain-1", request_id="r-plain-1"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with Client([endpoint], timeout=2) as plain, pytest.raises(UnavailableError):
        plain.persist_state("plain-1", current_step="x")
    with pytest.raises(NotFoundError):
        mtls_node.client.get_state("plain-1")


def test_a_certificate_from_another_ca_is_refused_even_with_a_member_name(
    mtls_node: ClusterHandle, tmp_path: Path
) -> None:
    t = files(mtls_node)
    cert, key = stranger(tmp_path, "node1")
    with (
        Client([mtls_node.endpoint(0)], timeout=2, ca=t.ca, cert=cert, key=key) as client,
        pytest.raises(UnavailableError),
    ):
        client.persist_state("foreign-1", current_step="x")
    # The same certificate presented the way a peer calls (NodeService) gets no further.
    with grpc.secure_channel(mtls_node.endpoint(0), tls_credentials(t.ca, cert, key)) as channel:
        with pytest.raises(grpc.RpcError) as info:
            command_pb2_grpc.NodeServiceStub(channel).WorkflowDigest(
                command_pb2.WorkflowDigestRequest(workflow_id="foreign-1"), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(NotFoundError):
        mtls_node.client.get_state("foreign-1")


def test_require_refuses_a_client_without_a_certificate(mtls_node: ClusterHandle) -> None:
    with (
        Client([mtls_node.endpoint(0)], timeout=2, ca=files(mtls_node).ca) as client,
        pytest.raises(UnavailableError),
    ):
        client.persist_state("nocert-1", current_step="x")
    assert mtls_node.client.persist_state("nocert-1", current_step="admin").version == 1


def test_none_accepts_a_client_without_a_certificate_but_not_plaintext(open_node: ClusterHandle) -> None:
    with Client([open_node.endpoint(0)], timeout=10, ca=files(open_node).ca) as client:
        assert client.persist_state("nocert-ok", current_step="x").version == 1
    assert health_code(open_node.endpoint(0), None) == grpc.StatusCode.UNAVAILABLE


def test_health_and_reflection_are_served_over_tls_only(mtls_node: ClusterHandle) -> None:
    t = files(mtls_node)
    credentials = tls_credentials(t.ca, t.admin_cert, t.admin_key)
    assert health_code(mtls_node.endpoint(0), credentials) == grpc.StatusCode.OK
    assert health_code(mtls_node.endpoint(0), None) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(mtls_node.endpoint(0), credentials) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert {"cairn.v1.StateService", "cairn.v1.WorkflowService", "grpc.health.v1.Health"} <= set(services)


# ---- forwarding over node-to-node mTLS ---------------------------------------------------------------


def test_a_write_through_a_follower_is_forwarded_over_mtls(make_cluster) -> None:
    c: ClusterHandle = make_cluster(3, secure=True)
    leader = c.wait_leader()
    follower = next(i for i in range(c.size) if i != leader)
    via_follower = c.node_client(follower)  # knows only the follower: the follower must forward
    written = via_follower.persist_state("fwd-tls", current_step="a", variables={"x": 1})
    assert written.version == 1
    for i in range(c.size):
        got = c.node_client(i).get_state("fwd-tls", consistency="serializable", min_index=written.applied_index)
        assert got.variables == {"x": 1} and got.served_by == c.cluster.specs[i].node_id
    # Replica digests travel node to node too (NodeService over the same mTLS channels).
    report = via_follower.validate_state("fwd-tls")
    assert report.valid and len(report.replicas) == 3 and all(r.reachable for r in report.replicas), report


# ---- certificate rotation ---------------------------------------------------------------------------


def test_sighup_rotates_the_certificate_for_new_connections_and_keeps_old_ones(mtls_node: ClusterHandle) -> None:
    client = mtls_node.cluster.client(timeout=10)
    try:
        assert client.persist_state("rot-hup", current_step="before").version == 1
        old = serial_seen(mtls_node)
        new = rotate(mtls_node)
        assert new != old
        assert serial_seen(mtls_node) == old, "reloaded without SIGHUP (reload_interval is 1h)"
        mtls_node.cluster.signal_node(0, signal.SIGHUP)
        wait_until(lambda: serial_seen(mtls_node) == new, 10, "SIGHUP did not bring the new certificate")
        assert client.persist_state("rot-hup", current_step="after").version == 2
        assert "TLS certificate reloaded" in mtls_node.log(0)
    finally:
        client.close()


def test_a_bad_certificate_at_reload_keeps_the_old_one(mtls_node: ClusterHandle) -> None:
    t = files(mtls_node)
    good = t.node_cert("node1").read_bytes()
    served = serial_seen(mtls_node)
    failures = mtls_node.log(0).count("TLS reload failed")
    try:
        certs.write_public(t.node_cert("node1"), b"-----BEGIN CERTIFICATE-----\nnot base64\n")
        mtls_node.cluster.signal_node(0, signal.SIGHUP)
        wait_until(
            lambda: mtls_node.log(0).count("TLS reload failed") > failures, 10, "no error was logged for the bad file"
        )
        assert mtls_node.cluster.alive(0)
        assert serial_seen(mtls_node) == served
        assert mtls_node.client.persist_state("still-serving", current_step="x").version == 1
    finally:
        certs.write_public(t.node_cert("node1"), good)


def test_changed_files_are_picked_up_without_a_signal(open_node: ClusterHandle) -> None:
    client = open_node.cluster.client(timeout=10)
    try:
        assert client.persist_state("rot-file", current_step="before").version == 1
        old = serial_seen(open_node)
        new = rotate(open_node)
        assert new != old
        wait_until(lambda: serial_seen(open_node) == new, 15, "the file check did not bring the new certificate")
        assert client.persist_state("rot-file", current_step="after").version == 2
    finally:
        client.close()


# ---- the CLI ----------------------------------------------------------------------------------------


def test_cli_reaches_a_secure_node_with_flags_or_env_vars(mtls_node: ClusterHandle) -> None:
    t = files(mtls_node)
    endpoint = ["--endpoints", mtls_node.endpoint(0), "--json", "--timeout", "10"]
    flags = ["--ca", str(t.ca), "--cert", str(t.admin_cert), "--key", str(t.admin_key)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}

    def cairn(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [CAIRN, *args], capture_output=True, text=True, timeout=60, env={**env, **(extra_env or {})}
        )

    put = cairn("state", "put", "cli-tls", "--step", "one", *endpoint, *flags)
    assert put.returncode == 0, put.stdout + put.stderr
    assert json.loads(put.stdout)["version"] == 1
    tls_env = {"CAIRN_CA": str(t.ca), "CAIRN_CERT": str(t.admin_cert), "CAIRN_KEY": str(t.admin_key)}
    got = cairn("state", "get", "cli-tls", *endpoint, extra_env=tls_env)
    assert got.returncode == 0, got.stdout + got.stderr
    assert json.loads(got.stdout)["current_step"] == "one"
    without = cairn("state", "get", "cli-tls", "--endpoints", mtls_node.endpoint(0), "--json", "--timeout", "2")
    assert without.returncode == 1 and json.loads(without.stdout)["error"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    # `cairn bench` takes --endpoints outside the common options: the same flags reach a secure cluster.
    bench = cairn(
        "bench", "--endpoints", mtls_node.endpoint(0), "--ops", "get", "--duration", "0.3", "--workflows", "2",
        "--json", *flags,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout + bench.stderr
    [result] = json.loads(bench.stdout)
    assert result["op"] == "get" and result["count"] > 0 and result["errors"] == 0


# ---- cairn cluster up --secure ----------------------------------------------------------------------


def _up(data: Path, base: int) -> subprocess.Popen:
    return subprocess.Popen(
        [CAIRN, "cluster", "up", "--secure", "--nodes", "1", "--data-dir", str(data), "--base-port", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _banner(proc: subprocess.Popen) -> str:
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "Ctrl-C stops every node" in line:
            return "".join(seen)
    raise AssertionError("".join(seen))


def _stop(proc: subprocess.Popen) -> str:
    try:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_cluster_up_secure_makes_the_pki_once_and_serves_mtls(tmp_path: Path) -> None:
    base = free_base_port(1)
    endpoint = f"127.0.0.1:{base}"
    tls = tmp_path / "tls"
    proc = _up(tmp_path, base)
    try:
        banner = _banner(proc)
        assert f"--ca {tls / 'ca.pem'} --cert {tls / 'admin.pem'} --key {tls / 'admin-key.pem'}" in banner
        for secret in ("ca-key.pem", "admin-key.pem", "node1-key.pem", "kek.key"):
            assert stat.S_IMODE((tls / secret).stat().st_mode) == 0o600, secret
        node = yaml.safe_load((tmp_path / "node1" / "node.yaml").read_text())
        assert node["tls"] == {
            "cert": str(tls / "node1.pem"),
            "key": str(tls / "node1-key.pem"),
            "ca": str(tls / "ca.pem"),
            "client_auth": "require",
        }
        assert node["auth"] == {"enabled": True, "bootstrap_admin": "admin"}
        assert node["state_storage"]["encryption"] == {"enabled": True, "key_file": str(tls / "kek.key")}
        with Client([endpoint], timeout=30, ca=tls / "ca.pem", cert=tls / "admin.pem", key=tls / "admin-key.pem") as c:
            c.wait_ready(30)
            written = c.persist_state("up-secure", current_step="first")
        with Client([endpoint], timeout=2) as plain, pytest.raises(UnavailableError):
            plain.get_state("up-secure")
    finally:
        _stop(proc)
    first = {p.name: p.read_bytes() for p in tls.iterdir()}

    proc = _up(tmp_path, base)
    try:
        _banner(proc)
        assert {p.name: p.read_bytes() for p in tls.iterdir()} == first  # same CA, same certificates, same KEK
        with Client([endpoint], timeout=30, ca=tls / "ca.pem", cert=tls / "admin.pem", key=tls / "admin-key.pem") as c:
            assert c.get_state("up-secure").version == written.version
    finally:
        _stop(proc)


def test_the_container_health_probe_speaks_the_nodes_tls(mtls_node: ClusterHandle) -> None:
    """The Dockerfile's HEALTHCHECK: plaintext would be refused by this node (client_auth require)."""
    config = str(mtls_node.cluster.specs[0].config_path)
    probe = subprocess.run(
        [sys.executable, "-m", "cairn_server.healthcheck", config], capture_output=True, text=True, timeout=30
    )
    assert probe.returncode == 0, probe.stderr


def test_a_worker_process_serves_runs_over_mtls_with_the_env_vars(mtls_node: ClusterHandle, tmp_path: Path) -> None:
    t = files(mtls_node)
    worker = WorkerProcess(
        name="tls-worker",
        app=Path(__file__).parent / "workflow_apps" / "chain.py",
        endpoints=mtls_node.cluster.endpoints,
        log_path=tmp_path / "worker.log",
        env={
            "CAIRN_TEST_DIR": str(tmp_path),
            "CAIRN_TEST_TYPE": "tls-chain",
            "CAIRN_CA": str(t.ca),
            "CAIRN_CERT": str(t.admin_cert),
            "CAIRN_KEY": str(t.admin_key),
        },
    ).start()
    try:
        mtls_node.client.start_workflow("tls-chain", "tls-run-1", {"steps": ["a", "b"]})
        run = mtls_node.client.wait_workflow("tls-run-1", timeout=60)
        assert run.status == "COMPLETED", (run, worker.log())
        assert [s.name for s in run.steps] == ["a", "b"]
        assert all(s.result["worker"] == "tls-worker" for s in run.steps), run.steps
    finally:
        worker.stop()
