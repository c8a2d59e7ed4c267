"""Raft snapshots: one checksummed file holding every state record at exactly one applied index.

pysyncobj calls `serialize` on its tick thread when the state machine is exactly at the entry it
passes in. We take a RocksDB checkpoint there (hard links, a few ms, consistent across column
families), and write the file from it in a background thread; `check` tells pysyncobj when the
file is durable, and only then does it compact the journal.

File layout: MAGIC | u32 header length | SnapshotHeader | records | SHA-256 of all before it.
A record is: u8 column family id | u32 key length | key | u32 value length | value. The ids are
SNAPSHOT_CF_IDS (storage/rocksdb.py): fixed per family name and append-only, so files written by
older versions restore into the same families; a file naming an id this node does not know (written
by a newer version) is refused before anything is wiped.

`deserialize` runs at start-up (our own file) and when a leader sent us its file. A file that
fails its checksum is never half-used: the node stops loudly (pysyncobj would log and wedge).

With encryption at rest the whole file above is sealed (`_SealedWriter`, `unseal`):

    SEALED_MAGIC | 8-byte KEK fingerprint | u16 length | file key wrapped by the KEK | chunks | SHA-256

where a chunk is u32 length | AES-256-GCM(file key, nonce = chunk number, plain text of up to 1 MiB,
associated data = chunk number and a last-chunk flag). The file key is fresh per file and wrapped by the
cluster's KEK, not by this node's data keys, so any node of the cluster can install the file; chunks cannot
be dropped, reordered or cut off without failing. The outer SHA-256 lets the start-up check find a damaged
file without the key. A node with encryption on that receives a plain file (a leader without encryption,
while a cluster is being migrated) installs it and then seals the file in place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pysyncobj.config import SERIALIZER_STATE

from cairn_server.internal import snapshot_pb2

from .. import clock
from ..statemachine import APPLIED_KEY, StateMachine
from ..storage import STATE_CFS, RocksStore
from ..storage.encryption import Keyring
from ..storage.keys import u64
from ..storage.rocksdb import SNAPSHOT_CF_IDS
from .journal import RocksJournal

log = logging.getLogger(__name__)

MAGIC = b"CAIRNSN1"
SEALED_MAGIC = b"CAIRNSE1"
FORMAT = 1
_CHUNK = 1024 * 1024
_U16 = struct.Struct(">H")
_RESTORING_KEY = b"restore_in_progress"
_U32 = struct.Struct(">I")
_CF_NAMES = {i: name for name, i in SNAPSHOT_CF_IDS.items()}
_SNAPSHOT_CFS = tuple(cf for cf in STATE_CFS if cf != "meta")  # meta: the header has the applied index
# Every state key sorts below this: ids are printable, times are u64 ns (a 0xff first byte is past 2500).
_END_OF_KEYS = b"\xff" * 16
_BATCH_RECORDS = 2000


class SnapshotError(Exception):
    """A snapshot file is unreadable or fails its checksum. `corrupt`: the bytes are damaged (as opposed
    to a file this node cannot read, or one written in a format it does not know)."""

    def __init__(self, message: str, *, corrupt: bool = True):
        super().__init__(message)
        self.corrupt = corrupt


def _entry_ref(entry) -> snapshot_pb2.LogEntryRef:  # pysyncobj's (command, idx, term)
    return snapshot_pb2.LogEntryRef(command=bytes(entry[0]), index=entry[1], term=entry[2])


def _entry(ref: snapshot_pb2.LogEntryRef) -> tuple[bytes, int, int]:
    return (ref.command, ref.index, ref.term)


def _chunk_aad(n: int, last: bool) -> bytes:
    return b"cairn-snapshot\x00" + u64(n) + (b"\x01" if last else b"\x00")


def _chunk_nonce(n: int) -> bytes:
    return b"\x00\x00\x00\x00" + u64(n)  # unique per chunk; the key is fresh per file


class _SealedWriter:
    """Writes a sealed snapshot file around the plain bytes given to `write` (see the module docstring)."""

    def __init__(self, out, keyring: Keyring):
        self._out = out
        key, wrapped = keyring.new_file_key()
        self._aead = AESGCM(key)
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._chunks = 0
        self._emit(SEALED_MAGIC + bytes.fromhex(keyring.fingerprint) + _U16.pack(len(wrapped)) + wrapped)

    def _emit(self, data: bytes) -> None:
        self._digest.update(data)
        self._out.write(data)

    def _seal(self, plain: bytes, last: bool) -> None:
        n = self._chunks
        sealed = self._aead.encrypt(_chunk_nonce(n), plain, _chunk_aad(n, last))
        self._emit(_U32.pack(len(sealed)) + sealed)
        self._chunks += 1

    def write(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) > _CHUNK:  # strictly more: the last chunk is never empty unless the file is
            self._seal(bytes(self._buffer[:_CHUNK]), last=False)
            del self._buffer[:_CHUNK]

    def close(self) -> None:
        self._seal(bytes(self._buffer), last=True)
        self._buffer = bytearray()
        self._out.write(self._digest.digest())


def is_sealed(data: bytes) -> bool:
    return data.startswith(SEALED_MAGIC)


def unseal(data: bytes, keyring: Keyring | None, path: Path) -> bytes:
    """The plain snapshot inside a sealed file; SnapshotError when it is damaged or the KEK is not the one
    it was written under (corrupt=False: the file is fine, this node cannot read it)."""
    if len(data) < len(SEALED_MAGIC) + 8 + 2 + 32:
        raise SnapshotError(f"{path} is truncated")
    body, trailer = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != trailer:
        raise SnapshotError(f"{path} fails its SHA-256 checksum")
    pos = len(SEALED_MAGIC)
    fingerprint = body[pos : pos + 8].hex()
    if keyring is None:
        raise SnapshotError(
            f"{path} is encrypted (key fingerprint {fingerprint}) but state_storage.encryption is off on this node",
            corrupt=False,
        )
    if fingerprint != keyring.fingerprint:
        raise SnapshotError(
            f"{path} was written under the encryption key with fingerprint {fingerprint}, this node's is "
            f"{keyring.fingerprint}: every node of a cluster needs the same key",
            corrupt=False,
        )
    (wlen,) = _U16.unpack_from(body, pos + 8)
    pos += 10
    try:
        aead = AESGCM(keyring.unwrap_file_key(body[pos : pos + wlen]))
    except InvalidTag:
        raise SnapshotError(f"{path}: its file key does not unwrap under this node's key") from None
    pos += wlen
    plain, n, last = [], 0, False
    while pos < len(body):
        if last or pos + 4 > len(body):
            raise SnapshotError(f"{path}: data after its last chunk")
        (clen,) = _U32.unpack_from(body, pos)
        chunk = body[pos + 4 : pos + 4 + clen]
        pos += 4 + clen
        last = pos >= len(body)
        try:
            plain.append(aead.decrypt(_chunk_nonce(n), chunk, _chunk_aad(n, last)))
        except InvalidTag:
            raise SnapshotError(f"{path}: chunk {n} fails authentication") from None
        n += 1
    if not last:
        raise SnapshotError(f"{path} has no chunks")
    return b"".join(plain)


def write_snapshot_file(
    source: RocksStore, header: snapshot_pb2.SnapshotHeader, target: Path, keyring: Keyring | None = None
) -> int:
    """Stream every state record of `source` into `target` (fsynced, renamed into place); sealed with a fresh
    file key when a keyring is given."""
    tmp = target.with_name(target.name + ".writing")
    digest = hashlib.sha256()
    count = 0
    with open(tmp, "wb") as raw:
        out = raw if keyring is None else _SealedWriter(raw, keyring)

        def emit(data: bytes) -> None:
            digest.update(data)
            out.write(data)

        body = header.SerializeToString()
        emit(MAGIC + _U32.pack(len(body)) + body)
        for cf in _SNAPSHOT_CFS:
            cf_id = bytes([SNAPSHOT_CF_IDS[cf]])
            for key, value in source.scan(cf):
                emit(cf_id + _U32.pack(len(key)) + key + _U32.pack(len(value)) + value)
                count += 1
        out.write(digest.digest())
        if isinstance(out, _SealedWriter):
            out.close()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return count


def read_snapshot_file(path: Path, keyring: Keyring | None = None) -> tuple[snapshot_pb2.SnapshotHeader, bytes]:
    """The verified header and the record section (a sealed file is unsealed with `keyring` first); raises
    SnapshotError if anything is off."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"cannot read snapshot {path}: {exc}", corrupt=False) from None
    if is_sealed(data):
        data = unseal(data, keyring, path)
    if len(data) < len(MAGIC) + 4 + 32 or not data.startswith(MAGIC):
        raise SnapshotError(f"{path} is not a Cairn snapshot")
    body, trailer = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != trailer:
        raise SnapshotError(f"{path} fails its SHA-256 checksum")
    (hlen,) = _U32.unpack_from(body, len(MAGIC))
    start = len(MAGIC) + 4
    header = snapshot_pb2.SnapshotHeader.FromString(body[start : start + hlen])
    if header.format != FORMAT:
        raise SnapshotError(f"{path} has snapshot format {header.format}; this node reads {FORMAT}", corrupt=False)
    return header, body[start + hlen :]


def _cf_name(cf_id: int, n: int) -> str:
    name = _CF_NAMES.get(cf_id)
    if name is None:
        raise SnapshotError(
            f"snapshot record {n} has column family id {cf_id}, which this node does not know: "
            "the snapshot was written by a newer version of Cairn"
        )
    return name


def check_records(section: bytes) -> int:
    """The number of records; raises SnapshotError for an unknown column family id or a torn record."""
    pos, n, end = 0, 0, len(section)
    while pos < end:
        _cf_name(section[pos], n)
        if pos + 5 > end:
            raise SnapshotError(f"snapshot record {n} is truncated")
        (klen,) = _U32.unpack_from(section, pos + 1)
        pos += 5 + klen
        if pos + 4 > end:
            raise SnapshotError(f"snapshot record {n} is truncated")
        (vlen,) = _U32.unpack_from(section, pos)
        pos += 4 + vlen
        if pos > end:
            raise SnapshotError(f"snapshot record {n} is truncated")
        n += 1
    return n


def iter_records(section: bytes):
    pos, n = 0, 0
    while pos < len(section):
        cf = _cf_name(section[pos], n)
        n += 1
        (klen,) = _U32.unpack_from(section, pos + 1)
        key = section[pos + 5 : pos + 5 + klen]
        pos += 5 + klen
        (vlen,) = _U32.unpack_from(section, pos)
        value = section[pos + 4 : pos + 4 + vlen]
        pos += 4 + vlen
        yield cf, key, value


def _file_is_sealed(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(SEALED_MAGIC)) == SEALED_MAGIC


class Snapshots:
    """The serializer, checker and deserializer handed to pysyncobj, and their bookkeeping."""

    def __init__(
        self,
        store: RocksStore,
        machine: StateMachine,
        journal: RocksJournal,
        data_dir: Path,
        on_fatal: Callable[[str], None],
        keyring: Keyring | None = None,
    ):
        self.store, self.machine, self.journal = store, machine, journal
        self.keyring = keyring  # with encryption at rest: files are sealed (module docstring)
        self.dump_file = data_dir / "raft.snapshot"
        self._staging = data_dir / "snapshot-staging"
        self._on_fatal = on_fatal
        self._state = SERIALIZER_STATE.NOT_SERIALIZING
        self._lock = threading.Condition()
        self.completed = 0
        self.last_index = 0
        self.last_size = 0
        self.last_duration_ms = 0.0
        # Set by the Replica: stops (True) and resumes (False) applying committed entries.
        self.pause_applies: Callable[[bool], None] = lambda _paused: None
        # Set by the Node: after a snapshot install (a key rotation the installed state includes).
        self.after_install: Callable[[snapshot_pb2.SnapshotHeader], None] = lambda _header: None
        if self.dump_file.exists():
            try:
                header, _ = read_snapshot_file(self.dump_file, keyring)
                self.last_index = header.last.index
                self.last_size = self.dump_file.stat().st_size
            except SnapshotError:
                pass  # reported loudly when pysyncobj loads it

    # ---- serializer (tick thread) ---------------------------------------------------------------

    def serialize(self, _tmp_file: str, data) -> None:  # pysyncobj's (last, prev, cluster)
        """Applies stop here (the state stays at `last`) until a background thread has flushed the memtables
        and taken the RocksDB checkpoint. Taken on the Raft thread, the checkpoint (which flushes holding the
        GIL) stopped the whole node for seconds under load: no heartbeats, and the leadership was lost.
        Replication and heartbeats now go on; writes are answered once applies resume."""
        last, previous, cluster = data
        started = time.monotonic()
        self.pause_applies(True)
        header = snapshot_pb2.SnapshotHeader(
            format=FORMAT,
            last=_entry_ref(last),
            previous=_entry_ref(previous),
            cluster=sorted(str(getattr(n, "address", n)) for n in cluster),
            created_ns=clock.now_ns(),
            key_rotation_index=self.keyring.last_rotation_index if self.keyring is not None else 0,
        )
        with self._lock:
            self._state = SERIALIZER_STATE.SERIALIZING
        threading.Thread(target=self._write, args=(header, started), name="cairn-snapshot", daemon=True).start()

    def _write(self, header: snapshot_pb2.SnapshotHeader, started: float) -> None:
        try:
            try:
                self.store.flush_memtables()  # the slow part (seconds under load), with the GIL released
                self.store.create_checkpoint(self._staging)  # then little is left to flush holding the GIL
            finally:
                self.pause_applies(False)
            source = RocksStore(self._staging, read_only=True, on_error=self._on_fatal, cipher=self.store.cipher)
            try:
                header.records = sum(1 for cf in _SNAPSHOT_CFS for _ in source.scan(cf, raw=True))
                write_snapshot_file(source, header, self.dump_file, self.keyring)
            finally:
                source.close()
            shutil.rmtree(self._staging, ignore_errors=True)
            with self._lock:
                self.last_index = header.last.index
                self.last_size = self.dump_file.stat().st_size
                self.last_duration_ms = (time.monotonic() - started) * 1000
                self.completed += 1
                self._state = SERIALIZER_STATE.SUCCESS
                self._lock.notify_all()
            log.info(
                "snapshot at index %d written (%d records, %d bytes, %.1f ms)",
                header.last.index,
                header.records,
                self.last_size,
                self.last_duration_ms,
            )
        except Exception:  # reported to pysyncobj as a failed dump, journal kept
            log.exception("writing the snapshot failed; the journal is kept")
            with self._lock:
                self._state = SERIALIZER_STATE.FAILED
                self._lock.notify_all()

    def check(self) -> int:
        with self._lock:
            state = self._state
            if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
                self._state = SERIALIZER_STATE.NOT_SERIALIZING
            return state

    def wait_completed(self, count: int, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: self.completed >= count, timeout)

    # ---- deserializer (start-up, or a snapshot received from the leader) --------------------------

    def deserialize(self, file_name: str):
        try:
            header, section = read_snapshot_file(Path(file_name), self.keyring)
        except SnapshotError as exc:
            self._on_fatal(f"refusing to continue with a bad snapshot: {exc}")
            raise
        last, previous = _entry(header.last), _entry(header.previous)
        restoring = self.store.get("meta", _RESTORING_KEY) is not None
        if restoring or header.last.index > self.machine.applied_index:
            try:
                check_records(section)  # before the wipe: a file we cannot read must not cost the state
            except SnapshotError as exc:
                self._on_fatal(f"refusing to continue with a bad snapshot: {exc}")
                raise
            try:
                self._restore(header, section)
            except Exception as exc:  # pysyncobj would swallow it and answer success with the state wiped
                self._on_fatal(f"installing the snapshot at {header.last.index} failed: {exc}")
                raise
            self.after_install(header)
        else:
            # Our state already contains everything the file does: both are prefixes of the same
            # committed log, and ours is longer.
            log.info(
                "snapshot at %d is behind the local state at %d; keeping the local state",
                header.last.index,
                self.machine.applied_index,
            )
        if self.keyring is not None and not _file_is_sealed(Path(file_name)):
            self._seal_in_place(Path(file_name), header, section)
        # If a crash fell between writing the file and compacting the journal, compact now, so that
        # pysyncobj sees the journal starting at the snapshot and keeps the entries after it
        # (otherwise it would clear the whole journal).
        here = self.journal.entry_at(previous[1])
        if here is not None and here[2] == previous[2] and self.journal[0][1] != previous[1]:
            self.journal.trim_to(previous[1])
        with self._lock:
            self.last_index = max(self.last_index, header.last.index)
        return last, previous, set(header.cluster)

    def _seal_in_place(self, path: Path, header: snapshot_pb2.SnapshotHeader, section: bytes) -> None:
        """A plain file from a leader without encryption: keep the same content, sealed (tmp, fsync, rename)."""
        assert self.keyring is not None
        body = MAGIC + _U32.pack(len(header.SerializeToString())) + header.SerializeToString() + section
        tmp = path.with_name(path.name + ".sealing")
        with open(tmp, "wb") as raw:
            out = _SealedWriter(raw, self.keyring)
            out.write(body + hashlib.sha256(body).digest())
            out.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        log.info("sealed the plain snapshot file received at index %d", header.last.index)

    def _restore(self, header: snapshot_pb2.SnapshotHeader, section: bytes) -> None:
        started = time.monotonic()
        # One batch wipes the state and sets the marker (after the range delete, so it survives it):
        # an interrupted restore is redone at the next start.
        wipe = self.store.batch()
        for cf in STATE_CFS:
            wipe.delete_range(cf, b"", _END_OF_KEYS)
        wipe.put("meta", _RESTORING_KEY, u64(header.last.index))
        self.store.write(wipe, sync=True)
        batch, n = self.store.batch(), 0
        for cf, key, value in iter_records(section):
            batch.put(cf, key, value)
            n += 1
            if n % _BATCH_RECORDS == 0:
                self.store.write(batch)
                batch = self.store.batch()
        batch.put("meta", APPLIED_KEY, u64(header.last.index))
        batch.delete("meta", _RESTORING_KEY)
        self.store.write(batch, sync=True)
        self.machine.reset_applied(header.last.index)
        log.info(
            "installed snapshot at index %d (%d records, %.1f ms)",
            header.last.index,
            n,
            (time.monotonic() - started) * 1000,
        )
