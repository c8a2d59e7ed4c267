"""TLS for the gRPC listener and for node-to-node calls, with certificates that rotate without a restart.

The server's credentials are gRPC's dynamic SSL credentials: gRPC asks `CertificateReloader.fetch` for a
certificate configuration before every new handshake, and gets a new one only after the files changed. The
files are read at most every `tls.reload_interval` (a background thread also checks on that schedule, so the
node's own client certificate towards its peers follows even while no client connects), and at once on
SIGHUP (`reload()`). Connections already open keep the certificate they were made with.

A reload that finds a bad set of files (unreadable, not PEM, key not matching the certificate, a certificate
not signed by the CA bundle, expired) keeps the certificate in use and logs one error per bad version of the
files: a half-finished copy must not take the node off the network.

`client_auth`: gRPC Python can ask for a client certificate only as "require and verify" or not at all (its
Cython layer maps `require_client_auth` to GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY or to
GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE, for static and dynamic credentials alike). So `require` is mTLS,
`none` asks for no certificate, and `request` cannot be had: it is served as `none` (no certificate is asked
for, every TLS client is accepted) and the node says so in a warning at start-up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

from .config import TlsConfig

log = logging.getLogger(__name__)


class TlsError(ValueError):
    """The TLS files cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class TlsMaterial:
    """One consistent, checked set of the node's TLS files."""

    cert: bytes  # the node's certificate chain, PEM
    key: bytes  # its private key, PEM
    ca: bytes  # the CA bundle peers and clients are checked against, PEM
    serial: int  # the leaf certificate's serial number (logged, so a rotation can be seen)
    not_after: dt.datetime

    @property
    def digest(self) -> str:
        return _digest(self.cert, self.key, self.ca)


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"tls.{what}: cannot read {path}: {exc.strerror or exc}") from None


def _verify_signed_by(cert: x509.Certificate, issuers: list[x509.Certificate]) -> bool:
    for issuer in issuers:
        if issuer.subject != cert.issuer:
            continue
        public = issuer.public_key()
        try:
            if isinstance(public, rsa.RSAPublicKey):
                assert cert.signature_hash_algorithm is not None
                public.verify(
                    cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
                )
            elif isinstance(public, ec.EllipticCurvePublicKey):
                assert cert.signature_hash_algorithm is not None
                public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
            elif isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
                public.verify(cert.signature, cert.tbs_certificate_bytes)
            else:
                continue
            return True
        except Exception:  # InvalidSignature, or a key type this check does not know: try the next issuer
            continue
    return False


def load_material(config: TlsConfig) -> TlsMaterial:
    """Read and check the three files; TlsError says which one is wrong and why."""
    cert_pem, key_pem, ca_pem = _read(config.cert, "cert"), _read(config.key, "key"), _read(config.ca, "ca")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise TlsError(f"tls.cert: {config.cert} is not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"tls.key: {config.key} is not an unencrypted PEM private key: {exc}") from None
    try:
        cas = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise TlsError(f"tls.ca: {config.ca} is not a PEM certificate bundle: {exc}") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != leaf.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        raise TlsError(f"tls.key: {config.key} is not the private key of the certificate in {config.cert}")
    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_after_utc <= now:
        raise TlsError(f"tls.cert: {config.cert} expired at {leaf.not_valid_after_utc.isoformat()}")
    # The chain's last certificate must be signed by (or be) one of the CAs, as peers will check it that way.
    top = chain[-1]
    if top not in cas and not _verify_signed_by(top, cas):
        raise TlsError(f"tls.cert: {config.cert} is not signed by a CA in {config.ca}")
    return TlsMaterial(cert_pem, key_pem, ca_pem, leaf.serial_number, leaf.not_valid_after_utc)


def channel_credentials(material: TlsMaterial) -> grpc.ChannelCredentials:
    """For calls to peers: the CA as the only root, this node's certificate as the client certificate."""
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
    )


def _server_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], root_certificates=material.ca)


class CertificateReloader:
    """The node's current TLS material; swaps it when the files change (checked lazily, on a timer, on SIGHUP)."""

    def __init__(
        self,
        config: TlsConfig,
        *,
        on_change: Callable[[TlsMaterial], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.config = config
        self.on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self.material = load_material(config)  # at start-up a bad file is fatal (the caller reports it)
        self._served = self.material.digest  # what gRPC last got from fetch()
        self._last_check = clock()
        self._files_digest = self.material.digest  # the files as last read, good or bad
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0
        if config.client_auth == "request":
            log.warning(
                "tls.client_auth: request cannot be expressed with gRPC Python (it can only require a client "
                "certificate or not ask for one); this node asks for none and accepts every TLS client"
            )

    # ---- checking the files ------------------------------------------------------------------------

    def check(self, *, force: bool = False) -> bool:
        """Re-read the files if `reload_interval` has passed (or `force`); True when new material was taken."""
        with self._lock:
            now = self._clock()
            if not force and now - self._last_check < self.config.reload_interval:
                return False
            self._last_check = now
            try:
                raw = [_read(self.config.cert, "cert"), _read(self.config.key, "key"), _read(self.config.ca, "ca")]
            except TlsError as exc:
                self._report(f"unreadable:{exc}", exc)
                return False
            digest = _digest(*raw)
            if digest == self.material.digest:
                self._files_digest = digest
                return False
            if digest == self._files_digest and not force:
                return False  # the same bad files as last time: already reported
            try:
                material = load_material(self.config)
            except TlsError as exc:
                self._report(digest, exc)
                return False
            old, self.material = self.material, material
            self._files_digest = material.digest
            self.reloads += 1
        log.info(
            "TLS certificate reloaded from %s: serial %x -> %x, valid until %s",
            self.config.cert,
            old.serial,
            material.serial,
            material.not_after.isoformat(),
        )
        if self.on_change is not None:
            try:
                self.on_change(material)
            except Exception:  # the server side already has the new material; peers' channels are best effort
                log.exception("applying the reloaded TLS certificate to node-to-node channels failed")
        return True

    def _report(self, files_digest: str, exc: TlsError) -> None:
        if files_digest != self._files_digest:
            log.error("TLS reload failed, keeping the certificate in use (serial %x): %s", self.material.serial, exc)
        self._files_digest = files_digest

    def reload(self) -> bool:
        """Re-read the files now (SIGHUP); the next handshake uses them if they are good."""
        log.info("TLS reload requested")
        with self._lock:
            self._files_digest = ""  # report a bad set again: the operator asked
        return self.check(force=True)

    # ---- gRPC ------------------------------------------------------------------------------------

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's certificate-configuration fetcher, called before each new handshake: None = keep the current."""
        self.check()
        with self._lock:
            material = self.material
            if material.digest == self._served:
                return None
            self._served = material.digest
        return _server_configuration(material)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            _server_configuration(self.material),
            self.fetch,
            require_client_authentication=self.config.client_auth == "require",
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return channel_credentials(self.material)

    # ---- the timer -------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the files every `reload_interval` even when nobody connects (peers' channels follow then)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tls-reload", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.reload_interval):
            try:
                self.check()
            except Exception:  # never let the timer die: the next tick tries again
                log.exception("TLS reload check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
