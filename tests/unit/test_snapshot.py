"""Snapshot files: consistent content, checksums, and restore into another replica."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.internal import command_pb2, snapshot_pb2
from cairn_server.raft.journal import RocksJournal
from cairn_server.raft.snapshot import SnapshotError, Snapshots, read_snapshot_file, write_snapshot_file
from cairn_server.statemachine import StateMachine
from cairn_server.storage import RocksStore


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
