"""Group commit's apply: a CommandGroup entry has the effects of its commands applied one entry each."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn_server.internal import command_pb2
from cairn_server.statemachine import ABORTED, INTERNAL, OK, StateMachine
from cairn_server.storage import RocksStore

from .test_statemachine import checkpoint, persist


def group(*payloads: bytes, t: int = 5_000) -> bytes:
    entry = command_pb2.Command(time_ns=t)
    entry.group.commands.extend(command_pb2.Command.FromString(p) for p in payloads)
    return entry.SerializeToString()


def commands() -> list[bytes]:
    return [
        persist("w1", "a", rid="r1", n=1),
        persist("w2", "a", rid="r2", expected=0),
        persist("w3", "a", rid="r3", expected=7),  # a conflict: the others still apply
        checkpoint("w0", "cp-1", rid="r4"),  # w0 is not there: NOT_FOUND
    ]


def open_machine(path: Path) -> tuple[RocksStore, StateMachine]:
    store = RocksStore(path)
    return store, StateMachine(store)


def every_record(m: StateMachine) -> list[tuple]:
    return sorted((cf, k, v) for cf in ("state", "history", "checkpoint", "dedup") for k, v in m.store.scan(cf))


def test_a_group_has_the_effects_and_results_of_one_entry_per_command(tmp_path: Path) -> None:
    store_a, one_each = open_machine(tmp_path / "a")
    store_b, grouped = open_machine(tmp_path / "b")
    singles = [one_each.apply(c, 2 + i) for i, c in enumerate(commands())]
    outcome = grouped.apply(group(*commands()), 2)
    assert outcome.code == OK
    assert [r.code for r in outcome.group.results] == [r.code for r in singles] == [OK, OK, ABORTED, 5]
    assert [r.current_version for r in outcome.group.results] == [r.current_version for r in singles]
    assert outcome.group.results[2].current_version == 0 and "expected version 7" in outcome.group.results[2].message
    assert every_record(grouped) == every_record(one_each)
    assert grouped.applied_index == 2
    # Replayed (restart, snapshot install): nothing changes and the recorded results come back in order.
    again = grouped.apply(group(*commands()), 2)
    assert [r.state.version for r in again.group.results[:2]] == [1, 1]
    assert every_record(grouped) == every_record(one_each)
    # A retry of a grouped write, in a later entry, is answered from its dedup record without a new version.
    retry = grouped.apply(persist("w1", "a", rid="r1", n=1), 3)
    assert retry.code == OK and retry.state.version == 1 and grouped.get_state("w1").version == 1
    store_a.close()
    store_b.close()


def test_a_command_that_raises_is_rejected_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, m = open_machine(tmp_path / "db")
    real = m._handlers["persist"]

    def flaky(cmd, batch, index):
        if cmd.persist.workflow_id == "w2":
            batch.put("state", b"w2", b"half-written")  # must not survive: the batch is rebuilt without it
            raise RuntimeError("a bug")
        return real(cmd, batch, index)

    monkeypatch.setitem(m._handlers, "persist", flaky)
    outcome = m.apply(group(*commands()), 2)
    assert [r.code for r in outcome.group.results] == [OK, INTERNAL, ABORTED, 5]
    assert "RuntimeError" in outcome.group.results[1].message
    assert m.get_state("w1").version == 1 and m.get_state("w2") is None
    assert m.store.get("state", b"w2") is None
    store.close()
