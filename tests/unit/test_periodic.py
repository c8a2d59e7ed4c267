"""Periodic checkpoints as apply rules: the schedule a change leaves, and PeriodicCheckpointsOp taking them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn_server.engine.periodic import scheduled_due
from cairn_server.statemachine import OK, StateMachine
from cairn_server.storage.keys import due_key, u64
from tests.unit.test_engine import (
    SEC,
    T0,
    Log,
    checkpoint,
    claim,
    delete,
    keys,
    new_machine,
    periodic,
    persist,
    start,
    store_digest,
)

MIN = 60 * SEC
INTERVAL = {"checkpoints_enabled": True, "checkpoint_interval": MIN}


@pytest.fixture
def machine(tmp_path: Path):
    store, m = new_machine(tmp_path / "db")
    yield m
    store.close()


@pytest.fixture
def log(machine: StateMachine) -> Log:
    return Log(machine)


def schedule_of(machine: StateMachine) -> list[tuple[str, int]]:
    """Every (workflow id, due time) in cp_sched, checked against the cp_due index."""
    sched = [(k.decode(), int.from_bytes(v, "big")) for k, v in machine.store.scan("cp_sched")]
    assert sorted(keys(machine, "cp_due")) == sorted(due_key(due, wid) for wid, due in sched)
    return sched


def test_a_change_schedules_a_checkpoint_an_interval_later(machine: StateMachine, log: Log) -> None:
    log.apply(persist("w", T0, "a", **INTERVAL))
    assert schedule_of(machine) == [("w", T0 + MIN)]
    # Later changes never push it later (a busy workflow still gets its checkpoint).
    log.apply(persist("w", T0 + 10 * SEC, "b", **INTERVAL))
    log.apply(persist("w", T0 + 50 * SEC, "c", **INTERVAL))
    assert schedule_of(machine) == [("w", T0 + MIN)]


def test_engine_changes_schedule_too(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1", **INTERVAL))
    assert schedule_of(machine) == [("w", T0 + MIN)]
    log.apply(claim("w", T0 + SEC, **INTERVAL))
    assert schedule_of(machine) == [("w", T0 + MIN)]


def test_nothing_is_scheduled_when_checkpoints_are_disabled(machine: StateMachine, log: Log) -> None:
    off = {"checkpoints_enabled": False, "checkpoint_interval": MIN, "checkpoint_every": 1}
    log.apply(persist("w", T0, "a", **off))
    log.apply(start("r", T0, "s1", **off))
    assert schedule_of(machine) == []
    # Nor with both triggers at 0.
    log.apply(persist("w", T0 + 1, "b", checkpoints_enabled=True))
    assert schedule_of(machine) == []


def test_every_versions_schedules_at_once_n_versions_after_the_last_checkpoint(machine: StateMachine, log: Log) -> None:
    every = {"checkpoints_enabled": True, "checkpoint_every": 3}
    log.apply(persist("w", T0 + 1, "v1", **every))
    log.apply(persist("w", T0 + 2, "v2", **every))
    assert schedule_of(machine) == []
    log.apply(persist("w", T0 + 3, "v3", **every))
    assert schedule_of(machine) == [("w", T0 + 3)]
    assert log.apply(periodic([("w", T0 + 3, "cp-1")], T0 + 4, **every)).batch.applied == 1
    assert machine.get_state("w").checkpoint.version == 3 and schedule_of(machine) == []
    # Counted from the checkpoint's version: v4, v5 nothing, v6 due.
    log.apply(persist("w", T0 + 5, "v4", **every))
    log.apply(persist("w", T0 + 6, "v5", **every))
    assert schedule_of(machine) == []
    log.apply(persist("w", T0 + 7, "v6", **every))
    assert schedule_of(machine) == [("w", T0 + 7)]


def test_every_versions_pulls_an_interval_schedule_earlier(machine: StateMachine, log: Log) -> None:
    both = {"checkpoints_enabled": True, "checkpoint_interval": MIN, "checkpoint_every": 2}
    log.apply(persist("w", T0, "v1", **both))
    assert schedule_of(machine) == [("w", T0 + MIN)]
    log.apply(persist("w", T0 + SEC, "v2", **both))
    assert schedule_of(machine) == [("w", T0 + SEC)]


def test_the_interval_counts_from_the_last_checkpoint(machine: StateMachine, log: Log) -> None:
    log.apply(persist("w", T0, "a", **INTERVAL))
    log.apply(periodic([("w", T0 + MIN, "cp-1")], T0 + MIN, **INTERVAL))
    log.apply(persist("w", T0 + MIN + 10 * SEC, "b", **INTERVAL))
    assert schedule_of(machine) == [("w", T0 + 2 * MIN)]
    # A change long after the last checkpoint is due at once, never in the past.
    log.apply(persist("x", T0, "a", **INTERVAL))
    log.apply(periodic([("x", T0 + MIN, "cp-1")], T0 + MIN, **INTERVAL))
    log.apply(persist("x", T0 + 5 * MIN, "b", **INTERVAL))
    assert ("x", T0 + 5 * MIN) in schedule_of(machine)


def test_a_due_checkpoint_is_taken_once_per_due_time(machine: StateMachine, log: Log) -> None:
    log.apply(persist("w", T0, "a", variables={"n": 1}, **INTERVAL))
    result = log.apply(periodic([("w", T0 + MIN, "cp-1")], T0 + MIN, **INTERVAL))
    assert result.code == OK and (result.batch.applied, result.batch.skipped) == (1, 0)
    state = machine.get_state("w")
    assert state.checkpoint.id == "cp-1" and state.checkpoint.version == 1
    cp = machine.get_checkpoint("w", "cp-1")
    assert cp.version == 1 and cp.state.variables["n"] == 1 and cp.timestamp.ToNanoseconds() == T0 + MIN
    assert schedule_of(machine) == []
    # The same due time proposed again (a re-proposal, a new leader) takes nothing, even after a change.
    log.apply(persist("w", T0 + MIN + 1, "b", **INTERVAL))
    before = store_digest(machine)
    again = log.apply(periodic([("w", T0 + MIN, "cp-2")], T0 + MIN + 2, **INTERVAL))
    assert (again.batch.applied, again.batch.skipped) == (0, 1)
    assert store_digest(machine) == before
    assert [c.id for c in machine.checkpoints("w")] == ["cp-1"]


def test_duplicate_entries_in_one_op_take_one_checkpoint(machine: StateMachine, log: Log) -> None:
    # The scheduler never lists a workflow twice, but apply's re-check must not rely on that.
    log.apply(persist("w", T0, "a", **INTERVAL))
    result = log.apply(periodic([("w", T0 + MIN, "cp-1"), ("w", T0 + MIN, "cp-2")], T0 + MIN, **INTERVAL))
    assert (result.batch.applied, result.batch.skipped) == (1, 1)
    assert [c.id for c in machine.checkpoints("w")] == ["cp-1"]


def test_a_due_time_that_is_not_the_scheduled_one_is_skipped(machine: StateMachine, log: Log) -> None:
    log.apply(persist("w", T0, "a", **INTERVAL))
    before = store_digest(machine)
    result = log.apply(periodic([("w", T0 + MIN - 1, "cp-1"), ("gone", T0, "cp-2")], T0 + MIN, **INTERVAL))
    assert (result.batch.applied, result.batch.skipped) == (0, 2)
    assert store_digest(machine) == before


def test_an_unchanged_workflow_is_not_checkpointed_again(machine: StateMachine, log: Log) -> None:
    log.apply(persist("w", T0, "a", **INTERVAL))
    log.apply(checkpoint("w", "cp-1", T0 + SEC, **INTERVAL))
    assert schedule_of(machine) == []
    # A schedule left behind for a workflow already checkpointed at its version (written by hand: no
    # apply path leaves one today, but the op must not checkpoint an unchanged workflow).
    batch = machine.store.batch()
    batch.put("cp_sched", b"w", u64(T0 + MIN))
    batch.put("cp_due", due_key(T0 + MIN, "w"), b"")
    machine.store.write(batch)
    result = log.apply(periodic([("w", T0 + MIN, "cp-2")], T0 + MIN, **INTERVAL))
    assert (result.batch.applied, result.batch.skipped) == (0, 1)
    assert [c.id for c in machine.checkpoints("w")] == ["cp-1"]
    assert schedule_of(machine) == []


def test_a_manual_checkpoint_clears_the_schedule(machine: StateMachine, log: Log) -> None:
    log.apply(persist("w", T0, "a", **INTERVAL))
    assert scheduled_due(machine.store, "w") == T0 + MIN
    assert log.apply(checkpoint("w", "cp-manual", T0 + 5 * SEC, **INTERVAL)).code == OK
    assert schedule_of(machine) == []
    skipped = log.apply(periodic([("w", T0 + MIN, "cp-p")], T0 + MIN, **INTERVAL))
    assert skipped.batch.skipped == 1 and [c.id for c in machine.checkpoints("w")] == ["cp-manual"]
    # The next change schedules from the manual checkpoint's time.
    log.apply(persist("w", T0 + 10 * SEC, "b", **INTERVAL))
    assert schedule_of(machine) == [("w", T0 + 5 * SEC + MIN)]


def test_periodic_checkpoints_respect_the_limit_and_retention(machine: StateMachine, log: Log) -> None:
    limited = {**INTERVAL, "checkpoint_limit": 2}
    t = T0
    for n in range(4):
        log.apply(persist("w", t, f"s{n}", **limited))
        due = scheduled_due(machine.store, "w")
        assert due is not None
        assert log.apply(periodic([("w", due, f"cp-{n}")], due, **limited)).batch.applied == 1
        t = due + SEC
    assert [c.id for c in machine.checkpoints("w")] == ["cp-2", "cp-3"]
    cp3_time = machine.get_checkpoint("w", "cp-3").timestamp.ToNanoseconds()
    log.apply(persist("w", t, "s4", **limited))
    due = scheduled_due(machine.store, "w")
    log.apply(periodic([("w", due, "cp-4")], due, retain_after=cp3_time + 1, **limited))
    assert [c.id for c in machine.checkpoints("w")] == ["cp-4"]


def test_delete_clears_the_schedule(machine: StateMachine, log: Log) -> None:
    log.apply(persist("w", T0, "a", **INTERVAL))
    log.apply(persist("x", T0, "a", **INTERVAL))
    log.apply(delete("w", T0 + 1))
    assert schedule_of(machine) == [("x", T0 + MIN)]
    result = log.apply(periodic([("w", T0 + MIN, "cp-1"), ("x", T0 + MIN, "cp-2")], T0 + MIN, **INTERVAL))
    assert (result.batch.applied, result.batch.skipped) == (1, 1)
    assert machine.checkpoints("w") == []
