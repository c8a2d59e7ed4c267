"""Failpoints: inert unless armed, each action does what it says, a control file re-arms a live process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn_server import failpoints
from cairn_server.raft.journal import RocksJournal
from cairn_server.storage import RocksStore


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fresh registry reading a control file (as a node started with CAIRN_FAILPOINTS_FILE would)."""
    control = tmp_path / "failpoints"
    monkeypatch.setenv(failpoints.FILE_ENV, str(control))
    monkeypatch.setenv(failpoints.TRACE_ENV, str(tmp_path / "trace.jsonl"))
    monkeypatch.setattr(failpoints, "_registry", failpoints._Registry())
    yield control


def rearm(control: Path, text: str) -> None:
    control.write_text(text)
    later = time.time() + 1  # a distinct mtime even on coarse-timestamp filesystems
    os.utime(control, (later, later))
    failpoints._registry._checked = 0.0


def test_inert_without_the_environment() -> None:
    registry = failpoints._Registry() if not os.environ.get(failpoints.SPEC_ENV) else None
    assert registry is not None and not registry.enabled and not registry.tracing


def test_parse_rejects_what_it_cannot_run() -> None:
    assert set(failpoints.parse("a=sleep(5ms); b=2*error\nc=value(-3s); d=off; # note")) == {"a", "b", "c"}
    for bad in ("a", "a=explode", "a=sleep(soon)", "a=exit(x)", "=error"):
        with pytest.raises(ValueError, match="failpoint"):
            failpoints.parse(bad)


def test_actions_counts_and_live_rearming(armed: Path) -> None:
    failpoints.hit("x")  # nothing armed: returns
    rearm(armed, "x=2*error(disk on fire)\nclock.offset=value(-1.5s)")
    for _ in range(2):
        with pytest.raises(failpoints.FailpointError, match="disk on fire"):
            failpoints.hit("x")
    failpoints.hit("x")  # the count is spent
    assert failpoints.seconds(failpoints.value("clock.offset") or "") == -1.5
    rearm(armed, "x=sleep(120ms)")
    started = time.monotonic()
    failpoints.hit("x")
    assert time.monotonic() - started >= 0.12
    assert failpoints.value("clock.offset") is None


def test_exit_is_a_crash_at_that_point(tmp_path: Path) -> None:
    code = "from cairn_server import failpoints; print('before', flush=True); failpoints.hit('p'); print('after')"
    env = {**os.environ, failpoints.SPEC_ENV: "p=exit(42)"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (42, "before\n")


def test_a_failed_journal_sync_stops_instead_of_acknowledging(armed: Path, tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    fatal: list[str] = []
    journal = RocksJournal(store, sync=True, on_fatal=fatal.append)
    journal.add(b"one", 1, 1)
    rearm(armed, "journal.sync=error")
    journal.begin()
    journal.add(b"two", 2, 1)
    with pytest.raises(OSError):
        journal.flush()  # the caller (the Raft thread) never gets to acknowledge entry 2
    assert len(fatal) == 1 and "never acknowledged" in fatal[0]
    trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
    assert [(t["event"], t["last_index"]) for t in trace] == [("journal.synced", 1)]
    store.close()
