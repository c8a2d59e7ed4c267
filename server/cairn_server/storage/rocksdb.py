"""The node's single RocksDB (rocksdict, raw bytes), with one column family per kind of record.

State machine:  state (workflow id -> WorkflowState), history (id + version -> StateChange),
                checkpoint (id + checkpoint id -> Checkpoint), dedup (request id -> DedupRecord),
                dedup_exp (expiry + request id), meta (applied index),
                run_queue (pending workflow runs by type and ready time), lease (workflow id -> lease),
                lease_due (lease expiry index), cp_sched (workflow id -> next periodic checkpoint time),
                cp_due (periodic checkpoint due-time index).
Raft journal:   raftlog (index -> term + command), raftmeta (term, vote, commit index).

One WriteBatch is atomic across column families, which is what lets an apply write its effects,
the applied index and the dedup record together.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from rocksdict import AccessType, Checkpoint, Options, Rdict, WriteBatch, WriteOptions

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
}
if set(SNAPSHOT_CF_IDS) != set(STATE_CFS) or len(set(SNAPSHOT_CF_IDS.values())) != len(SNAPSHOT_CF_IDS):
    raise RuntimeError("every state column family needs its own snapshot id in SNAPSHOT_CF_IDS")
if not all(0 <= i <= 255 for i in SNAPSHOT_CF_IDS.values()):
    raise RuntimeError("snapshot column family ids are one byte")


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    return opts


class Batch:
    """A WriteBatch addressed by column family name."""

    def __init__(self, store: RocksStore):
        self._store = store
        self._wb = WriteBatch(raw_mode=True)

    def put(self, cf: str, key: bytes, value: bytes) -> None:
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

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        cfs = {name: Options(raw_mode=True) for name in STATE_CFS + RAFT_CFS}
        kwargs = {"access_type": AccessType.read_only()} if read_only else {}
        self._db = Rdict(str(self.path), _options(), column_families=cfs, **kwargs)
        self._cfs = {name: self._db.get_column_family(name) for name in cfs}
        self._handles = {name: self._db.get_column_family_handle(name) for name in cfs}
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        self._closed = False
        self._lock = threading.Lock()

    def handle(self, cf: str):  # rocksdict's handle type is not exported
        return self._handles[cf]

    def batch(self) -> Batch:
        return Batch(self)

    def write(self, batch: Batch, *, sync: bool = False) -> None:
        # A synced write holds the GIL through the fsync and freezes every thread of the node;
        # flush_wal(sync=True) gives the same durability (the batch is in the WAL) and releases it.
        self._db.write(batch._wb, self._nosync)
        if sync:
            self.sync_wal()

    def sync_wal(self) -> None:
        """fsync the write-ahead log: everything written before is then on disk."""
        self._db.flush_wal(True)

    def get(self, cf: str, key: bytes) -> bytes | None:
        return self._cfs[cf].get(key)

    def scan(
        self, cf: str, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Records whose key starts with `prefix`, in key order (from `start` if given)."""
        view = self._cfs[cf]
        if reverse:
            it = view.items(backwards=True, from_key=prefix_end(prefix) if prefix else None)
            for key, value in it:
                if key.startswith(prefix):
                    if key == prefix_end(prefix):
                        continue
                    yield key, value
                elif prefix and key < prefix:
                    return
            return
        for key, value in view.items(from_key=start if start is not None else prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def estimate_keys(self, cf: str) -> int:
        return self._cfs[cf].property_int_value("rocksdb.estimate-num-keys") or 0

    def create_checkpoint(self, directory: Path) -> None:
        """A consistent, hard-linked copy of every column family at this instant (a few ms)."""
        if directory.exists():
            shutil.rmtree(directory)
        Checkpoint(self._db).create_checkpoint(str(directory))

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                # rocksdict keeps the DB lock while any column-family view is alive.
                self._cfs.clear()
                self._handles.clear()
                del self._db
