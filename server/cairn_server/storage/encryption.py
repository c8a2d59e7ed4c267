"""Encryption at rest: AES-256-GCM over every stored value, envelope-style.

Keys:
- The key-encryption key (KEK) is 32 bytes given as base64 (44 characters) or hex (64) text, read from
  `state_storage.encryption.key_file` or the environment variable named by `key_env`. It never touches the
  data directory. Every node of a cluster uses the same KEK: snapshot files travel between nodes.
- Data keys (DEKs, AES-256-GCM) are per node and live only wrapped by the KEK, in DATA_DIR/keyring.json
  (written atomically: tmp, fsync, rename, fsync the directory). The keyring also holds the KEK's
  fingerprint (an HMAC of a constant under the KEK), so a wrong KEK is named as such at start-up, before
  anything is opened or created.

Record format (every RocksDB value, `RecordCipher.seal`):

    u8 version (1) | u32 key id (big-endian) | 12-byte nonce | ciphertext | 16-byte GCM tag

The associated data is the 5-byte header, the column family name, a NUL and the RocksDB key: a record moved
to another key or family, or relabelled with another key id, fails to decrypt. A failure is corruption (the
store's corruption path); a key id the keyring does not hold is not (a keyring replaced by an older copy).

Nonces follow NIST SP 800-38D's deterministic construction: an 8-byte random prefix drawn per process (and
again every 2**32 records) followed by a 4-byte counter, so no nonce repeats within a process and two
processes collide only if their random prefixes do (2**-64 per pair), instead of the birthday bound of fully
random 96-bit nonces, which caps a key at 2**32 records.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..config import EncryptionConfig

log = logging.getLogger(__name__)

KEYRING_FILE = "keyring.json"
KEYRING_FORMAT = 1
RECORD_VERSION = 1
_HEADER = struct.Struct(">BI")  # version, key id
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = _HEADER.size + NONCE_BYTES + TAG_BYTES  # 33 bytes per record
_FINGERPRINT_INFO = b"cairn kek fingerprint v1"
_DEK_AAD = b"cairn-dek\x00"
_FILE_KEY_AAD = b"cairn-file-key\x00"


class EncryptionError(Exception):
    """A key problem found at start-up (missing or wrong KEK, unreadable keyring, encrypted and plain data
    mixed): the node stops with this message before it opens or creates anything."""


class DecryptError(Exception):
    """A stored record could not be decrypted. `corrupt`: it fails authentication or is malformed (damaged,
    tampered with, or moved to another key); otherwise its key id is unknown to this keyring."""

    def __init__(self, message: str, *, corrupt: bool):
        super().__init__(message)
        self.corrupt = corrupt


# ---- the KEK ------------------------------------------------------------------------------------


def parse_kek(text: str, source: str) -> bytes:
    """32 bytes from base64 (44 characters) or hex (64) text; `source` names where it came from."""
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 64:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        raise EncryptionError(
            f"the encryption key in {source} is not 32 bytes as base64 (44 characters) or hex (64 characters); "
            "make one with: python -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())'"
        )
    return raw


def load_kek(config: EncryptionConfig) -> bytes:
    """The KEK named by the config: `key_file` if set, else the environment variable `key_env`."""
    if config.key_file:
        path = Path(config.key_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise EncryptionError(
                f"state_storage.encryption.key_file {path}: cannot read the encryption key ({exc.strerror or exc})"
            ) from None
        if path.stat().st_mode & 0o077:
            log.warning("encryption key file %s is readable by group or others; chmod 600 it", path)
        return parse_kek(text, f"state_storage.encryption.key_file {path}")
    text = os.environ.get(config.key_env, "")
    if not text.strip():
        raise EncryptionError(
            f"state_storage.encryption is on but the environment variable {config.key_env} (the encryption key) "
            "is not set; set it, or point state_storage.encryption.key_file at a file holding the key"
        )
    return parse_kek(text, f"the environment variable {config.key_env}")


def kek_fingerprint(kek: bytes) -> str:
    """A public name for the KEK (16 hex digits): tells a wrong key from a damaged keyring, and is shown in
    `cairn keys status` so operators can compare nodes. Reveals nothing usable about the key."""
    return hmac.new(kek, _FINGERPRINT_INFO, hashlib.sha256).hexdigest()[:16]


def _wrap(kek: bytes, secret: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, secret, aad)


def _unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)


# ---- records ------------------------------------------------------------------------------------


class _Nonces:
    """Unique 96-bit nonces: 8 random bytes per epoch of 2**32, then a 4-byte counter (see module doc)."""

    def __init__(self) -> None:
        self._counter = itertools.count()  # next() is atomic under the GIL
        self._prefixes: dict[int, bytes] = {0: os.urandom(8)}
        self._lock = threading.Lock()

    def next(self) -> bytes:
        n = next(self._counter)
        epoch = n >> 32
        prefix = self._prefixes.get(epoch)
        if prefix is None:
            with self._lock:
                prefix = self._prefixes.setdefault(epoch, os.urandom(8))
        return prefix + (n & 0xFFFFFFFF).to_bytes(4, "big")


class RecordCipher:
    """Seals and opens single values under the node's data keys; new records use the current key."""

    def __init__(self, keys: dict[int, bytes], current: int):
        self._aead = {kid: AESGCM(k) for kid, k in keys.items()}
        self._current = current
        self._nonces = _Nonces()

    @property
    def current(self) -> int:
        return self._current

    def add_key(self, key_id: int, key: bytes, *, make_current: bool) -> None:
        self._aead[key_id] = AESGCM(key)
        if make_current:
            self._current = key_id

    def seal(self, cf: str, key: bytes, value: bytes) -> bytes:
        kid = self._current
        header = _HEADER.pack(RECORD_VERSION, kid)
        nonce = self._nonces.next()
        return header + nonce + self._aead[kid].encrypt(nonce, value, header + cf.encode() + b"\x00" + key)

    def open(self, cf: str, key: bytes, record: bytes) -> bytes:
        if len(record) < OVERHEAD or record[0] != RECORD_VERSION:
            raise DecryptError(
                f"{cf} record {key!r} is not an encrypted record (damaged or written plain)", corrupt=True
            )
        kid = int.from_bytes(record[1:5], "big")
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptError(
                f"{cf} record {key!r} is under data key {kid}, which {KEYRING_FILE} does not hold "
                "(was the keyring replaced by an older copy?)",
                corrupt=False,
            )
        try:
            return aead.decrypt(record[5:17], record[17:], record[:5] + cf.encode() + b"\x00" + key)
        except InvalidTag:
            raise DecryptError(
                f"{cf} record {key!r} fails authentication (damaged, tampered with or moved)", corrupt=True
            ) from None

    @staticmethod
    def key_id(record: bytes) -> int:
        """The key id a stored record names (0 for anything that is not a record)."""
        if len(record) < OVERHEAD or record[0] != RECORD_VERSION:
            return 0
        return int.from_bytes(record[1:5], "big")


# ---- the keyring --------------------------------------------------------------------------------


@dataclass
class KeyInfo:
    id: int
    wrapped: bytes
    created_ns: int
    raft_index: int  # the rotation entry that made it (0: made when the keyring was created)


class Keyring:
    """The node's data keys, wrapped by the KEK in DATA_DIR/keyring.json, and the cipher built from them."""

    def __init__(self, path: Path, kek: bytes, infos: list[KeyInfo], current: int, pass_target: int):
        self.path = path
        self._kek = kek
        self.fingerprint = kek_fingerprint(kek)
        self.infos = {i.id: i for i in infos}
        self.pass_target = pass_target  # a re-encryption pass to this key is owed (0: none)
        keys = {}
        for info in infos:
            try:
                keys[info.id] = _unwrap(kek, info.wrapped, _DEK_AAD + info.id.to_bytes(4, "big"))
            except InvalidTag:
                raise EncryptionError(
                    f"{path}: data key {info.id} does not unwrap under the encryption key although the key's "
                    "fingerprint matches: the keyring file is damaged (restore it from a backup)"
                ) from None
        if current not in keys:
            raise EncryptionError(f"{path}: the current data key {current} is not in the keyring (damaged file)")
        self.cipher = RecordCipher(keys, current)
        self._lock = threading.Lock()

    @property
    def current(self) -> int:
        return self.cipher.current

    @property
    def last_rotation_index(self) -> int:
        """The Raft index of the last rotation applied here (0: none)."""
        return max(i.raft_index for i in self.infos.values())

    # ---- start-up ----

    @classmethod
    def open(cls, data_dir: Path, config: EncryptionConfig) -> Keyring | None:
        """Check the KEK against the data directory BEFORE anything is opened or created there.

        Encryption off: None, unless the directory holds a keyring (then refuse: its data is encrypted).
        On: the KEK must load; an existing keyring must match it; a new keyring is made only over a
        directory without data (turning encryption on over plain data would mix the two)."""
        path = Path(data_dir) / KEYRING_FILE
        if not config:
            if path.exists():
                raise EncryptionError(
                    f"{data_dir} holds encrypted data ({KEYRING_FILE}) but state_storage.encryption is off; "
                    "turn it on with the same key (the data cannot be read without it)"
                )
            return None
        kek = load_kek(config)
        if path.exists():
            return cls._load(path, kek)
        existing = [name for name in ("db", "raft.snapshot") if _has_data(Path(data_dir) / name)]
        if existing:
            raise EncryptionError(
                f"{data_dir} holds unencrypted data ({', '.join(existing)}) and state_storage.encryption is on: "
                "refusing to mix encrypted and plain records. Start this node on an empty data directory "
                "(it catches up from the cluster), or turn encryption off"
            )
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        first = secrets.token_bytes(32)
        info = KeyInfo(1, _wrap(kek, first, _DEK_AAD + (1).to_bytes(4, "big")), time.time_ns(), 0)
        ring = cls(path, kek, [info], 1, 0)
        ring._save()
        log.info("created %s with data key 1 (KEK fingerprint %s)", path, ring.fingerprint)
        return ring

    @classmethod
    def _load(cls, path: Path, kek: bytes) -> Keyring:
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != KEYRING_FORMAT:
                raise EncryptionError(
                    f"{path} has keyring format {doc.get('format')!r}; this node reads {KEYRING_FORMAT}"
                )
            infos = [
                KeyInfo(int(k["id"]), base64.b64decode(k["wrapped"]), int(k["created_ns"]), int(k["raft_index"]))
                for k in doc["keys"]
            ]
            current, fingerprint, target = int(doc["current"]), str(doc["kek_fingerprint"]), int(doc["pass_target"])
        except EncryptionError:
            raise
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise EncryptionError(f"{path} (this node's data keys) is unreadable: {exc}") from None
        if not hmac.compare_digest(fingerprint, kek_fingerprint(kek)):
            raise EncryptionError(
                f"wrong encryption key: {path} was made under the key with fingerprint {fingerprint}, "
                f"the configured key's is {kek_fingerprint(kek)}"
            )
        return cls(path, kek, infos, current, target)

    def _save(self, current: int | None = None) -> None:
        doc = {
            "format": KEYRING_FORMAT,
            "kek_fingerprint": self.fingerprint,
            "current": current or self.cipher.current,
            "pass_target": self.pass_target,
            "keys": [
                {
                    "id": i.id,
                    "wrapped": base64.b64encode(i.wrapped).decode(),
                    "created_ns": i.created_ns,
                    "raft_index": i.raft_index,
                }
                for i in sorted(self.infos.values(), key=lambda i: i.id)
            ],
        }
        _write_atomically(self.path, json.dumps(doc, indent=1).encode() + b"\n")

    # ---- rotation ----

    def rotate(self, raft_index: int) -> int:
        """Add a data key for new writes (durably, then in memory); its id. Idempotent per rotation entry:
        a replay of the same entry (a crash before the applied index was stored) returns the key it made."""
        with self._lock:
            for info in self.infos.values():
                if raft_index and info.raft_index == raft_index:
                    return info.id
            kid = max(self.infos) + 1
            key = secrets.token_bytes(32)
            self.infos[kid] = KeyInfo(
                kid, _wrap(self._kek, key, _DEK_AAD + kid.to_bytes(4, "big")), time.time_ns(), raft_index
            )
            owed, self.pass_target = self.pass_target, kid
            try:
                self._save(current=kid)  # before any record is sealed under it: the key must survive a crash
            except OSError:
                del self.infos[kid]
                self.pass_target = owed
                raise
            self.cipher.add_key(kid, key, make_current=True)
            return kid

    def pass_completed(self, target: int) -> None:
        """Record that no record is left under a key older than `target` (if it still is the current key)."""
        with self._lock:
            if self.pass_target == target:
                self.pass_target = 0
                self._save()

    # ---- snapshot file keys ----

    def new_file_key(self) -> tuple[bytes, bytes]:
        """A fresh key for one snapshot file and its KEK-wrapped form (any node with the KEK can unwrap it)."""
        key = secrets.token_bytes(32)
        return key, _wrap(self._kek, key, _FILE_KEY_AAD)

    def unwrap_file_key(self, wrapped: bytes) -> bytes:
        return _unwrap(self._kek, wrapped, _FILE_KEY_AAD)


def _has_data(path: Path) -> bool:
    if path.is_dir():
        return any(path.iterdir())
    return path.exists()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "KEYRING_FILE",
    "OVERHEAD",
    "DecryptError",
    "EncryptionError",
    "Keyring",
    "RecordCipher",
    "kek_fingerprint",
    "load_kek",
    "parse_kek",
]
