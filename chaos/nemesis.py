"""Faults, each with a name, injected and healed on a schedule by the runner.

Families (for --faults): kill, pause, partition, restart, transfer, netem, workers; or any fault by name.
The workers family (kill -9 a workflow worker, SIGSTOP one past its lease) needs the workflow workload;
the runner injects it on a schedule of its own, alongside the node faults.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .cluster import ChaosCluster
from .netns import netem_available


@dataclass
class Fault:
    name: str
    family: str
    inject: Callable[[ChaosCluster, random.Random], tuple[str, Callable[[], None]]]
    needs_netns: bool = False
    removes_leader: bool = False
    needs_workers: bool = False


def _leader_or_any(c: ChaosCluster, rng: random.Random) -> int:
    leader = c.any_leader()
    return leader if leader is not None else rng.randrange(c.nodes)


def _followers(c: ChaosCluster, rng: random.Random) -> list[int]:
    leader = _leader_or_any(c, rng)
    return [i for i in range(c.nodes) if i != leader]


def _names(c: ChaosCluster, nodes: list[int]) -> str:
    return ",".join(c.cluster.specs[i].node_id for i in sorted(nodes))


def _kill(pick: Callable[[ChaosCluster, random.Random], list[int]]):
    def inject(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
        nodes = pick(c, rng)
        for i in nodes:
            c.kill(i)

        def heal() -> None:
            for i in nodes:
                c.start_node(i)

        return f"kill -9 {_names(c, nodes)}", heal

    return inject


def _pause(pick: Callable[[ChaosCluster, random.Random], list[int]], length: float | None):
    def inject(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
        nodes = pick(c, rng)
        for i in nodes:
            c.pause(i)
        if length is not None:  # a pause shorter than an election: resumed before the hold ends
            time.sleep(length)
            for i in nodes:
                c.resume(i)

        def heal() -> None:
            for i in nodes:
                c.resume(i)

        return f"SIGSTOP {_names(c, nodes)}" + (f" for {length}s" if length else ""), heal

    return inject


def _partition(
    plan: Callable[[ChaosCluster, random.Random], tuple[str, list[tuple[int, int]]]], compact_majority: bool = False
):
    def inject(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
        assert c.net is not None
        what, cuts = plan(c, rng)
        for src, dst in cuts:
            c.net.cut(src, dst)
        cut_off = {src for src, _ in cuts}

        def heal() -> None:
            assert c.net is not None
            if compact_majority:  # the scenario that loses writes in stock pysyncobj (trap 1)
                for i in range(c.nodes):
                    if i not in cut_off or len(cut_off) > c.nodes // 2:
                        with contextlib.suppress(Exception):  # a node without quorum may refuse; heal anyway
                            c.compact(i)
            c.net.heal()

        return what, heal

    return inject


def _isolate_leader(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    leader = _leader_or_any(c, rng)
    others = [j for j in range(c.nodes) if j != leader]
    return f"isolate {_names(c, [leader])}", [(leader, j) for j in others] + [(j, leader) for j in others]


def _halves(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    minority, majority = order[: (c.nodes - 1) // 2 or 1], order[(c.nodes - 1) // 2 or 1 :]
    cuts = [(a, b) for a in minority for b in majority] + [(b, a) for a in minority for b in majority]
    return f"split {_names(c, minority)} | {_names(c, majority)}", cuts


def _one_way(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    leader = _leader_or_any(c, rng)
    return f"{_names(c, [leader])} cannot send to anyone (receives)", [
        (leader, j) for j in range(c.nodes) if j != leader
    ]


def _bridge(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    bridge, rest = order[0], order[1:]
    left, right = rest[: len(rest) // 2], rest[len(rest) // 2 :]
    cuts = [(a, b) for a in left for b in right] + [(b, a) for a in left for b in right]
    return f"bridge {_names(c, [bridge])} between {_names(c, left)} | {_names(c, right)}", cuts


def _ring(c: ChaosCluster, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    n = c.nodes
    neighbours = {order[k]: {order[(k - 1) % n], order[(k + 1) % n]} for k in range(n)}
    cuts = [(a, b) for a in range(n) for b in range(n) if a != b and b not in neighbours[a]]
    return "ring " + "-".join(c.cluster.specs[i].node_id for i in order), cuts


def _rolling_restart(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
    order = list(range(c.nodes))
    rng.shuffle(order)
    for i in order:
        c.graceful_restart(i)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and c.status(i) is None:
            time.sleep(0.1)
    return f"rolling restart {'-'.join(c.cluster.specs[i].node_id for i in order)}", lambda: None


def _transfer(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
    with c.client(timeout=10) as client:
        try:
            new = client.transfer_leadership(timeout=10)
        except Exception as exc:  # reported as the fault's description
            return f"leadership transfer refused: {exc}", lambda: None
    return f"leadership transferred to {new}", lambda: None


def _netem(spec: list[str]):
    def inject(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
        assert c.net is not None
        nodes = rng.sample(range(c.nodes), max(1, c.nodes // 2))
        for i in nodes:
            c.net.netem(i, spec)
        return f"netem {' '.join(spec)} on {_names(c, nodes)}", c.net.clear_netem

    return inject


def _worker_kill(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
    pool = c.workers
    assert pool is not None
    live = pool.live()
    if not live:
        return "no live worker to kill", lambda: None
    i = rng.choice(live)
    pool.kill(i)
    return f"kill -9 worker {pool.worker_id(i)} (restarted at heal)", lambda: pool.start_worker(i)


def _worker_pause(c: ChaosCluster, rng: random.Random) -> tuple[str, Callable[[], None]]:
    pool = c.workers
    assert pool is not None
    live = [i for i in pool.live() if i not in pool.paused]
    if not live:
        return "no running worker to pause", lambda: None
    i = rng.choice(live)
    pool.pause(i)
    return f"SIGSTOP worker {pool.worker_id(i)} past its {pool.lease_timeout}s lease", lambda: pool.resume(i)


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in [
        Fault("kill-leader", "kill", _kill(lambda c, r: [_leader_or_any(c, r)]), removes_leader=True),
        Fault("kill-follower", "kill", _kill(lambda c, r: [r.choice(_followers(c, r))])),
        Fault(
            "kill-minority",
            "kill",
            _kill(lambda c, r: r.sample(range(c.nodes), (c.nodes - 1) // 2)),
            removes_leader=True,
        ),
        Fault(
            "kill-majority", "kill", _kill(lambda c, r: r.sample(range(c.nodes), c.nodes // 2 + 1)), removes_leader=True
        ),
        Fault("kill-all", "kill", _kill(lambda c, r: list(range(c.nodes))), removes_leader=True),
        Fault("pause-leader-short", "pause", _pause(lambda c, r: [_leader_or_any(c, r)], 0.3)),
        Fault("pause-leader-long", "pause", _pause(lambda c, r: [_leader_or_any(c, r)], None), removes_leader=True),
        Fault("pause-follower-short", "pause", _pause(lambda c, r: [r.choice(_followers(c, r))], 0.3)),
        Fault("pause-follower", "pause", _pause(lambda c, r: [r.choice(_followers(c, r))], None)),
        Fault("partition-leader", "partition", _partition(_isolate_leader), needs_netns=True, removes_leader=True),
        Fault("partition-halves", "partition", _partition(_halves), needs_netns=True, removes_leader=True),
        Fault("partition-one-way", "partition", _partition(_one_way), needs_netns=True, removes_leader=True),
        Fault("partition-bridge", "partition", _partition(_bridge), needs_netns=True),
        Fault("partition-ring", "partition", _partition(_ring), needs_netns=True),
        Fault(
            "partition-compact",
            "partition",
            _partition(_isolate_leader, compact_majority=True),
            needs_netns=True,
            removes_leader=True,
        ),
        Fault("restart-rolling", "restart", _rolling_restart),
        Fault("transfer-leadership", "transfer", _transfer),
        Fault("netem-latency", "netem", _netem(["delay", "50ms", "20ms"]), needs_netns=True),
        Fault("netem-loss", "netem", _netem(["loss", "20%"]), needs_netns=True),
        Fault("worker-kill", "workers", _worker_kill, needs_workers=True),
        Fault("worker-pause", "workers", _worker_pause, needs_workers=True),
    ]
}


def select(spec: str, *, netns: bool, workers: bool = False) -> tuple[list[Fault], list[str]]:
    """Faults for a comma-separated list of families and names; and why any were left out."""
    chosen: list[Fault] = []
    for word in (w.strip() for w in spec.split(",") if w.strip()):
        matches = [f for f in FAULTS.values() if word in (f.family, f.name)]
        if not matches:
            families = sorted({f.family for f in FAULTS.values()})
            raise SystemExit(f"unknown fault {word!r}: families {', '.join(families)}; names {', '.join(FAULTS)}")
        chosen += [f for f in matches if f not in chosen]
    left_out = []
    if not workers:
        left_out += [f"{f.name}: needs workers (--workload workflows or both)" for f in chosen if f.needs_workers]
        chosen = [f for f in chosen if not f.needs_workers]
    if not netns:
        left_out += [f"{f.name}: needs network namespaces (root)" for f in chosen if f.needs_netns]
        chosen = [f for f in chosen if not f.needs_netns]
    if any(f.family == "netem" for f in chosen) and not netem_available():
        left_out += [f"{f.name}: this kernel has no netem qdisc" for f in chosen if f.family == "netem"]
        chosen = [f for f in chosen if f.family != "netem"]
    return chosen, left_out
