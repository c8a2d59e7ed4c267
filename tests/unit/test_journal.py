"""The RocksDB Raft journal: persistence, atomic compaction across kill -9 (trap 2), synced term/vote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cairn_server.raft.journal import RocksJournal
from cairn_server.storage import RocksStore


def open_journal(path: Path) -> tuple[RocksStore, RocksJournal]:
    store = RocksStore(path)
    return store, RocksJournal(store, sync=True)


def test_entries_term_vote_survive_reopen(tmp_path: Path) -> None:
    store, j = open_journal(tmp_path)
    for i in range(1, 11):
        j.add(b"cmd%d" % i, i, 1 + i // 5)
    j.setCurrentTerm(7, "127.0.0.1:7001")
    j.begin()
    j.setRaftCommitIndex(9)
    j.flush()
    store.close()
    store, j = open_journal(tmp_path)
    assert len(j) == 10 and j[0] == (b"cmd1", 1, 1) and j[-1] == (b"cmd10", 10, 3)
    assert j.getCurrentTerm() == 7 and j.getVotedForNodeId() == "127.0.0.1:7001"
    assert j.getRaftCommitIndex() == 9
    assert [e[1] for e in j[2:4]] == [3, 4]
    store.close()


def test_truncate_and_compact(tmp_path: Path) -> None:
    store, j = open_journal(tmp_path)
    for i in range(1, 11):
        j.add(b"c", i, 1)
    j.deleteEntriesFrom(7)  # drop indexes 8..10
    j.deleteEntriesTo(3)  # drop indexes 1..3
    assert [e[1] for e in j] == [4, 5, 6, 7]
    store.close()
    store, j = open_journal(tmp_path)
    assert [e[1] for e in j] == [4, 5, 6, 7]
    j.clear()
    assert len(j) == 0
    store.close()


def test_batched_writes_are_visible_only_after_flush(tmp_path: Path) -> None:
    store, j = open_journal(tmp_path)
    j.begin()
    j.add(b"a", 1, 1)
    assert store.get("raftlog", (1).to_bytes(8, "big")) is None
    j.flush()
    assert store.get("raftlog", (1).to_bytes(8, "big")) == (1).to_bytes(8, "big") + b"a"
    store.close()


_COMPACTOR = r"""
import sys
from cairn_server.raft.journal import RocksJournal
from cairn_server.storage import RocksStore
store = RocksStore(sys.argv[1]); j = RocksJournal(store, sync=True)
if len(j) == 0:
    for i in range(1, 3001):
        j.add(b"x" * 200, i, 1)
print("ready", flush=True)
nxt = j[-1][1] + 1
while True:  # append and compact forever, until killed
    for _ in range(50):
        j.add(b"y" * 200, nxt, 2); nxt += 1
    j.deleteEntriesTo(40)
"""


def test_kill_during_compaction_never_loses_the_end_of_the_log(tmp_path: Path) -> None:
    """Trap 2: FileJournal rewrites its file in place when compacting; a kill -9 there leaves a prefix.

    Here compaction is one range delete in a WriteBatch, so after any kill the journal is
    contiguous and ends where the last synced append ended.
    """
    db = tmp_path / "db"
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _COMPACTOR, str(db)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.03 * round_)  # let it run for a varying while, then kill mid-loop
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store, j = open_journal(db)
        indexes = [e[1] for e in j]
        assert indexes, "journal emptied"
        assert indexes == list(range(indexes[0], indexes[0] + len(indexes))), "journal has a gap"
        assert len(j) >= 40, "compaction dropped more than it should"
        store.close()
