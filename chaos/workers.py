"""Worker processes serving chaos/workflow_app.py: real `cairn worker run` processes on the host, which the
nemesis kills (-9, then restarts) and stops (SIGSTOP past the lease, then SIGCONT).

Each worker wN appends its step executions to DIR/wN.events.jsonl (a restarted wN goes on appending) and
its output to DIR/wN.log. The nodes' addresses are reachable from the root namespace, as for the clients.
On a secure cluster the workers get the admin's credentials through CAIRN_CA, CAIRN_CERT and CAIRN_KEY.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cairn.worker import worker_command

from .workflow_app import EVENTS_ENV, WORKER_ENV

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class WorkerPool:
    endpoints: list[str]
    directory: Path
    count: int = 3
    lease_timeout: float = 2.0
    concurrency: int = 4
    env: dict[str, str] = field(default_factory=dict)  # over os.environ (CAIRN_CA, ... for a secure cluster)
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)
    paused: set[int] = field(default_factory=set)
    starts: int = 0
    closed: bool = False  # after stop(): nothing starts again (a nemesis thread may still be healing)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def worker_id(self, i: int) -> str:
        return f"w{i + 1}"

    def events_path(self, i: int) -> Path:
        return self.directory / f"{self.worker_id(i)}.events.jsonl"

    def command(self, i: int) -> list[str]:
        return [
            *worker_command(
                "chaos.workflow_app",
                self.endpoints,
                worker_id=self.worker_id(i),
                lease_timeout=f"{int(self.lease_timeout * 1000)}ms",
                concurrency=self.concurrency,
                poll_wait=2,
            ),
            "--log-level",
            "WARNING",
        ]

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            self.start_worker(i)

    def start_worker(self, i: int) -> None:
        with self._lock:
            if not self.closed and not self.alive(i):
                self._spawn(i)

    def _spawn(self, i: int) -> None:
        env = {**os.environ, **self.env, EVENTS_ENV: str(self.events_path(i)), WORKER_ENV: self.worker_id(i)}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        with open(self.directory / f"{self.worker_id(i)}.log", "ab") as log:
            self.procs[i] = subprocess.Popen(
                self.command(i), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.starts += 1

    def alive(self, i: int) -> bool:
        proc = self.procs.get(i)
        return proc is not None and proc.poll() is None

    def live(self) -> list[int]:
        return [i for i in range(self.count) if self.alive(i)]

    def kill(self, i: int) -> None:
        self.resume(i)
        proc = self.procs.get(i)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def pause(self, i: int) -> None:
        if self.alive(i):
            self.procs[i].send_signal(signal.SIGSTOP)
            self.paused.add(i)

    def resume(self, i: int) -> None:
        if i in self.paused:
            self.paused.discard(i)
            if self.alive(i):
                self.procs[i].send_signal(signal.SIGCONT)

    def heal(self) -> None:
        """Every worker running again: paused ones continued, dead ones restarted."""
        for i in list(self.paused):
            self.resume(i)
        for i in range(self.count):
            self.start_worker(i)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL whatever is still there at the deadline."""
        with self._lock:
            self.closed = True
            procs = list(self.procs.values())
        for i in list(self.paused):
            self.resume(i)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def read_worker_events(directory: Path) -> list[dict]:
    """Every step execution the workers recorded (a torn last line of a killed worker is skipped)."""
    events: list[dict] = []
    if not directory.is_dir():
        return events
    for path in sorted(directory.glob("*.events.jsonl")):
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events
