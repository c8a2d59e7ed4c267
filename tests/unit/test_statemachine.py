"""The state machine over a real RocksDB: determinism, idempotence, never raising, every rule."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cairn_server.internal import command_pb2
from cairn_server.statemachine import ABORTED, FAILED_PRECONDITION, INVALID_ARGUMENT, NOT_FOUND, OK, StateMachine
from cairn_server.storage import RocksStore

HOUR_NS = 3600 * 10**9


@pytest.fixture
def machine(tmp_path: Path):
    store = RocksStore(tmp_path / "db")
    yield StateMachine(store)
    store.close()


def persist(wid: str, step: str, *, rid: str, t: int = 1_000, expected: int | None = None, **variables) -> bytes:
    cmd = command_pb2.Command(
        request_id=rid,
        body_hash=hashlib.sha256(f"{wid}{step}{variables}{expected}".encode()).digest(),
        time_ns=t,
        dedup_expires_ns=t + HOUR_NS,
        history_limit=100,
        checkpoint_limit=100,
    )
    cmd.persist.workflow_id, cmd.persist.current_step = wid, step
    cmd.persist.variables.update(variables)
    if expected is not None:
        cmd.persist.expected_version = expected
    return cmd.SerializeToString()


def checkpoint(wid: str, cp_id: str, *, rid: str, t: int = 2_000, limit: int = 100, retain_after: int = 0) -> bytes:
    cmd = command_pb2.Command(
        request_id=rid, body_hash=rid.encode(), time_ns=t, dedup_expires_ns=t + HOUR_NS, checkpoint_limit=limit
    )
    cmd.checkpoint.workflow_id, cmd.checkpoint.checkpoint_id = wid, cp_id
    cmd.checkpoint.compress = True
    cmd.checkpoint.retain_after_ns = retain_after
    return cmd.SerializeToString()


def digest_all(m: StateMachine, ids: list[str]) -> list[tuple]:
    return [m.digest(w) for w in ids]


def test_replay_is_skipped_and_restart_replays_identically(tmp_path: Path) -> None:
    entries = [
        persist("w1", "a", rid="r1", n=1),
        persist("w2", "a", rid="r2"),
        persist("w1", "b", rid="r3", n=2),
        checkpoint("w1", "cp-1", rid="r4"),
        persist("w1", "c", rid="r5", expected=2),
    ]
    store = RocksStore(tmp_path / "a")
    m = StateMachine(store)
    results = [m.apply(e, i + 2) for i, e in enumerate(entries)]
    assert [r.code for r in results] == [OK] * 5
    before = digest_all(m, ["w1", "w2"])
    # The same entries again (a replay after restart): nothing changes, the recorded results come back.
    again = [m.apply(e, i + 2) for i, e in enumerate(entries)]
    assert digest_all(m, ["w1", "w2"]) == before
    assert [a.state.version for a in again] == [r.state.version for r in results]
    assert m.get_state("w1").version == 3
    store.close()
    # A restarted node that replays the whole journal reaches the same state.
    store = RocksStore(tmp_path / "a")
    m2 = StateMachine(store)
    assert m2.applied_index == 6
    for i, e in enumerate(entries):
        m2.apply(e, i + 2)
    assert digest_all(m2, ["w1", "w2"]) == before
    store.close()
    # A fresh replica applying the same log ends byte-for-byte equal (determinism).
    fresh_store = RocksStore(tmp_path / "b")
    fresh = StateMachine(fresh_store)
    for i, e in enumerate(entries):
        fresh.apply(e, i + 2)
    assert digest_all(fresh, ["w1", "w2"]) == before
    fresh_store.close()


@pytest.mark.parametrize("payload", [b"\xff\xfe garbage", b"\x0a\x05short"])
def test_apply_never_raises_on_garbage_and_advances(machine: StateMachine, payload: bytes) -> None:
    # Trap 4: an exception here would wedge every replica on this entry.
    result = machine.apply(payload, 5)
    assert result.code == INVALID_ARGUMENT
    assert machine.applied_index == 5
    assert machine.apply(persist("w", "s", rid="after"), 6).code == OK


def test_apply_turns_internal_failures_into_rejections(machine: StateMachine, monkeypatch) -> None:
    def explode(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setitem(machine._handlers, "persist", explode)
    result = machine.apply(persist("w", "s", rid="r"), 2)
    assert result.code == 13 and "RuntimeError" in result.message
    assert machine.applied_index == 2 and machine.get_state("w") is None


def test_cas(machine: StateMachine) -> None:
    assert machine.apply(persist("w", "a", rid="1", expected=0), 2).code == OK
    conflict = machine.apply(persist("w", "b", rid="2", expected=0), 3)
    assert conflict.code == ABORTED and conflict.current_version == 1
    assert "expected version 0" in conflict.message
    stale = machine.apply(persist("w", "b", rid="3", expected=7), 4)
    assert stale.code == ABORTED and stale.current_version == 1
    assert machine.apply(persist("w", "b", rid="4", expected=1), 5).state.version == 2
    assert machine.get_state("w").current_step == "b"
    missing = machine.apply(persist("nope", "x", rid="5", expected=3), 6)
    assert missing.code == ABORTED and missing.current_version == 0 and "does not exist" in missing.message


def test_dedup_same_body_returns_first_result_other_body_refused(machine: StateMachine) -> None:
    first = machine.apply(persist("w", "a", rid="same", n=1), 2)
    second = machine.apply(persist("w", "a", rid="same", n=1, t=5_000), 3)
    assert second == first and machine.get_state("w").version == 1
    assert len(machine.history("w")) == 1
    other = machine.apply(persist("w", "DIFFERENT", rid="same"), 4)
    assert other.code == FAILED_PRECONDITION and "already used" in other.message
    assert machine.get_state("w").version == 1


def test_failed_results_are_deduplicated_too(machine: StateMachine) -> None:
    machine.apply(persist("w", "a", rid="1"), 2)
    conflict = machine.apply(persist("w", "b", rid="cas", expected=5), 3)
    machine.apply(persist("w", "c", rid="2"), 4)
    assert machine.apply(persist("w", "b", rid="cas", expected=5), 5) == conflict


def test_dedup_records_expire_by_the_commands_clock(machine: StateMachine) -> None:
    machine.apply(persist("w", "a", rid="old", t=1_000), 2)
    assert machine.store.get("dedup", b"old") is not None
    later = 1_000 + 2 * HOUR_NS
    machine.apply(persist("w", "b", rid="new", t=later), 3)
    assert machine.store.get("dedup", b"old") is None
    # The expired id can be used again, for anything.
    assert machine.apply(persist("w", "c", rid="old", t=later + 1), 4).code == OK


def test_history_is_trimmed_to_the_stamped_limit(machine: StateMachine) -> None:
    for n in range(1, 8):
        cmd = command_pb2.Command.FromString(persist("w", f"s{n}", rid=f"r{n}"))
        cmd.history_limit = 3
        machine.apply(cmd.SerializeToString(), n + 1)
    versions = [h.version for h in machine.history("w")]
    assert versions == [5, 6, 7]


def test_checkpoints_capture_retain_and_compress(machine: StateMachine) -> None:
    machine.apply(persist("w", "a", rid="1", big="x" * 5000), 2)
    for n in range(4):
        result = machine.apply(checkpoint("w", f"cp-{n}", rid=f"c{n}", t=10_000 + n, limit=3), 3 + n)
        assert result.code == OK and result.checkpoint.version == 1
    assert [c.id for c in machine.checkpoints("w")] == ["cp-1", "cp-2", "cp-3"]
    assert machine.get_state("w").checkpoint.id == "cp-3"
    raw = machine.store.get("checkpoint", b"w\x00cp-3")
    assert raw[:1] == b"\x01" and len(raw) < 1000  # zlib-compressed
    assert machine.get_checkpoint("w", "cp-3").state.variables["big"] == "x" * 5000
    # Age retention: checkpoints taken before retain_after go when the next one is taken.
    machine.apply(checkpoint("w", "cp-9", rid="c9", t=20_000, retain_after=10_003), 7)
    assert [c.id for c in machine.checkpoints("w")] == ["cp-3", "cp-9"]


def test_recover_and_delete(machine: StateMachine) -> None:
    machine.apply(persist("w", "a", rid="1", n=1), 2)
    machine.apply(checkpoint("w", "cp-1", rid="c"), 3)
    machine.apply(persist("w", "b", rid="2", n=2), 4)
    cp = machine.get_checkpoint("w", "cp-1")
    cmd = command_pb2.Command(request_id="rec", body_hash=b"rec", time_ns=5_000, dedup_expires_ns=HOUR_NS)
    cmd.recover.workflow_id, cmd.recover.checkpoint_id = "w", "cp-1"
    cmd.recover.current_step = cp.state.current_step
    cmd.recover.variables.CopyFrom(cp.state.variables)
    result = machine.apply(cmd.SerializeToString(), 5)
    assert result.code == OK and result.state.version == 3 and result.state.current_step == "a"
    assert machine.history("w")[-1].checkpoint_id == "cp-1"
    delete = command_pb2.Command(request_id="del", body_hash=b"del", time_ns=6_000, dedup_expires_ns=HOUR_NS)
    delete.delete.workflow_id = "w"
    deleted = machine.apply(delete.SerializeToString(), 6)
    assert deleted.deleted.deleted_version == 3 and deleted.deleted.deleted_checkpoints == 1
    assert machine.get_state("w") is None and machine.history("w") == [] and machine.checkpoints("w") == []
    cmd.request_id = "rec-2"
    gone = machine.apply(cmd.SerializeToString(), 7)
    assert gone.code == NOT_FOUND


def test_workflow_ids_that_prefix_each_other_stay_apart(machine: StateMachine) -> None:
    machine.apply(persist("a", "x", rid="1"), 2)
    machine.apply(persist("ab", "y", rid="2"), 3)
    assert [h.step for h in machine.history("a")] == ["x"]
    states, token = machine.list_workflows("a", 10, "")
    assert [s.workflow_id for s in states] == ["a", "ab"] and token == ""
    page, token = machine.list_workflows("", 1, "")
    assert [s.workflow_id for s in page] == ["a"] and token == "a"
    page, token = machine.list_workflows("", 1, token)
    assert [s.workflow_id for s in page] == ["ab"]


def test_a_retry_after_the_workflow_moved_on_returns_the_first_version(machine: StateMachine) -> None:
    first = machine.apply(persist("w", "a", rid="r1", n=1), 2)
    machine.apply(persist("w", "b", rid="r2", n=2, big="x" * 5000), 3)
    retry = machine.apply(persist("w", "a", rid="r1", n=1), 4)
    assert retry.state.version == 1 and retry.state.metadata.checksum == first.state.metadata.checksum
    assert retry.state.current_step == "a"
    assert machine.get_state("w").version == 2
    # The record itself does not duplicate the state's variables.
    assert len(machine.store.get("state", b"w")) > 5000
    assert len(machine.store.get("dedup", b"r2")) < 500
