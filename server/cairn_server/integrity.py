"""Start-up integrity check: a node never serves, votes or replicates from data that fails a checksum.

Before the replica starts, every RocksDB block (state and Raft journal) and the Raft snapshot file are
read and their checksums verified. If anything is corrupt, the damaged files are moved aside into
`DATA_DIR/corrupt-<time>/` (kept for an operator, never read again), the node starts empty and rejoins:
the leader re-fills it with entries or a snapshot, and until it has caught up it neither votes nor
campaigns (raft/replica.py). Its term and vote survive in the vote file beside the database.

Errors that are not corruption (a full disk, a lock held by another process, permissions) stop the
start-up with the error instead: moving healthy data aside because the disk is full would be a loss.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .raft.snapshot import SnapshotError, read_snapshot_file
from .storage import RocksStore, StorageError, is_corruption

log = logging.getLogger(__name__)

DB_DIR = "db"
SNAPSHOT_FILE = "raft.snapshot"


@dataclass
class Opened:
    store: RocksStore
    rebuilt_because: str | None  # None: the data passed every check


def open_verified(data_dir: Path, on_error: Callable[[str], None] | None = None) -> Opened:
    """Open the node's store after verifying it and the snapshot file; rebuild empty if either is corrupt."""
    problem: str | None = None
    store: RocksStore | None = None
    try:
        store = RocksStore(data_dir / DB_DIR, on_error=on_error)
    except Exception as exc:
        if not is_corruption(exc):
            raise
        problem = f"the database does not open: {exc}"
    if store is not None:
        found = store.verify()
        if found:
            problem = "; ".join(found)
    snapshot = data_dir / SNAPSHOT_FILE
    if problem is None and snapshot.exists():
        try:
            read_snapshot_file(snapshot)
        except SnapshotError as exc:
            problem = f"the Raft snapshot file is corrupt: {exc}"
    if problem is None:
        assert store is not None
        return Opened(store, None)
    if store is not None:
        try:
            store.close()
        except Exception as exc:  # closing flushes, and may hit the same damage: the data goes aside anyway
            log.warning("closing the corrupt database failed: %s", exc)
    aside = quarantine(data_dir)
    log.critical("corrupt data found (%s); moved to %s and rejoining empty from the cluster", problem, aside)
    return Opened(RocksStore(data_dir / DB_DIR, on_error=on_error), problem)


def quarantine(data_dir: Path) -> Path:
    """Move the database and snapshot file into a new corrupt-<time> directory; returns it."""
    aside = data_dir / f"corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 1_000_000:06d}"
    aside.mkdir()
    for name in (DB_DIR, SNAPSHOT_FILE, "snapshot-staging"):
        if (data_dir / name).exists():
            shutil.move(str(data_dir / name), str(aside / name))
    return aside


__all__ = ["Opened", "StorageError", "open_verified", "quarantine"]
