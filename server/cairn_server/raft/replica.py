"""The pysyncobj node: our journal, our snapshots, and the overrides that keep our promises.

Overrides of pysyncobj 0.3.17 internals (name-mangled; the version is pinned and tests cover each):
- Trap 1: a snapshot-transfer message never advances the commit index, so a rejoining old
  leader cannot "commit" (and acknowledge) its own never-replicated entries.
- Durability: journal writes made while handling a message or proposing are batched and synced
  before this node acknowledges (`__sendNextNodeIdx`) or counts itself towards a commit.
- Trap 6: pysyncobj sends an entry at least `appendEntriesBatchSizeBytes` long in chunks ("transmission"),
  which it ends by comparing offsets in the pickled entry with the command's length (so it can send
  "finish" before the last chunk), and which bypasses our trap 5 guard. Entries are capped below that size
  (`max_entry_bytes`, checked at every proposal), so no entry is ever sent that way.
- Failover: when the connection to the leader closes (its process died), a follower campaigns after 10-30% of
  an election timeout (staggered by rank) instead of a whole one, and followers keep their links to each
  other alive so that the vote requests are not dropped on an idle connection.
- Rejoining after data loss (`rejoining=True`: the node found its data corrupt and started empty): it
  neither votes nor campaigns until it has caught up to a commit index learned from a leader at least
  two election timeouts after it started; entries it acknowledged before the loss may be counted in a
  commit, and a vote for a candidate without them could elect a leader that lost them. A leader lowers a
  follower's match index when the follower answers "reset" (its log does not hold what the leader
  thought), so an acknowledgement the follower has since lost stops counting towards commits.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pysyncobj.syncobj as pso
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
from pysyncobj.syncobj import _RAFT_STATE

from cairn_server.internal import command_pb2

from ..config import RaftConfig
from ..errors import DeadlineExceeded, Unavailable
from ..statemachine import StateMachine
from .journal import RocksJournal
from .read_index import ReadRounds
from .snapshot import Snapshots

log = logging.getLogger(__name__)

_JOURNAL_SENTINEL = "cairn-rocksdb-journal"
_REGULAR = bytes([pso._COMMAND_TYPE.REGULAR])
_ENTRY_ENVELOPE = 64 * 1024  # pysyncobj's framing of a command in a log entry, with room to spare
_KEEPALIVE = 0.25  # seconds between a follower's messages to each peer (well inside connectionTimeout, >= 1 s)
_journal_patch_lock = threading.Lock()
_FAIL_NAMES = {v: k for k, v in vars(FAIL_REASON).items() if not k.startswith("_")}


_ROLE_NAMES = {_RAFT_STATE.FOLLOWER: "follower", _RAFT_STATE.CANDIDATE: "candidate", _RAFT_STATE.LEADER: "leader"}


@dataclass(frozen=True)
class PeerStatus:
    raft_address: str
    connected: bool
    match_index: int


@dataclass(frozen=True)
class RaftStatus:
    """This member's view of Raft, in our terms (the rest of the node never reads pysyncobj's names)."""

    role: str  # follower | candidate | leader
    term: int
    commit_index: int
    last_applied: int
    log_entries: int
    last_log_index: int
    has_quorum: bool
    leader_address: str | None
    peers: dict[str, PeerStatus]


def fail_reason_name(error: int) -> str:
    """pysyncobj's failure code by name (QUEUE_FULL, LEADER_CHANGED, ...) for error messages."""
    return _FAIL_NAMES.get(error, str(error))


def role_name(raw_state: int) -> str:
    """pysyncobj's role number (as passed to the role-change callback) as follower/candidate/leader."""
    return _ROLE_NAMES.get(raw_state, "unknown")


class Replica(SyncObj):
    """One Raft member whose replicated state is the Cairn StateMachine."""

    def __init__(
        self,
        *,
        self_address: str,
        peer_addresses: list[str],
        secret: str | None,
        journal: RocksJournal,
        machine: StateMachine,
        snapshots: Snapshots,
        tuning: RaftConfig,
        on_state_changed: Callable[[int, int], None] | None = None,
        max_entry_bytes: int,
        rejoining: bool = False,
        on_rejoined: Callable[[], None] | None = None,
    ):
        self._machine = machine
        self._journal = journal
        self._max_entry_bytes = max_entry_bytes
        self._snapshot_log_bytes = tuning.snapshot_log_bytes
        self._snapshot_entries = tuning.snapshot_entries
        self._preflushing: threading.Thread | None = None
        self._rejoining = rejoining
        self._on_rejoined = on_rejoined
        self._election_timeout = tuning.election_timeout
        self._rejoin_learn_after = time.monotonic() + 2 * tuning.election_timeout
        self._rejoin_target: int | None = None
        self._rejoin_leader: tuple[object, float] | None = None  # (leader node, when first heard from)
        self._rejoin_nudged = 0.0
        if rejoining:
            log.warning("rejoining after data loss: not voting until caught up from a leader")
        # Callbacks of the commands proposed here and not answered yet. pysyncobj fails a leader's own pending
        # commands only when their index is applied (DISCARDED) -- not when it steps down -- so a deposed leader
        # would keep its callers waiting until their deadline: we fail them with LEADER_CHANGED (outcome unknown).
        self._pending_lock = threading.Lock()
        self._pending: dict[int, Callable[[object, int], None]] = {}
        self._pending_seq = 0
        self._on_role_changed = on_state_changed
        # Read index: rounds of leadership confirmation (raft/read_index.py); `_echo` is the read number of the
        # append-entries message being handled (a follower's answer carries it back).
        self._reads = ReadRounds(len(peer_addresses) + 1)
        self._echo: int | None = None
        self._read_wanted = False
        self._last_keepalive = 0.0
        self._applies_paused = False
        snapshots.pause_applies = self._pause_applies
        self._peer_addresses = list(peer_addresses)
        conf = SyncObjConf(
            password=secret,
            bindAddress=self_address,
            journalFile=_JOURNAL_SENTINEL,
            fullDumpFile=str(snapshots.dump_file),
            serializer=snapshots.serialize,
            deserializer=snapshots.deserialize,
            serializeChecker=snapshots.check,
            useFork=False,
            logCompactionSplit=False,  # forced compaction must not wait for a time slot
            logCompactionMinEntries=tuning.snapshot_entries,
            logCompactionMinTime=tuning.snapshot_interval,
            commandsWaitLeader=False,
            appendEntriesUseBatch=False,
            appendEntriesBatchSizeBytes=max_entry_bytes + _ENTRY_ENVELOPE,  # trap 6: never chunked
            appendEntriesPeriod=tuning.heartbeat_interval,
            autoTickPeriod=min(0.05, tuning.heartbeat_interval / 2),
            raftMinTimeout=tuning.election_timeout,
            raftMaxTimeout=tuning.election_timeout * 2,
            leaderFallbackTimeout=tuning.election_timeout * 2,
            connectionRetryTime=min(1.0, tuning.election_timeout / 2),
            connectionTimeout=max(1.0, tuning.election_timeout * 2),
            dynamicMembershipChange=False,
            onStateChanged=self._state_changed,
        )
        with _journal_patch_lock:
            original = pso.createJournal
            pso.createJournal = lambda name: journal if name == _JOURNAL_SENTINEL else original(name)
            try:
                super().__init__(self_address, peer_addresses, conf)
            finally:
                pso.createJournal = original
        transport = self._SyncObj__transport
        send = transport.send

        def stamped_send(node, message: dict) -> None:
            kind = message.get("type")
            if kind == "append_entries" and self._isLeader():
                message["cairn_read"] = self._reads.stamp()
            elif kind == "next_node_idx" and self._echo is not None:
                message["cairn_read"] = self._echo
            send(node, message)

        transport.send = stamped_send  # pysyncobj sends through the instance attribute

    # ---- the one replicated method ------------------------------------------------------------

    @replicated
    def _cairn_apply(self, payload: bytes) -> command_pb2.ApplyResult:
        # Inside apply, raftLastApplied + 1 is the index of the entry being applied.
        return self._machine.apply(payload, self.raftLastApplied + 1)

    def propose(self, payload: bytes, timeout: float) -> command_pb2.ApplyResult:
        """Replicate and apply one command; returns once this node has applied it."""
        done = threading.Event()
        box: dict[str, object] = {}

        def callback(result: object, error: int) -> None:
            box["result"], box["error"] = result, error
            done.set()

        self.propose_async(payload, callback)
        if not done.wait(timeout):
            raise DeadlineExceeded(
                "the write was not committed in time; its outcome is unknown (retry with the same request_id)",
                leader=self.leader_address(),
            )
        if box["error"] != FAIL_REASON.SUCCESS:
            name = fail_reason_name(box["error"])  # type: ignore[arg-type]
            raise Unavailable(
                f"replication failed ({name}); the outcome is unknown (retry with the same request_id)",
                leader=self.leader_address(),
            )
        return box["result"]  # type: ignore[return-value]

    def propose_async(self, payload: bytes, callback: Callable[[object, int], None]) -> None:
        if len(payload) > self._max_entry_bytes:  # callers cap their commands; this keeps trap 6 closed
            log.error("refusing to propose a %d-byte entry (the cap is %d bytes)", len(payload), self._max_entry_bytes)
            callback(None, FAIL_REASON.REQUEST_DENIED)
            return
        self._cairn_apply(payload, callback=self._answer_once(callback))

    def _answer_once(self, callback: Callable[[object, int], None]) -> Callable[[object, int], None]:
        """`callback`, called once: with pysyncobj's answer, or with LEADER_CHANGED if this node steps down first."""
        with self._pending_lock:
            self._pending_seq += 1
            key = self._pending_seq
            self._pending[key] = callback

        def once(result: object, error: int) -> None:
            with self._pending_lock:
                if self._pending.pop(key, None) is None:
                    return  # already failed at a step-down
            callback(result, error)

        return once

    def read_index(self, timeout: float) -> int | None:
        """On the leader: an index that reflects every write committed before this call, once a majority has
        confirmed (after this call) that this node still leads; None when the read index cannot be used (not
        the leader, or nothing committed in this term yet: use the read barrier). Raises Unavailable when this
        node stops leading first, DeadlineExceeded at the timeout."""
        if not self._isLeader():
            return None
        term, commit = self.raftCurrentTerm, self.raftCommitIndex
        entry = self._journal.entry_at(commit)
        if entry is None or entry[2] != term:
            return None
        confirmed = self._reads.open()
        self._read_wanted = True
        self._wake_raft_thread()  # to send the heartbeat now
        try:
            confirmed.result(timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                "linearizable read timed out confirming the leadership; the cluster may have no quorum",
                leader=self.leader_address(),
            ) from None
        if self.raftCurrentTerm != term or not self._isLeader():
            raise Unavailable("leadership changed during the read", leader=self.leader_address())
        return commit

    def _state_changed(self, old: int, new: int) -> None:
        if old == _RAFT_STATE.LEADER or new == _RAFT_STATE.LEADER:
            self._reads.reset(lambda: Unavailable("leadership changed during the read", leader=self.leader_address()))
        if old == _RAFT_STATE.LEADER and new != _RAFT_STATE.LEADER:
            with self._pending_lock:
                pending, self._pending = list(self._pending.values()), {}
            for callback in pending:
                callback(None, FAIL_REASON.LEADER_CHANGED)
        if self._on_role_changed is not None:
            self._on_role_changed(old, new)

    # ---- views -------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._isLeader()

    def term(self) -> int:
        return self.raftCurrentTerm

    def last_applied(self) -> int:
        return self.raftLastApplied

    def applied_index(self) -> int:
        """What the state machine has applied (durably, with its effects)."""
        return self._machine.applied_index

    def compact_now(self) -> None:
        """Take a snapshot and compact the journal now (operators, tests)."""
        self.forceLogCompaction()

    def stop(self) -> None:
        self.destroy_synchronous()

    def status(self) -> RaftStatus:
        raw = self.getStatus()
        peers = {
            address: PeerStatus(
                address,
                raw.get(f"partner_node_status_server_{address}") == 2,
                raw.get(f"match_idx_server_{address}") or 0,
            )
            for address in self._peer_addresses
        }
        return RaftStatus(
            role=_ROLE_NAMES.get(raw["state"], "unknown"),
            term=raw["raft_term"],
            commit_index=raw["commit_idx"],
            last_applied=raw["last_applied"],
            log_entries=raw["log_len"],
            last_log_index=self.last_log_index(),
            has_quorum=raw["has_quorum"],
            leader_address=self.leader_address(),
            peers=peers,
        )

    def commit_index(self) -> int:
        return self.raftCommitIndex

    def last_log_index(self) -> int:
        return self._journal[-1][1] if len(self._journal) else 0

    def leader_address(self) -> str | None:
        leader = self._getLeader()
        return leader.address if leader is not None else None

    # ---- overrides of pysyncobj internals ------------------------------------------------------

    @property
    def rejoining(self) -> bool:
        return self._rejoining

    def _rejoin_progress(self, node, message: dict) -> bool:
        """While rejoining: False for a vote request (ignored); learns the catch-up target from a leader.

        The target is the commit index of a leader this node has heard from for an election timeout (a new
        leader's commit index lags until its own first entry commits), learned at least two election
        timeouts after start. A leader at a lower term than this node's (which a rejoining node, never
        campaigning, could not otherwise tell) is made to step down by a vote request that no one grants."""
        kind = message.get("type")
        if kind == "request_vote":
            return False
        if kind != "append_entries":
            return True
        now = time.monotonic()
        if message.get("term", -1) < self.raftCurrentTerm:
            if now - self._rejoin_nudged > self._election_timeout:
                self._rejoin_nudged = now
                self._SyncObj__transport.send(
                    node,
                    {"type": "request_vote", "term": self.raftCurrentTerm, "last_log_index": 0, "last_log_term": 0},
                )
            return True
        if self._rejoin_leader is None or self._rejoin_leader[0] != node:
            self._rejoin_leader = (node, now)
        heard_long_enough = now - self._rejoin_leader[1] >= self._election_timeout
        if self._rejoin_target is None and now >= self._rejoin_learn_after and heard_long_enough:
            self._rejoin_target = message.get("commit_index", 0)
        return True

    def _onTick(self, timeToWait=0.0):
        self._keep_links_alive()
        self._preflush_before_snapshot()
        if self._read_wanted and self._isLeader():
            self._read_wanted = False
            self._SyncObj__sendAppendEntries()  # a heartbeat (and any new entries) carrying the read number
        if self._journal.bytes > self._snapshot_log_bytes:
            self.forceLogCompaction()  # raft.snapshot_log_bytes: big entries (groups) fill memory before the count
        if self._rejoining:
            if self._rejoin_target is not None and self.raftLastApplied >= self._rejoin_target:
                self._rejoining = False
                log.warning("caught up to index %d after rejoining: voting again", self._rejoin_target)
                self._SyncObj__raftElectionDeadline = pso.monotonicTime() + self._SyncObj__generateRaftTimeout()
                self._SyncObj__transferInProgress = False
                if self._on_rejoined is not None:
                    self._on_rejoined()
            else:
                self._SyncObj__raftElectionDeadline = pso.monotonicTime() + 3600  # never campaign meanwhile
        SyncObj._onTick(self, timeToWait)

    def _SyncObj__onMessageReceived(self, node, message):
        if self._rejoining and not self._rejoin_progress(node, message):
            return
        kind = message.get("type")
        if kind == "next_node_idx" and "cairn_read" in message and self._isLeader():
            self._reads.answered(node, message["cairn_read"])
        self._echo = message.get("cairn_read") if kind == "append_entries" else None
        try:
            self._handle_message(node, message)
        finally:
            self._echo = None

    def _handle_message(self, node, message) -> None:
        if message.get("type") == "next_node_idx" and message.get("reset") and not message.get("success"):
            self._lower_match_index(node, message.get("next_node_idx"))
        self._journal.begin()
        try:
            if message.get("type") == "append_entries" and message.get("term", -1) >= self.raftCurrentTerm:
                if "prevLogIdx" not in message:
                    # Trap 1: a snapshot transfer carries the leader's commit index, and pysyncobj would set
                    # ours to min(that, our last index) -- "committing" stale entries we never replicated.
                    message = dict(message)
                    message["commit_index"] = min(message.get("commit_index", 0), self.raftCommitIndex)
                elif message.get("transmission") is None:
                    message = self._keep_matching_entries(node, message)
                    if message is None:
                        return
            SyncObj._SyncObj__onMessageReceived(self, node, message)
        finally:
            self._journal.flush()

    def _SyncObj__onNodeDisconnected(self, node):
        SyncObj._SyncObj__onNodeDisconnected(self, node)
        if self._rejoining or self._isLeader() or node != self._getLeader():
            return
        # The leader's connection closed: most often its process died (a paused or cut-off leader keeps its
        # connection, and is detected by the election timeout). Campaign after a short random delay instead of a
        # full election timeout; a live leader that reconnects first resets the deadline with its next message.
        soon = pso.monotonicTime() + self._early_campaign_delay(node)
        if soon < self._SyncObj__raftElectionDeadline:
            self._SyncObj__raftElectionDeadline = soon

    def _early_campaign_delay(self, leader) -> float:
        """10% to 30% of an election timeout, staggered by rank among the survivors (sorted addresses) so
        that two of them do not campaign at the same moment and split the vote."""
        survivors = sorted(
            [self._SyncObj__selfNode.address]
            + [n.address for n in self._SyncObj__otherNodes if n != leader and hasattr(n, "address")]
        )
        rank = survivors.index(self._SyncObj__selfNode.address)
        share = 0.1 + 0.2 * rank / max(1, len(survivors) - 1)
        return (share + random.uniform(0.0, 0.02)) * self._election_timeout

    def _keep_links_alive(self) -> None:
        """pysyncobj drops a message (and the connection) when it sends on a connection that has read nothing for
        `connectionTimeout`: followers never talk to each other, so the first vote request after a leader dies
        was lost on every idle follower-to-follower link and the election took a second round. A tiny message
        to every peer each `_KEEPALIVE` keeps every link read from (pysyncobj ignores unknown types)."""
        now = time.monotonic()
        if self._isLeader() or now - self._last_keepalive < _KEEPALIVE:
            return
        self._last_keepalive = now
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, {"type": "cairn_keepalive"})

    def _lower_match_index(self, node, next_index: int | None) -> None:
        match = getattr(self, "_SyncObj__raftMatchIndex", None)
        if match is not None and next_index is not None and node in match:
            match[node] = min(match[node], next_index - 1)

    def _keep_matching_entries(self, node, message: dict) -> dict | None:
        """Trap 5: pysyncobj's follower deletes every entry after prevLogIdx whenever there are any, even
        when they match the leader's (Raft deletes only on a conflict). A stale message (an acknowledgement
        that arrived late moved the leader's nextIndex back; the resent batch is capped in size) then cuts
        off entries the leader has already counted towards a commit: lose the leader, and committed writes
        are gone. It also sets the commit index to min(leader's, our last index), which would commit a
        stale tail that no message has verified.

        Here entries we already hold with the same term are skipped, so pysyncobj only truncates at a real
        conflict; when every entry is already here we acknowledge exactly what this message verified and
        touch nothing after it, and the commit index never passes what the message verified.
        """
        prev_index, prev_term = message["prevLogIdx"], message["prevLogTerm"]
        mine = self._journal.entry_at(prev_index)
        if mine is None or mine[2] != prev_term:
            return message  # pysyncobj answers "reset" without touching the log
        entries = list(message.get("entries") or [])
        matched = 0
        for entry in entries:
            have = self._journal.entry_at(entry[1])
            if have is None or have[2] != entry[2]:
                break
            matched += 1
        verified = entries[matched - 1][1] if matched else prev_index
        if matched < len(entries):
            if matched == 0:
                return message
            last = entries[matched - 1]
            return {**message, "prevLogIdx": last[1], "prevLogTerm": last[2], "entries": entries[matched:]}
        # Nothing new: take the leader's term, leadership and (verified) commit index, then acknowledge.
        bare = {k: v for k, v in message.items() if k not in ("prevLogIdx", "prevLogTerm", "entries")}
        bare["commit_index"] = min(message.get("commit_index", 0), verified)
        SyncObj._SyncObj__onMessageReceived(self, node, bare)
        self._SyncObj__sendNextNodeIdx(node, nextNodeIdx=verified + 1, success=True)
        return None

    def _preflush_before_snapshot(self) -> None:
        """Applies pause while a snapshot's checkpoint is taken, and most of that time is flushing memtables:
        when the log is 90% of the way to a snapshot, flush them in the background (GIL released) while applies
        go on, so that little is left to flush during the pause."""
        near = len(self._journal) >= 0.9 * self._snapshot_entries or self._journal.bytes >= 0.9 * (
            self._snapshot_log_bytes
        )
        if not near:
            self._preflushing = None  # the log was compacted: flush again before the next snapshot
            return
        if self._preflushing is None:
            self._preflushing = threading.Thread(
                target=self._machine.store.flush_memtables, name="cairn-preflush", daemon=True
            )
            self._preflushing.start()

    def _pause_applies(self, paused: bool) -> None:
        """While a snapshot's checkpoint is taken, committed entries wait (Raft lets apply lag commit)."""
        self._applies_paused = paused
        if not paused:
            self._wake_raft_thread()

    def _wake_raft_thread(self) -> None:
        """Have the Raft thread tick now rather than at its next tick (<= 50 ms)."""
        notifier = getattr(self, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            notifier.notify()

    def _SyncObj__applyLogEntries(self):
        if self._applies_paused:
            return False
        return SyncObj._SyncObj__applyLogEntries(self)

    def _SyncObj__doApplyCommand(self, command):
        result = SyncObj._SyncObj__doApplyCommand(self, command)
        if command[:1] != _REGULAR:
            # pysyncobj's own entries (the no-op of a new leader) never reach the state machine, yet they are
            # committed indexes that clients see (Status, SynchronizeState): count them as applied.
            self._machine.skip(self.raftLastApplied + 1)
        return result

    def _SyncObj__sendNextNodeIdx(self, node, reset=False, nextNodeIdx=None, success=False):
        self._journal.flush()  # never acknowledge entries that are not yet durable
        SyncObj._SyncObj__sendNextNodeIdx(self, node, reset=reset, nextNodeIdx=nextNodeIdx, success=success)

    def transfer_leadership(self, target: str | None, timeout: float) -> bool:
        """Hand leadership over (Raft TimeoutNow). New commands wait in the queue meanwhile, so that a
        follower can be fully caught up, which pysyncobj requires; they go to the new leader after."""
        self._transfer_pending = True
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.is_leader():
                outcome: dict[str, int] = {}
                done = threading.Event()

                def attempt(outcome: dict[str, int] = outcome, done: threading.Event = done) -> None:
                    if not outcome:
                        outcome["error"] = -1
                        self.transferLeadership(
                            target, callback=lambda _r, err: (outcome.update(error=err), done.set())
                        )

                self.addOnTickCallback(attempt)
                done.wait(max(0.0, min(0.5, deadline - time.monotonic())))
                self.removeOnTickCallback(attempt)
                if outcome.get("error") == FAIL_REASON.SUCCESS:
                    return True
                time.sleep(0.005)
            return False
        finally:
            self._transfer_pending = False

    def _checkCommandsToApply(self):
        if getattr(self, "_transfer_pending", False):
            return  # leave new commands queued until the transfer is done
        # pysyncobj (appendEntriesUseBatch=False) sends one append-entries message per queued command,
        # so each follower decrypts, journals, syncs and acknowledges every entry on its own. Defer the
        # sends while the queue is drained and send once: every command of the tick in one message.
        self._journal.begin()
        self._defer_append = True
        self._append_wanted = False
        try:
            SyncObj._checkCommandsToApply(self)
        finally:
            self._defer_append = False
            if self._append_wanted and self._isLeader():
                SyncObj._SyncObj__sendAppendEntries(self)
            # Before the next tick counts this leader towards a commit of what it just appended.
            self._journal.flush()

    def _SyncObj__sendAppendEntries(self):
        if getattr(self, "_defer_append", False):
            self._append_wanted = True
            return
        SyncObj._SyncObj__sendAppendEntries(self)
