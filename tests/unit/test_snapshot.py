"""Snapshot files: consistent content, checksums, and restore into another replica."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from cairn_server.internal import command_pb2, snapshot_pb2
from cairn_server.raft.journal import RocksJournal
from cairn_server.raft.snapshot import (
    SnapshotError,
    Snapshots,
    check_records,
    read_snapshot_file,
    write_snapshot_file,
)
from cairn_server.statemachine import APPLIED_KEY, StateMachine, decode_checkpoint
from cairn_server.storage import STATE_CFS, RocksStore
from cairn_server.storage.keys import checkpoint_key, history_key, u64
from cairn_server.storage.rocksdb import SNAPSHOT_CF_IDS

DATA = Path(__file__).parent / "data"
SNAPSHOTTED_CFS = [cf for cf in STATE_CFS if cf != "meta"]
# The u8 naming each column family in snapshot files. Never change one: only add new families.
PINNED_CF_IDS = {
    "state": 0,
    "history": 1,
    "checkpoint": 2,
    "dedup": 3,
    "dedup_exp": 4,
    "meta": 5,
    "run_queue": 6,
    "lease": 7,
    "lease_due": 8,
    "cp_sched": 9,
    "cp_due": 10,
}


def fill(machine: StateMachine, n: int) -> None:
    for i in range(n):
        cmd = command_pb2.Command(request_id=f"r{i}", body_hash=b"h", time_ns=1000 + i, dedup_expires_ns=10**18)
        cmd.persist.workflow_id, cmd.persist.current_step = f"w{i % 7}", f"s{i}"
        cmd.persist.variables.update({"i": i})
        machine.apply(cmd.SerializeToString(), i + 2)


def test_snapshot_round_trip_into_a_fresh_replica(tmp_path: Path) -> None:
    src_store = RocksStore(tmp_path / "src")
    src = StateMachine(src_store)
    fill(src, 50)
    header = snapshot_pb2.SnapshotHeader(
        format=1,
        last=snapshot_pb2.LogEntryRef(command=b"c", index=51, term=2),
        previous=snapshot_pb2.LogEntryRef(command=b"p", index=50, term=2),
    )
    write_snapshot_file(src_store, header, tmp_path / "snap")

    dst_store = RocksStore(tmp_path / "dst")
    dst = StateMachine(dst_store)
    fill(dst, 3)  # something stale to be replaced
    dst.store.write(dst.store.batch())
    fatal: list[str] = []
    snaps = Snapshots(dst_store, dst, RocksJournal(dst_store, sync=True), tmp_path, fatal.append)
    last, previous, _ = snaps.deserialize(str(tmp_path / "snap"))
    assert last == (b"c", 51, 2) and previous == (b"p", 50, 2)
    assert dst.applied_index == 51 and not fatal
    assert [dst.digest(f"w{k}") for k in range(7)] == [src.digest(f"w{k}") for k in range(7)]
    src_store.close()
    dst_store.close()


def test_a_flipped_byte_fails_the_checksum_and_stops_the_node(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    machine = StateMachine(store)
    fill(machine, 5)
    header = snapshot_pb2.SnapshotHeader(
        format=1, last=snapshot_pb2.LogEntryRef(index=6, term=1), previous=snapshot_pb2.LogEntryRef(index=5, term=1)
    )
    path = tmp_path / "snap"
    write_snapshot_file(store, header, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum"):
        read_snapshot_file(path)
    fatal: list[str] = []
    snaps = Snapshots(store, machine, RocksJournal(store, sync=True), tmp_path, fatal.append)
    with pytest.raises(SnapshotError):
        snaps.deserialize(str(path))
    assert fatal and "bad snapshot" in fatal[0]
    assert machine.applied_index == 6  # untouched
    store.close()


def test_a_snapshot_behind_the_local_state_keeps_the_local_state(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    machine = StateMachine(store)
    fill(machine, 5)
    header = snapshot_pb2.SnapshotHeader(
        format=1, last=snapshot_pb2.LogEntryRef(index=4, term=1), previous=snapshot_pb2.LogEntryRef(index=3, term=1)
    )
    write_snapshot_file(store, header, tmp_path / "snap")
    fill(machine, 9)  # the local state moves on past the snapshot
    before = [machine.digest(f"w{k}") for k in range(7)]
    snaps = Snapshots(store, machine, RocksJournal(store, sync=True), tmp_path, lambda _m: None)
    snaps.deserialize(str(tmp_path / "snap"))
    assert [machine.digest(f"w{k}") for k in range(7)] == before and machine.applied_index == 10
    store.close()


def raw_records(path: Path) -> list[tuple[int, bytes, bytes]]:
    """(column family id, key, value) of every record, parsed here independently of snapshot.py."""
    data = path.read_bytes()[:-32]
    (hlen,) = struct.unpack_from(">I", data, 8)
    pos, out = 12 + hlen, []
    while pos < len(data):
        cf_id, (klen,) = data[pos], struct.unpack_from(">I", data, pos + 1)
        key = data[pos + 5 : pos + 5 + klen]
        pos += 5 + klen
        (vlen,) = struct.unpack_from(">I", data, pos)
        out.append((cf_id, key, data[pos + 4 : pos + 4 + vlen]))
        pos += 4 + vlen
    return out


def keys_by_cf(store: RocksStore) -> dict[str, list[bytes]]:
    return {cf: [k for k, _ in store.scan(cf)] for cf in SNAPSHOTTED_CFS}


def put_stale(store: RocksStore) -> None:
    """A record in every snapshotted family that a restore must remove."""
    batch = store.batch()
    for cf in SNAPSHOTTED_CFS:
        batch.put(cf, b"stale-" + cf.encode(), b"x")
        batch.put(cf, u64(2**63) + b"stale", b"x")  # a u64-time-first key, as in the *_due indexes
    store.write(batch)


def test_snapshot_column_family_ids_are_pinned() -> None:
    assert {cf: SNAPSHOT_CF_IDS[cf] for cf in PINNED_CF_IDS} == PINNED_CF_IDS
    assert set(SNAPSHOT_CF_IDS) == set(STATE_CFS)
    assert len(set(SNAPSHOT_CF_IDS.values())) == len(SNAPSHOT_CF_IDS)


# snapshot-format1.bin was written by the format-1 code (commit f287760, ids = positions in the
# STATE_CFS of then) with tests/unit/data/make_snapshot_fixture.py, which says how to regenerate it:
# w1 persisted twice then checkpointed (plain), w2 persisted, checkpointed (zlib) and persisted again,
# w3 persisted without a request id and deleted; applied index 9.
FIXTURE_T0, SEC, HOUR = 1_700_000_000 * 10**9, 10**9, 3600 * 10**9
FIXTURE_REQUESTS = [(1, "req-1"), (2, "req-2"), (3, "req-3"), (4, "req-4"), (5, "req-5"), (7, "req-6"), (8, "req-7")]


def test_a_file_written_by_format1_code_restores_into_the_same_column_families(tmp_path: Path) -> None:
    fixture = DATA / "snapshot-format1.bin"
    assert [cf_id for cf_id, _, _ in raw_records(fixture)] == [0] * 2 + [1] * 4 + [2] * 2 + [3] * 7 + [4] * 7

    store = RocksStore(tmp_path / "db")
    machine = StateMachine(store)
    fill(machine, 3)  # an older state, replaced by the restore
    put_stale(store)
    fatal: list[str] = []
    snaps = Snapshots(store, machine, RocksJournal(store, sync=True), tmp_path, fatal.append)
    last, previous, cluster = snaps.deserialize(str(fixture))
    assert not fatal
    assert last == (b"last-entry", 9, 3) and previous == (b"previous-entry", 8, 3)
    assert cluster == {"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}
    assert machine.applied_index == 9 and store.get("meta", APPLIED_KEY) == u64(9)

    assert keys_by_cf(store) == {
        "state": [b"w1", b"w2"],
        "history": [history_key("w1", 1), history_key("w1", 2), history_key("w2", 1), history_key("w2", 2)],
        "checkpoint": [checkpoint_key("w1", "cp-0001"), checkpoint_key("w2", "cp-0001")],
        "dedup": [rid.encode() for _, rid in FIXTURE_REQUESTS],
        "dedup_exp": [u64(FIXTURE_T0 + seq * SEC + HOUR) + rid.encode() for seq, rid in FIXTURE_REQUESTS],
        "run_queue": [],
        "lease": [],
        "lease_due": [],
        "cp_sched": [],
        "cp_due": [],
        "auth": [],
        "audit": [],
    }

    w1, w2 = machine.get_state("w1"), machine.get_state("w2")
    assert (w1.version, w1.current_step, dict(w1.variables)) == (2, "charge", {"n": 2.0, "ok": True})
    assert (w1.checkpoint.id, w1.checkpoint.version, dict(w1.metadata.labels)) == ("cp-0001", 2, {"team": "fixture"})
    assert (w2.version, w2.current_step, dict(w2.variables)) == (2, "done", {"s": "y"})
    assert (w2.checkpoint.id, w2.checkpoint.version) == ("cp-0001", 1)
    assert machine.get_state("w3") is None
    assert [(c.version, c.step, c.request_id) for c in machine.history("w1")] == [
        (1, "start", "req-1"),
        (2, "charge", "req-2"),
    ]
    assert [(c.version, c.step, c.request_id) for c in machine.history("w2")] == [
        (1, "start", "req-3"),
        (2, "done", "req-7"),
    ]
    raw_cp1 = store.get("checkpoint", checkpoint_key("w1", "cp-0001"))
    raw_cp2 = store.get("checkpoint", checkpoint_key("w2", "cp-0001"))
    assert raw_cp1[:1] == b"\x00" and raw_cp2[:1] == b"\x01"  # plain and zlib
    cp1, cp2 = decode_checkpoint(raw_cp1), decode_checkpoint(raw_cp2)
    assert (cp1.version, cp1.state.current_step, dict(cp1.state.variables)) == (2, "charge", {"n": 2.0, "ok": True})
    assert (cp2.version, cp2.state.current_step, dict(cp2.state.variables)) == (1, "start", {"s": "x"})
    deleted = command_pb2.DedupRecord.FromString(store.get("dedup", b"req-6"))
    assert deleted.expires_ns == FIXTURE_T0 + 7 * SEC + HOUR and deleted.result.deleted.deleted_version == 1
    # A retry of a request in the file gets its recorded answer back.
    retry = command_pb2.Command(
        request_id="req-2", body_hash=hashlib.sha256(b"body-2").digest(), time_ns=FIXTURE_T0 + 60 * SEC
    )
    answer = machine.dedup_result(retry)
    assert answer is not None and answer.code == 0 and answer.state.version == 2
    store.close()


def test_every_state_family_but_meta_is_snapshotted_and_replaced(tmp_path: Path) -> None:
    src_store = RocksStore(tmp_path / "src")
    fill(StateMachine(src_store), 10)
    batch = src_store.batch()
    for cf in SNAPSHOTTED_CFS:
        for i in range(3):
            batch.put(cf, f"{cf}-{i}".encode(), f"value {i}".encode())
    src_store.write(batch)
    header = snapshot_pb2.SnapshotHeader(
        format=1, last=snapshot_pb2.LogEntryRef(index=20, term=1), previous=snapshot_pb2.LogEntryRef(index=19, term=1)
    )
    count = write_snapshot_file(src_store, header, tmp_path / "snap")
    expected = keys_by_cf(src_store)
    assert count == sum(len(keys) for keys in expected.values())
    ids_in_file = {cf_id for cf_id, _, _ in raw_records(tmp_path / "snap")}
    assert ids_in_file == {SNAPSHOT_CF_IDS[cf] for cf in SNAPSHOTTED_CFS}  # not meta's

    dst_store = RocksStore(tmp_path / "dst")
    dst = StateMachine(dst_store)
    put_stale(dst_store)
    snaps = Snapshots(dst_store, dst, RocksJournal(dst_store, sync=True), tmp_path, lambda _m: None)
    snaps.deserialize(str(tmp_path / "snap"))
    assert keys_by_cf(dst_store) == expected
    for cf in ("run_queue", "lease", "lease_due", "cp_sched", "cp_due"):
        assert [v for _, v in dst_store.scan(cf)] == [b"value 0", b"value 1", b"value 2"]
    assert dst.applied_index == 20
    src_store.close()
    dst_store.close()


@pytest.mark.parametrize(
    ("record", "error"),
    [
        (bytes([200]) + struct.pack(">I", 1) + b"k" + struct.pack(">I", 1) + b"v", "column family id 200.*newer"),
        (bytes([0]) + struct.pack(">I", 1000) + b"k", "truncated"),
    ],
    ids=["unknown-cf-id", "torn-record"],
)
def test_a_record_it_cannot_place_is_refused_before_anything_is_wiped(
    tmp_path: Path, record: bytes, error: str
) -> None:
    store = RocksStore(tmp_path / "db")
    machine = StateMachine(store)
    fill(machine, 5)
    header = snapshot_pb2.SnapshotHeader(
        format=1, last=snapshot_pb2.LogEntryRef(index=30, term=2), previous=snapshot_pb2.LogEntryRef(index=29, term=2)
    )
    path = tmp_path / "snap"
    write_snapshot_file(store, header, path)
    # The bad record last, under a valid checksum: the whole file must be checked before the wipe.
    body = path.read_bytes()[:-32] + record
    path.write_bytes(body + hashlib.sha256(body).digest())
    _, section = read_snapshot_file(path)
    with pytest.raises(SnapshotError, match=error):
        check_records(section)

    before = keys_by_cf(store), [machine.digest(f"w{k}") for k in range(7)]
    fatal: list[str] = []
    snaps = Snapshots(store, machine, RocksJournal(store, sync=True), tmp_path, fatal.append)
    with pytest.raises(SnapshotError, match=error):
        snaps.deserialize(str(path))
    assert fatal and "bad snapshot" in fatal[0]
    assert machine.applied_index == 6 and store.get("meta", b"restore_in_progress") is None
    assert (keys_by_cf(store), [machine.digest(f"w{k}") for k in range(7)]) == before
    store.close()
