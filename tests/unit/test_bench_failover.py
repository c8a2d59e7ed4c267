"""The failover benchmark's pure parts: leader agreement, the outage's end, the client's routing, the summary."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest

from bench.failover import Ack, AttemptFailed, FailoverConfig, Load, Round, View, agreed, summarize


def view(me: str, leader: str, term: int = 2, commit: int = 10, applied: int = 10) -> View:
    return View(me, leader, term, commit, applied)


def test_a_leader_counts_only_when_every_member_names_it_in_one_term() -> None:
    assert agreed([view("a", "b"), view("b", "b"), view("c", "b")]) == 1
    assert agreed([view("a", "b"), None, view("c", "b")]) is None  # one member does not answer
    assert agreed([view("a", "b"), view("b", "b"), view("c", "a")]) is None
    assert agreed([view("a", "b"), view("b", "b", term=3), view("c", "b")]) is None
    assert agreed([view("a", "b"), view("b", "c"), view("c", "b")]) is None  # b does not say it leads
    assert agreed([view("a", ""), view("b", ""), view("c", "")]) is None


class FakeMembers:
    """Three members: member 2 leads; the others refuse writes and name it (Cairn's hint) or not (etcd)."""

    name = "fake"
    endpoints = ["m0", "m1", "m2"]

    def __init__(self, hint: bool) -> None:
        self.hint = hint
        self.tried: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def new_write(self, key: str) -> str:
        return key

    async def attempt(self, i: int, write: Any, timeout: float) -> Ack:
        self.tried.append(i)
        await asyncio.sleep(0.001)  # a real call always yields to the loop
        if i != 2:
            raise AttemptFailed("UNAVAILABLE", "not the leader", 2 if self.hint else None)
        await self.gate.wait()
        return Ack("m2", 5, 2 if self.hint else None)

    def member(self, i: int) -> str:
        return self.endpoints[i]

    def process(self, i: int) -> subprocess.Popen:
        raise NotImplementedError

    def restart(self, i: int) -> None: ...

    def log_tail(self, i: int) -> str:
        return ""

    def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def view(self, i: int, timeout: float) -> View | None:
        return None


def config(writers: int = 1) -> FailoverConfig:
    return FailoverConfig(writers=writers, attempt_timeout=0.1, retry_pause=0.001)


def test_the_hint_leads_every_writer_to_the_leader() -> None:
    async def run() -> list[int]:
        members = FakeMembers(hint=True)
        load = Load(members, config(writers=3))
        load.start()
        await load.flowing(0.0, 5)
        members.tried.clear()
        await load.flowing(time.monotonic(), 5)
        await load.stop()
        return members.tried

    assert set(asyncio.run(run())) == {2}  # once one answer named the leader, nobody tries the others


def test_without_a_hint_a_writer_moves_on_to_the_next_member() -> None:
    async def run() -> list[int]:
        members = FakeMembers(hint=False)
        load = Load(members, config(writers=1))
        load.start()
        await load.flowing(0.0, 5)
        await load.stop()
        return members.tried

    assert asyncio.run(run())[:3] == [0, 1, 2]


def test_an_ack_for_an_attempt_sent_before_the_kill_does_not_end_the_outage() -> None:
    async def run() -> tuple[float, float, float | None]:
        members = FakeMembers(hint=True)
        members.gate.clear()  # the leader holds its answers
        load = Load(members, config(writers=1))
        load.leader_guess = 2
        load.start()
        await asyncio.sleep(0.02)  # the attempt is in flight
        killed_at = time.monotonic()
        load.arm(killed_at)
        members.gate.set()  # ... and answered after the kill: it was sent before, so it does not count
        first = await load.recovered(5)
        await load.stop()
        assert first is not None
        return killed_at, first.sent, first.acked

    killed_at, sent, acked = asyncio.run(run())
    assert sent > killed_at and acked is not None and acked >= sent


def rnd(system: str, number: int, recovery_ms: float | None, leader_ms: float | None = None) -> Round:
    return Round(system, number, "n1", 1, recovery_ms, leader_ms, "n2", "n2", 2, {}, 500.0)


def test_a_failed_round_counts_as_never_in_the_percentiles() -> None:
    rounds = [rnd("cairn", k, ms) for k, ms in enumerate([1000.0, 1500.0, 1200.0])] + [rnd("cairn", 3, None)]
    s = summarize("cairn", rounds)
    assert (s.kills, s.failed) == (4, 1)
    assert s.p50_ms == 1500.0 and s.p99_ms == float("inf") and not s.meets_target
    assert s.multi_election == 0  # every ack in the term right after the killed one
    ok = summarize("etcd", [rnd("etcd", k, ms, ms - 100) for k, ms in enumerate([1000.0, 1900.0])])
    assert ok.p99_ms == 1900.0 and ok.meets_target and ok.leader_to_ack_p50_ms == 100.0


def test_config_rejects_unknown_systems_and_nonsense() -> None:
    with pytest.raises(ValueError):
        FailoverConfig(systems=["zookeeper"])
    with pytest.raises(ValueError):
        FailoverConfig(kills=0)
    with pytest.raises(ValueError):
        FailoverConfig(attempt_timeout=0)
