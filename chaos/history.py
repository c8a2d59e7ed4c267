"""Operation histories: invoke and complete events, written as JSON lines and read back.

Every operation is an invoke event, then one completion: ok (it happened, with its result), fail (it
definitely did not happen: a version conflict, a refused request) or info (it may or may not have
happened: a timeout, unavailability). Times are monotonic nanoseconds of the recording process.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"


@dataclass
class Event:
    process: int
    type: str
    f: str  # read | write | cas | recover | checkpoint
    key: str
    time: int
    index: int = 0  # the operation's id: shared by its invoke and its completion
    value: Any = None  # write/cas/recover: the value written; read/checkpoint (ok): [version, value]
    expected: int | None = None  # cas: the expected version
    version: int | None = None  # write/cas/recover (ok): the version it created
    request_id: str = ""
    error: str = ""


@dataclass
class Operation:
    """An invoke joined with its completion."""

    index: int
    process: int
    f: str
    key: str
    call: int
    ret: int | None  # None: never completed or info (may take effect any time after call)
    outcome: str
    value: Any = None
    expected: int | None = None
    version: int | None = None
    request_id: str = ""
    error: str = ""

    def describe(self) -> str:
        if self.f in ("read", "checkpoint"):
            what = f"{self.f} -> {self.value}" if self.outcome == OK else self.f
        elif self.f == "cas":
            what = f"cas(expect v{self.expected}, {self.value!r})" + (f" -> v{self.version}" if self.version else "")
        else:
            what = f"{self.f}({self.value!r})" + (f" -> v{self.version}" if self.version else "")
        return f"op {self.index} [process {self.process}, {self.key}] {what} ({self.outcome})"


@dataclass
class HistoryRecorder:
    """Thread-safe: clients record events as they happen; written as JSON lines."""

    events: list[Event] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0

    def invoke(self, **kw: Any) -> Event:
        with self._lock:
            self._next += 1
            event = Event(type=INVOKE, index=self._next, **kw)
            self.events.append(event)
            return event

    def complete(self, invoke: Event, type_: str, time: int, **kw: Any) -> None:
        event = Event(
            process=invoke.process,
            type=type_,
            f=invoke.f,
            key=invoke.key,
            time=time,
            index=invoke.index,
            request_id=invoke.request_id,
            expected=invoke.expected,
            **kw,
        )
        if event.value is None and invoke.f in ("write", "cas", "recover"):
            event.value = invoke.value
        with self._lock:
            self.events.append(event)

    def write(self, path: Path) -> None:
        with self._lock:
            lines = [json.dumps(asdict(e), sort_keys=True) for e in self.events]
        path.write_text("\n".join(lines) + ("\n" if lines else ""))


def read_events(path: Path) -> list[Event]:
    return [Event(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def operations(events: list[Event]) -> list[Operation]:
    """Pair invokes with completions; an invoke with no completion is indeterminate."""
    invokes: dict[int, Event] = {}
    done: dict[int, Event] = {}
    for e in events:
        (invokes if e.type == INVOKE else done)[e.index] = e
    ops = []
    for index, inv in sorted(invokes.items()):
        comp = done.get(index)
        outcome = comp.type if comp else INFO
        ops.append(
            Operation(
                index=index,
                process=inv.process,
                f=inv.f,
                key=inv.key,
                call=inv.time,
                ret=comp.time if comp and outcome != INFO else None,
                outcome=outcome,
                value=(comp.value if comp and comp.value is not None else inv.value),
                expected=inv.expected,
                version=comp.version if comp else None,
                request_id=inv.request_id,
                error=comp.error if comp else "",
            )
        )
    return ops
