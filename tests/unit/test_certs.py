"""cairn_server.certs: the throwaway PKI of `cluster up --secure` and the tests."""

from __future__ import annotations

import base64
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cairn_server import certs
from cairn_server.config import TlsConfig
from cairn_server.tls import TlsError, load_material


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_node_certificate_is_server_and_client_with_the_node_hosts(tmp_path: Path) -> None:
    out = certs.ensure_cluster_tls(tmp_path / "tls", [("node1", ("10.0.0.7",)), ("node2", ("node2.internal",))])
    ca = x509.load_pem_x509_certificate(out.ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for node_id, host in (("node1", ipaddress.ip_address("10.0.0.7")), ("node2", "node2.internal")):
        cert = x509.load_pem_x509_certificate(out.node_cert(node_id).read_bytes())
        assert _cn(cert) == node_id and cert.issuer == ca.subject
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = set(san.get_values_for_type(x509.IPAddress)) | set(san.get_values_for_type(x509.DNSName))
        assert {host, ipaddress.ip_address("127.0.0.1"), "localhost"} <= names
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        # What a node checks at start-up: the key matches and the CA signed it.
        load_material(TlsConfig(str(out.node_cert(node_id)), str(out.node_key(node_id)), str(out.ca)))
    admin = x509.load_pem_x509_certificate(out.admin_cert.read_bytes())
    assert _cn(admin) == "admin"


def test_secrets_are_owner_only_and_the_kek_is_32_random_bytes_in_base64(tmp_path: Path) -> None:
    out = certs.ensure_cluster_tls(tmp_path / "tls", [("node1", ())])
    for secret in (out.ca_key, out.admin_key, out.node_key("node1"), out.kek):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert len(base64.b64decode(out.kek.read_text().strip(), validate=True)) == 32
    other = certs.ensure_cluster_tls(tmp_path / "other", [("node1", ())])
    assert other.kek.read_bytes() != out.kek.read_bytes()


def test_a_second_run_keeps_everything_and_only_adds_what_is_missing(tmp_path: Path) -> None:
    out = certs.ensure_cluster_tls(tmp_path / "tls", [("node1", ())])
    before = {p.name: p.read_bytes() for p in out.dir.iterdir()}
    again = certs.ensure_cluster_tls(tmp_path / "tls", [("node1", ()), ("node2", ())])
    after = {p.name: p.read_bytes() for p in again.dir.iterdir()}
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"node2.pem", "node2-key.pem"}
    assert (
        x509.load_pem_x509_certificate(after["node2.pem"]).issuer
        == x509.load_pem_x509_certificate(before["ca.pem"]).subject
    )


def test_a_half_present_ca_is_refused_rather_than_replaced(tmp_path: Path) -> None:
    out = certs.ensure_cluster_tls(tmp_path / "tls", [])
    out.ca_key.unlink()
    with pytest.raises(FileExistsError, match="ca-key.pem"):
        certs.ensure_cluster_tls(tmp_path / "tls", [])


def test_material_from_another_ca_or_a_foreign_key_is_refused(tmp_path: Path) -> None:
    out = certs.ensure_cluster_tls(tmp_path / "tls", [("node1", ())])
    stranger = certs.issue(certs.new_ca("stranger"), "node1", hosts=["127.0.0.1"])
    (tmp_path / "s.pem").write_bytes(stranger.cert)
    (tmp_path / "s-key.pem").write_bytes(stranger.key)
    with pytest.raises(TlsError, match="not signed by a CA"):
        load_material(TlsConfig(str(tmp_path / "s.pem"), str(tmp_path / "s-key.pem"), str(out.ca)))
    with pytest.raises(TlsError, match="not the private key"):
        load_material(TlsConfig(str(out.node_cert("node1")), str(tmp_path / "s-key.pem"), str(out.ca)))


def test_serial_of_reads_pem_and_der(tmp_path: Path) -> None:
    issued = certs.issue(certs.new_ca(), "x", serial=12345)
    der = x509.load_pem_x509_certificate(issued.cert).public_bytes(encoding=certs.serialization.Encoding.DER)
    assert certs.serial_of(issued.cert) == certs.serial_of(der) == 12345


def test_the_module_command_writes_the_compose_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs.main([str(tmp_path / "tls"), "node1", "node2", "node3"]) == 0
    names = {p.name for p in (tmp_path / "tls").iterdir()}
    assert {"ca.pem", "ca-key.pem", "admin.pem", "admin-key.pem", "kek.key"} <= names
    assert {f"node{i}{s}.pem" for i in (1, 2, 3) for s in ("", "-key")} <= names
    san = x509.load_pem_x509_certificate((tmp_path / "tls" / "node2.pem").read_bytes()).extensions
    assert "node2" in san.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert certs.main([]) == 2
