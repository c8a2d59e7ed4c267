"""Trap 5 (found by the chaos suite): a follower must only truncate its log at a real conflict.

A real Replica (pysyncobj node over our RocksDB journal) is fed append-entries messages directly, as a
leader would send them. Stock pysyncobj 0.3.17 deletes every entry after prevLogIdx whenever there are
any: a stale or capped batch then cuts off entries the leader already counted as replicated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pysyncobj import FAIL_REASON
from pysyncobj.node import TCPNode

from cairn_server.config import RaftConfig
from cairn_server.local_cluster import free_base_port
from cairn_server.raft.journal import RocksJournal
from cairn_server.raft.replica import Replica
from cairn_server.raft.snapshot import Snapshots
from cairn_server.statemachine import StateMachine
from cairn_server.storage import RocksStore

LEADER = "127.0.0.1:1"


MAX_ENTRY = 200_000


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[Replica]:
    store = RocksStore(tmp_path / "db")
    machine = StateMachine(store)
    journal = RocksJournal(store, sync=False)
    snapshots = Snapshots(store, machine, journal, tmp_path, lambda reason: None)
    replica = Replica(
        self_address=f"127.0.0.1:{free_base_port(1)}",
        peer_addresses=[LEADER, "127.0.0.1:2"],
        secret=None,
        journal=journal,
        machine=machine,
        snapshots=snapshots,
        tuning=RaftConfig(election_timeout=600.0, heartbeat_interval=0.1),
        max_entry_bytes=MAX_ENTRY,
    )
    yield replica
    replica.destroy_synchronous()
    store.close()


def append(
    replica: Replica, prev: tuple[int, int], entries: list[tuple[int, int]], commit: int = 0, term: int = 1
) -> None:
    message = {
        "type": "append_entries",
        "term": term,
        "commit_index": commit,
        "prevLogIdx": prev[0],
        "prevLogTerm": prev[1],
        "entries": [(b"\xff not applied", i, t) for i, t in entries],
    }
    replica._SyncObj__onMessageReceived(TCPNode(LEADER), message)


def indexes(replica: Replica) -> list[tuple[int, int]]:
    return [(e[1], e[2]) for e in replica._journal[:]]


def test_a_stale_shorter_batch_does_not_cut_off_replicated_entries(follower: Replica) -> None:
    append(follower, (1, 0), [(2, 1), (3, 1), (4, 1), (5, 1)])
    assert indexes(follower)[-1] == (5, 1)
    append(follower, (1, 0), [(2, 1), (3, 1)])  # late duplicate of an earlier, smaller batch
    assert indexes(follower)[-1] == (5, 1)


def test_a_heartbeat_behind_our_end_truncates_nothing(follower: Replica) -> None:
    append(follower, (1, 0), [(2, 1), (3, 1), (4, 1)])
    append(follower, (2, 1), [])
    assert [i for i, _ in indexes(follower)] == [1, 2, 3, 4]


def test_a_stale_tail_is_never_committed_by_a_heartbeat(follower: Replica) -> None:
    append(follower, (1, 0), [(2, 1), (3, 1), (4, 1)])  # 3 and 4 from term 1 were never committed
    append(follower, (2, 1), [], commit=4, term=2)  # the term-2 leader has other entries at 3 and 4
    assert follower.raftCommitIndex <= 2


def test_a_real_conflict_still_replaces_the_tail(follower: Replica) -> None:
    append(follower, (1, 0), [(2, 1), (3, 1), (4, 1)])
    append(follower, (2, 1), [(3, 2)], term=2)
    assert indexes(follower)[1:] == [(2, 1), (3, 2)]


def test_an_entry_over_the_cap_is_refused_and_the_cap_is_below_chunked_sending(follower: Replica) -> None:
    """Trap 6: pysyncobj sends an entry at least appendEntriesBatchSizeBytes long in chunks, unsafely; no entry
    may reach that size."""
    answers: list[int] = []
    follower.propose_async(b"x" * (MAX_ENTRY + 1), lambda _result, error: answers.append(error))
    assert answers == [FAIL_REASON.REQUEST_DENIED]
    assert follower._SyncObj__conf.appendEntriesBatchSizeBytes > MAX_ENTRY + 1024
