"""Throwaway certificates for a local or test cluster: a CA, node certificates, client certificates, a KEK.

`cairn cluster up --secure` and the tests use this; production deployments bring their own PKI. Keys are
ECDSA P-256 (fast to make, supported by gRPC and Python's ssl). A node certificate is usable both as the
node's server certificate and as its client certificate towards peers (EKU serverAuth + clientAuth), with
the node id as its common name; a client certificate's common name is the identity it stands for.

`python -m cairn_server.certs DIR node1 node2 node3` writes the same layout as `cluster up --secure` into
DIR (for docker-compose.yml: `./tls`).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ADMIN = "admin"
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, both PEM."""

    cert: bytes
    key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    # A little in the past: a node whose clock is slightly behind must not see "not yet valid".
    now = dt.datetime.now(dt.UTC)
    return now - dt.timedelta(minutes=5), now + dt.timedelta(days=days)


def new_ca(common_name: str = "Cairn local CA", *, days: int = 3650) -> Issued:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # de-duplicated, order kept
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue(
    ca: Issued,
    common_name: str,
    *,
    hosts: Sequence[str] = (),
    server: bool = True,
    client: bool = True,
    days: int = 825,
    serial: int | None = None,
) -> Issued:
    """A certificate for `common_name` signed by `ca`; `hosts` become subject alternative names (IPs or DNS)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    if not usages:
        raise ValueError("a certificate must be usable as a server or a client certificate")
    not_before, not_after = _validity(days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def serial_of(cert_pem_or_der: bytes) -> int:
    """The serial number of a PEM or DER certificate (what a rotation changes)."""
    if cert_pem_or_der.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(cert_pem_or_der).serial_number
    return x509.load_der_x509_certificate(cert_pem_or_der).serial_number


def write_private(path: Path, data: bytes) -> None:
    """Write a secret readable by its owner only, atomically (a reader never sees half a key)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate (not secret) atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ClusterTls:
    """Where `ensure_cluster_tls` put everything (absolute paths)."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca-key.pem"

    @property
    def admin_cert(self) -> Path:
        return self.dir / f"{ADMIN}.pem"

    @property
    def admin_key(self) -> Path:
        return self.dir / f"{ADMIN}-key.pem"

    @property
    def kek(self) -> Path:
        return self.dir / "kek.key"

    def node_cert(self, node_id: str) -> Path:
        return self.dir / f"{node_id}.pem"

    def node_key(self, node_id: str) -> Path:
        return self.dir / f"{node_id}-key.pem"

    def load_ca(self) -> Issued:
        return Issued(self.ca.read_bytes(), self.ca_key.read_bytes())


def _names_all(cert_path: Path, hosts: Sequence[str]) -> bool:
    """Whether the certificate at `cert_path` has every one of `hosts` among its subject alternative names."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not hosts
    return set(_san(hosts)) <= set(names)


def _ensure_pair(ca: Issued, cert_path: Path, key_path: Path, common_name: str, hosts: Sequence[str]) -> None:
    # Kept if it still names every host; re-issued by the same CA if a host changed (the same data directory
    # reused on other addresses, e.g. another network-namespace subnet): no client's trust changes.
    if cert_path.exists() and key_path.exists() and _names_all(cert_path, hosts):
        return
    issued = issue(ca, common_name, hosts=hosts)
    write_private(key_path, issued.key)
    write_public(cert_path, issued.cert)


def ensure_cluster_tls(directory: Path, nodes: Sequence[tuple[str, Sequence[str]]]) -> ClusterTls:
    """Make whatever is missing in `directory`: CA, one certificate per (node id, hosts), the admin's, the KEK.

    What exists is kept (a CA is never replaced: every certificate and every client's trust hangs on it).
    A node certificate's SANs are its hosts plus 127.0.0.1 and localhost."""
    out = ClusterTls(Path(directory).resolve())
    out.dir.mkdir(parents=True, exist_ok=True)
    out.dir.chmod(0o700)
    if out.ca.exists() != out.ca_key.exists():
        raise FileExistsError(f"{out.dir} has one of ca.pem and ca-key.pem but not the other; restore or remove it")
    if not out.ca.exists():
        ca = new_ca()
        write_private(out.ca_key, ca.key)
        write_public(out.ca, ca.cert)
    ca = out.load_ca()
    for node_id, hosts in nodes:
        _ensure_pair(ca, out.node_cert(node_id), out.node_key(node_id), node_id, [*hosts, *DEFAULT_HOSTS])
    _ensure_pair(ca, out.admin_cert, out.admin_key, ADMIN, ())
    if not out.kek.exists():
        write_private(out.kek, base64.b64encode(secrets.token_bytes(32)) + b"\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cairn_server.certs DIR NODE_ID...`: a CA, node and admin certificates and a KEK in DIR."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0].startswith("-"):
        print("usage: python -m cairn_server.certs DIR NODE_ID [NODE_ID...]  (each node id is also its host name)")
        return 2
    out = ensure_cluster_tls(Path(args[0]), [(node_id, (node_id,)) for node_id in args[1:]])
    print(f"TLS material in {out.dir}: ca.pem, {', '.join(f'{n}.pem' for n in args[1:])}, admin.pem, kek.key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
