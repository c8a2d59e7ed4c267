"""The workflow the chaos workers serve: N steps, each of which says that it ran before it does anything.

Every execution of a step's code first appends one JSON line to this worker's events file (the path in
$CHAOS_EVENTS): {run, step, attempt, worker, pid, time_ns, token, nonce, result}. The step returns a value
naming the worker and a random nonce, so any result the cluster persisted can be traced to the one
execution that produced it, and every execution is on record even when its worker is killed right after.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

import cairn

WORKFLOW_TYPE = "chaos-steps"
EVENTS_ENV = "CHAOS_EVENTS"
WORKER_ENV = "CHAOS_WORKER_ID"

_lock = threading.Lock()
_file: Any = None


def step_name(k: int) -> str:
    return f"step-{k}"


def _record(event: dict) -> None:
    global _file
    with _lock:
        if _file is None:
            _file = open(os.environ[EVENTS_ENV], "a", encoding="utf-8")  # noqa: SIM115 - kept for the process
        _file.write(json.dumps(event, sort_keys=True) + "\n")
        _file.flush()  # in the kernel before the step does anything: a kill -9 cannot lose it


def _execute(run: str, k: int, attempt: int, token: int, pause: float) -> str:
    worker = os.environ.get(WORKER_ENV, f"pid{os.getpid()}")
    nonce = uuid.uuid4().hex[:12]
    result = f"{run}/{step_name(k)}/{worker}/{nonce}"
    _record(
        {
            "run": run,
            "step": step_name(k),
            "attempt": attempt,
            "worker": worker,
            "pid": os.getpid(),
            "time_ns": time.time_ns(),
            "token": token,
            "nonce": nonce,
            "result": result,
        }
    )
    if pause:
        time.sleep(pause)  # long enough that faults find runs in flight
    return result


@cairn.workflow(WORKFLOW_TYPE)
def chaos_steps(ctx: cairn.Context, input: dict) -> list[str]:
    """input: {"steps": N, "pause": seconds per step}; the output is the persisted results, in order."""
    return [
        ctx.step(step_name(k), _execute, ctx.workflow_id, k, ctx.attempt, ctx.token, float(input.get("pause", 0)))
        for k in range(int(input["steps"]))
    ]
