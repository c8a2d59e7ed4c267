"""The linearizability checker must pass linearizable histories and catch each kind of violation."""

from __future__ import annotations

import random

from chaos.checkers.linearizability import check
from chaos.history import FAIL, INFO, OK, Operation

_n = 0


def op(
    f: str,
    call: int,
    ret: int | None,
    outcome: str = OK,
    *,
    value=None,
    version=None,
    expected=None,
    key: str = "k",
    process: int = 0,
) -> Operation:
    global _n
    _n += 1
    return Operation(
        index=_n,
        process=process,
        f=f,
        key=key,
        call=call,
        ret=ret,
        outcome=outcome,
        value=value,
        version=version,
        expected=expected,
        request_id=f"r{_n}",
    )


def w(call: int, ret: int | None, value: str, version: int | None, outcome: str = OK, **kw) -> Operation:
    return op("write", call, ret, outcome, value=value, version=version, **kw)


def r(call: int, ret: int, version: int, value: str | None, **kw) -> Operation:
    return op("read", call, ret, OK, value=[version, value], **kw)


def test_sequential_history_is_linearizable() -> None:
    h = [w(0, 1, "a", 1), r(2, 3, 1, "a"), w(4, 5, "b", 2), r(6, 7, 2, "b"), r(8, 9, 2, "b")]
    assert check(h).valid


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    assert check([w(0, 1, "a", 1), w(2, 10, "b", 2), r(3, 4, 1, "a"), r(5, 6, 2, "b")]).valid
    assert check([w(0, 1, "a", 1), w(2, 10, "b", 2), r(3, 4, 2, "b")]).valid


def test_concurrent_writes_order_by_their_versions() -> None:
    h = [w(0, 10, "a", 2, process=1), w(1, 9, "b", 1, process=2), r(11, 12, 2, "a")]
    assert check(h).valid
    bad = [w(0, 10, "a", 2, process=1), w(1, 9, "b", 1, process=2), r(11, 12, 2, "b")]
    assert check(bad).valid is False


def test_a_stale_read_is_a_violation_naming_the_read() -> None:
    h = [w(0, 1, "a", 1), w(2, 3, "b", 2), r(4, 5, 1, "a", process=7)]
    verdict = check(h)
    assert verdict.valid is False
    assert "read -> [1, 'a']" in verdict.violations[0] and "process 7" in verdict.violations[0]


def test_a_lost_acknowledged_write_is_a_violation() -> None:
    # b was acknowledged as version 2, yet later reads show version 1 still.
    h = [w(0, 1, "a", 1), w(2, 3, "b", 2), r(4, 5, 1, "a"), r(6, 7, 1, "a")]
    assert check(h).valid is False


def test_a_write_applied_twice_is_a_violation() -> None:
    # One write of x, acknowledged as v2; then a read shows v3=x with no other write.
    h = [w(0, 1, "a", 1), w(2, 3, "x", 2), r(4, 5, 3, "x")]
    assert check(h).valid is False


def test_a_cas_that_succeeded_against_the_wrong_version_is_a_violation() -> None:
    h = [w(0, 1, "a", 1), w(2, 3, "b", 2), op("cas", 4, 5, OK, value="c", expected=1, version=3)]
    verdict = check(h)
    assert verdict.valid is False and "cas(expect v1" in verdict.violations[0]
    good = [w(0, 1, "a", 1), op("cas", 2, 3, OK, value="c", expected=1, version=2), r(4, 5, 2, "c")]
    assert check(good).valid


def test_a_failed_cas_must_itself_be_explainable() -> None:
    assert check([w(0, 1, "a", 1), op("cas", 2, 3, FAIL, value="c", expected=0)]).valid
    # Refused as a conflict although the register was at exactly the expected version, alone.
    assert check([w(0, 1, "a", 1), op("cas", 2, 3, FAIL, value="c", expected=1)]).valid is False


def test_indeterminate_writes_may_or_may_not_take_effect() -> None:
    seen = [w(0, 1, "a", 1), w(2, None, "b", None, INFO), r(10, 11, 2, "b")]
    assert check(seen).valid
    unseen = [w(0, 1, "a", 1), w(2, None, "b", None, INFO), r(10, 11, 1, "a")]
    assert check(unseen).valid
    late = [w(0, 1, "a", 1), w(2, None, "b", None, INFO), r(10, 11, 1, "a"), r(12, 13, 2, "b")]
    assert check(late).valid  # took effect long after its client gave up
    cas_info = [w(0, 1, "a", 1), op("cas", 2, None, INFO, value="c", expected=1), r(5, 6, 2, "c")]
    assert check(cas_info).valid
    never = [w(0, 1, "a", 1), op("cas", 2, None, INFO, value="c", expected=7), r(5, 6, 2, "c")]
    assert check(never).valid is False  # that cas could never have succeeded


def test_failed_writes_did_not_happen() -> None:
    assert check([w(0, 1, "a", 1), w(2, 3, "b", None, FAIL), r(4, 5, 1, "a")]).valid
    assert check([w(0, 1, "a", 1), w(2, 3, "b", None, FAIL), r(4, 5, 2, "b")]).valid is False


def test_keys_are_checked_independently() -> None:
    h = [w(0, 1, "a", 1, key="x"), w(0, 1, "a", 1, key="y"), r(2, 3, 1, "a", key="x"), r(2, 3, 0, None, key="z")]
    verdict = check(h)
    assert verdict.valid and verdict.details["keys"] == 3


def test_recover_and_checkpoint_in_the_model() -> None:
    h = [
        w(0, 1, "a", 1),
        op("checkpoint", 2, 3, OK, value=[1, "a"]),
        w(4, 5, "b", 2),
        op("recover", 6, 7, OK, value="a", version=3),
        r(8, 9, 3, "a"),
    ]
    assert check(h).valid


def simulate(n: int, seed: int, processes: int = 8) -> tuple[list[Operation], dict[str, dict[str, int]]]:
    """A linearizable history of `n` operations by concurrent clients of one register, and its final
    change history (request id -> version), as a chaos run records them: each operation takes effect
    at a random instant inside its call..return interval; an info write or cas took effect or not.
    """
    rng = random.Random(seed)
    free = [0] * processes  # when each client may call again (a client's operations never overlap)
    planned = []
    for _ in range(n):
        p = min(range(processes), key=lambda q: (free[q], q))
        call = free[p] + rng.randint(0, 3)
        ret = call + rng.randint(1, 40)
        kind = rng.choice(["read", "write", "write", "cas"])
        planned.append((rng.uniform(call, ret), p, call, ret, kind, kind != "read" and rng.random() < 0.15))
        free[p] = ret + 1
    version, value = 0, None
    history, applied = [], {}
    for at, p, call, ret, kind, info in sorted(planned):
        effect = not info or rng.random() < 0.5
        if kind == "read":
            history.append(op("read", call, ret, OK, value=[version, value], process=p))
            continue
        if kind == "cas" and rng.random() < 0.3:  # refused: it expected a version the register is not at
            history.append(op("cas", call, ret, FAIL, value="never", expected=version + 5, process=p))
            continue
        new = f"x{at:.3f}"
        expected = version if kind == "cas" else None
        if effect:
            version, value = version + 1, new
        o = op(kind, call, None if info else ret, INFO if info else OK, value=new, expected=expected, process=p)
        if not info:
            o.version = version
        if effect:
            applied[o.request_id] = version
        history.append(o)
    history.sort(key=lambda o: o.call)
    return history, {"k": applied}


def test_a_big_concurrent_history_gets_a_definite_verdict() -> None:
    # 1000 operations of 8 concurrent clients, info writes resolved from the final state (as a run does):
    # the search must decide, well inside a generous limit, both ways.
    h, applied = simulate(1000, seed=7)
    verdict = check(h, time_limit=60, applied=applied)
    assert verdict.valid is True, verdict
    assert verdict.details["unknown_keys"] == []
    # The same history with one late read made stale: a definite violation naming it.
    end = max(o.ret for o in h if o.ret is not None)
    latest = max(applied["k"].values())
    stale = op("read", end + 10, end + 11, OK, value=[latest - 1, "stale"], process=99)
    verdict = check([*h, stale], time_limit=60, applied=applied)
    assert verdict.valid is False and verdict.details["unknown_keys"] == []
    assert "process 99" in verdict.violations[0]


def test_a_concurrent_history_with_unresolved_info_writes_gets_a_definite_verdict() -> None:
    # Without the final state every info write may or may not have happened: the search space grows
    # exponentially with them (11 here decide in milliseconds; two dozen do not within a minute), so this
    # history stays small. A run checks with the final state, as the test above does.
    h, _ = simulate(100, seed=2)
    assert sum(o.outcome == INFO for o in h) >= 10
    verdict = check(h, time_limit=60)
    assert verdict.valid is True and verdict.details["unknown_keys"] == []
    stale = op("read", 10**6, 10**6 + 1, OK, value=[0, None], process=99)  # after everything: version 0
    verdict = check([*h, stale], time_limit=60)
    assert verdict.valid is False and verdict.details["unknown_keys"] == []
    assert "process 99" in verdict.violations[0]


def test_only_a_deliberately_tiny_time_limit_makes_the_verdict_unknown() -> None:
    h, applied = simulate(1000, seed=7)
    assert check(h, time_limit=60, applied=applied).valid is True
    verdict = check(h, time_limit=0, applied=applied)  # the search looks at its clock every 2048 steps
    assert verdict.valid is None and verdict.status == "unknown" and verdict.violations == []
    assert verdict.details["unknown_keys"] == ["k"]


def test_resolving_indeterminate_writes_from_the_final_history() -> None:
    took = w(2, None, "b", None, INFO)
    lost = w(3, None, "c", None, INFO)
    h = [w(0, 1, "a", 1), took, lost, r(10, 11, 2, "b")]
    applied = {"k": {h[0].request_id: 1, took.request_id: 2}}
    assert check(h, applied=applied).valid
    # The final history says "c" never took effect, yet a read saw it: a violation.
    assert check([*h, r(12, 13, 3, "c")], applied=applied).valid is False
    assert check([*h, r(12, 13, 3, "c")]).valid  # without that knowledge it could have happened
