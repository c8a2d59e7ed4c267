"""Start-up integrity check: a node never serves, votes or replicates from data that fails a checksum.

Before the replica starts, every RocksDB block (state and Raft journal) and the Raft snapshot file are
read and their checksums verified.
- A damaged block or snapshot file: `db/` and `raft.snapshot` are moved aside into `DATA_DIR/corrupt-<time>/`
  (kept for an operator, never read again) and the node starts empty.
- Corruption found while running (a read, or a compaction that made every write fail; the start-up scan
  can miss a damaged block that a range deletion hides from iterators): the node wrote a CORRUPT marker
  before stopping, and the next start moves the data aside as above.
- A damaged record inside the WAL (which RocksDB refuses to open past, rather than silently dropping what
  follows, see storage/rocksdb.py): the database is reopened keeping the consistent prefix before that
  record, which may lack entries this node had acknowledged.
Either way the node then *rejoins*: the leader re-fills it (entries or a snapshot), and until it has caught
up it neither votes nor campaigns (raft/replica.py). The REJOINING marker file makes that survive restarts:
it is written and synced before anything is moved, and removed only once the node has caught up. The term
and vote survive in the vote file beside the database.

Errors that are not corruption (a full disk, a lock held by another process, permissions, a snapshot in a
format this version does not know) stop the start-up with the error instead: moving healthy data aside
because the disk is full would be a loss.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .raft.snapshot import SnapshotError, read_snapshot_file
from .storage import RocksStore, StorageError, is_corruption
from .storage.encryption import Keyring

log = logging.getLogger(__name__)

DB_DIR = "db"
SNAPSHOT_FILE = "raft.snapshot"
REJOIN_MARKER = "REJOINING"
CORRUPT_MARKER = "CORRUPT"  # written by a node that stopped on corruption found while running


@dataclass
class Opened:
    store: RocksStore
    rejoining: bool  # data was lost or damaged here (now or at an earlier start): no vote until caught up
    problem: str | None = None  # what was found at this start


def open_verified(
    data_dir: Path, on_error: Callable[[str], None] | None = None, keyring: Keyring | None = None
) -> Opened:
    """Open the node's store after verifying it and the snapshot file (see the module docstring). With a
    keyring (encryption at rest, already checked against the KEK) every record is also authenticated."""
    problem: str | None = None
    cipher = keyring.cipher if keyring is not None else None
    store: RocksStore | None = None
    found_running = data_dir / CORRUPT_MARKER
    if found_running.exists():
        problem = f"corruption found while running: {found_running.read_text().strip()}"
        if (data_dir / DB_DIR).exists():
            mark_rejoining(data_dir)
            aside = quarantine(data_dir)
            log.critical("%s; moved to %s and rejoining empty from the cluster", problem, aside)
        found_running.unlink()
        return Opened(RocksStore(data_dir / DB_DIR, on_error=on_error, cipher=cipher), rejoining=True, problem=problem)
    try:
        store = RocksStore(data_dir / DB_DIR, on_error=on_error, cipher=cipher)
    except Exception as exc:
        if not is_corruption(exc):
            raise
        mark_rejoining(data_dir)
        problem = f"the WAL holds a damaged record ({exc}); kept what precedes it"
        try:
            store = RocksStore(data_dir / DB_DIR, on_error=on_error, salvage_wal=True, cipher=cipher)
            log.critical("%s; rejoining", problem)
            problem = None
        except Exception as salvage_exc:
            if not is_corruption(salvage_exc):
                raise
            problem = f"the database does not open: {exc}"
    if store is not None:
        found = store.verify()
        if found:
            problem = "; ".join(found)
    snapshot = data_dir / SNAPSHOT_FILE
    if problem is None and snapshot.exists():
        try:
            read_snapshot_file(snapshot, keyring)
        except SnapshotError as exc:
            if not exc.corrupt:
                raise
            problem = f"the Raft snapshot file is corrupt: {exc}"
    if problem is None:
        assert store is not None
        return Opened(store, rejoining=(data_dir / REJOIN_MARKER).exists())
    if store is not None:
        try:
            store.close()
        except Exception as exc:  # closing flushes, and may hit the same damage: the data goes aside anyway
            log.warning("closing the corrupt database failed: %s", exc)
    mark_rejoining(data_dir)
    aside = quarantine(data_dir)
    log.critical("corrupt data found (%s); moved to %s and rejoining empty from the cluster", problem, aside)
    return Opened(RocksStore(data_dir / DB_DIR, on_error=on_error, cipher=cipher), rejoining=True, problem=problem)


def mark_rejoining(data_dir: Path) -> None:
    """Durably record that this node lost data: until cleared, it starts in rejoining mode."""
    with open(data_dir / REJOIN_MARKER, "w") as f:
        f.write("this node lost or repaired data; it votes again once it has caught up from a leader\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(data_dir)


def mark_corrupt(data_dir: Path, reason: str) -> None:
    """Durably record corruption found while running, for the next start to act on."""
    with open(data_dir / CORRUPT_MARKER, "w") as f:
        f.write(reason[:2000] + "\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(data_dir)


def clear_rejoining(data_dir: Path) -> None:
    marker = data_dir / REJOIN_MARKER
    if marker.exists():
        marker.unlink()
        _fsync_dir(data_dir)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantine(data_dir: Path) -> Path:
    """Move the database and snapshot file into a new corrupt-<time> directory; returns it."""
    aside = data_dir / f"corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 1_000_000:06d}"
    aside.mkdir()
    for name in (DB_DIR, SNAPSHOT_FILE, "snapshot-staging"):
        if (data_dir / name).exists():
            shutil.move(str(data_dir / name), str(aside / name))
    _fsync_dir(data_dir)
    return aside


__all__ = [
    "Opened",
    "StorageError",
    "clear_rejoining",
    "mark_corrupt",
    "mark_rejoining",
    "open_verified",
    "quarantine",
]
