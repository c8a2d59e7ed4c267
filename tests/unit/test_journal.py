"""The RocksDB Raft journal: persistence, atomic compaction across kill -9 (trap 2), synced term/vote."""

from __future__ import annotations

import os
import subprocess
import sys
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
path, round_, appends, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = RocksStore(path); j = RocksJournal(store, sync=True)
if len(j) == 0:
    for i in range(1, 3001):
        j.add(b"x" * 200, i, 1)
nxt = j[-1][1] + 1
for _ in range(appends):
    j.add(b"r%d-%d" % (round_, nxt), nxt, 2)  # synced before add returns (sync=True)
    nxt += 1
print("durable", j[0][1], j[-1][1], flush=True)
print("compacting to", j[len(j) - keep][1], flush=True)
j.deleteEntriesTo(len(j) - keep)  # the armed failpoint exits in here
print("compacted", flush=True)
"""

# (failpoint, exit code): before the range delete is written; right after it was written (and synced).
_KILL_POINTS = [("journal.compact", 97), ("journal.compact.written", 98)]


def test_kill_during_compaction_never_loses_the_end_of_the_log(tmp_path: Path) -> None:
    """Trap 2: FileJournal rewrites its file in place when compacting; a kill -9 there leaves a prefix.

    Here compaction is one range delete in a WriteBatch: a crash at either failpoint inside
    deleteEntriesTo leaves the journal contiguous, ending at the last synced append, and compacted
    either not at all (before the write) or entirely (after it).
    """
    db = tmp_path / "db"
    for round_ in range(8):
        point, code = _KILL_POINTS[round_ % 2]
        appends, keep = 60 + 37 * round_, 40 + 3 * round_
        proc = subprocess.run(
            [sys.executable, "-c", _COMPACTOR, str(db), str(round_), str(appends), str(keep)],
            env={**os.environ, "CAIRN_FAILPOINTS": f"{point}=exit({code})"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Killed at the failpoint: its exit code, its log line, after the marker and before the end.
        assert proc.returncode == code, (point, proc.returncode, proc.stdout, proc.stderr)
        assert f"failpoint {point}: exiting with {code}" in proc.stderr, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[-1].startswith("compacting to") and "compacted" not in lines, proc.stdout
        first, last = (int(x) for x in lines[-2].removeprefix("durable ").split())
        compacted_to = int(lines[-1].removeprefix("compacting to "))

        store, j = open_journal(db)
        indexes = [e[1] for e in j]
        assert indexes == list(range(indexes[0], indexes[0] + len(indexes))), f"round {round_}: journal has a gap"
        assert indexes[-1] == last and j[-1] == (b"r%d-%d" % (round_, last), last, 2), f"round {round_}: end lost"
        expected_first = first if point == "journal.compact" else compacted_to
        assert indexes[0] == expected_first, f"round {round_}, killed at {point}: compaction not atomic"
        store.close()


def test_bytes_counts_the_commands_held_across_truncation_compaction_and_reopen(tmp_path: Path) -> None:
    """raft.snapshot_log_bytes compacts on this count: it must follow every change of the log."""
    store, journal = open_journal(tmp_path / "db")
    for i in range(1, 11):
        journal.add(b"c" * (100 * i), i, 1)
    assert journal.bytes == sum(100 * i for i in range(1, 11))
    journal.deleteEntriesFrom(8)  # drops indexes 9 and 10
    assert journal.bytes == sum(100 * i for i in range(1, 9))
    journal.deleteEntriesTo(3)  # drops indexes 1 to 3
    assert journal.bytes == sum(100 * i for i in range(4, 9))
    store.close()
    store, reopened = open_journal(tmp_path / "db")
    assert reopened.bytes == sum(100 * i for i in range(4, 9))
    reopened.clear()
    assert reopened.bytes == 0
    store.close()
