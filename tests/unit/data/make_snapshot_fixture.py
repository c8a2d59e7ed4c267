"""Regenerates snapshot-format1.bin: a snapshot file written by the format-1 code.

The fixture pins the snapshot file format: tests/unit/test_snapshot.py restores it with today's code
and checks that every record lands in the column family it was written from. Its whole point is that
it was written by OLD code, so run this against the format-1 code it was made with (commit f287760,
where column family ids were positions in STATE_CFS and the protos lived in cairn.internal), not
against the working tree:

    git worktree add --detach /tmp/snapold f287760
    PYTHONPATH=/tmp/snapold/client:/tmp/snapold/server \\
        .venv/bin/python tests/unit/data/make_snapshot_fixture.py tests/unit/data/snapshot-format1.bin
    git worktree remove /tmp/snapold

The output is deterministic (fixed times, ids and header), so a rerun gives the same bytes.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

try:  # format-1 code (commit f287760)
    from cairn.internal import command_pb2, snapshot_pb2
except ImportError:  # later layout; only to compare what newer code writes
    from cairn_server.internal import command_pb2, snapshot_pb2
from cairn_server.raft import snapshot
from cairn_server.statemachine import StateMachine
from cairn_server.storage import RocksStore

T0 = 1_700_000_000 * 10**9  # 2023-11-14T22:13:20Z
SEC = 10**9
HOUR = 3600 * SEC


def command(seq: int, rid: str) -> command_pb2.Command:
    t = T0 + seq * SEC
    return command_pb2.Command(
        request_id=rid,
        body_hash=hashlib.sha256(f"body-{seq}".encode()).digest(),
        time_ns=t,
        dedup_expires_ns=t + HOUR if rid else 0,
        history_limit=100,
        checkpoint_limit=100,
    )


def persist(seq: int, rid: str, wid: str, step: str, expected: int | None = None, **variables) -> bytes:
    cmd = command(seq, rid)
    cmd.persist.workflow_id, cmd.persist.current_step = wid, step
    cmd.persist.variables.update(variables)
    cmd.persist.labels["team"] = "fixture"
    if expected is not None:
        cmd.persist.expected_version = expected
    return cmd.SerializeToString()


def checkpoint(seq: int, rid: str, wid: str, cp_id: str, compress: bool) -> bytes:
    cmd = command(seq, rid)
    cmd.checkpoint.workflow_id, cmd.checkpoint.checkpoint_id = wid, cp_id
    cmd.checkpoint.compress = compress
    return cmd.SerializeToString()


def delete(seq: int, rid: str, wid: str) -> bytes:
    cmd = command(seq, rid)
    cmd.delete.workflow_id = wid
    return cmd.SerializeToString()


ENTRIES = [  # applied at indexes 2..9
    persist(1, "req-1", "w1", "start", n=1),
    persist(2, "req-2", "w1", "charge", expected=1, n=2, ok=True),
    persist(3, "req-3", "w2", "start", s="x"),
    checkpoint(4, "req-4", "w1", "cp-0001", compress=False),
    checkpoint(5, "req-5", "w2", "cp-0001", compress=True),
    persist(6, "", "w3", "gone"),  # no request id: no dedup record
    delete(7, "req-6", "w3"),
    persist(8, "req-7", "w2", "done", expected=1, s="y"),
]


def main(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = RocksStore(Path(tmp) / "db")
        machine = StateMachine(store)
        for index, entry in enumerate(ENTRIES, start=2):
            result = machine.apply(entry, index)
            assert result.code == 0, (index, result)
        last = len(ENTRIES) + 1
        header = snapshot_pb2.SnapshotHeader(
            format=snapshot.FORMAT,
            last=snapshot_pb2.LogEntryRef(command=b"last-entry", index=last, term=3),
            previous=snapshot_pb2.LogEntryRef(command=b"previous-entry", index=last - 1, term=3),
            cluster=["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"],
            created_ns=T0 + 60 * SEC,
        )
        # As Snapshots._write does: the record count, then the file.
        header.records = sum(1 for cf in snapshot.STATE_CFS if cf != "meta" for _ in store.scan(cf))
        written = snapshot.write_snapshot_file(store, header, target)
        store.close()
    print(f"{target}: {written} records, {target.stat().st_size} bytes, written by {snapshot.__file__}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
