"""cairn_server.tls against an in-process gRPC server: client_auth, reload on demand and on a timer, bad files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cairn_server import certs
from cairn_server.config import TlsConfig
from cairn_server.forwarding import Forwarder
from cairn_server.tls import CertificateReloader, TlsMaterial
from tests.support import peer_certificate, wait_until


@dataclass
class Served:
    reloader: CertificateReloader
    files: certs.ClusterTls
    endpoint: str
    server: grpc.Server

    def serial(self) -> int:
        """What a new handshake is shown (with the admin certificate, so `require` lets it finish)."""
        der = peer_certificate(self.endpoint, ca=self.files.ca, cert=self.files.admin_cert, key=self.files.admin_key)
        return certs.serial_of(der)

    def rotate(self) -> int:
        """Replace the node's files with a new certificate from the same CA; its serial."""
        new = certs.issue(self.files.load_ca(), "node1", hosts=["127.0.0.1"])
        certs.write_private(self.files.node_key("node1"), new.key)
        certs.write_public(self.files.node_cert("node1"), new.cert)
        return certs.serial_of(new.cert)


def serve(tmp_path: Path, client_auth: str = "require", reload_interval: float = 3600.0, **kwargs) -> Served:
    files = certs.ensure_cluster_tls(tmp_path / "tls", [("node1", ())])
    config = TlsConfig(
        str(files.node_cert("node1")), str(files.node_key("node1")), str(files.ca), client_auth, reload_interval
    )
    reloader = CertificateReloader(config, **kwargs)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", reloader.server_credentials())
    server.start()
    return Served(reloader, files, f"127.0.0.1:{port}", server)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = serve(tmp_path)
    yield s
    s.server.stop(None)
    s.reloader.stop()


def check(endpoint: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    channel = grpc.secure_channel(endpoint, credentials) if credentials else grpc.insecure_channel(endpoint)
    with channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


def creds(files: certs.ClusterTls, *, with_cert: bool = True) -> grpc.ChannelCredentials:
    if not with_cert:
        return grpc.ssl_channel_credentials(files.ca.read_bytes())
    return grpc.ssl_channel_credentials(
        files.ca.read_bytes(), files.admin_key.read_bytes(), files.admin_cert.read_bytes()
    )


def test_require_refuses_no_certificate_and_plaintext(served: Served) -> None:
    assert check(served.endpoint, creds(served.files)) == grpc.StatusCode.OK
    assert check(served.endpoint, creds(served.files, with_cert=False)) == grpc.StatusCode.UNAVAILABLE
    assert check(served.endpoint, None) == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("client_auth", ["none", "request"])
def test_none_and_request_accept_a_client_without_a_certificate(
    tmp_path: Path, client_auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cairn_server.tls"):
        s = serve(tmp_path, client_auth)
    try:
        assert check(s.endpoint, creds(s.files, with_cert=False)) == grpc.StatusCode.OK
        assert check(s.endpoint, creds(s.files)) == grpc.StatusCode.OK
        assert check(s.endpoint, None) == grpc.StatusCode.UNAVAILABLE
    finally:
        s.server.stop(None)
    warned = [r.getMessage() for r in caplog.records if "client_auth: request" in r.getMessage()]
    assert bool(warned) == (client_auth == "request")


def test_reload_takes_new_files_at_once_and_tells_the_peer_side(tmp_path: Path) -> None:
    changes: list[TlsMaterial] = []
    s = serve(tmp_path, on_change=changes.append)
    try:
        before = s.serial()
        assert before == s.reloader.material.serial
        new_serial = s.rotate()
        assert s.serial() == before, "taken before any check was due"
        assert s.reloader.reload() is True
        assert s.serial() == new_serial
        assert [m.serial for m in changes] == [new_serial]
        assert s.reloader.reload() is False, "unchanged files are not a new certificate"
    finally:
        s.server.stop(None)


def test_the_timer_notices_changed_files_without_a_signal(tmp_path: Path) -> None:
    s = serve(tmp_path, reload_interval=0.2)
    s.reloader.start()
    try:
        new_serial = s.rotate()
        wait_until(lambda: s.reloader.material.serial == new_serial, 10, "the timer did not reload")
        assert s.serial() == new_serial
    finally:
        s.server.stop(None)
        s.reloader.stop()


def test_bad_files_keep_the_certificate_in_use_and_log_once(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    before = served.serial()
    good_cert = served.files.node_cert("node1").read_bytes()
    with caplog.at_level(logging.ERROR, logger="cairn_server.tls"):
        served.files.node_cert("node1").write_bytes(b"not a certificate")
        assert served.reloader.reload() is False
        assert served.reloader.check(force=False) is False
        served.reloader._last_check = float("-inf")  # make the timer's check due now
        assert served.reloader.check() is False
        served.files.node_key("node1").unlink()
        assert served.reloader.reload() is False
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, errors  # one per bad version of the files, not one per check
    assert "not a PEM certificate" in errors[0] and "keeping the certificate in use" in errors[0]
    assert "cannot read" in errors[1]
    assert served.serial() == before
    assert check(served.endpoint, creds(served.files)) == grpc.StatusCode.OK
    served.files.node_cert("node1").write_bytes(good_cert)
    new_serial = served.rotate()
    assert served.reloader.reload() is True and served.serial() == new_serial


def test_forwarder_uses_new_credentials_for_new_channels_and_keeps_old_ones_open() -> None:
    forwarder = Forwarder(1.0, grpc.ssl_channel_credentials())
    first = forwarder.channel("127.0.0.1:1")
    assert forwarder.channel("127.0.0.1:1") is first
    forwarder.set_credentials(grpc.ssl_channel_credentials())
    second = forwarder.channel("127.0.0.1:1")
    assert second is not first
    assert first in forwarder._retired  # a call still running on it is not cut off
    forwarder.close()
    assert forwarder._retired == []
