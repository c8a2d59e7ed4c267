"""The checkers besides linearizability, over the history and the cluster's final, healed state.

`final` maps each key to what a linearizable read returned after healing: its version and its full
change history as (version, request_id) pairs; `digests` maps each key to {node: (applied index,
version, digest)} from every replica.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..history import OK, Operation
from . import Verdict

WRITES = ("write", "cas", "recover")


def no_lost_writes(ops: list[Operation], final: dict[str, dict]) -> Verdict:
    """Every acknowledged write's effect is in the final history, at the version it was acknowledged as."""
    violations = []
    checked = 0
    for op in ops:
        if op.outcome != OK or op.f not in WRITES:
            continue
        checked += 1
        state = final.get(op.key)
        if state is None:
            violations.append(f"{op.describe()}: no final read of {op.key}")
            continue
        changes = dict(state["history"])
        if state["version"] < (op.version or 0):
            violations.append(f"{op.describe()}: the final version is only v{state['version']}")
        elif changes.get(op.version) != op.request_id:
            violations.append(
                f"{op.describe()}: final history has v{op.version} from request "
                f"{changes.get(op.version)!r}, not {op.request_id!r}"
            )
    for key, state in final.items():
        versions = [v for v, _ in state["history"]]
        if versions != list(range(1, state["version"] + 1)):
            violations.append(f"{key}: final history versions are not 1..{state['version']} in order")
    return Verdict("no-lost-writes", not violations, violations, {"acknowledged_writes": checked})


def exactly_once(ops: list[Operation], final: dict[str, dict]) -> Verdict:
    """No request id took effect twice (anywhere), and no effect came from a request never made."""
    counts = Counter(rid for state in final.values() for _, rid in state["history"])
    made = {op.request_id for op in ops if op.f in WRITES}
    violations = [f"request {rid!r} took effect {n} times" for rid, n in counts.items() if n > 1]
    violations += [
        f"request {rid!r} took effect but was never made"
        for rid in counts
        if rid not in made and not rid.startswith("setup-")
    ]
    return Verdict("exactly-once", not violations, violations, {"effects": sum(counts.values())})


def convergence(digests: dict[str, dict[str, tuple[int, int, str]]]) -> Verdict:
    """After healing, every replica holds the same data for every key."""
    violations = []
    for key, by_node in sorted(digests.items()):
        distinct = {(version, digest) for _, version, digest in by_node.values()}
        if len(distinct) > 1:
            shown = ", ".join(f"{node}: v{v} {d[:12]}" for node, (_, v, d) in sorted(by_node.items()))
            violations.append(f"{key}: replicas differ ({shown})")
    return Verdict("convergence", not violations, violations, {"keys": len(digests)})


def audit_log(audit: dict, final: dict[str, dict]) -> Verdict:
    """After healing, every replica's audit chain verifies, the replicas hold the same chain, and every write in
    the final histories (committed, whoever saw its answer) was audited as applied."""
    violations = [f"{n['node']}: audit chain broken: {n['problem']}" for n in audit["nodes"] if not n["ok"]]
    if not audit["agree"]["ok"]:
        violations.append(f"audit chains differ: {audit['agree']['message']}")
    applied = set(audit["applied_request_ids"])
    for key, state in sorted(final.items()):
        for version, request_id in state["history"]:
            if request_id and request_id not in applied:
                violations.append(f"{key} v{version} (request {request_id}) is in the history but not in the audit log")
    heads = {n["node"]: n["head_seq"] for n in audit["nodes"]}
    return Verdict("audit", not violations, violations[:50], {"heads": heads, "audited_writes": len(applied)})


def liveness(
    ops: list[Operation], last_heal_ns: int | None, end_ns: int, bound_s: float = 10.0, gap_s: float = 1.0
) -> Verdict:
    """Writes succeed again within `bound_s` of the last heal; windows with no successful op are reported."""
    ok_times = sorted(op.ret for op in ops if op.outcome == OK and op.ret is not None)
    ok_writes = sorted(op.ret for op in ops if op.outcome == OK and op.f in WRITES and op.ret is not None)
    windows = []
    if ok_times:
        for a, b in zip(ok_times, ok_times[1:], strict=False):
            if (b - a) / 1e9 > gap_s:
                windows.append(((a - ok_times[0]) / 1e9, (b - a) / 1e9))
    violations = []
    recovery = None
    if last_heal_ns is not None:
        after = [t for t in ok_writes if t >= last_heal_ns]
        if after:
            recovery = (after[0] - last_heal_ns) / 1e9
            if recovery > bound_s:
                violations.append(f"first write after the last heal took {recovery:.1f}s (bound {bound_s}s)")
        elif (end_ns - last_heal_ns) / 1e9 > bound_s:
            violations.append(f"no write succeeded in the {(end_ns - last_heal_ns) / 1e9:.1f}s after the last heal")
    return Verdict(
        "liveness",
        not violations,
        violations,
        {
            "recovery_after_last_heal_s": recovery,
            "unavailability_windows": [{"at_s": round(a, 2), "length_s": round(n, 2)} for a, n in windows],
        },
    )


def per_key_final(final: dict[str, dict]) -> dict[str, dict[str, int]]:
    """request id -> version per key (for resolving indeterminate operations)."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for key, state in final.items():
        for version, rid in state["history"]:
            out[key][rid] = version
    return dict(out)
