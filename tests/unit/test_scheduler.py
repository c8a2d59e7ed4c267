"""The leader's scheduler, one tick at a time: a fake clock and a propose that applies at once.

Its leader-change grace is measured on time.monotonic, which is replaced in the scheduler's module only.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.v1 import state_pb2
from cairn_server import engine
from cairn_server.commands import new_command
from cairn_server.config import Config, parse_config
from cairn_server.engine import leases as leases_module
from cairn_server.engine import scheduler as scheduler_module
from cairn_server.engine.leases import RenewalTimes
from cairn_server.engine.scheduler import Scheduler
from cairn_server.internal import command_pb2
from cairn_server.statemachine import OK, StateMachine
from cairn_server.storage import RocksStore
from tests.unit.test_engine import LEASE, SEC, T0, new_machine, run_of

GRACE_S = LEASE / SEC


class Clocks:
    """The leader's wall clock (ns, stamped into commands) and the monotonic clock the grace is timed on."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += int(seconds * SEC)
        self.mono += seconds


class Harness:
    def __init__(self, machine: StateMachine, config: Config, clocks: Clocks, renewals: RenewalTimes | None = None):
        self.machine, self.config, self.clocks = machine, config, clocks
        self.index = 10
        self.proposed: list[command_pb2.Command] = []
        self.hold = False  # True: proposals stay in flight (never answered)
        self.scheduler = Scheduler(
            machine=machine,
            config=config,
            is_leader=lambda: True,
            propose=self.propose,
            clock=lambda: clocks.wall,
            renewals=renewals,
        )

    def propose(self, payload: bytes, done) -> None:
        self.proposed.append(command_pb2.Command.FromString(payload))
        if self.hold:
            return
        done(self.apply_payload(payload), 0)

    def apply_payload(self, payload: bytes) -> command_pb2.ApplyResult:
        self.index += 1
        return self.machine.apply(payload, self.index)

    def apply(self, build) -> command_pb2.ApplyResult:
        """A client or worker command, stamped from the config at the current wall time."""
        cmd = new_command(self.config, self.clocks.wall)
        build(cmd)
        return self.apply_payload(cmd.SerializeToString())

    def start_and_claim(self, wid: str) -> int:
        assert self.apply(lambda c: _start(c, wid)).code == OK
        token = self.index + 1
        assert self.apply(lambda c: _claim(c, wid, self.clocks.wall)).code == OK
        return token


def _start(cmd: command_pb2.Command, wid: str) -> None:
    cmd.start_run.workflow_id, cmd.start_run.workflow_type = wid, "order"


def _claim(cmd: command_pb2.Command, wid: str, now: int) -> None:
    op = cmd.claim_run
    op.workflow_id, op.worker_id, op.lease_id = wid, "worker-1", "lease-1"
    op.expires_ns, op.duration_ns = now + LEASE, LEASE


def config_for(tmp_path: Path, **sections) -> Config:
    doc = {
        "cluster": {"node_id": "n1", "grpc_address": "127.0.0.1:50051", "raft_address": "127.0.0.1:7001"},
        "state_storage": {"connection": str(tmp_path / "data")},
        "checkpointing": {"enabled": False},
        **sections,
    }
    return parse_config(doc)


@pytest.fixture
def clocks(monkeypatch) -> Clocks:
    c = Clocks()
    monkeypatch.setattr(scheduler_module, "time", types.SimpleNamespace(monotonic=lambda: c.mono))
    monkeypatch.setattr(leases_module, "time", types.SimpleNamespace(monotonic=lambda: c.mono))
    return c


@pytest.fixture
def machine(tmp_path: Path):
    store, m = new_machine(tmp_path / "db")
    yield m
    store.close()


def test_a_new_leader_expires_nothing_until_a_lease_duration_in_office(
    tmp_path: Path, machine: StateMachine, clocks: Clocks
) -> None:
    h = Harness(machine, config_for(tmp_path), clocks)
    token = h.start_and_claim("w")
    clocks.advance(2 * GRACE_S)  # the lease is long past its expiry by the wall clock...
    h.scheduler.on_leadership(True)  # ...but this node only now took office
    h.scheduler.tick()
    clocks.advance(GRACE_S - 0.01)
    h.scheduler.tick()
    assert h.proposed == [] and run_of(machine, "w").status == state_pb2.RUNNING
    clocks.advance(0.01)
    h.scheduler.tick()
    assert len(h.proposed) == 1
    entry = h.proposed[0].expire_leases.leases[0]
    assert (entry.workflow_id, entry.fencing_token) == ("w", token)
    run = run_of(machine, "w")
    assert run.status == state_pb2.PENDING and run.attempt == 2 and h.scheduler.expired == 1


def test_a_node_that_is_not_in_office_expires_nothing(tmp_path: Path, machine: StateMachine, clocks: Clocks) -> None:
    h = Harness(machine, config_for(tmp_path), clocks)
    h.start_and_claim("w")
    h.scheduler.on_leadership(True)
    clocks.advance(3 * GRACE_S)
    h.scheduler.on_leadership(False)
    h.scheduler.tick()
    assert h.proposed == [] and run_of(machine, "w").status == state_pb2.RUNNING


def test_a_lease_not_yet_due_is_left_alone(tmp_path: Path, machine: StateMachine, clocks: Clocks) -> None:
    h = Harness(machine, config_for(tmp_path), clocks)
    h.scheduler.on_leadership(True)
    clocks.advance(3 * GRACE_S)
    h.start_and_claim("w")
    clocks.advance(GRACE_S - 0.5)
    h.scheduler.tick()
    assert h.proposed == []
    clocks.advance(0.5)
    h.scheduler.tick()
    assert run_of(machine, "w").status == state_pb2.PENDING


def test_one_expiry_batch_in_flight_at_a_time(tmp_path: Path, machine: StateMachine, clocks: Clocks) -> None:
    h = Harness(machine, config_for(tmp_path), clocks)
    h.scheduler.on_leadership(True)
    h.start_and_claim("w")
    clocks.advance(2 * GRACE_S)
    h.hold = True
    h.scheduler.tick()
    h.scheduler.tick()
    assert len(h.proposed) == 1  # the first is not answered yet
    clocks.advance(6)  # an unanswered proposal is given up after a while and proposed again
    h.scheduler.tick()
    assert len(h.proposed) == 2


def test_checkpoint_mode_restores_the_latest_checkpoint(tmp_path: Path, machine: StateMachine, clocks: Clocks) -> None:
    h = Harness(machine, config_for(tmp_path, recovery={"resume_from": "checkpoint"}), clocks)
    h.scheduler.on_leadership(True)
    token = h.start_and_claim("w")

    def step(name: str):
        def build(cmd: command_pb2.Command) -> None:
            cmd.record_step.workflow_id, cmd.record_step.fencing_token, cmd.record_step.step_name = "w", token, name

        return build

    def take_checkpoint(cmd: command_pb2.Command) -> None:
        cmd.checkpoint.workflow_id, cmd.checkpoint.checkpoint_id = "w", "cp-1"

    assert h.apply(step("a")).code == OK
    assert h.apply(take_checkpoint).code == OK
    assert h.apply(step("b")).code == OK
    clocks.advance(2 * GRACE_S)
    h.scheduler.tick()
    assert h.proposed[0].expire_leases.leases[0].restore.id == "cp-1"
    run = run_of(machine, "w")
    assert run.status == state_pb2.PENDING and [s.name for s in run.steps] == ["a"]


def test_due_periodic_checkpoints_are_taken_once(tmp_path: Path, machine: StateMachine, clocks: Clocks) -> None:
    config = config_for(tmp_path, checkpointing={"enabled": True, "interval": "60s", "compression": "none"})
    h = Harness(machine, config, clocks)
    h.scheduler.on_leadership(True)

    def change(cmd: command_pb2.Command) -> None:
        cmd.persist.workflow_id, cmd.persist.current_step = "w", "a"

    assert h.apply(change).code == OK
    clocks.advance(59)
    h.scheduler.tick()
    assert machine.checkpoints("w") == []
    clocks.advance(1)
    h.scheduler.tick()
    assert [c.version for c in machine.checkpoints("w")] == [1]
    h.scheduler.tick()
    clocks.advance(600)
    h.scheduler.tick()
    assert len(machine.checkpoints("w")) == 1 and h.scheduler.checkpointed == 1


@pytest.fixture
def veteran(tmp_path: Path, clocks: Clocks) -> Iterator[Harness]:
    """A leader long in office (no leader-change grace applies) whose scheduler sees the machine's renewals."""
    store = RocksStore(tmp_path / "db")
    machine = StateMachine(store)
    h = Harness(machine, config_for(tmp_path), clocks, engine.install(machine))
    h.scheduler.on_leadership(True)
    clocks.advance(10 * GRACE_S)
    yield h
    store.close()


@pytest.mark.parametrize("jump_s", [60.0, 3600.0])
def test_a_wall_clock_jumped_forward_never_expires_a_lease_early(
    veteran: Harness, clocks: Clocks, jump_s: float
) -> None:
    """The leader has been in office for ages, so no grace applies: only the renewal time holds expiry back."""
    h = veteran
    machine = h.machine
    h.start_and_claim("w")
    clocks.wall += int(jump_s * SEC)  # NTP or an operator moves the leader's clock; monotonic time does not move
    h.scheduler.tick()
    clocks.advance(GRACE_S - 0.01)
    h.scheduler.tick()
    assert h.proposed == [] and run_of(machine, "w").status == state_pb2.RUNNING
    clocks.advance(0.01)  # a full lease duration after the claim was applied here
    h.scheduler.tick()
    assert len(h.proposed) == 1 and run_of(machine, "w").status == state_pb2.PENDING


def test_a_heartbeat_restarts_the_wait_for_that_lease(veteran: Harness, clocks: Clocks) -> None:
    h = veteran
    token = h.start_and_claim("w")
    clocks.advance(GRACE_S / 2)

    def beat(cmd: command_pb2.Command) -> None:
        cmd.heartbeat.leases.add(workflow_id="w", fencing_token=token)

    assert h.apply(beat).code == OK
    clocks.wall += int(30 * SEC)
    clocks.advance(GRACE_S - 0.01)  # past the claim's duration, not yet past the heartbeat's
    h.scheduler.tick()
    assert h.proposed == []
    clocks.advance(0.01)
    h.scheduler.tick()
    assert len(h.proposed) == 1


def test_an_expiry_decided_before_a_heartbeat_is_applied_after_it_expires_nothing(
    veteran: Harness, clocks: Clocks
) -> None:
    """The leader decides on a stale view; a heartbeat commits between the decision and the expiry entry,
    and a forward clock jump makes the stamped-time check pass: the entry names the expiry it saw."""
    h = veteran
    machine = h.machine
    token = h.start_and_claim("w")
    clocks.advance(GRACE_S)
    h.hold = True
    h.scheduler.tick()
    [decided] = h.proposed
    assert decided.expire_leases.leases[0].expires_ns > 0

    def beat(cmd: command_pb2.Command) -> None:
        cmd.heartbeat.leases.add(workflow_id="w", fencing_token=token)

    assert h.apply(beat).code == OK  # the worker's renewal commits first
    clocks.wall += int(10 * GRACE_S * SEC)  # and the leader's clock jumps past the renewed expiry
    late = new_command(h.config, clocks.wall)
    late.expire_leases.CopyFrom(decided.expire_leases)
    result = h.apply_payload(late.SerializeToString())
    assert (result.batch.applied, result.batch.skipped) == (0, 1)
    assert run_of(machine, "w").status == state_pb2.RUNNING
