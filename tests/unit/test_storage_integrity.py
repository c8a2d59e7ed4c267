"""RocksDB corruption is loud: a bad block fails scans, gets and start-up checks instead of shortening data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cairn_server.integrity import clear_rejoining, mark_corrupt, open_verified
from cairn_server.raft.journal import RocksJournal
from cairn_server.raft.snapshot import SnapshotError
from cairn_server.storage import RocksStore, StorageError

ROWS = 20_000


def flip(path: Path, fraction: float) -> None:
    offset = int(path.stat().st_size * fraction)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x10]))


@pytest.fixture
def corrupt_db(tmp_path: Path) -> Path:
    """A store with one big flushed SST of state records, two of its data blocks damaged."""
    store = RocksStore(tmp_path / "db")
    batch = store.batch()
    for i in range(ROWS):
        batch.put("state", f"wf-{i:06d}".encode(), os.urandom(100))
    store.write(batch, sync=True)
    store.close()  # flushes the memtable into SST files
    sst = max((tmp_path / "db").glob("*.sst"), key=lambda p: p.stat().st_size)
    flip(sst, 0.2)
    flip(sst, 0.5)
    return tmp_path / "db"


def test_a_scan_over_a_bad_block_raises_instead_of_ending_early(corrupt_db: Path) -> None:
    errors: list[str] = []
    store = RocksStore(corrupt_db, on_error=errors.append)
    for reverse in (False, True):
        with pytest.raises(StorageError):
            sum(1 for _ in store.scan("state", reverse=reverse))
    assert len(errors) == 2 and all("RocksDB read failed" in e for e in errors)
    assert store.verify() and store.verify()[0].startswith("state: Corruption")
    store.close()


def test_open_verified_moves_corrupt_data_aside_and_starts_empty(corrupt_db: Path) -> None:
    data_dir = corrupt_db.parent
    (data_dir / "raft.snapshot").write_bytes(b"not even a header")
    opened = open_verified(data_dir)
    assert opened.rejoining and opened.problem is not None and "Corruption" in opened.problem
    assert sum(1 for _ in opened.store.scan("state")) == 0
    [aside] = data_dir.glob("corrupt-*")
    assert (aside / "db").is_dir() and (aside / "raft.snapshot").exists()
    assert not (data_dir / "raft.snapshot").exists()
    opened.store.close()
    # Healthy now: nothing more is moved, but the node is still rejoining (a restart before it caught up
    # must not give it its vote back) until the replica says it has caught up.
    again = open_verified(data_dir)
    assert again.problem is None and again.rejoining and len(list(data_dir.glob("corrupt-*"))) == 1
    again.store.close()
    clear_rejoining(data_dir)
    last = open_verified(data_dir)
    assert not last.rejoining
    last.store.close()


def test_a_healthy_store_is_opened_as_is(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    batch = store.batch()
    batch.put("state", b"w", b"v")
    store.write(batch, sync=True)
    store.close()
    opened = open_verified(tmp_path)
    assert (opened.problem, opened.rejoining) == (None, False) and opened.store.get("state", b"w") == b"v"
    opened.store.close()


def test_a_snapshot_that_cannot_be_read_stops_the_start_instead_of_moving_data(tmp_path: Path) -> None:
    RocksStore(tmp_path / "db").close()
    (tmp_path / "raft.snapshot").mkdir()  # reading it is an OSError (as EACCES or EIO would be), not damage
    with pytest.raises(SnapshotError, match="cannot read"):
        open_verified(tmp_path)
    assert not list(tmp_path.glob("corrupt-*")) and not (tmp_path / "REJOINING").exists()


_WRITER = """
import os, sys
from cairn_server.storage import RocksStore
from cairn_server.storage.keys import u64
store = RocksStore(sys.argv[1])
for i in range(200):
    batch = store.batch()
    batch.put("raftlog", u64(i), os.urandom(200))
    store.write(batch, sync=True)
os._exit(0)  # a crash: the records live only in the WAL
"""


def test_a_bad_record_in_the_middle_of_the_wal_fails_the_open_and_the_node_rejoins(tmp_path: Path) -> None:
    """RocksDB's default recovery would silently drop every synced record after the bad one; here the open
    fails, and the node keeps the prefix before the damage but rejoins (no vote until caught up)."""
    subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path / "db")], check=True, timeout=60)
    wal = max((tmp_path / "db").glob("*.log"), key=lambda p: p.stat().st_size)
    flip(wal, 0.5)
    with pytest.raises(Exception, match="Corruption"):
        RocksStore(tmp_path / "db")
    opened = open_verified(tmp_path)
    assert opened.rejoining and opened.problem is None
    kept = sum(1 for _ in opened.store.scan("raftlog"))
    assert 0 < kept < 200  # the consistent prefix, not nothing and not everything
    assert not list(tmp_path.glob("corrupt-*"))
    opened.store.close()


def test_the_vote_outlives_a_rebuilt_database(tmp_path: Path) -> None:
    vote_file = tmp_path / "raft-vote.json"
    store = RocksStore(tmp_path / "db")
    journal = RocksJournal(store, sync=True, vote_file=vote_file)
    journal.setCurrentTerm(7, "10.0.0.2:7100")
    store.close()
    fresh = RocksStore(tmp_path / "db2")  # the database is gone; the vote file is not
    again = RocksJournal(fresh, sync=True, vote_file=vote_file)
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (7, "10.0.0.2:7100")
    fresh.close()


def test_corruption_found_while_running_moves_the_data_aside_at_the_next_start(tmp_path: Path) -> None:
    """A damaged block hidden from iterators by a range deletion passes the start-up scan, but a compaction
    reads it and fails every write: the node marks it before stopping, and the next start acts on the mark."""
    store = RocksStore(tmp_path / "db")
    batch = store.batch()
    batch.put("state", b"w", b"v")
    store.write(batch, sync=True)
    store.close()
    mark_corrupt(tmp_path, "Raft journal write failed (Corruption: block checksum mismatch in 000122.sst)")
    opened = open_verified(tmp_path)
    assert opened.rejoining and opened.problem is not None and "000122.sst" in opened.problem
    assert opened.store.get("state", b"w") is None and len(list(tmp_path.glob("corrupt-*"))) == 1
    assert not (tmp_path / "CORRUPT").exists() and (tmp_path / "REJOINING").exists()
    opened.store.close()
