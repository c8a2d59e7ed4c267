"""The engine's apply rules over a real RocksDB: runs, leases, fencing, expiry, retries, determinism.

Commands are built by hand with every stamped field explicit (time, request id, policy), as the leader
would stamp them, and applied at rising indexes; "nothing changed" is checked over every column family.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cairn.v1 import state_pb2
from cairn.wire import REASON_LEASE_LOST
from cairn_server import engine
from cairn_server.internal import command_pb2
from cairn_server.statemachine import ALREADY_EXISTS, FAILED_PRECONDITION, NOT_FOUND, OK, StateMachine
from cairn_server.storage import STATE_CFS, RocksStore
from cairn_server.storage.keys import due_key, queue_key, u64

SEC = 10**9
T0 = 1_700_000_000 * SEC
HOUR_NS = 3600 * SEC
LEASE = 10 * SEC
# Bookkeeping every applied command may write (applied index, dedup records): not an effect on the state.
BOOKKEEPING = ("meta", "dedup", "dedup_exp")
ENGINE_CFS = ("run_queue", "lease", "lease_due", "cp_sched", "cp_due")


# ---- command builders ---------------------------------------------------------------------------------


def command(
    t: int,
    rid: str = "",
    *,
    body: bytes | None = None,
    max_attempts: int = 3,
    retry_backoff: int = SEC,
    max_retry_backoff: int = 8 * SEC,
    auto_recovery: bool = True,
    checkpoints_enabled: bool = False,
    checkpoint_interval: int = 0,
    checkpoint_every: int = 0,
    checkpoint_limit: int = 100,
    require_expected_version: bool = False,
) -> command_pb2.Command:
    """An envelope stamped as the leader would: time, dedup window, limits and the engine policy."""
    return command_pb2.Command(
        request_id=rid,
        body_hash=body if body is not None else hashlib.sha256(rid.encode()).digest(),
        time_ns=t,
        dedup_expires_ns=t + HOUR_NS if rid else 0,
        history_limit=100,
        checkpoint_limit=checkpoint_limit,
        require_expected_version=require_expected_version,
        policy=command_pb2.Policy(
            max_attempts=max_attempts,
            retry_backoff_ns=retry_backoff,
            max_retry_backoff_ns=max_retry_backoff,
            checkpoint_interval_ns=checkpoint_interval,
            checkpoint_every_versions=checkpoint_every,
            checkpoints_enabled=checkpoints_enabled,
            auto_recovery=auto_recovery,
        ),
    )


def start(wid: str, t: int, rid: str = "", *, wtype: str = "order", **policy) -> command_pb2.Command:
    cmd = command(t, rid, **policy)
    cmd.start_run.workflow_id, cmd.start_run.workflow_type = wid, wtype
    cmd.start_run.input.string_value = f"input of {wid}"
    cmd.start_run.labels["team"] = "a"
    return cmd


def claim(wid: str, t: int, rid: str = "", *, worker: str = "worker-1", duration: int = LEASE, **kw):
    cmd = command(t, rid, **kw)
    op = cmd.claim_run
    op.workflow_id, op.worker_id, op.lease_id = wid, worker, f"lease-{wid}-{t}"
    op.expires_ns, op.duration_ns = t + duration, duration
    return cmd


def record(wid: str, token: int, name: str, t: int, rid: str = "", *, result: str = "ok", **policy):
    cmd = command(t, rid, **policy)
    op = cmd.record_step
    op.workflow_id, op.fencing_token, op.step_name = wid, token, name
    op.result.string_value = result
    return cmd


def complete(wid: str, token: int, t: int, rid: str = "", **policy) -> command_pb2.Command:
    cmd = command(t, rid, **policy)
    cmd.complete_run.workflow_id, cmd.complete_run.fencing_token = wid, token
    cmd.complete_run.output.string_value = "done"
    return cmd


def fail(wid: str, token: int, t: int, rid: str = "", *, non_retryable: bool = False, **policy):
    cmd = command(t, rid, **policy)
    op = cmd.fail_run
    op.workflow_id, op.fencing_token, op.error, op.non_retryable = wid, token, "step raised", non_retryable
    return cmd


def cancel(wid: str, t: int, rid: str = "", **policy) -> command_pb2.Command:
    cmd = command(t, rid, **policy)
    cmd.cancel_run.workflow_id, cmd.cancel_run.reason = wid, "no longer needed"
    return cmd


def release(wid: str, t: int, rid: str = "", **policy) -> command_pb2.Command:
    cmd = command(t, rid, **policy)
    cmd.release_run.workflow_id = wid
    return cmd


def heartbeat(refs: list[tuple[str, int]], t: int, *, worker: str = "worker-1", **policy) -> command_pb2.Command:
    cmd = command(t, **policy)
    cmd.heartbeat.worker_id = worker
    for wid, token in refs:
        cmd.heartbeat.leases.add(workflow_id=wid, fencing_token=token)
    return cmd


def expire(entries: list[tuple], t: int, **policy) -> command_pb2.Command:
    """entries: (workflow id, token) or (workflow id, token, checkpoint to restore)."""
    cmd = command(t, **policy)
    for wid, token, *restore in entries:
        entry = cmd.expire_leases.leases.add(workflow_id=wid, fencing_token=token)
        if restore:
            entry.restore.CopyFrom(restore[0])
    return cmd


def persist(wid: str, t: int, step: str, rid: str = "", *, expected: int | None = None, **kw) -> command_pb2.Command:
    variables = kw.pop("variables", {})
    cmd = command(t, rid, **kw)
    cmd.persist.workflow_id, cmd.persist.current_step = wid, step
    cmd.persist.variables.update(variables)
    if expected is not None:
        cmd.persist.expected_version = expected
    return cmd


def checkpoint(wid: str, cp_id: str, t: int, rid: str = "", **policy) -> command_pb2.Command:
    cmd = command(t, rid, **policy)
    cmd.checkpoint.workflow_id, cmd.checkpoint.checkpoint_id = wid, cp_id
    return cmd


def delete(wid: str, t: int, rid: str = "", **policy) -> command_pb2.Command:
    cmd = command(t, rid, **policy)
    cmd.delete.workflow_id = wid
    return cmd


def periodic(due: list[tuple[str, int, str]], t: int, *, retain_after: int = 0, **policy) -> command_pb2.Command:
    cmd = command(t, **policy)
    for wid, due_ns, cp_id in due:
        cmd.periodic_checkpoints.due.add(workflow_id=wid, due_ns=due_ns, checkpoint_id=cp_id)
    cmd.periodic_checkpoints.retain_after_ns = retain_after
    return cmd


# ---- a log of applied entries ---------------------------------------------------------------------------


class Log:
    """Applies commands at rising Raft indexes and keeps each entry, so that it can be replayed elsewhere."""

    def __init__(self, machine: StateMachine, first_index: int = 10):
        self.machine = machine
        self.next_index = first_index
        self.entries: list[tuple[bytes, int]] = []

    def apply(self, cmd: command_pb2.Command) -> command_pb2.ApplyResult:
        payload, index = cmd.SerializeToString(), self.next_index
        self.next_index += 1
        self.entries.append((payload, index))
        return self.machine.apply(payload, index)

    def claim(self, wid: str, t: int, **kw) -> int:
        """Claim `wid` and return its fencing token (checked to be this entry's index)."""
        index = self.next_index
        result = self.apply(claim(wid, t, **kw))
        assert result.code == OK, result.message
        assert result.task.lease.fencing_token == index
        return index


def store_digest(machine: StateMachine, skip: tuple[str, ...] = BOOKKEEPING) -> str:
    """SHA-256 over every record of every state column family but `skip`."""
    h = hashlib.sha256()
    for cf in STATE_CFS:
        if cf in skip:
            continue
        for key, value in machine.store.scan(cf):
            for part in (cf.encode(), key, value):
                h.update(u64(len(part)) + part)
    return h.hexdigest()


def keys(machine: StateMachine, cf: str) -> list[bytes]:
    return [k for k, _ in machine.store.scan(cf)]


def run_of(machine: StateMachine, wid: str) -> state_pb2.WorkflowRun:
    state = machine.get_state(wid)
    assert state is not None and state.HasField("run")
    return state.run


def new_machine(path: Path) -> tuple[RocksStore, StateMachine]:
    store = RocksStore(path)
    machine = StateMachine(store)
    engine.install(machine)
    return store, machine


@pytest.fixture
def machine(tmp_path: Path):
    store, m = new_machine(tmp_path / "db")
    yield m
    store.close()


@pytest.fixture
def log(machine: StateMachine) -> Log:
    return Log(machine)


def assert_lease_lost(result: command_pb2.ApplyResult) -> None:
    assert result.code == FAILED_PRECONDITION, result
    assert result.reason == REASON_LEASE_LOST, result


# ---- start ---------------------------------------------------------------------------------------------


def test_start_creates_a_pending_first_attempt_in_the_queue(machine: StateMachine, log: Log) -> None:
    result = log.apply(start("w", T0, "s1"))
    assert result.code == OK and result.current_version == 1
    state = machine.get_state("w")
    assert state.version == 1 and state.metadata.labels["team"] == "a"
    run = state.run
    assert run.status == state_pb2.PENDING and run.attempt == 1 and run.attempt_base == 0
    assert run.workflow_type == "order" and run.input.string_value == "input of w"
    assert run.started_at.ToNanoseconds() == T0 and run.ready_at.ToNanoseconds() == T0
    assert run.fencing_token == 0 and not run.steps
    history = machine.history("w")
    assert [(h.version, h.kind, h.request_id) for h in history] == [(1, state_pb2.RUN_STARTED, "s1")]
    assert keys(machine, "run_queue") == [queue_key("order", T0, "w")]
    assert keys(machine, "lease") == [] and keys(machine, "lease_due") == []


def test_start_of_an_existing_id_is_refused_and_changes_nothing(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    before, before_all = machine.digest("w"), store_digest(machine)
    again = log.apply(start("w", T0 + SEC, "s2"))
    assert again.code == ALREADY_EXISTS and again.current_version == 1
    assert machine.digest("w") == before and store_digest(machine) == before_all
    # A persist-created workflow without a run cannot be started either.
    log.apply(persist("plain", T0, "a"))
    assert log.apply(start("plain", T0 + SEC, "s3")).code == ALREADY_EXISTS
    assert not machine.get_state("plain").HasField("run")


def test_start_replayed_under_its_request_id_returns_the_first_result(machine: StateMachine, log: Log) -> None:
    first = log.apply(start("w", T0, "s1"))
    before = store_digest(machine)
    retry = log.apply(start("w", T0 + 5 * SEC, "s1"))
    assert retry == first
    assert store_digest(machine) == before and len(machine.history("w")) == 1


# ---- claim ---------------------------------------------------------------------------------------------


def test_claim_leases_the_run_under_the_entry_index(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    t = T0 + SEC
    index = log.next_index
    result = log.apply(claim("w", t, "poll-1", worker="worker-7"))
    assert result.code == OK and result.current_version == 2
    lease = result.task.lease
    assert lease.fencing_token == index and lease.worker_id == "worker-7"
    assert lease.expires_at.ToNanoseconds() == t + LEASE and lease.granted_at.ToNanoseconds() == t
    assert lease.duration_ms == LEASE // 1_000_000
    run = machine.get_state("w").run
    assert run.status == state_pb2.RUNNING and run.fencing_token == index and run.lease_holder == "worker-7"
    assert result.task.state.run == run
    assert keys(machine, "run_queue") == []
    stored = machine.store.get("lease", b"w")
    assert stored is not None and stored == lease.SerializeToString(deterministic=True)
    assert keys(machine, "lease_due") == [due_key(t + LEASE, "w")]
    assert machine.history("w")[-1].kind == state_pb2.RUN_CLAIMED


def test_claim_of_a_running_run_is_refused_and_changes_nothing(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    log.claim("w", T0 + SEC)
    before = store_digest(machine)
    refused = log.apply(claim("w", T0 + 2 * SEC, "poll-2", worker="worker-2"))
    assert refused.code == FAILED_PRECONDITION and refused.current_version == 2
    assert store_digest(machine) == before


def test_claim_before_ready_at_is_refused(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    log.apply(fail("w", token, T0 + SEC, retry_backoff=4 * SEC))  # PENDING again, ready at T0 + 5s
    assert run_of(machine, "w").ready_at.ToNanoseconds() == T0 + 5 * SEC
    before = store_digest(machine)
    assert log.apply(claim("w", T0 + 5 * SEC - 1)).code == FAILED_PRECONDITION
    assert store_digest(machine) == before
    assert log.apply(claim("w", T0 + 5 * SEC)).code == OK


def test_a_refused_claim_leaves_no_dedup_record(machine: StateMachine, log: Log) -> None:
    # One poll tries run after run under one request id (and one body): only the claim that happened counts.
    log.apply(start("a", T0, "s1"))
    log.apply(start("b", T0, "s2"))
    log.claim("a", T0 + SEC)
    refused = log.apply(claim("a", T0 + 2 * SEC, "poll-9", body=b"poll body"))
    assert refused.code == FAILED_PRECONDITION
    assert machine.store.get("dedup", b"poll-9") is None
    index = log.next_index
    took = log.apply(claim("b", T0 + 2 * SEC, "poll-9", body=b"poll body"))
    assert took.code == OK and took.task.state.workflow_id == "b" and took.task.lease.fencing_token == index
    # ...and that one is remembered: the retry of the poll gets the same claim back.
    assert log.apply(claim("b", T0 + 3 * SEC, "poll-9", body=b"poll body")) == took


# ---- fencing ---------------------------------------------------------------------------------------------


def _fenced_write(kind: str, wid: str, token: int, t: int, rid: str) -> command_pb2.Command:
    if kind == "record":
        return record(wid, token, "late-step", t, rid)
    if kind == "complete":
        return complete(wid, token, t, rid)
    return fail(wid, token, t, rid)


@pytest.mark.parametrize("kind", ["record", "complete", "fail"])
@pytest.mark.parametrize("situation", ["stale_token", "after_expiry", "pending", "completed", "cancelled"])
def test_fenced_writes_without_the_live_lease_are_refused_and_change_nothing(
    machine: StateMachine, log: Log, kind: str, situation: str
) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    t = T0 + SEC
    if situation == "stale_token":
        log.apply(expire([("w", token)], T0 + LEASE))
        log.claim("w", T0 + LEASE + 1)  # a new lease under a higher token
        t = T0 + LEASE + 2
    elif situation == "after_expiry":
        t = T0 + LEASE + 1  # the lease record is still there, but the stamped time is past it
    elif situation == "pending":
        log.apply(expire([("w", token)], T0 + LEASE))
        t = T0 + LEASE + 1
    elif situation == "completed":
        assert log.apply(complete("w", token, T0 + SEC)).code == OK
        t = T0 + 2 * SEC
    else:
        assert log.apply(cancel("w", T0 + SEC)).code == OK
        t = T0 + 2 * SEC
    before, before_state = store_digest(machine), machine.get_state("w")
    result = log.apply(_fenced_write(kind, "w", token, t, f"{kind}-{situation}"))
    assert_lease_lost(result)
    assert store_digest(machine) == before and machine.get_state("w") == before_state


@pytest.mark.parametrize("kind", ["record", "complete", "fail"])
def test_fenced_writes_with_the_live_lease_are_accepted(machine: StateMachine, log: Log, kind: str) -> None:
    # The control for the refusals above: the same writes, under the live token, up to the expiry itself.
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    result = log.apply(_fenced_write(kind, "w", token, T0 + LEASE, f"{kind}-ok"))
    assert result.code == OK and result.current_version == 3


def test_a_recorded_step_is_never_replaced(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    first = log.apply(record("w", token, "charge", T0 + SEC, "r1", result="charged 10"))
    assert first.code == OK and first.state.current_step == "charge"
    assert machine.history("w")[-1].kind == state_pb2.STEP_RECORDED
    assert machine.history("w")[-1].step_name == "charge"
    before = store_digest(machine)
    again = log.apply(record("w", token, "charge", T0 + 2 * SEC, "r2", result="charged 20"))
    assert again.code == FAILED_PRECONDITION and again.reason != REASON_LEASE_LOST
    assert store_digest(machine) == before
    steps = run_of(machine, "w").steps
    assert [(s.name, s.result.string_value, s.attempt) for s in steps] == [("charge", "charged 10", 1)]
    assert steps[0].completed_at.ToNanoseconds() == T0 + SEC


def test_history_entries_carry_attempt_and_fencing_token(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    log.apply(record("w", token, "a", T0 + SEC))
    log.apply(expire([("w", token)], T0 + LEASE))
    token2 = log.claim("w", T0 + LEASE + 1)
    got = [(h.kind, h.attempt, h.fencing_token) for h in machine.history("w")]
    assert got == [
        (state_pb2.RUN_STARTED, 1, 0),
        (state_pb2.RUN_CLAIMED, 1, token),
        (state_pb2.STEP_RECORDED, 1, token),
        (state_pb2.LEASE_EXPIRED, 2, token),
        (state_pb2.RUN_CLAIMED, 2, token2),
    ]


# ---- heartbeat -----------------------------------------------------------------------------------------


def test_heartbeat_extends_live_leases_and_refuses_stale_ones(machine: StateMachine, log: Log) -> None:
    log.apply(start("a", T0, "s1"))
    log.apply(start("b", T0, "s2"))
    ta = log.claim("a", T0)
    tb = log.claim("b", T0)
    versions = (machine.get_state("a").version, machine.get_state("b").version)
    lease_b = machine.store.get("lease", b"b")
    t = T0 + 6 * SEC
    result = log.apply(heartbeat([("a", ta), ("b", tb + 100)], t))
    assert result.code == OK
    ra, rb = result.heartbeat.results
    assert (ra.workflow_id, ra.fencing_token, ra.extended) == ("a", ta, True)
    assert ra.expires_at.ToNanoseconds() == t + LEASE and not ra.error
    assert (rb.workflow_id, rb.extended) == ("b", False) and "stale" in rb.error
    stored = engine.leases.get_lease(machine.store, "a")
    assert stored.expires_at.ToNanoseconds() == t + LEASE and stored.fencing_token == ta
    assert keys(machine, "lease_due") == sorted([due_key(T0 + LEASE, "b"), due_key(t + LEASE, "a")])
    assert machine.store.get("lease", b"b") == lease_b
    # No new version, no history entry.
    assert (machine.get_state("a").version, machine.get_state("b").version) == versions
    assert len(machine.history("a")) == 2


def test_heartbeat_after_expiry_or_completion_is_refused(machine: StateMachine, log: Log) -> None:
    log.apply(start("a", T0, "s1"))
    log.apply(start("b", T0, "s2"))
    ta = log.claim("a", T0)
    tb = log.claim("b", T0)
    log.apply(complete("b", tb, T0 + SEC))
    log.apply(expire([("a", ta)], T0 + LEASE))
    before = store_digest(machine)
    result = log.apply(heartbeat([("a", ta), ("b", tb), ("missing", 1)], T0 + LEASE + 1))
    assert [r.extended for r in result.heartbeat.results] == [False, False, False]
    assert all(r.error for r in result.heartbeat.results)
    assert store_digest(machine) == before


def test_a_heartbeat_renews_a_lease_past_its_stamp_until_the_leader_expires_it(machine: StateMachine, log: Log) -> None:
    """After a leader change the election can outlast a lease; until ExpireLeasesOp removes it, it is still the
    run's only lease, so its holder's heartbeat renews it (writes stay strict: see the fencing tests)."""
    log.apply(start("a", T0, "s1"))
    ta = log.claim("a", T0)
    late = T0 + LEASE + SEC
    result = log.apply(heartbeat([("a", ta)], late))
    assert [r.extended for r in result.heartbeat.results] == [True]
    assert result.heartbeat.results[0].expires_at.ToNanoseconds() == late + LEASE
    skipped = log.apply(expire([("a", ta)], late + 1))
    assert (skipped.batch.applied, skipped.batch.skipped) == (0, 1)
    assert run_of(machine, "a").status == state_pb2.RUNNING


# ---- expiry --------------------------------------------------------------------------------------------


def test_expire_only_at_expiry_and_then_the_run_is_pending_again(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    before = store_digest(machine)
    early = log.apply(expire([("w", token)], T0 + LEASE - 1))
    assert (early.batch.applied, early.batch.skipped) == (0, 1)
    wrong = log.apply(expire([("w", token + 1)], T0 + LEASE))
    assert (wrong.batch.applied, wrong.batch.skipped) == (0, 1)
    assert store_digest(machine) == before
    done = log.apply(expire([("w", token)], T0 + LEASE))
    assert (done.batch.applied, done.batch.skipped) == (1, 0)
    run = run_of(machine, "w")
    assert run.status == state_pb2.PENDING and run.attempt == 2
    assert run.ready_at.ToNanoseconds() == T0 + LEASE and "expired" in run.last_error
    assert keys(machine, "run_queue") == [queue_key("order", T0 + LEASE, "w")]
    assert keys(machine, "lease") == [] and keys(machine, "lease_due") == []
    assert machine.history("w")[-1].kind == state_pb2.LEASE_EXPIRED
    # The same expiry proposed again (a re-proposal, a new leader) is a no-op.
    after = store_digest(machine)
    again = log.apply(expire([("w", token)], T0 + LEASE + SEC))
    assert (again.batch.applied, again.batch.skipped) == (0, 1)
    assert store_digest(machine) == after
    # The next lease gets a higher token.
    assert log.claim("w", T0 + LEASE + 2 * SEC) > token


def test_expire_after_a_heartbeat_extended_the_lease_is_a_noop(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    log.apply(heartbeat([("w", token)], T0 + 8 * SEC))  # now until T0 + 18s
    before = store_digest(machine)
    result = log.apply(expire([("w", token)], T0 + 12 * SEC))  # the leader looked before the heartbeat
    assert (result.batch.applied, result.batch.skipped) == (0, 1)
    assert store_digest(machine) == before and run_of(machine, "w").status == state_pb2.RUNNING


def test_expire_quarantines_after_max_attempts(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    t = T0
    for attempt in (1, 2):
        token = log.claim("w", t)
        t += LEASE
        log.apply(expire([("w", token)], t, max_attempts=2))
        run = run_of(machine, "w")
        if attempt == 1:
            assert run.status == state_pb2.PENDING and run.attempt == 2
    assert run.status == state_pb2.QUARANTINED and run.attempt == 2
    assert keys(machine, "run_queue") == [] and keys(machine, "lease") == [] and keys(machine, "lease_due") == []
    assert log.apply(claim("w", t + SEC)).code == FAILED_PRECONDITION


def test_expire_quarantines_when_auto_recovery_is_off(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    result = log.apply(expire([("w", token)], T0 + LEASE, auto_recovery=False, max_attempts=5))
    assert result.batch.applied == 1
    run = run_of(machine, "w")
    assert run.status == state_pb2.QUARANTINED and run.attempt == 1 and "auto_recovery" in run.last_error
    assert keys(machine, "run_queue") == [] and keys(machine, "lease") == []


def test_expire_in_checkpoint_mode_restores_the_checkpoint(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    log.apply(record("w", token, "a", T0 + 1))
    log.apply(persist("w", T0 + 2, "after-a", variables={"x": 1}))
    assert log.apply(checkpoint("w", "cp-1", T0 + 3)).code == OK
    log.apply(record("w", token, "b", T0 + 4))
    log.apply(persist("w", T0 + 5, "after-b", variables={"x": 2, "y": 3}))
    cp = machine.get_checkpoint("w", "cp-1")
    assert [s.name for s in run_of(machine, "w").steps] == ["a", "b"]
    result = log.apply(expire([("w", token, cp)], T0 + LEASE))
    assert result.batch.applied == 1
    state = machine.get_state("w")
    assert [s.name for s in state.run.steps] == ["a"]
    assert state.current_step == "after-a" and dict(state.variables) == {"x": 1}
    assert state.run.status == state_pb2.PENDING and state.run.attempt == 2
    assert machine.history("w")[-1].checkpoint_id == "cp-1"
    assert machine.history("w")[-1].kind == state_pb2.LEASE_EXPIRED


# ---- fail and release ------------------------------------------------------------------------------------


def test_fail_retries_after_a_doubling_capped_backoff_then_quarantines(machine: StateMachine, log: Log) -> None:
    policy = {"max_attempts": 5, "retry_backoff": SEC, "max_retry_backoff": 3 * SEC}
    log.apply(start("w", T0, "s1"))
    t = T0
    for attempt, backoff in [(1, SEC), (2, 2 * SEC), (3, 3 * SEC), (4, 3 * SEC)]:
        token = log.claim("w", t)
        t += SEC // 2
        result = log.apply(fail("w", token, t, **policy))
        assert result.code == OK
        run = run_of(machine, "w")
        assert run.status == state_pb2.PENDING and run.attempt == attempt + 1
        assert run.ready_at.ToNanoseconds() == t + backoff, attempt
        assert run.last_error == "step raised"
        assert keys(machine, "run_queue") == [queue_key("order", t + backoff, "w")]
        assert keys(machine, "lease") == [] and keys(machine, "lease_due") == []
        assert machine.history("w")[-1].kind == state_pb2.RUN_ATTEMPT_FAILED
        t += backoff
    token = log.claim("w", t)
    log.apply(fail("w", token, t + 1, **policy))
    run = run_of(machine, "w")
    assert run.status == state_pb2.QUARANTINED and run.attempt == 5 and "5 of 5" in run.last_error
    assert keys(machine, "run_queue") == []


def test_fail_non_retryable_fails_for_good(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    log.apply(fail("w", token, T0 + SEC, non_retryable=True, max_attempts=5))
    run = run_of(machine, "w")
    assert run.status == state_pb2.FAILED and run.attempt == 1 and run.finished_at.ToNanoseconds() == T0 + SEC
    assert keys(machine, "run_queue") == [] and keys(machine, "lease") == [] and keys(machine, "lease_due") == []


def test_release_gives_a_quarantined_run_a_fresh_budget(machine: StateMachine, log: Log) -> None:
    policy = {"max_attempts": 2, "retry_backoff": SEC}
    log.apply(start("w", T0, "s1"))
    log.apply(fail("w", log.claim("w", T0), T0 + 1, **policy))
    log.apply(fail("w", log.claim("w", T0 + SEC + 1), T0 + SEC + 2, **policy))
    assert run_of(machine, "w").status == state_pb2.QUARANTINED
    t = T0 + 10 * SEC
    result = log.apply(release("w", t, "rel-1"))
    assert result.code == OK
    run = run_of(machine, "w")
    assert run.status == state_pb2.PENDING and run.attempt == 3 and run.attempt_base == 2
    assert run.ready_at.ToNanoseconds() == t
    assert keys(machine, "run_queue") == [queue_key("order", t, "w")]
    assert machine.history("w")[-1].kind == state_pb2.RUN_RELEASED
    # A fresh budget: the next failure is retried (after the first backoff again), not quarantined.
    log.apply(fail("w", log.claim("w", t), t + 1, **policy))
    run = run_of(machine, "w")
    assert run.status == state_pb2.PENDING and run.attempt == 4 and run.ready_at.ToNanoseconds() == t + 1 + SEC
    log.apply(fail("w", log.claim("w", t + 2 * SEC), t + 2 * SEC + 1, **policy))
    assert run_of(machine, "w").status == state_pb2.QUARANTINED


@pytest.mark.parametrize("status", ["PENDING", "RUNNING", "COMPLETED"])
def test_release_of_a_run_that_is_not_quarantined_is_refused(machine: StateMachine, log: Log, status: str) -> None:
    log.apply(start("w", T0, "s1"))
    if status != "PENDING":
        token = log.claim("w", T0)
        if status == "COMPLETED":
            log.apply(complete("w", token, T0 + 1))
    before = store_digest(machine)
    assert log.apply(release("w", T0 + SEC, "rel")).code == FAILED_PRECONDITION
    assert store_digest(machine) == before
    assert log.apply(release("missing", T0 + SEC, "rel-2")).code == NOT_FOUND


# ---- cancel --------------------------------------------------------------------------------------------


def test_cancel_a_pending_run_takes_it_off_the_queue(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    result = log.apply(cancel("w", T0 + SEC, "c1"))
    assert result.code == OK
    run = run_of(machine, "w")
    assert run.status == state_pb2.CANCELLED and run.finished_at.ToNanoseconds() == T0 + SEC
    assert "no longer needed" in run.last_error
    assert keys(machine, "run_queue") == []
    assert machine.history("w")[-1].kind == state_pb2.RUN_CANCELLED
    assert log.apply(claim("w", T0 + 2 * SEC)).code == FAILED_PRECONDITION


def test_cancel_a_running_run_ends_its_lease(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    assert log.apply(cancel("w", T0 + SEC, "c1")).code == OK
    assert keys(machine, "lease") == [] and keys(machine, "lease_due") == []
    assert_lease_lost(log.apply(record("w", token, "a", T0 + 2 * SEC)))
    hb = log.apply(heartbeat([("w", token)], T0 + 2 * SEC))
    assert not hb.heartbeat.results[0].extended


def test_cancel_a_quarantined_run(machine: StateMachine, log: Log) -> None:
    log.apply(start("w", T0, "s1"))
    log.apply(expire([("w", log.claim("w", T0))], T0 + LEASE, auto_recovery=False))
    assert log.apply(cancel("w", T0 + LEASE + 1)).code == OK
    assert run_of(machine, "w").status == state_pb2.CANCELLED


@pytest.mark.parametrize("end", ["complete", "fail", "cancel"])
def test_cancel_of_a_finished_run_is_refused(machine: StateMachine, log: Log, end: str) -> None:
    log.apply(start("w", T0, "s1"))
    token = log.claim("w", T0)
    if end == "complete":
        log.apply(complete("w", token, T0 + 1))
    elif end == "fail":
        log.apply(fail("w", token, T0 + 1, non_retryable=True))
    else:
        log.apply(cancel("w", T0 + 1))
    before = store_digest(machine)
    refused = log.apply(cancel("w", T0 + SEC, "c2"))
    assert refused.code == FAILED_PRECONDITION and refused.current_version == machine.get_state("w").version
    assert store_digest(machine) == before


# ---- delete --------------------------------------------------------------------------------------------


def test_delete_drops_every_engine_record_of_the_run(machine: StateMachine, log: Log) -> None:
    cp = {"checkpoints_enabled": True, "checkpoint_interval": 60 * SEC}
    log.apply(start("pending", T0, "s1", **cp))
    log.apply(start("running", T0, "s2", **cp))
    log.apply(start("other", T0, "s3", **cp))
    token = log.claim("running", T0, **cp)
    for wid in ("pending", "running", "other"):
        assert machine.store.get("cp_sched", wid.encode()) is not None
    assert machine.store.get("lease", b"running") is not None
    other_before = [(cf, k, v) for cf in ENGINE_CFS for k, v in machine.store.scan(cf) if b"other" in k]
    for wid in ("pending", "running"):
        assert log.apply(delete(wid, T0 + SEC)).code == OK
        assert machine.get_state(wid) is None and machine.history(wid) == []
    remaining = [(cf, k, v) for cf in ENGINE_CFS for k, v in machine.store.scan(cf)]
    assert remaining == other_before  # only the untouched workflow's queue entry and schedule are left
    assert log.apply(record("running", token, "a", T0 + 2 * SEC)).code == NOT_FOUND


# ---- conflict_resolution: reject -----------------------------------------------------------------------------


def test_reject_mode_refuses_unconditional_updates(machine: StateMachine, log: Log) -> None:
    strict = {"require_expected_version": True}
    created = log.apply(persist("w", T0, "a", "p1", variables={"n": 1}, **strict))
    assert created.code == OK and created.state.version == 1
    before = store_digest(machine)
    refused = log.apply(persist("w", T0 + 1, "b", "p2", variables={"n": 2}, **strict))
    assert refused.code == FAILED_PRECONDITION and refused.current_version == 1
    assert "expected_version" in refused.message
    assert store_digest(machine) == before
    allowed = log.apply(persist("w", T0 + 2, "b", "p3", expected=1, variables={"n": 2}, **strict))
    assert allowed.code == OK and allowed.state.version == 2
    # The same unconditional update goes through when the cluster resolves conflicts by last write.
    assert log.apply(persist("w", T0 + 3, "c", "p4", variables={"n": 3})).code == OK


# ---- determinism and replay ----------------------------------------------------------------------------------


def _a_busy_history(log: Log) -> None:
    cp = {"checkpoints_enabled": True, "checkpoint_interval": 30 * SEC, "max_attempts": 2}
    log.apply(start("a", T0, "s1", **cp))
    log.apply(start("b", T0, "s2", **cp))
    log.apply(start("c", T0, "s3", wtype="mail", **cp))
    ta = log.claim("a", T0 + 1, **cp)
    tb = log.claim("b", T0 + 1, **cp)
    log.apply(record("a", ta, "one", T0 + 2, "r1", **cp))
    log.apply(heartbeat([("a", ta), ("b", tb + 1)], T0 + 3, **cp))
    log.apply(persist("a", T0 + 4, "vars", "p1", variables={"k": "v"}, **cp))
    log.apply(checkpoint("a", "cp-1", T0 + 5, "c1", **cp))
    log.apply(record("a", ta, "two", T0 + 6, "r2", **cp))
    log.apply(fail("b", tb, T0 + 7, "f1", **cp))
    log.apply(expire([("a", ta)], T0 + 3 + LEASE, **cp))
    log.apply(periodic([("b", T0 + 30 * SEC, "cp-p")], T0 + 30 * SEC, **cp))
    tc = log.claim("c", T0 + 31 * SEC, **cp)
    log.apply(complete("c", tc, T0 + 32 * SEC, "d1", **cp))
    log.apply(cancel("a", T0 + 33 * SEC, "x1", **cp))
    log.apply(delete("b", T0 + 34 * SEC, "del", **cp))
    log.apply(start("b", T0 + 35 * SEC, "s4", **cp))


def test_two_replicas_applying_the_same_log_are_identical(tmp_path: Path) -> None:
    store_a, a = new_machine(tmp_path / "a")
    store_b, b = new_machine(tmp_path / "b")
    log = Log(a)
    _a_busy_history(log)
    results_b = [b.apply(payload, index) for payload, index in log.entries]
    assert a.applied_index == b.applied_index == log.entries[-1][1]
    assert store_digest(a, skip=()) == store_digest(b, skip=())
    for cf in STATE_CFS:
        assert list(a.store.scan(cf)) == list(b.store.scan(cf)), cf
    assert results_b[-1].code == OK
    store_a.close()
    store_b.close()


def test_replaying_applied_entries_changes_nothing(tmp_path: Path) -> None:
    store, m = new_machine(tmp_path / "a")
    log = Log(m)
    _a_busy_history(log)
    before = store_digest(m, skip=())
    for payload, index in log.entries:
        m.apply(payload, index)
    assert store_digest(m, skip=()) == before
    store.close()
    # After a restart, too: the applied index is durable with the effects.
    store, m = new_machine(tmp_path / "a")
    assert m.applied_index == log.entries[-1][1]
    for payload, index in log.entries:
        m.apply(payload, index)
    assert store_digest(m, skip=()) == before
    store.close()
