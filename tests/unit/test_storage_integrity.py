"""RocksDB corruption is loud: a bad block fails scans, gets and start-up checks instead of shortening data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cairn_server.integrity import open_verified
from cairn_server.raft.journal import RocksJournal
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
    assert opened.rebuilt_because is not None and "Corruption" in opened.rebuilt_because
    assert sum(1 for _ in opened.store.scan("state")) == 0
    [aside] = data_dir.glob("corrupt-*")
    assert (aside / "db").is_dir() and (aside / "raft.snapshot").exists()
    assert not (data_dir / "raft.snapshot").exists()
    opened.store.close()
    again = open_verified(data_dir)  # healthy now: nothing more is moved
    assert again.rebuilt_because is None and len(list(data_dir.glob("corrupt-*"))) == 1
    again.store.close()


def test_a_healthy_store_is_opened_as_is(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    batch = store.batch()
    batch.put("state", b"w", b"v")
    store.write(batch, sync=True)
    store.close()
    opened = open_verified(tmp_path)
    assert opened.rebuilt_because is None and opened.store.get("state", b"w") == b"v"
    opened.store.close()


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


def test_a_bad_record_in_the_middle_of_the_wal_fails_the_open(tmp_path: Path) -> None:
    """RocksDB's default recovery would silently drop every synced record after the bad one."""
    subprocess.run([sys.executable, "-c", _WRITER, str(tmp_path / "db")], check=True, timeout=60)
    wal = max((tmp_path / "db").glob("*.log"), key=lambda p: p.stat().st_size)
    flip(wal, 0.5)
    with pytest.raises(Exception, match="Corruption"):
        RocksStore(tmp_path / "db")
    opened = open_verified(tmp_path)
    assert opened.rebuilt_because is not None and "does not open" in opened.rebuilt_because
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
