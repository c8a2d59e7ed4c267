"""The workflow checkers must catch what they are for: each rule fails on a hand-made violating history."""

from __future__ import annotations

import copy

from chaos.checkers import workflows
from chaos.checkers.workflows import liveness, no_reexecution, results_stable, single_lease, step_order
from chaos.history import FAIL, INFO, OK, Operation


def entry(version: int, kind: str, time_ns: int, token: int = 0, step: str = "", request_id: str = "") -> dict:
    return {
        "version": version,
        "kind": kind,
        "time_ns": time_ns,
        "attempt": 1,
        "token": token,
        "step_name": step,
        "request_id": request_id,
    }


def event(step: str, time_ns: int, token: int, result: str, run: str = "r1", worker: str = "w1") -> dict:
    return {"run": run, "step": step, "time_ns": time_ns, "token": token, "result": result, "worker": worker}


def start(outcome: str = OK, key: str = "r1", index: int = 1) -> Operation:
    return Operation(
        index=index,
        process=101,
        f="start",
        key=key,
        call=10,
        ret=20 if outcome != INFO else None,
        outcome=outcome,
        request_id=f"start-{key}",
    )


def read(index: int, steps: list, key: str = "r1", call: int = 30, status: str = "RUNNING") -> Operation:
    value = {"status": status, "version": 3, "steps": steps}
    return Operation(index=index, process=102, f="wf-read", key=key, call=call, ret=call + 5, outcome=OK, value=value)


def clean() -> tuple[list[Operation], dict, list[dict]]:
    """Run r1: claimed under token 10, lost it (the worker was killed after step-0), reclaimed under 20."""
    history = [
        entry(1, "RUN_STARTED", 100, request_id="start-r1"),
        entry(2, "RUN_CLAIMED", 200, 10),
        entry(3, "STEP_RECORDED", 300, 10, "step-0"),
        entry(4, "LEASE_EXPIRED", 600, 10),
        entry(5, "RUN_CLAIMED", 610, 20),
        entry(6, "STEP_RECORDED", 700, 20, "step-1"),
        entry(7, "RUN_COMPLETED", 800, 20),
    ]
    final = {
        "r1": {
            "status": "COMPLETED",
            "attempt": 2,
            "version": 7,
            "steps": [["step-0", "A"], ["step-1", "B2"]],
            "output": ["A", "B2"],
            "last_error": "",
            "history": history,
        }
    }
    events = [
        event("step-0", 250, 10, "A"),
        event("step-1", 350, 10, "B1"),  # ran under the first lease, never persisted: at-least-once
        event("step-1", 650, 20, "B2", worker="w2"),
    ]
    return [start(), read(2, [["step-0", "A"]])], final, events


def test_a_clean_history_passes_every_rule() -> None:
    ops, final, events = clean()
    verdicts = workflows.check(ops, final, events, steps=2)
    assert [v.name for v in verdicts] == [
        "wf-liveness",
        "wf-results-stable",
        "wf-no-reexecution",
        "wf-leases",
        "wf-step-order",
    ]
    assert all(v.valid for v in verdicts), [v.violations for v in verdicts]
    counts = workflows.summary(verdicts)
    assert counts["workflows_started"] == counts["workflows_completed"] == 1
    assert (counts["steps_executed"], counts["steps_persisted"], counts["re_executions"]) == (3, 2, 1)
    assert (counts["claims"], counts["recoveries"]) == (2, 1)


def test_liveness_every_started_run_completes() -> None:
    ops, final, _ = clean()
    stuck = copy.deepcopy(final)
    stuck["r1"]["status"] = "QUARANTINED"
    verdict = liveness(ops, stuck)
    assert not verdict.valid and "ends QUARANTINED" in verdict.violations[0]
    lost = liveness(ops, {"r1": {"missing": True}})
    assert not lost.valid and "no such run after healing" in lost.violations[0]
    # Unknown outcome: absent is fine; present must complete.
    assert liveness([start(INFO)], {"r1": {"missing": True}}).valid
    assert not liveness([start(INFO)], stuck).valid
    refused = liveness([start(FAIL)], final)
    assert not refused.valid and "took effect" in refused.violations[0]
    vanished = liveness([*ops, read(9, [], status="NOT_FOUND")], final)
    assert not vanished.valid and "not found after its start was acknowledged" in vanished.violations[0]


def test_a_persisted_result_never_changes_or_vanishes() -> None:
    ops, final, events = clean()
    replaced = results_stable([*ops, read(3, [["step-0", "other"]], call=40)], final, events)
    assert not replaced.valid and "step-0" in replaced.violations[0] and "'other'" in replaced.violations[0]
    gone = copy.deepcopy(final)
    gone["r1"]["steps"] = [["step-1", "B2"]]
    verdict = results_stable(ops, gone, events)
    assert not verdict.valid and "the final state has no such step" in verdict.violations[0]
    ghost = copy.deepcopy(final)
    ghost["r1"]["steps"][1][1] = "nobody-ran-this"
    assert any("produced by no recorded execution" in v for v in results_stable(ops, ghost, events).violations)
    bad_output = copy.deepcopy(final)
    bad_output["r1"]["output"] = ["A", "B1"]
    assert any("output" in v for v in results_stable(ops, bad_output, events).violations)


def test_a_step_that_runs_again_after_it_was_persisted_fails() -> None:
    _, final, events = clean()
    again = [*events, event("step-0", 650, 20, "A-again", worker="w3")]  # step-0 was persisted at 300
    verdict = no_reexecution(final, again)
    assert not verdict.valid
    assert "step-0" in verdict.violations[0] and "worker w3" in verdict.violations[0]
    assert "still in force" in verdict.violations[0]
    assert verdict.details["re_executions_after_persist"] == 1 and verdict.details["stale_lease_executions"] == 0
    # A worker that ran it on a lease that had already expired (token 10 ended at 600) is told apart.
    stale = no_reexecution(final, [*events, event("step-0", 650, 10, "A-stale", worker="w1")])
    assert not stale.valid and "had ended 0.0 ms before (v4 LEASE_EXPIRED)" in stale.violations[0]
    assert stale.details["stale_lease_executions"] == 1
    # Started before the persist (the persisting execution's twin): at-least-once, allowed.
    assert no_reexecution(final, [*events, event("step-0", 299, 10, "A-twin", worker="w3")]).valid


def test_a_write_by_a_stale_lease_fails() -> None:
    _, final, events = clean()
    stale = copy.deepcopy(final)
    stale["r1"]["history"][5]["token"] = 10  # step-1 recorded under the expired lease's token
    verdict = single_lease(stale, events)
    assert not verdict.valid
    assert any("under token 10, but the lease in force is token 20" in v for v in verdict.violations)
    # The history names the right token, but the persisted result came from the stale execution.
    from_stale = copy.deepcopy(final)
    from_stale["r1"]["steps"][1][1] = "B1"
    assert any(
        "produced under token 10 but recorded under token 20" in v for v in single_lease(from_stale, events).violations
    )


def test_overlapping_claims_fail() -> None:
    _, final, events = clean()
    overlap = copy.deepcopy(final)
    del overlap["r1"]["history"][3]  # no LEASE_EXPIRED between the two claims
    for k, h in enumerate(overlap["r1"]["history"]):
        h["version"] = k + 1
    overlap["r1"]["version"] = len(overlap["r1"]["history"])
    assert any("had not ended" in v for v in single_lease(overlap, events).violations)
    early = copy.deepcopy(final)
    early["r1"]["history"][4]["time_ns"] = 590  # claimed before the expiry at 600
    assert any("before the previous lease ended" in v for v in single_lease(early, events).violations)
    falling = copy.deepcopy(final)
    for h in falling["r1"]["history"][4:]:
        h["token"] = 5
    assert any("does not rise" in v for v in single_lease(falling, events).violations)
    tokenless = copy.deepcopy(final)
    for h in tokenless["r1"]["history"]:
        h["token"] = 0
    assert any("carries no fencing token" in v for v in single_lease(tokenless, events).violations)
    trimmed = copy.deepcopy(final)
    del trimmed["r1"]["history"][0]
    assert any("history is not whole" in v for v in single_lease(trimmed, events).violations)


def test_steps_are_persisted_in_order_and_once() -> None:
    _, final, _ = clean()
    swapped = copy.deepcopy(final)
    swapped["r1"]["steps"].reverse()
    assert any("not in order" in v for v in step_order(swapped, 2).violations)
    twice = copy.deepcopy(final)
    twice["r1"]["steps"].append(["step-1", "B2"])
    assert any("persisted more than once" in v for v in step_order(twice, 2).violations)
    short = copy.deepcopy(final)
    assert any("COMPLETED with 2 of 3 steps" in v for v in step_order(short, 3).violations)
    disagree = copy.deepcopy(final)
    disagree["r1"]["history"][5]["step_name"] = "step-0"
    assert any("the history records steps" in v for v in step_order(disagree, 2).violations)


def test_worker_faults_need_the_workflow_workload() -> None:
    from chaos.nemesis import select

    chosen, left_out = select("kill-leader,workers", netns=False, workers=False)
    assert [f.name for f in chosen] == ["kill-leader"]
    assert left_out == [
        f"{name}: needs workers (--workload workflows or both)" for name in ("worker-kill", "worker-pause")
    ]
    chosen, _ = select("workers", netns=False, workers=True)
    assert {f.name for f in chosen} == {"worker-kill", "worker-pause"}
