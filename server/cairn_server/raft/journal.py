"""pysyncobj's Raft journal, kept in the node's RocksDB (column families raftlog and raftmeta).

Why not pysyncobj's FileJournal (RAFT-NOTES): it never msyncs before acknowledging, has no record
checksums, rewrites the file in place on compaction (a crash there loses the end of the log) and
caps the file at 4 GiB. Here:
- entries are written in WriteBatches; with durability "fsync" a batch is synced to disk before
  this node acknowledges it (followers) or counts itself towards a commit (leader);
- compaction and truncation are single range deletes, atomic across a crash;
- term and vote are synced immediately, before any vote or heartbeat that reflects them is sent, and
  also kept in a small file beside the database (`vote_file`), so that a node whose database is found
  corrupt and rebuilt still remembers its vote (voting twice in one term could elect two leaders);
- a write or sync that fails stops the node (`on_fatal`): after a failed fsync the kernel may have
  dropped the dirty pages, so retrying and acknowledging would claim durability we do not have (the
  "fsyncgate" lesson). The node restarts from what is really on disk and catches up from its peers.

Failpoints (failpoints.py): `journal.sync` before each sync (slow or failing fsync), `journal.compact`
and `journal.compact.written` around compaction. With CAIRN_FAILPOINTS_TRACE set, every sync is traced
as `journal.synced` (or `journal.written` without fsync) with the last Raft index it covers.

Entries between compactions are also held in memory (pysyncobj indexes the journal by position),
which the snapshot threshold bounds.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from pysyncobj.journal import Journal

from .. import failpoints
from ..storage import Batch, RocksStore
from ..storage.keys import read_u64, u64

log = logging.getLogger(__name__)

_TERM, _VOTE, _COMMIT = b"term", b"voted_for", b"commit_index"

Entry = tuple[bytes, int, int]  # (command, raft index, term), as pysyncobj expects


def _raise(reason: str) -> None:
    raise OSError(reason)


class RocksJournal(Journal):
    def __init__(
        self,
        store: RocksStore,
        *,
        sync: bool,
        on_fatal: Callable[[str], None] = _raise,
        vote_file: Path | None = None,
    ):
        self._store = store
        self._sync = sync
        self._on_fatal = on_fatal
        self._vote_file = vote_file
        self._pending: Batch | None = None
        self._pending_last = 0  # highest Raft index in the pending batch (for the trace)
        self._lock = threading.RLock()
        self._entries: list[Entry] = []
        self.bytes = 0  # the commands held (in memory too): compaction is also triggered by this
        for key, value in store.scan("raftlog"):
            self._entries.append((value[8:], read_u64(key), read_u64(value[:8])))
            self.bytes += len(value) - 8
        raw_term = store.get("raftmeta", _TERM)
        self._term = read_u64(raw_term) if raw_term else 0
        raw_vote = store.get("raftmeta", _VOTE)
        self._voted_for = raw_vote.decode() if raw_vote else None
        raw_commit = store.get("raftmeta", _COMMIT)
        self._commit = read_u64(raw_commit) if raw_commit else 0
        saved = self._read_vote_file()
        if saved is not None and saved[0] > self._term:
            log.warning("term %d and vote %r taken from %s (the database had term %d)", *saved, vote_file, self._term)
            self._term, self._voted_for = saved

    def _read_vote_file(self) -> tuple[int, str | None] | None:
        if self._vote_file is None or not self._vote_file.exists():
            return None
        try:
            doc = json.loads(self._vote_file.read_text())
            return int(doc["term"]), doc["voted_for"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Without it a rebuilt node could vote twice in one term: refuse to start rather than guess.
            raise OSError(f"{self._vote_file} (this node's Raft term and vote) is unreadable: {exc}") from exc

    def _write_vote_file(self, term: int, voted_for: str | None) -> None:
        if self._vote_file is None:
            return
        tmp = self._vote_file.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"term": term, "voted_for": voted_for}, f)
            if self._sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self._vote_file)
        if self._sync:
            fd = os.open(self._vote_file.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    # ---- batching: one fsync for everything a tick or a message added ------------------------

    def begin(self) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = self._store.batch()

    def flush(self) -> None:
        """Make everything added so far durable; called before any acknowledgement is sent."""
        with self._lock:
            batch, self._pending = self._pending, None
            last, self._pending_last = self._pending_last, 0
            if batch is not None and len(batch):
                self._persist(batch, last)

    def rebatch(self) -> None:
        """Write the pending batch now and keep batching (a key rotation: every batch sealed under the old data
        key is then written before the re-encryption pass starts)."""
        with self._lock:
            if self._pending is not None:
                self.flush()
                self.begin()

    def _write(self, fill, *, force_sync: bool = False, last: int = 0) -> None:
        with self._lock:
            if self._pending is not None and not force_sync:
                fill(self._pending)
                self._pending_last = max(self._pending_last, last)
                return
            if self._pending is not None:
                self.flush()
            batch = self._store.batch()
            fill(batch)
            self._persist(batch, last)

    def _persist(self, batch: Batch, last: int) -> None:
        """Write (and with durability fsync, sync) one batch; any failure stops the node."""
        try:
            self._store.write(batch)
            if self._sync:
                failpoints.hit("journal.sync")
                self._store.sync_wal()
        except Exception as exc:
            self._on_fatal(f"Raft journal write failed ({exc}); entries that may not be durable are never acknowledged")
            raise
        if failpoints.tracing():
            failpoints.trace("journal.synced" if self._sync else "journal.written", last_index=last)

    # ---- pysyncobj's Journal interface ----------------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        command = bytes(command)
        self._write(lambda b: b.put("raftlog", u64(idx), u64(term) + command), last=idx)
        self._entries.append((command, idx, term))
        self.bytes += len(command)

    def clear(self) -> None:
        self._write(lambda b: b.delete_range("raftlog", u64(0), u64(2**64 - 1)))
        self._entries = []
        self.bytes = 0

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # pysyncobj's name
        """Drop entries at positions >= entryFrom (a conflicting suffix)."""
        if entryFrom >= len(self._entries):
            return
        first = self._entries[entryFrom][1]
        self._write(lambda b: b.delete_range("raftlog", u64(first), u64(2**64 - 1)))
        self.bytes -= sum(len(e[0]) for e in self._entries[entryFrom:])
        del self._entries[entryFrom:]

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop entries at positions < entryTo (compaction after a snapshot)."""
        if entryTo <= 0 or not self._entries:
            return
        failpoints.hit("journal.compact")
        end = self._entries[entryTo][1] if entryTo < len(self._entries) else self._entries[-1][1] + 1
        self._write(lambda b: b.delete_range("raftlog", u64(0), u64(end)))
        failpoints.hit("journal.compact.written")
        self.bytes -= sum(len(e[0]) for e in self._entries[:entryTo])
        self._entries = self._entries[entryTo:]

    def __getitem__(self, item):  # int or slice, as pysyncobj uses it
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        self.flush()

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        # Not synced on its own: a lower commit index after a crash only means more is replayed
        # from the journal, which apply skips by the stored applied index.
        if raftCommitIndex != self._commit:
            self._commit = raftCommitIndex
            with self._lock:
                if self._pending is not None:
                    self._pending.put("raftmeta", _COMMIT, u64(raftCommitIndex))

    def getRaftCommitIndex(self) -> int:
        return self._commit

    def setCurrentTerm(self, term: int, votedForNodeId) -> None:
        def fill(b: Batch) -> None:
            b.put("raftmeta", _TERM, u64(term))
            if votedForNodeId is None:
                b.delete("raftmeta", _VOTE)
            else:
                b.put("raftmeta", _VOTE, str(votedForNodeId).encode())

        self._write(fill, force_sync=True)
        vote = None if votedForNodeId is None else str(votedForNodeId)
        try:
            self._write_vote_file(term, vote)
        except OSError as exc:
            self._on_fatal(f"writing {self._vote_file} failed ({exc}); a vote must be durable before it is sent")
            raise
        self._term, self._voted_for = term, votedForNodeId

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self):
        return self._voted_for

    def onOneSecondTimer(self) -> None:
        self._write(lambda b: b.put("raftmeta", _COMMIT, u64(self._commit)))

    # ---- for snapshots and tests -----------------------------------------------------------------

    def trim_to(self, index: int) -> None:
        """Drop every entry below raft index `index` (keeps it and what follows)."""
        for pos, entry in enumerate(self._entries):
            if entry[1] == index:
                self.deleteEntriesTo(pos)
                return

    def entry_at(self, index: int) -> Entry | None:
        if not self._entries:
            return None
        pos = index - self._entries[0][1]
        return self._entries[pos] if 0 <= pos < len(self._entries) else None
