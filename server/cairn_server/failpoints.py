"""Failpoints: named places in the node where a test injects a fault (etcd's gofail, in Python).

Compiled in everywhere, inert in production: with neither environment variable below set, `hit` is
one global boolean test and `trace` one more; no file is read, no thread started, nothing parsed.

    CAIRN_FAILPOINTS="journal.sync=sleep(200ms);clock.offset=value(30s)"   armed at start-up
    CAIRN_FAILPOINTS_FILE=/path/to/file     same syntax (';' or newlines), re-read when it changes,
                                            so a running node's faults can be switched on and off
    CAIRN_FAILPOINTS_TRACE=/path/to/file    `trace` appends one JSON line per event (observation
                                            hooks: what a test must see happen, e.g. journal syncs)

Actions: `off`; `sleep(DURATION)`; `error` or `error(MESSAGE)` (raises FailpointError, an OSError, as
the disk would); `exit(CODE)` (os._exit: a crash at exactly this point); `value(TEXT)` (read with
`value`). A leading `N*` fires the action only N times, then the point is off again. Failpoint names in
use are listed in server/DESIGN.md ("Failpoints").
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

SPEC_ENV = "CAIRN_FAILPOINTS"
FILE_ENV = "CAIRN_FAILPOINTS_FILE"
TRACE_ENV = "CAIRN_FAILPOINTS_TRACE"
_RECHECK = 0.05  # seconds between looks at the control file's mtime

_ACTION = re.compile(r"^(?:(?P<count>\d+)\*)?(?P<kind>off|sleep|error|exit|value)(?:\((?P<arg>[^)]*)\))?$")


class FailpointError(OSError):
    """The fault an `error` failpoint injects: what a failing disk would raise."""


@dataclass
class _Action:
    kind: str
    arg: str
    remaining: int | None  # None: every time


def parse(spec: str) -> dict[str, _Action]:
    """`name=action` entries separated by ';' or newlines; raises ValueError naming the bad entry."""
    actions: dict[str, _Action] = {}
    for raw in re.split(r"[;\n]", spec):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, action = entry.partition("=")
        match = _ACTION.match(action.strip())
        if not sep or not name.strip() or match is None:
            raise ValueError(f"failpoint {entry!r}: expected NAME=[N*](off|sleep(D)|error|exit(CODE)|value(X))")
        kind, arg = match["kind"], match["arg"] or ""
        if kind == "sleep":
            _seconds(arg)  # validate now, not when it fires
        if kind == "exit" and not arg.isdigit():
            raise ValueError(f"failpoint {entry!r}: exit needs a numeric code")
        if kind != "off":
            actions[name.strip()] = _Action(kind, arg, int(match["count"]) if match["count"] else None)
    return actions


def _seconds(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", text)
    if match is None:
        raise ValueError(f"failpoint duration {text!r}: expected e.g. 200ms or 1.5s")
    return float(match[1]) / (1000 if match[2] == "ms" else 1)


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._actions: dict[str, _Action] = {}
        self._file = os.environ.get(FILE_ENV) or None
        self._mtime: float | None = None
        self._checked = 0.0
        trace_path = os.environ.get(TRACE_ENV) or None
        self._trace = open(trace_path, "a", buffering=1) if trace_path else None  # noqa: SIM115 (process-long)
        spec = os.environ.get(SPEC_ENV, "")
        if spec:
            self._actions = parse(spec)
        self.enabled = bool(spec or self._file)
        self.tracing = self._trace is not None
        if self.enabled or self.tracing:
            log.warning("failpoints enabled (%s/%s/%s set): test builds only", SPEC_ENV, FILE_ENV, TRACE_ENV)

    def _reload(self) -> None:
        now = time.monotonic()
        if self._file is None or now - self._checked < _RECHECK:
            return
        self._checked = now
        try:
            mtime = os.stat(self._file).st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            text = open(self._file).read() if mtime is not None else ""  # noqa: SIM115
            self._actions = parse(text)
            log.warning("failpoints now: %s", {k: f"{v.kind}({v.arg})" for k, v in self._actions.items()} or "none")
        except (OSError, ValueError) as exc:
            log.error("failpoint file %s ignored: %s", self._file, exc)

    def take(self, name: str) -> _Action | None:
        with self._lock:
            self._reload()
            action = self._actions.get(name)
            if action is None:
                return None
            if action.remaining is not None:
                action.remaining -= 1
                if action.remaining <= 0:
                    del self._actions[name]
            return action

    def peek(self, name: str) -> _Action | None:
        with self._lock:
            self._reload()
            return self._actions.get(name)

    def write_trace(self, event: str, fields: dict) -> None:
        assert self._trace is not None
        line = json.dumps({"event": event, "mono": time.monotonic(), "pid": os.getpid(), **fields})
        with self._lock:
            self._trace.write(line + "\n")


_registry = _Registry()


def hit(name: str) -> None:
    """Run the action armed at `name`, if any: sleep, raise FailpointError, or exit the process."""
    if not _registry.enabled:
        return
    action = _registry.take(name)
    if action is None:
        return
    if action.kind == "sleep":
        time.sleep(_seconds(action.arg))
    elif action.kind == "error":
        log.error("failpoint %s: injecting an I/O error", name)
        raise FailpointError(5, action.arg or f"failpoint {name}: injected I/O error")
    elif action.kind == "exit":
        log.critical("failpoint %s: exiting with %s", name, action.arg)
        logging.shutdown()
        os._exit(int(action.arg))


def value(name: str) -> str | None:
    """The text armed with `value(...)` at `name` (None when off); does not consume counted actions."""
    if not _registry.enabled:
        return None
    action = _registry.peek(name)
    return action.arg if action is not None and action.kind == "value" else None


def seconds(text: str) -> float:
    """A failpoint duration argument ('250ms', '1.5s', '-30s') in seconds."""
    negative = text.strip().startswith("-")
    magnitude = _seconds(text.strip().lstrip("-"))
    return -magnitude if negative else magnitude


def tracing() -> bool:
    return _registry.tracing


def trace(event: str, **fields: object) -> None:
    """Append an observation (with this process's monotonic time) to the trace file, when one is set."""
    if _registry.tracing:
        _registry.write_trace(event, fields)
