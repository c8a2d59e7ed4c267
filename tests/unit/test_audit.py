"""The audit chain in apply: one record per applied command, the same on every replica, pruned behind an
anchor, and `verify_chain` naming the first broken record for each kind of tampering."""

from __future__ import annotations

from pathlib import Path

from cairn.v1 import audit_pb2
from cairn_server.audit.chain import CF, AuditLog
from cairn_server.audit.verify import record_hash, record_key
from cairn_server.internal import command_pb2
from cairn_server.rpc.audit_service import verify_store
from cairn_server.statemachine import ABORTED, OK, StateMachine
from cairn_server.storage import RocksStore

SEC = 1_000_000_000


def audited(payload: bytes, *, identity: str = "alice", retention_s: int = 0) -> bytes:
    cmd = command_pb2.Command.FromString(payload)
    cmd.identity = identity
    cmd.policy.audit_enabled = True
    cmd.policy.audit_retention_ns = retention_s * SEC
    return cmd.SerializeToString()


def persist(wid: str, *, rid: str, t: int, expected: int | None = None) -> bytes:
    cmd = command_pb2.Command(request_id=rid, body_hash=rid.encode(), time_ns=t, dedup_expires_ns=t + 3600 * SEC)
    cmd.persist.workflow_id = wid
    if expected is not None:
        cmd.persist.expected_version = expected
    return cmd.SerializeToString()


def machine(path: Path) -> tuple[RocksStore, StateMachine, AuditLog]:
    store = RocksStore(path)
    m = StateMachine(store)
    log = AuditLog(m)
    log.install()
    return store, m, log


def records(store: RocksStore) -> list[audit_pb2.AuditRecord]:
    return [audit_pb2.AuditRecord.FromString(v) for _, v in store.scan(CF, b"r")]


def test_each_applied_command_appends_one_chained_record(tmp_path: Path) -> None:
    store, m, log = machine(tmp_path / "a")
    m.apply(audited(persist("w1", rid="r1", t=10 * SEC)), 1)
    m.apply(audited(persist("w1", rid="r2", t=11 * SEC, expected=7), identity="bob"), 2)  # a conflict
    m.apply(audited(persist("w1", rid="r1", t=12 * SEC)), 3)  # a retry: answered from dedup, not audited
    m.apply(persist("w2", rid="r3", t=13 * SEC), 4)  # audit off in this command's policy
    group = command_pb2.Command(time_ns=14 * SEC)
    group.group.commands.extend(
        command_pb2.Command.FromString(audited(persist(w, rid=f"g{w}", t=14 * SEC))) for w in ("w3", "w4")
    )
    m.apply(group.SerializeToString(), 5)
    got = records(store)
    assert [(r.seq, r.identity, r.operation, r.workflow_id, r.request_id, r.code, r.raft_index) for r in got] == [
        (1, "alice", "persist", "w1", "r1", OK, 1),
        (2, "bob", "persist", "w1", "r2", ABORTED, 2),
        (3, "alice", "persist", "w3", "gw3", OK, 5),
        (4, "alice", "persist", "w4", "gw4", OK, 5),
    ]
    assert "expected version 7" in got[1].message and got[0].time.ToNanoseconds() == 10 * SEC
    assert got[0].prev_hash == b"\x00" * 32 and all(b.prev_hash == a.hash for a, b in zip(got, got[1:], strict=False))
    assert log.head.seq == 4 and log.head.hash == got[-1].hash
    assert verify_store(store).ok

    # Another replica applying the same entries holds the same chain, byte for byte.
    other, m2, _ = machine(tmp_path / "b")
    for i, payload in enumerate(
        [
            audited(persist("w1", rid="r1", t=10 * SEC)),
            audited(persist("w1", rid="r2", t=11 * SEC, expected=7), identity="bob"),
            audited(persist("w1", rid="r1", t=12 * SEC)),
            persist("w2", rid="r3", t=13 * SEC),
            group.SerializeToString(),
        ],
        start=1,
    ):
        m2.apply(payload, i)
    assert [r.SerializeToString() for r in records(other)] == [r.SerializeToString() for r in got]
    store.close()
    other.close()


def test_a_restarted_machine_continues_the_chain(tmp_path: Path) -> None:
    store, m, _ = machine(tmp_path)
    m.apply(audited(persist("w1", rid="r1", t=SEC)), 1)
    store.close()
    store, m, log = machine(tmp_path)
    assert log.head.seq == 1
    m.apply(audited(persist("w1", rid="r2", t=2 * SEC)), 2)
    assert [r.seq for r in records(store)] == [1, 2] and verify_store(store).ok
    store.close()


def test_pruning_moves_the_anchor_and_the_rest_still_verifies(tmp_path: Path) -> None:
    store, m, _ = machine(tmp_path)
    for i in range(1, 11):
        m.apply(audited(persist(f"w{i}", rid=f"r{i}", t=i * SEC), retention_s=100), i)
    assert [r.seq for r in records(store)] == list(range(1, 11))
    # 104 s: records older than 4 s (seq 1..3) go; the anchor carries record 3's hash.
    third = records(store)[2]
    m.apply(audited(persist("w11", rid="r11", t=104 * SEC), retention_s=100), 11)
    kept = records(store)
    assert [r.seq for r in kept] == list(range(4, 12))
    assert kept[0].prev_hash == third.hash
    verdict = verify_store(store)
    assert verdict.ok and verdict.first_seq == 4 and verdict.head_seq == 11, verdict
    # Again later: the new oldest (4, at 4 s) is read afresh, so 4 and 5 go at 106 s.
    m.apply(audited(persist("w12", rid="r12", t=106 * SEC), retention_s=100), 12)
    assert [r.seq for r in records(store)] == list(range(6, 13)) and verify_store(store).ok
    store.close()


def _tampered(tmp_path: Path, name: str, change) -> audit_pb2.VerifyAuditResponse:
    store, m, _ = machine(tmp_path / name)
    for i in range(1, 9):
        m.apply(audited(persist(f"w{i}", rid=f"r{i}", t=i * SEC)), i)
    assert verify_store(store).ok
    batch = store.batch()
    change(store, batch)
    store.write(batch)
    verdict = verify_store(store)
    store.close()
    return verdict


def test_verify_names_the_first_broken_record_for_each_tampering(tmp_path: Path) -> None:
    def get(store: RocksStore, seq: int) -> audit_pb2.AuditRecord:
        return audit_pb2.AuditRecord.FromString(store.get(CF, record_key(seq)))

    def alter(store: RocksStore, batch) -> None:
        r = get(store, 5)
        r.identity = "mallory"
        batch.put(CF, record_key(5), r.SerializeToString())

    def alter_and_rehash(store: RocksStore, batch) -> None:
        r = get(store, 5)
        r.code = 0 if r.code else 7
        r.hash = record_hash(r)
        batch.put(CF, record_key(5), r.SerializeToString())

    def remove(store: RocksStore, batch) -> None:
        batch.delete(CF, record_key(5))

    def reorder(store: RocksStore, batch) -> None:
        five, six = store.get(CF, record_key(5)), store.get(CF, record_key(6))
        batch.put(CF, record_key(5), six)
        batch.put(CF, record_key(6), five)

    def truncate(_store: RocksStore, batch) -> None:
        batch.delete(CF, record_key(8))

    cases = {
        "alter": (alter, 5, "altered"),
        "rehash": (alter_and_rehash, 6, "does not follow record 5"),
        "remove": (remove, 5, "missing"),
        "reorder": (reorder, 5, "reordered"),
        "truncate": (truncate, 8, "missing"),
    }
    for name, (change, seq, words) in cases.items():
        verdict = _tampered(tmp_path, name, change)
        assert not verdict.ok and verdict.broken_seq == seq and words in verdict.problem, (name, verdict)


def test_sealing_in_one_pass_equals_hashing_the_record() -> None:
    from cairn_server.audit.verify import sealed

    record = audit_pb2.AuditRecord(seq=7, identity="é", operation="persist", workflow_id="w", code=10, raft_index=3)
    record.prev_hash = b"\x01" * 32
    digest, encoded = sealed(record)
    record.hash = record_hash(record)
    assert digest == record.hash and encoded == record.SerializeToString(deterministic=True)


def test_pruning_inside_a_group_never_moves_the_anchor_back(tmp_path: Path) -> None:
    store, m, _ = machine(tmp_path)
    for i in range(1, 21):
        m.apply(audited(persist(f"w{i}", rid=f"r{i}", t=i * SEC), retention_s=100), i)
    # One group whose later command carries an earlier time (writes are stamped before they queue).
    group = command_pb2.Command(time_ns=115 * SEC)
    for wid, t in (("g1", 115), ("g2", 108)):
        group.group.commands.append(
            command_pb2.Command.FromString(audited(persist(wid, rid=wid, t=t * SEC), retention_s=100))
        )
    m.apply(group.SerializeToString(), 21)
    kept = [r.seq for r in records(store)]
    assert kept == list(range(15, 23)), kept  # 1..14 pruned by the first command; the second moved nothing back
    verdict = verify_store(store)
    assert verdict.ok and verdict.first_seq == 15, verdict
    store.close()


def test_a_rolled_back_or_deleted_head_is_caught(tmp_path: Path) -> None:
    from cairn_server.audit.verify import HEAD, Head

    for name, head in (("rolled-back", "back"), ("deleted", "none")):
        store, m, _ = machine(tmp_path / name)
        for i in range(1, 6):
            m.apply(audited(persist(f"w{i}", rid=f"r{i}", t=i * SEC)), i)
        batch = store.batch()
        if head == "back":
            third = records(store)[2]
            batch.put(CF, HEAD, Head(3, third.hash).encode())
        else:
            batch.delete(CF, HEAD)
        store.write(batch)
        verdict = verify_store(store)
        store.close()
        assert not verdict.ok and "past the head" in verdict.problem, (name, verdict)
