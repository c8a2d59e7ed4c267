"""The node's single RocksDB (rocksdict, raw bytes), with one column family per kind of record.

State machine:  state (workflow id -> WorkflowState), history (id + version -> StateChange),
                checkpoint (id + checkpoint id -> Checkpoint), dedup (request id -> DedupRecord),
                dedup_exp (expiry + request id), meta (applied index),
                run_queue (pending workflow runs by type and ready time), lease (workflow id -> lease),
                lease_due (lease expiry index), cp_sched (workflow id -> next periodic checkpoint time),
                cp_due (periodic checkpoint due-time index), auth (roles, bindings, token hashes),
                audit (seq -> AuditRecord, the hash-chained audit log).
Raft journal:   raftlog (index -> term + command), raftmeta (term, vote, commit index).

One WriteBatch is atomic across column families, which is what lets an apply write its effects,
the applied index and the dedup record together.

Corruption: every block carries a checksum that RocksDB checks on read. A read that hits a bad block
raises StorageError (rocksdict's iterators would just stop early: a scan checks the iterator's status
where it ended, so a short scan is never mistaken for the end of the data), and the node stops rather
than serve or replicate from it. `verify` reads every block at start-up. The WAL (which also holds the
Raft journal) is replayed in "tolerate corrupted tail records" mode: a record torn by a crash is
dropped, but a bad record in the middle fails the open instead of silently dropping every synced
record after it (RocksDB's default, point-in-time recovery, does the latter).

Encryption at rest (storage/encryption.py): with a cipher, every value of every column family is sealed in
`Batch.put` and opened in `get`/`scan`, here and nowhere else, so every module and every future family is
covered. Keys stay plain: ids are metadata, not content. A record that fails authentication is corruption
(the path above). Without a cipher the only cost is one `is None` test per value.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from rocksdict import AccessType, Checkpoint, DBRecoveryMode, Options, Rdict, WriteBatch, WriteOptions

from .encryption import DecryptError, RecordCipher
from .keys import prefix_end

STATE_CFS = (
    "state",
    "history",
    "checkpoint",
    "dedup",
    "dedup_exp",
    "meta",
    "run_queue",
    "lease",
    "lease_due",
    "cp_sched",
    "cp_due",
    "auth",
    "audit",
)
RAFT_CFS = ("raftlog", "raftmeta")

# The u8 that names a state column family in a snapshot file (raft/snapshot.py), fixed per name.
# APPEND-ONLY: an id is never reused or renumbered, and order in STATE_CFS does not matter; a new
# family takes the next free id. Changing an id would make every existing snapshot file restore its
# records into the wrong family. If a family is ever dropped, comment its line out and keep it, so
# that its id stays taken. (meta has an id but is not written to snapshots: the header carries the
# applied index.)
SNAPSHOT_CF_IDS: dict[str, int] = {
    "state": 0,
    "history": 1,
    "checkpoint": 2,
    "dedup": 3,
    "dedup_exp": 4,
    "meta": 5,
    "run_queue": 6,
    "lease": 7,
    "lease_due": 8,
    "cp_sched": 9,
    "cp_due": 10,
    "auth": 11,
    "audit": 12,
}
if set(SNAPSHOT_CF_IDS) != set(STATE_CFS) or len(set(SNAPSHOT_CF_IDS.values())) != len(SNAPSHOT_CF_IDS):
    raise RuntimeError("every state column family needs its own snapshot id in SNAPSHOT_CF_IDS")
if not all(0 <= i <= 255 for i in SNAPSHOT_CF_IDS.values()):
    raise RuntimeError("snapshot column family ids are one byte")


class StorageError(Exception):
    """RocksDB could not read or write (a checksum mismatch, an I/O error): this replica's data is suspect."""


def is_corruption(exc: BaseException | str) -> bool:
    """True for a checksum/format failure, as opposed to an I/O error such as a full disk."""
    return "Corruption" in str(exc)


# A snapshot's RocksDB checkpoint flushes every memtable and holds the GIL (the whole node stops) while it does;
# with RocksDB's default 64 MiB write buffers that took 160 ms on a quiet disk. Smaller memtables are flushed in
# the background as they fill (and raft/snapshot.py flushes them, GIL released, right before the checkpoint).
WRITE_BUFFER_BYTES = 8 * 1024 * 1024


def _family_options() -> Options:
    opts = Options(raw_mode=True)
    opts.set_write_buffer_size(WRITE_BUFFER_BYTES)
    return opts


def _options(salvage_wal: bool = False) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    opts.set_paranoid_checks(True)
    # salvage_wal: keep the consistent prefix before a damaged WAL record (integrity.py decides when).
    mode = DBRecoveryMode.point_in_time() if salvage_wal else DBRecoveryMode.tolerate_corrupted_tail_records()
    opts.set_wal_recovery_mode(mode)
    return opts


class Batch:
    """A WriteBatch addressed by column family name."""

    def __init__(self, store: RocksStore):
        self._store = store
        self._wb = WriteBatch(raw_mode=True)
        self._cipher = store.cipher

    def put(self, cf: str, key: bytes, value: bytes) -> None:
        if self._cipher is not None:
            value = self._cipher.seal(cf, key, value)
        self._wb.put(key, value, self._store.handle(cf))

    def delete(self, cf: str, key: bytes) -> None:
        self._wb.delete(key, self._store.handle(cf))

    def delete_range(self, cf: str, begin: bytes, end: bytes) -> None:
        self._wb.delete_range(begin, end, self._store.handle(cf))

    def delete_prefix(self, cf: str, prefix: bytes) -> None:
        self._wb.delete_range(prefix, prefix_end(prefix), self._store.handle(cf))

    def __len__(self) -> int:
        return self._wb.len()


class RocksStore:
    """Owns the RocksDB handle; thread-safe for reads, writes are serialized by callers' batches."""

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        on_error: Callable[[str], None] | None = None,
        salvage_wal: bool = False,
        cipher: RecordCipher | None = None,
    ):
        self.cipher = cipher  # None: values are stored as given
        self._on_error = on_error  # the node stops here: it must not serve or replicate suspect data
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        cfs = {name: _family_options() for name in STATE_CFS + RAFT_CFS}
        kwargs = {"access_type": AccessType.read_only()} if read_only else {}
        self._db = Rdict(str(self.path), _options(salvage_wal), column_families=cfs, **kwargs)
        self._cfs = {name: self._db.get_column_family(name) for name in cfs}
        self._handles = {name: self._db.get_column_family_handle(name) for name in cfs}
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        self._closed = False
        self._lock = threading.Lock()
        # With encryption, held around every write and around each re-encryption batch's read-check-rewrite
        # (`reseal`), so a rewrite can never overwrite a value written after it was read.
        self._write_lock = threading.Lock()

    def handle(self, cf: str):  # rocksdict's handle type is not exported
        return self._handles[cf]

    def batch(self) -> Batch:
        return Batch(self)

    def write(self, batch: Batch, *, sync: bool = False) -> None:
        # A synced write holds the GIL through the fsync and freezes every thread of the node;
        # flush_wal(sync=True) gives the same durability (the batch is in the WAL) and releases it.
        if self.cipher is None:
            self._db.write(batch._wb, self._nosync)
        else:
            with self._write_lock:
                self._db.write(batch._wb, self._nosync)
        if sync:
            self.sync_wal()

    def sync_wal(self) -> None:
        """fsync the write-ahead log: everything written before is then on disk."""
        self._db.flush_wal(True)

    def get(self, cf: str, key: bytes) -> bytes | None:
        try:
            value = self._cfs[cf].get(key)
        except Exception as exc:
            raise self._failed(f"reading {cf}: {exc}") from exc
        if value is None or self.cipher is None:
            return value
        return self._open(cf, key, value)

    def _open(self, cf: str, key: bytes, value: bytes) -> bytes:
        assert self.cipher is not None
        try:
            return self.cipher.open(cf, key, value)
        except DecryptError as exc:
            # "Corruption" makes the node remember it (node._fatal) and move the data aside at the next start.
            raise self._failed(f"{'Corruption: ' if exc.corrupt else ''}{exc}") from None

    def scan(
        self, cf: str, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False, raw: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Records whose key starts with `prefix`, in key order (from `start` if given); `raw`: values as stored
        (sealed, with encryption), for the re-encryption pass."""
        if self.cipher is not None and not raw:
            for key, value in self._scan(cf, prefix, start, reverse):
                yield key, self._open(cf, key, value)
        else:
            yield from self._scan(cf, prefix, start, reverse)

    def _scan(self, cf: str, prefix: bytes, start: bytes | None, reverse: bool) -> Iterator[tuple[bytes, bytes]]:
        view = self._cfs[cf]
        last: bytes | None = None
        try:
            if reverse:
                it = view.items(backwards=True, from_key=prefix_end(prefix) if prefix else None)
                for key, value in it:
                    if key.startswith(prefix):
                        if key == prefix_end(prefix):
                            continue
                        last = key
                        yield key, value
                    elif prefix and key < prefix:
                        return
            else:
                for key, value in view.items(from_key=start if start is not None else prefix):
                    if not key.startswith(prefix):
                        return
                    last = key
                    yield key, value
        except StorageError:
            raise
        except Exception as exc:
            raise self._failed(f"scanning {cf}: {exc}") from exc
        self._check_scan_end(cf, last, reverse, start if start is not None else prefix)

    def _check_scan_end(self, cf: str, last: bytes | None, reverse: bool, start: bytes) -> None:
        """rocksdict's items() ends quietly when its iterator hits an error: step past where the scan ended
        with a raw iterator and ask for its status, so a bad block raises instead of shortening the scan."""
        it = self._cfs[cf].iter()
        try:
            if reverse:
                if last is None:
                    it.seek_to_last()
                else:
                    it.seek_for_prev(last)
                    if it.valid():
                        it.prev()
            elif last is None:
                it.seek(start)
            else:
                it.seek(last)
                if it.valid():
                    it.next()
            it.valid()
            it.status()
        except Exception as exc:
            raise self._failed(f"scanning {cf}: {exc} (an unreadable block where the scan stopped)") from exc

    def _failed(self, message: str) -> StorageError:
        if self._on_error is not None and not self._closed:  # after close (shutdown): not a disk problem
            self._on_error(f"RocksDB read failed: {message}")
        return StorageError(message)

    def verify(self) -> list[str]:
        """Read every block of every column family (checksums verified) and, with encryption, authenticate every
        record; the problems found."""
        problems = []  # "Corruption: ..." for damaged blocks; other errors (I/O) are raised, not reported
        for cf in STATE_CFS + RAFT_CFS:
            it = self._cfs[cf].iter()
            it.seek_to_first()
            bad = None
            while it.valid():
                if self.cipher is not None and bad is None:
                    try:
                        self.cipher.open(cf, it.key(), it.value())
                    except DecryptError as exc:
                        if not exc.corrupt:
                            raise StorageError(str(exc)) from None
                        bad = f"{cf}: Corruption: {exc}"
                it.next()
            try:
                it.status()
            except Exception as exc:
                if not is_corruption(exc):
                    raise StorageError(f"verifying {cf}: {exc}") from exc
                problems.append(f"{cf}: {exc}")
            if bad is not None:
                problems.append(bad)
        return problems

    def reseal(self, cf: str, records: list[tuple[bytes, bytes]]) -> tuple[int, int]:
        """Re-encrypt `records` (key, value as read by `scan(raw=True)`) under the current key, each only if it
        still holds exactly that value: the check and the rewrite happen under the write lock that every
        `write` takes, so a value written since the read is never overwritten. Returns (records, bytes)."""
        assert self.cipher is not None
        view, handle = self._cfs[cf], self._handles[cf]
        wb = WriteBatch(raw_mode=True)
        count = size = 0
        with self._write_lock:
            for key, old in records:
                try:
                    now = view.get(key)
                except Exception as exc:
                    raise self._failed(f"reading {cf}: {exc}") from exc
                if now != old:
                    continue  # rewritten (under the current key) or deleted since it was read
                wb.put(key, self.cipher.seal(cf, key, self._open(cf, key, old)), handle)
                count += 1
                size += len(old)
            if count:
                self._db.write(wb, self._nosync)
        return count, size

    def estimate_keys(self, cf: str) -> int:
        return self._cfs[cf].property_int_value("rocksdb.estimate-num-keys") or 0

    def flush_memtables(self) -> None:
        """Write every column family's memtable to disk, waiting, with the GIL released (rocksdict's flush
        releases it; its checkpoint does not, and flushes first: flush here, then checkpoint)."""
        for view in self._cfs.values():
            view.flush(True)

    def create_checkpoint(self, directory: Path) -> None:
        """A consistent, hard-linked copy of every column family at this instant. It flushes the memtables
        holding the GIL, so call `flush_memtables` just before: then it has little left to flush."""
        if directory.exists():
            shutil.rmtree(directory)
        Checkpoint(self._db).create_checkpoint(str(directory))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._db.close()  # flushes the memtable: can fail on a damaged or full disk
                finally:
                    # rocksdict keeps the DB lock while any column-family view is alive.
                    self._cfs.clear()
                    self._handles.clear()
                    del self._db
