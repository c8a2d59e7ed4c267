"""A workflow of named steps whose behaviour the test drives through files, served by `cairn worker run`.

Environment (set by the test on the worker process):
- CAIRN_TEST_DIR: the directory for the execution log and the control files.
- CAIRN_TEST_TYPE: the workflow type to register (one per test, so runs left by one test never reach
  another test's workers on a shared cluster).
- CAIRN_TEST_WORKER: this worker's name; it is written into every step result.

Every execution of a step's code appends "run step attempt pid worker" to CAIRN_TEST_DIR/executions.log
before doing anything else, so the test can count how often each step's code ran and can tell that a step
has started. The run's input says what the steps do:
  {"steps": ["s1", "s2", "s3"],   # the steps, in order (this is the default)
   "block": ["s2"],               # wait until go.<run>.<step> (or go.<run>.<step>.<worker>) exists
   "raise": ["s1"],               # raise RuntimeError unless ok.<run>.<step> exists
   "crash": ["s1"]}               # kill this worker process (os._exit) unless ok.<run>.<step> exists
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import cairn

DIR = Path(os.environ["CAIRN_TEST_DIR"])
WORKER = os.environ.get("CAIRN_TEST_WORKER", f"pid-{os.getpid()}")
TYPE = os.environ.get("CAIRN_TEST_TYPE", "chain")
EXECUTIONS = DIR / "executions.log"
BLOCK_LIMIT = 120.0  # a blocked step gives up eventually, so a forgotten go-file never hangs a process forever


def _log(line: str) -> None:
    fd = os.open(EXECUTIONS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def run_step(run_id: str, step: str, attempt: int, behaviour: dict[str, Any]) -> dict[str, Any]:
    _log(f"{run_id} {step} {attempt} {os.getpid()} {WORKER}")
    if step in behaviour.get("block", ()):
        shared, mine = DIR / f"go.{run_id}.{step}", DIR / f"go.{run_id}.{step}.{WORKER}"
        deadline = time.monotonic() + BLOCK_LIMIT
        while not (shared.exists() or mine.exists()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"step {step} of {run_id}: no go-file after {BLOCK_LIMIT}s")
            time.sleep(0.02)
    allowed = (DIR / f"ok.{run_id}.{step}").exists()
    if step in behaviour.get("raise", ()) and not allowed:
        raise RuntimeError(f"poison step {step} of {run_id} (attempt {attempt})")
    if step in behaviour.get("crash", ()) and not allowed:
        os._exit(17)
    return {"step": step, "worker": WORKER, "pid": os.getpid(), "attempt": attempt}


@cairn.workflow(TYPE)
def chain(ctx: cairn.Context, input: Any) -> dict[str, Any]:
    behaviour = input or {}
    results = {}
    for step in behaviour.get("steps", ["s1", "s2", "s3"]):
        results[step] = ctx.step(step, run_step, ctx.workflow_id, step, ctx.attempt, behaviour)
    return {"steps": results, "finished_by": WORKER}
