"""Linearizability of a versioned register, per key: Wing & Gong's search with Lowe's memoization.

The model's state is (version, value), starting at (0, None) for a key never written:
- write(x): (v, _) -> (v + 1, x); an ok write reports the version it created.
- cas(e, x): if v == e then (v + 1, x), reporting v + 1; otherwise unchanged (a fail outcome).
- recover(x): like write (restoring a checkpoint's value as a new version).
- read, checkpoint: observe (version, value) without changing it.

Indeterminate operations (info) have no return: they may take effect at any point after they were
invoked, or never (linearized after everything observed, they change nothing anyone saw); their
outcome is whatever the model allows. Failed writes definitely did not happen and are dropped, but a
failed cas is kept when it claims a version mismatch, which must itself be linearizable.

Lowe's cache of (set of linearized ops, state) prunes revisits; the search stops at a time limit and
answers "unknown" rather than hang.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from ..history import FAIL, INFO, OK, Operation
from . import Verdict

State = tuple[int, object]
INITIAL: State = (0, None)


def _step(op: Operation, state: State) -> list[State]:
    """Every state `op` can lead to from `state`, given what was observed of it ([] = impossible)."""
    version, _ = state
    if op.f in ("read", "checkpoint"):
        if op.outcome != OK:
            return [state]
        seen_version, seen_value = op.value
        return [state] if (seen_version, seen_value) == (version, state[1]) else []
    if op.f in ("write", "recover"):
        # ok, or info resolved to the version it created; unresolved info: happened here (never
        # happening at all is the same as being linearized after everything observed).
        return [(version + 1, op.value)] if op.version in (None, version + 1) else []
    if op.f == "cas":
        if op.outcome == OK or op.version is not None:
            ok = version == op.expected and op.version in (None, version + 1)
            return [(version + 1, op.value)] if ok else []
        if op.outcome == FAIL:
            return [state] if version != op.expected else []
        return [(version + 1, op.value)] if version == op.expected else [state]
    raise ValueError(f"unknown operation {op.f!r}")


@dataclass
class _Entry:
    op: Operation
    is_call: bool
    time: float
    id: int
    match: _Entry | None = None
    prev: _Entry | None = None
    next: _Entry | None = None


def _build(ops: list[Operation]) -> _Entry:
    events: list[tuple[float, int, _Entry]] = []
    for i, op in enumerate(ops):
        call = _Entry(op, True, op.call, i)
        ret = _Entry(op, False, float("inf") if op.ret is None else op.ret, i)
        call.match = ret
        # At equal times a return sorts before a call: the two did not overlap.
        events.append((call.time, 1, call))
        events.append((ret.time, 0, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2].id))
    head = _Entry(ops[0] if ops else None, False, -1, -1)  # type: ignore[arg-type]
    prev = head
    for _, _, entry in events:
        prev.next, entry.prev = entry, prev
        prev = entry
    return head


def _lift(entry: _Entry) -> None:
    for e in (entry, entry.match):
        assert e is not None
        e.prev.next = e.next  # type: ignore[union-attr]
        if e.next:
            e.next.prev = e.prev


def _unlift(entry: _Entry) -> None:
    for e in (entry.match, entry):
        assert e is not None
        e.prev.next = e  # type: ignore[union-attr]
        if e.next:
            e.next.prev = e


def check_key(ops: list[Operation], deadline: float) -> tuple[bool | None, str]:
    """(linearizable?, explanation). None when the deadline passed first."""
    ops = [op for op in ops if not (op.outcome == FAIL and op.f != "cas")]
    ops = [op for op in ops if not (op.outcome == INFO and op.f in ("read", "checkpoint"))]
    if not ops:
        return True, ""
    head = _build(ops)
    state: State = INITIAL
    linearized = 0
    cache: set[tuple[int, State]] = set()
    stack: list[tuple[_Entry, State, int]] = []  # (call entry, state before, alternative index)
    entry = head.next
    best_depth, blocked_at, blocked_state = 0, None, state
    steps = 0
    alt = 0
    while head.next is not None:
        steps += 1
        if steps % 2048 == 0 and time.monotonic() > deadline:
            return None, f"time limit reached after {steps} steps"
        if entry is None:
            return True, ""  # only unmatched info returns remain
        if entry.is_call:
            options = _step(entry.op, state)
            moved = False
            for k in range(alt, len(options)):
                new_state = options[k]
                new_linearized = linearized | (1 << entry.id)
                if (new_linearized, new_state) in cache:
                    continue
                cache.add((new_linearized, new_state))
                stack.append((entry, state, k))
                state, linearized = new_state, new_linearized
                _lift(entry)
                if len(stack) > best_depth:
                    best_depth = len(stack)
                entry, alt, moved = head.next, 0, True
                break
            if not moved:
                entry, alt = entry.next, 0
            continue
        # A return: its operation must be linearized before anything after it; backtrack.
        if entry.op.ret is None:
            # Everything left to place is indeterminate: it can all be "after the end".
            rest, all_info = head.next, True
            while rest is not None:
                if rest.op.ret is not None:
                    all_info = False
                    break
                rest = rest.next
            if all_info:
                return True, ""
        if blocked_at is None or len(stack) >= best_depth:
            blocked_at, blocked_state = entry.op, state
        if not stack:
            break
        top, state, k = stack.pop()
        linearized &= ~(1 << top.id)
        _unlift(top)
        entry, alt = top, k + 1
    if head.next is None:
        return True, ""
    assert blocked_at is not None
    return False, (
        f"{blocked_at.describe()} cannot be linearized; the register could be "
        f"v{blocked_state[0]}={blocked_state[1]!r} there"
    )


def resolve_indeterminate(ops: list[Operation], applied: dict[str, dict[str, int]]) -> list[Operation]:
    """Use each key's final, complete change history (request id -> version) to settle info writes.

    An info write whose request id created version v is known to have taken effect as v (when is still
    unknown: it keeps no return time); one absent from a complete history never took effect. Keys
    without a final history are left as they are. The other checkers hold that history to account.
    """
    out = []
    for op in ops:
        versions = applied.get(op.key)
        if op.outcome == INFO and op.f in ("write", "cas", "recover") and versions is not None:
            if op.request_id not in versions:
                continue
            op = Operation(**{**op.__dict__, "version": versions[op.request_id]})
        out.append(op)
    return out


def check(ops: list[Operation], time_limit: float = 30.0, applied: dict[str, dict[str, int]] | None = None) -> Verdict:
    if applied is not None:
        ops = resolve_indeterminate(ops, applied)
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        by_key[op.key].append(op)
    deadline = time.monotonic() + time_limit
    violations, unknown = [], []
    for key in sorted(by_key):
        ok, why = check_key(by_key[key], deadline)
        if ok is None:
            unknown.append(key)
        elif not ok:
            violations.append(f"{key}: {why}")
    valid = False if violations else (None if unknown else True)
    return Verdict(
        "linearizable", valid, violations, {"keys": len(by_key), "operations": len(ops), "unknown_keys": unknown}
    )
