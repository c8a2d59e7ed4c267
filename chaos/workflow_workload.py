"""The workflow workload: a client that starts runs at a steady rate, and readers that sample runs.

Operations (recorded like the state workload's, in the same history):
- start: StartWorkflow of a fresh id with a request id of its own. ok: acknowledged; fail: definitely
  refused; info: unknown (it may exist). The id is the operation's key.
- wf-read: GetWorkflow of a run started so far (linearizable, any node); ok with {status, version,
  steps: [[name, result], ...]}, so a persisted result seen once can be held to the final state.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cairn import Client, InvalidArgumentError, NotFoundError
from cairn.errors import CairnError
from cairn.types import WorkflowRun
from cairn.v1 import state_pb2

from .history import FAIL, INFO, OK, HistoryRecorder
from .workflow_app import WORKFLOW_TYPE

STARTER, READER = 101, 102  # process numbers in the history (the state workload's clients are 0..N)


def now() -> int:
    return time.monotonic_ns()


@dataclass
class WorkflowWorkload:
    endpoints: list[str]
    recorder: HistoryRecorder
    steps: int = 3
    rate: float = 4.0  # starts per second
    pause: float = 0.25  # seconds each step's code takes
    readers: int = 1
    read_interval: float = 0.1
    seed: int = 0
    op_timeout: float = 3.0
    tls: dict[str, Any] = field(default_factory=dict)  # Client(**tls): a secure cluster's admin credentials
    started: list[str] = field(default_factory=list)  # ids whose start was acknowledged or is unknown
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self, stop: threading.Event) -> None:
        targets = [(self._starter, STARTER)] + [(self._reader, READER + r) for r in range(self.readers)]
        for target, process in targets:
            t = threading.Thread(target=target, args=(process, stop), name=f"wf-{process}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float = 30.0) -> None:
        for t in self._threads:
            t.join(timeout)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self.started)

    def _starter(self, process: int, stop: threading.Event) -> None:
        client = Client(self.endpoints, timeout=self.op_timeout, attempt_timeout=1.0, **self.tls)
        period = 1.0 / self.rate
        due = time.monotonic()
        seq = 0
        try:
            while not stop.is_set():
                seq += 1
                self._start_one(client, process, f"wf-{self.seed}-{seq:05d}")
                due = max(due + period, time.monotonic())  # steady: a slow call is not made up with a burst
                stop.wait(max(0.0, due - time.monotonic()))
        finally:
            client.close()

    def _start_one(self, client: Client, process: int, wid: str) -> None:
        rid = uuid.uuid4().hex
        run_input = {"steps": self.steps, "pause": self.pause}
        inv = self.recorder.invoke(process=process, f="start", key=wid, time=now(), value=run_input, request_id=rid)
        try:
            run = client.start_workflow(WORKFLOW_TYPE, wid, run_input, request_id=rid)
        except InvalidArgumentError as err:  # refused outright: nothing was written
            self.recorder.complete(inv, FAIL, now(), error=err.code)
            return
        except CairnError as err:  # a timeout, unavailability, even ALREADY_EXISTS: it may exist
            self.recorder.complete(inv, INFO, now(), error=err.code)
            with self._lock:
                self.started.append(wid)
            return
        self.recorder.complete(inv, OK, now(), version=run.version)
        with self._lock:
            self.started.append(wid)

    def _reader(self, process: int, stop: threading.Event) -> None:
        rng = random.Random(self.seed * 1000 + process)
        client = Client(self.endpoints, timeout=self.op_timeout, attempt_timeout=1.0, **self.tls)
        try:
            while not stop.wait(self.read_interval):
                ids = self.ids()
                if ids:
                    # Mostly recent runs (the ones in flight), sometimes any.
                    wid = rng.choice(ids[-20:] if rng.random() < 0.8 else ids)
                    self._read_one(client, process, wid)
        finally:
            client.close()

    def _read_one(self, client: Client, process: int, wid: str) -> None:
        inv = self.recorder.invoke(process=process, f="wf-read", key=wid, time=now())
        try:
            run = client.get_workflow(wid)
        except NotFoundError:
            self.recorder.complete(inv, OK, now(), value={"status": "NOT_FOUND", "version": 0, "steps": []})
            return
        except CairnError as err:
            self.recorder.complete(inv, FAIL, now(), error=err.code)  # a read that did not happen
            return
        value = {"status": run.status, "version": run.version, "steps": [[s.name, s.result] for s in run.steps]}
        self.recorder.complete(inv, OK, now(), value=value, version=run.version)


def read_final(client: Client, ids: list[str], deadline_s: float) -> dict[str, dict]:
    """Wait (up to `deadline_s`) for every run to finish, then read each one's state and full history.

    A run that does not exist is {"missing": true}. History entries keep the engine's fields (kind, wall
    clock time of the leader's stamp, attempt, fencing token, step name) from the raw protobuf.
    """
    deadline = time.monotonic() + deadline_s
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        still = []
        for wid in pending:
            try:
                if not client.get_workflow(wid).done:
                    still.append(wid)
            except NotFoundError:
                continue
            except CairnError:
                still.append(wid)
        pending = still
        if pending:
            time.sleep(0.5)
    final: dict[str, dict] = {}
    for wid in ids:
        final[wid] = _read_run(client, wid)
    return final


def _read_run(client: Client, wid: str) -> dict:
    error = ""
    for _ in range(5):
        try:
            state = client.get_state(wid, include_history=True)
            break
        except NotFoundError:
            return {"missing": True}
        except CairnError as err:
            error = f"{err.code}: {err}"
            time.sleep(1)
    else:
        return {"missing": False, "error": error}
    assert state.raw is not None
    run = WorkflowRun.from_proto(state.raw)  # the run and its history from one read
    history = [
        {
            "version": h.version,
            "kind": state_pb2.ChangeKind.Name(h.kind),
            "time_ns": h.time.ToNanoseconds(),
            "attempt": h.attempt,
            "token": h.fencing_token,
            "step_name": h.step_name,
            "request_id": h.request_id,
        }
        for h in state.raw.history
    ]
    return {
        "status": run.status,
        "attempt": run.attempt,
        "version": run.version,
        "steps": [[s.name, s.result] for s in run.steps],
        "output": run.output,
        "last_error": run.last_error,
        "history": history,
    }
