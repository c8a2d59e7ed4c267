"""The other checkers must catch what they are for."""

from __future__ import annotations

from chaos.checkers.safety import audit_log, convergence, exactly_once, liveness, no_lost_writes
from chaos.history import INFO, OK, Operation


def wop(index: int, version: int | None, outcome: str = OK, key: str = "k", ret: int = 10) -> Operation:
    return Operation(
        index=index,
        process=0,
        f="write",
        key=key,
        call=ret - 5,
        ret=ret if outcome == OK else None,
        outcome=outcome,
        value=f"x{index}",
        version=version,
        request_id=f"r{index}",
    )


def test_no_lost_writes() -> None:
    ops = [wop(1, 1), wop(2, 2), wop(3, None, INFO)]
    final = {"k": {"version": 2, "history": [(1, "r1"), (2, "r2")]}}
    assert no_lost_writes(ops, final).valid
    lost = {"k": {"version": 1, "history": [(1, "r1")]}}
    verdict = no_lost_writes(ops, lost)
    assert not verdict.valid and "op 2" in verdict.violations[0]
    replaced = {"k": {"version": 2, "history": [(1, "r1"), (2, "r3")]}}
    assert "not 'r2'" in no_lost_writes(ops, replaced).violations[0]


def test_exactly_once() -> None:
    ops = [wop(1, 1), wop(2, 2)]
    assert exactly_once(ops, {"k": {"version": 2, "history": [(1, "r1"), (2, "r2")]}}).valid
    twice = exactly_once(ops, {"k": {"version": 3, "history": [(1, "r1"), (2, "r2"), (3, "r2")]}})
    assert not twice.valid and "'r2' took effect 2 times" in twice.violations[0]
    ghost = exactly_once(ops, {"k": {"version": 1, "history": [(1, "nobody")]}})
    assert not ghost.valid and "never made" in ghost.violations[0]


def test_convergence() -> None:
    assert convergence({"k": {"n1": (5, 2, "aa"), "n2": (5, 2, "aa")}}).valid
    bad = convergence({"k": {"n1": (5, 2, "aa"), "n2": (5, 2, "bb")}})
    assert not bad.valid and "n2: v2 bb" in bad.violations[0]


def test_liveness() -> None:
    s = 10**9
    ops = [wop(1, 1, ret=1 * s), wop(2, 2, ret=2 * s), wop(3, 3, ret=9 * s)]
    verdict = liveness(ops, last_heal_ns=8 * s, end_ns=10 * s, bound_s=5)
    assert verdict.valid and verdict.details["recovery_after_last_heal_s"] == 1.0
    assert verdict.details["unavailability_windows"] == [{"at_s": 1.0, "length_s": 7.0}]
    stuck = liveness(ops[:2], last_heal_ns=3 * s, end_ns=20 * s, bound_s=5)
    assert not stuck.valid and "no write succeeded" in stuck.violations[0]


def test_audit_log() -> None:
    final = {"k": {"version": 2, "history": [(1, "r1"), (2, "r2")]}}
    nodes = [{"node": f"n{i}", "ok": True, "head_seq": 9, "problem": ""} for i in range(3)]
    agree = {"ok": True, "message": "record 9: every node holds the same hash"}
    good = {"nodes": nodes, "agree": agree, "applied_request_ids": ["r1", "r2", "other"]}
    assert audit_log(good, final).valid
    missing = audit_log({**good, "applied_request_ids": ["r1"]}, final)
    assert not missing.valid and "request r2" in missing.violations[0]
    broken_node = {**nodes[1], "ok": False, "problem": "record 4 was altered"}
    broken = audit_log({**good, "nodes": [nodes[0], broken_node, nodes[2]]}, final)
    assert not broken.valid and "n1: audit chain broken: record 4 was altered" in broken.violations
    differ = audit_log({**good, "agree": {"ok": False, "message": "replicas differ"}}, final)
    assert not differ.valid and "differ" in differ.violations[0]
