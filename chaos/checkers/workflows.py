"""The workflow workload's checkers: durable execution under worker and node faults.

Inputs: the history's `start` and `wf-read` operations; `final`, each run's state after healing
({"status", "steps": [[name, result]], "output", "history": [{version, kind, time_ns, attempt, token,
step_name, request_id}]} or {"missing": true}); and the workers' `events`, one per execution of a step's
code ({run, step, worker, time_ns, token, result, ...}). History times and event times are both
time.time_ns() on this machine (the leader stamps an entry before proposing it), so they compare.

Rules, one verdict each:
1. wf-liveness: every acknowledged start ends COMPLETED; a start of unknown outcome that took effect
   does too; a refused start never took effect.
2. wf-results-stable: a step's result, once seen (a sampled read or the final state), never changes
   or disappears; every persisted result is one an execution produced; the output is those results.
3. wf-no-reexecution: no execution of a step starts after its result was persisted (an execution that
   started before the persist is at-least-once, and allowed).
4. wf-leases: claims of a run never overlap (each after the previous lease ended, with a rising
   fencing token), and every write under a lease carries the token of the claim in force; the
   execution that produced a persisted result ran under that token too.
5. wf-step-order: steps are persisted in order, each name at most once, all of them when COMPLETED.
6. wf-lease-early-expiry (runs with clock faults): no lease expired sooner than its duration after it
   was granted, in true time (the early expiry a leader's clock jump causes).

Clock faults: rules 3 and 4 compare leader-stamped times with each other and with the workers' clock,
which a skewed leader's stamps make meaningless. Given the skew windows (wall from, wall to, offset) of
the clock faults, a stamp's true time is only known to lie in an interval (the stamp itself, or the stamp
minus an offset in force when it could have been made), and a comparison is a violation only when it holds
for every reading; without clock faults each interval is the stamp itself and nothing changes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from ..history import FAIL, INFO, OK, Operation
from . import Verdict

Skew = tuple[int, int, float]  # a node's clock offset in force: wall ns from, wall ns to, offset seconds
SKEW_MARGIN_NS = 1_000_000_000  # a node sees a new offset within ~50 ms; generously more
EARLY_TOLERANCE_NS = 50_000_000  # the claim's stamp and its expiry are read from the clock a moment apart


def true_time(stamp: int, skews: list[Skew] | None) -> tuple[int, int]:
    """The interval a leader's stamp's true wall time lies in, given the clock faults' skew windows."""
    candidates = [stamp]
    for start, end, offset in skews or []:
        t = stamp - int(offset * 1e9)
        if start - SKEW_MARGIN_NS <= t <= end + SKEW_MARGIN_NS:
            candidates.append(t)
    return min(candidates), max(candidates)


CLAIM = "RUN_CLAIMED"
ENDS = ("LEASE_EXPIRED", "RUN_COMPLETED", "RUN_ATTEMPT_FAILED", "RUN_CANCELLED")
UNDER_LEASE = ("STEP_RECORDED", "RUN_COMPLETED", "RUN_ATTEMPT_FAILED", "LEASE_EXPIRED")


def step_name(k: int) -> str:
    return f"step-{k}"


def _exists(run: dict | None) -> bool:
    return run is not None and not run.get("missing") and not run.get("error")


def _history(run: dict) -> list[dict]:
    return sorted(run.get("history", []), key=lambda h: h["version"])


def _by_step(events: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for e in events:
        out[(e["run"], e["step"])].append(e)
    return out


def liveness(ops: list[Operation], final: dict[str, dict]) -> Verdict:
    """Rule 1: after healing, every run that was (or may have been) started is COMPLETED."""
    violations = []
    counts: Counter[str] = Counter()
    acked_at: dict[str, int] = {}
    for op in ops:
        if op.f != "start":
            continue
        run = final.get(op.key)
        counts[f"starts_{op.outcome}"] += 1
        if run is not None and run.get("error"):
            violations.append(f"start of {op.key} ({op.outcome}): the final read failed: {run['error']}")
            continue
        if op.outcome == OK:
            acked_at[op.key] = op.ret or op.call
            if not _exists(run):
                violations.append(f"acknowledged start of {op.key} ({op.request_id}): no such run after healing")
                continue
        elif op.outcome == INFO:
            if not _exists(run):
                continue
            counts["unknown_starts_that_exist"] += 1
        elif op.outcome == FAIL:
            if _exists(run):
                violations.append(f"refused start of {op.key} ({op.error}) took effect: the run exists")
            continue
        assert run is not None
        history = _history(run)
        if history and history[0]["kind"] == "RUN_STARTED" and history[0]["request_id"] != op.request_id:
            violations.append(
                f"{op.key} was started by request {history[0]['request_id']!r}, not this start's {op.request_id!r}"
            )
        if run["status"] == "COMPLETED":
            counts["completed"] += 1
        else:
            counts["not_completed"] += 1
            violations.append(
                f"{op.key} (start {op.outcome}) ends {run['status']} at attempt {run.get('attempt')}, not COMPLETED"
                + (f": {run['last_error']}" if run.get("last_error") else "")
            )
    for op in ops:
        gone = op.f == "wf-read" and op.outcome == OK and op.value and op.value.get("status") == "NOT_FOUND"
        if gone and op.key in acked_at and op.call > acked_at[op.key]:
            violations.append(f"{op.describe()}: the run was not found after its start was acknowledged")
    details = {
        "workflows_started": counts["starts_ok"],
        "starts_unknown": counts["starts_info"],
        "unknown_starts_that_exist": counts["unknown_starts_that_exist"],
        "starts_refused": counts["starts_fail"],
        "workflows_completed": counts["completed"],
        "workflows_not_completed": counts["not_completed"],
    }
    return Verdict("wf-liveness", not violations, violations, details)


def results_stable(ops: list[Operation], final: dict[str, dict], events: list[dict]) -> Verdict:
    """Rule 2: a step's result never changes once seen; persisted results trace to an execution."""
    violations = []
    seen: dict[tuple[str, str], tuple[Any, str]] = {}  # (run, step) -> (result, where first seen)
    reads = 0

    def observe(wid: str, steps: list, where: str) -> None:
        for name, result in steps:
            first = seen.setdefault((wid, name), (result, where))
            if first[0] != result:
                violations.append(f"{wid} {name}: {where} has {result!r}, but {first[1]} had {first[0]!r}")

    for op in sorted((o for o in ops if o.f == "wf-read" and o.outcome == OK and o.value), key=lambda o: o.call):
        reads += 1
        observe(op.key, op.value.get("steps", []), f"read op {op.index}")
    produced = {(e["run"], e["step"], e["result"]) for e in events}
    for wid, run in sorted(final.items()):
        if not _exists(run):
            continue
        final_steps = {name for name, _ in run["steps"]}
        for (rid, name), (result, where) in seen.items():
            if rid == wid and name not in final_steps:
                violations.append(f"{wid} {name}: {where} saw {result!r}; the final state has no such step")
        observe(wid, run["steps"], "the final state")
        for name, result in run["steps"]:
            if (wid, name, result) not in produced:
                violations.append(f"{wid} {name}: persisted result {result!r} was produced by no recorded execution")
        if run["status"] == "COMPLETED" and run.get("output") != [r for _, r in run["steps"]]:
            violations.append(f"{wid}: output {run.get('output')!r} is not its persisted step results")
    return Verdict("wf-results-stable", not violations, violations, {"reads_sampled": reads, "steps_seen": len(seen)})


def _leases(run: dict) -> dict[int, tuple[dict, dict | None]]:
    """token -> (its RUN_CLAIMED entry, the entry that ended it or None)."""
    out: dict[int, tuple[dict, dict | None]] = {}
    current: dict | None = None
    for h in _history(run):
        if h["kind"] == CLAIM:
            current = h
            out[h["token"]] = (h, None)
        elif h["kind"] in ENDS and current is not None:
            out[current["token"]] = (current, h)
            current = None
    return out


def no_reexecution(final: dict[str, dict], events: list[dict], skews: list[Skew] | None = None) -> Verdict:
    """Rule 3: no execution of step S of run R starts after S's result was persisted.

    A violation says whether the execution's own lease had already ended when it started (a worker acting
    on a lease it no longer held: `stale_lease_executions`) or was still in force. With clock faults, an
    execution is after the persist only if it is after every true time the persist's stamp allows.
    """
    persisted: dict[tuple[str, str], int] = {}
    for wid, run in final.items():
        if _exists(run):
            for h in _history(run):
                if h["kind"] == "STEP_RECORDED":
                    persisted.setdefault((wid, h["step_name"]), h["time_ns"])
    violations = []
    stale = excused = 0
    by_step = _by_step(events)
    for (wid, name), executions in sorted(by_step.items()):
        at = persisted.get((wid, name))
        if at is None:
            continue
        latest = true_time(at, skews)[1]
        leases = _leases(final[wid])
        for e in executions:
            if e["time_ns"] <= at:
                continue
            if e["time_ns"] <= latest:
                excused += 1  # after the stamp, but a skewed leader's stamp may be late
                continue
            why = f"its lease (token {e.get('token')}) is not in the run's history"
            if e.get("token") in leases:
                claim, end = leases[e["token"]]
                if end is not None and end["time_ns"] <= e["time_ns"]:
                    stale += 1
                    why = (
                        f"its lease (token {e['token']}, claimed at v{claim['version']}) had ended "
                        f"{(e['time_ns'] - end['time_ns']) / 1e6:.1f} ms before (v{end['version']} {end['kind']})"
                    )
                else:
                    why = f"under its lease (token {e['token']}, claimed at v{claim['version']}), still in force"
            violations.append(
                f"{wid} {name}: worker {e['worker']} started it {(e['time_ns'] - at) / 1e6:.1f} ms after its "
                f"result was persisted; {why}"
            )
    executed = sum(len(v) for v in by_step.values())
    details = {
        "steps_executed": executed,
        "steps_persisted": len(persisted),
        "re_executions": executed - len(by_step),
        "re_executions_after_persist": len(violations),
        "stale_lease_executions": stale,
    }
    if skews:
        details["undecidable_under_clock_skew"] = excused
    return Verdict("wf-no-reexecution", not violations, violations, details)


def single_lease(final: dict[str, dict], events: list[dict], skews: list[Skew] | None = None) -> Verdict:
    """Rule 4: one lease at a time per run, and every write under a lease is fenced by its token.

    With clock faults, a claim is before the previous lease's end only if it is in every reading of the stamps.
    """
    violations = []
    claims = recoveries = excused = 0
    token_of_result = {(e["run"], e["step"], e["result"]): e.get("token") for e in events}
    for wid, run in sorted(final.items()):
        if not _exists(run):
            continue
        history = _history(run)
        versions = [h["version"] for h in history]
        if versions != list(range(1, run["version"] + 1)):
            violations.append(f"{wid}: history is not whole ({len(versions)} entries for v{run['version']})")
        results = {name: result for name, result in run["steps"]}
        claim: dict | None = None
        last_end: dict | None = None
        last_token = 0
        for h in history:
            kind, token = h["kind"], h["token"]
            if kind == CLAIM:
                claims += 1
                if token <= 0:
                    violations.append(f"{wid} v{h['version']} {kind} carries no fencing token")
                elif token <= last_token:
                    violations.append(f"{wid} v{h['version']} {kind}: token {token} does not rise above {last_token}")
                if claim is not None:
                    violations.append(
                        f"{wid} v{h['version']} {kind} (token {token}) while the lease claimed at "
                        f"v{claim['version']} (token {claim['token']}) had not ended"
                    )
                early = last_end is not None and h["time_ns"] < last_end["time_ns"]
                if early and true_time(h["time_ns"], skews)[1] >= true_time(last_end["time_ns"], skews)[0]:
                    excused += 1  # the stamps disagree, but a skewed leader may have made one of them
                elif early:
                    assert last_end is not None
                    violations.append(
                        f"{wid} v{h['version']} {kind} at {h['time_ns']} is before the previous lease ended "
                        f"(v{last_end['version']} {last_end['kind']} at {last_end['time_ns']})"
                    )
                claim, last_token = h, max(last_token, token)
            elif kind in UNDER_LEASE:
                recoveries += kind == "LEASE_EXPIRED"
                if claim is None:
                    violations.append(f"{wid} v{h['version']} {kind} with no lease in force")
                elif token != claim["token"]:
                    violations.append(
                        f"{wid} v{h['version']} {kind} under token {token}, but the lease in force is token "
                        f"{claim['token']} (claimed at v{claim['version']}): a write by another lease"
                    )
                if kind == "STEP_RECORDED" and h["step_name"] in results:
                    ran = token_of_result.get((wid, h["step_name"], results[h["step_name"]]))
                    if ran is not None and ran != token:
                        violations.append(
                            f"{wid} v{h['version']} {h['step_name']}: the persisted result was produced under "
                            f"token {ran} but recorded under token {token}"
                        )
            if kind in ENDS:
                claim, last_end = None, h
    details = {"claims": claims, "recoveries": recoveries}
    if skews:
        details["undecidable_under_clock_skew"] = excused
    return Verdict("wf-leases", not violations, violations, details)


def step_order(final: dict[str, dict], steps: int) -> Verdict:
    """Rule 5: steps persisted in order, each name once, every step of a COMPLETED run."""
    violations = []
    expected = [step_name(k) for k in range(steps)]
    for wid, run in sorted(final.items()):
        if not _exists(run):
            continue
        names = [name for name, _ in run["steps"]]
        recorded = [h["step_name"] for h in _history(run) if h["kind"] == "STEP_RECORDED"]
        duplicated = sorted(n for n, c in Counter(names).items() if c > 1)
        if duplicated:
            violations.append(f"{wid}: step(s) {', '.join(duplicated)} persisted more than once: {names}")
        if names != expected[: len(names)]:
            violations.append(f"{wid}: steps persisted as {names}, not in order {expected}")
        if recorded != names:
            violations.append(f"{wid}: the history records steps {recorded}, the state holds {names}")
        if run["status"] == "COMPLETED" and len(names) != steps:
            violations.append(f"{wid}: COMPLETED with {len(names)} of {steps} steps persisted")
    return Verdict("wf-step-order", not violations, violations, {"runs": sum(_exists(r) for r in final.values())})


def early_expiry(
    ops: list[Operation],
    final: dict[str, dict],
    events: list[dict],
    *,
    lease_s: float,
    skews: list[Skew],
    wall_offset_ns: int,
    final_wall_ns: int = 0,
) -> Verdict:
    """Rule 6: no lease expired sooner than its duration after it was granted (true time).

    A lease lasts at least its duration from its grant: heartbeats only extend it, and a new leader waits a
    full lease duration before expiring a predecessor's lease. Without heartbeat records, the claim is the
    grant to measure from, and the check is sound but not complete:
    - the claim's true time is at least the lowest reading of its stamp and, for a run's first claim, the
      moment its start was invoked (the run did not exist before);
    - the expiry's true time is at most the highest reading of its stamp, the first execution of the run's
      code under a later lease (a later claim follows the expiry in the run's log), the return of a read that
      saw the expiry's version, and the final read.
    A lease is reported when even the latest expiry is more than the duration before the earliest claim
    (less a 50 ms tolerance). `expired_early_by_stamps` counts what the stamps alone say (clocks taken at
    their word).
    """
    lease_ns = int(lease_s * 1e9)
    to_wall = wall_offset_ns
    started: dict[str, int] = {}
    read_at: dict[str, list[tuple[int, int]]] = {}  # run -> [(version seen, wall time of the read's return)]
    for op in ops:
        if op.f == "start":
            started[op.key] = min(started.get(op.key, op.call + to_wall), op.call + to_wall)
        elif op.f == "wf-read" and op.outcome == OK and op.value and op.ret is not None:
            read_at.setdefault(op.key, []).append((int(op.value.get("version") or 0), op.ret + to_wall))
    executions: dict[str, list[tuple[int, int]]] = {}  # run -> [(token, wall time)]
    for e in events:
        executions.setdefault(e["run"], []).append((int(e.get("token") or 0), int(e["time_ns"])))
    violations = []
    expired = by_stamps = 0
    for wid, run in sorted(final.items()):
        if not _exists(run):
            continue
        first = True
        for token, (claim, end) in sorted(_leases(run).items()):
            is_first, first = first, False
            if end is None or end["kind"] != "LEASE_EXPIRED":
                continue
            expired += 1
            by_stamps += end["time_ns"] - claim["time_ns"] < lease_ns - EARLY_TOLERANCE_NS
            claim_lo = true_time(claim["time_ns"], skews)[0]
            if is_first and wid in started:
                claim_lo = max(claim_lo, started[wid] - EARLY_TOLERANCE_NS)
            bounds = [true_time(end["time_ns"], skews)[1]]
            bounds += [t for k, t in executions.get(wid, []) if k > token]
            bounds += [t for v, t in read_at.get(wid, []) if v >= end["version"]]
            if final_wall_ns:
                bounds.append(final_wall_ns)
            end_hi = min(bounds)
            if end_hi < claim_lo + lease_ns - EARLY_TOLERANCE_NS:
                violations.append(
                    f"{wid} lease token {token} (claimed at v{claim['version']}) expired at v{end['version']} "
                    f"at most {(end_hi - claim_lo) / 1e9:.2f}s after it was granted, under its {lease_s}s "
                    f"duration (stamps: {(end['time_ns'] - claim['time_ns']) / 1e9:+.2f}s)"
                )
    details = {
        "leases_expired": expired,
        "expired_early_by_stamps": by_stamps,
        "expired_early_for_certain": len(violations),
        "skew_windows": len(skews),
    }
    return Verdict("wf-lease-early-expiry", not violations, violations, details)


def check(
    ops: list[Operation], final: dict[str, dict], events: list[dict], steps: int, skews: list[Skew] | None = None
) -> list[Verdict]:
    return [
        liveness(ops, final),
        results_stable(ops, final, events),
        no_reexecution(final, events, skews),
        single_lease(final, events, skews),
        step_order(final, steps),
    ]


def summary(verdicts: list[Verdict]) -> dict[str, Any]:
    """The workflow counts from the verdicts' details, for the report."""
    out: dict[str, Any] = {}
    for v in verdicts:
        if v.name.startswith("wf-"):
            out.update(v.details)
    return out
