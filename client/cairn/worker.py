"""Workers: run the steps of workflow runs under fenced leases.

```python
@cairn.workflow("order")
def order(ctx: cairn.Context, input: dict) -> dict:
    charged = ctx.step("charge", charge_card, input["amount"])
    ctx.step("ship", ship, input["items"])
    return {"charged": charged}

cairn.Worker(client, workflows=[order], concurrency=4, lease_timeout="10s").run()   # until SIGTERM
```

- One poller long-polls for a run whenever an execution slot is free (`concurrency` slots).
- `ctx.step(name, fn, *args)` returns the recorded result when the step was persisted by an earlier
  attempt (replay), and otherwise runs `fn` and persists its result before returning. A step's code runs
  at least once; its result is persisted exactly once (the write is fenced by the lease's token and
  deduplicated by a request id derived from the lease and the step).
- One heartbeat call per interval extends every lease this worker holds. A lease reported lost (expired,
  cancelled, superseded) or not renewed in time stops its run at the next step: nothing more is written.
- A workflow that raises: the attempt is reported failed and the cluster retries it after a backoff, up
  to recovery.max_attempts, then QUARANTINED. Raise `NonRetryableError` to fail the run for good. The
  worker process itself never crashes on a handler's exception.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .client import Client
from .durations import parse_duration
from .errors import CairnError, InvalidArgumentError, LeaseLostError
from .types import Task, WorkflowRun
from .values import from_value, to_value

log = logging.getLogger(__name__)

WorkflowFn = Callable[["Context", Any], Any]


def worker_command(
    app: str,
    endpoints: list[str],
    *,
    worker_id: str,
    lease_timeout: str = "2s",
    concurrency: int = 4,
    poll_wait: float | None = None,
) -> list[str]:
    """The command line of one `cairn worker run APP` process (tests, chaos, bench)."""
    command = [
        sys.executable,
        "-m",
        "cairn.cli",
        "worker",
        "run",
        app,
        "--endpoints",
        ",".join(endpoints),
        "--lease-timeout",
        lease_timeout,
        "--worker-id",
        worker_id,
        "--concurrency",
        str(concurrency),
    ]
    return command if poll_wait is None else [*command, "--poll-wait", str(poll_wait)]


class NonRetryableError(Exception):
    """Raise from a workflow or a step to fail the run at once (FAILED), without retries."""


class StepResultError(InvalidArgumentError):
    """A step returned something that is not JSON-like; nothing was persisted. It fails the run (retrying
    the same code would return the same thing)."""


@dataclass(frozen=True)
class WorkflowDefinition:
    """A function registered as a workflow type by `@cairn.workflow(name)`; still callable as itself."""

    name: str
    fn: WorkflowFn

    def __call__(self, ctx: Context, input: Any) -> Any:
        return self.fn(ctx, input)


def workflow(name: str) -> Callable[[WorkflowFn], WorkflowDefinition]:
    """Register the decorated function `fn(ctx, input)` as the workflow type `name`."""
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"a workflow type needs a non-empty name, got {name!r}")

    def register(fn: WorkflowFn) -> WorkflowDefinition:
        return WorkflowDefinition(name, fn)

    return register


def workflows_in(namespace: Iterable[Any]) -> list[WorkflowDefinition]:
    """Every WorkflowDefinition among these objects (a module's attributes), once each."""
    seen: dict[str, WorkflowDefinition] = {}
    for value in namespace:
        if isinstance(value, WorkflowDefinition):
            other = seen.get(value.name)
            if other is not None and other is not value:
                raise InvalidArgumentError(f"workflow type {value.name!r} is defined twice")
            seen[value.name] = value
    return list(seen.values())


class _Lost(Exception):
    """The lease is gone: stop this run without writing anything more."""


@dataclass
class Context:
    """What a running workflow sees: its run, its input, and `step` to persist progress."""

    run: WorkflowRun
    token: int
    lease_id: str
    _client: Client
    valid_until: float
    # The lease's expiry as the leader stamped it, moved onto this machine's wall clock (Unix seconds) by the
    # worker's estimate of the leader's clock offset. A worker paused while its claim waited in the socket
    # cannot tell from its monotonic clock; the wall clock can.
    expires_at: float = float("inf")
    lost: str = ""
    _completed: dict[str, Any] = field(default_factory=dict)
    _used: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._completed = {s.name: s.result for s in self.run.steps}

    @property
    def workflow_id(self) -> str:
        return self.run.workflow_id

    @property
    def workflow_type(self) -> str:
        return self.run.workflow_type

    @property
    def attempt(self) -> int:
        return self.run.attempt

    @property
    def input(self) -> Any:
        return self.run.input

    def check_lease(self) -> None:
        """Raise if this worker may no longer act for the run (lease lost, or not renewed in time)."""
        if self.lost:
            raise _Lost(self.lost)
        if time.monotonic() > self.valid_until or time.time() > self.expires_at:
            raise _Lost("the lease was not renewed before it ran out")

    def _step_request_id(self, name: str) -> str:
        """Derived from the lease and the step, so a retry after an unknown outcome is deduplicated; the name is
        hashed because step names may hold spaces and non-ASCII that request ids may not."""
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        return f"{self.lease_id}:{self.token}:step:{digest}"

    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """The step's persisted result: recorded by an earlier attempt, or computed now and persisted first."""
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"a step needs a non-empty name, got {name!r}")
        if name in self._used:
            raise InvalidArgumentError(f"step name {name!r} is used twice in run {self.workflow_id!r}")
        self._used.add(name)
        if name in self._completed:
            return self._completed[name]
        self.check_lease()
        result = fn(*args, **kwargs)
        try:
            value = to_value(result, f"result of step {name!r}")
        except InvalidArgumentError as err:
            raise StepResultError(err.message) from None
        self.check_lease()
        try:
            self._client.record_step(self.workflow_id, self.token, name, result, request_id=self._step_request_id(name))
        except LeaseLostError as err:
            raise _Lost(err.message) from None
        persisted = from_value(value)
        self._completed[name] = persisted
        return persisted


class Worker:
    """Serves the given workflow types until `stop()` (or SIGTERM/SIGINT under `run()`)."""

    def __init__(
        self,
        client: Client,
        workflows: Iterable[WorkflowDefinition],
        *,
        concurrency: int = 4,
        lease_timeout: float | str = 10.0,
        worker_id: str | None = None,
        poll_wait: float = 10.0,
        heartbeat_interval: float | None = None,
    ):
        self.client = client
        self.workflows = {w.name: w for w in workflows_in(workflows)}
        if not self.workflows:
            raise InvalidArgumentError("a worker needs at least one @cairn.workflow")
        if concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self.lease_timeout = parse_duration(lease_timeout) if isinstance(lease_timeout, str) else float(lease_timeout)
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.poll_wait = poll_wait
        self.heartbeat_interval = heartbeat_interval or max(0.05, self.lease_timeout / 3)
        self._slots = threading.Semaphore(concurrency)
        # The leader's wall clock minus ours, measured at every heartbeat round trip: leader clocks may be
        # skewed or jump, and the stamped expiries are on the leader's clock.
        self._leader_offset = 0.0
        self._offset_measured = float("-inf")  # monotonic time of the heartbeat that measured it
        self._active: dict[str, Context] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="cairn-step")
        self._threads: list[threading.Thread] = []
        self.completed = 0
        self.failed = 0
        self.dropped = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._poll_loop, "cairn-poll"), (self._heartbeat_loop, "cairn-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker %s serving %s (concurrency %d)", self.worker_id, sorted(self.workflows), self.concurrency)

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling, let running workflows finish (up to `timeout`, default the lease timeout)."""
        self._stopping.set()
        deadline = time.monotonic() + (self.lease_timeout if timeout is None else timeout)
        for thread in self._threads:
            if thread.name == "cairn-poll":
                thread.join(max(0.0, deadline - time.monotonic()))
        while self.active_runs() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            for ctx in self._active.values():
                # Not finished in time: stop renewing; the run goes to another worker when its lease expires,
                # and the handler stops at its next step.
                ctx.lost = "the worker is stopping"
        self._pool.shutdown(wait=False, cancel_futures=True)

    def run(self) -> None:
        """Serve in the foreground until SIGTERM or SIGINT, then stop gracefully."""
        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda _s, _f: stop.set())
        self.start()
        while not stop.wait(0.2):
            pass
        self.stop()

    def active_runs(self) -> list[str]:
        with self._lock:
            return list(self._active)

    def _renewable(self) -> bool:
        with self._lock:
            return any(not ctx.lost for ctx in self._active.values())

    def _forget(self, ctx: Context) -> None:
        with self._lock:
            if self._active.get(ctx.workflow_id) is ctx:
                del self._active[ctx.workflow_id]
        self._slots.release()

    # ---- polling ---------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        types = sorted(self.workflows)
        backoff = 0.05
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            try:
                task = self.client.poll_work(
                    self.worker_id, types, lease_timeout=self.lease_timeout, wait=self.poll_wait
                )
            except CairnError as err:
                self._slots.release()
                log.warning("poll failed: %s", err)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            except Exception:  # never let the poller die
                self._slots.release()
                log.exception("poll failed")
                self._stopping.wait(backoff)
                continue
            backoff = 0.05
            if task is None:
                self._slots.release()
                continue
            # The leader stamped the claim just before answering; its fencing token, not this local
            # estimate, is what keeps a late worker from writing.
            ctx = Context(
                run=task.run,
                token=task.lease.fencing_token,
                lease_id=task.lease.lease_id,
                _client=self.client,
                valid_until=time.monotonic() + self.lease_timeout,
                expires_at=(
                    task.lease.expires_at.timestamp() - self._leader_offset if task.lease.expires_at else float("inf")
                ),
            )
            with self._lock:
                self._active[ctx.workflow_id] = ctx
            try:
                self._pool.submit(self._execute, task, ctx)
            except RuntimeError:  # stop() shut the pool while this poll was out: leave the run to its lease
                self._forget(ctx)
                return

    # ---- heartbeats --------------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not (self._stopping.is_set() and not self._renewable()):
            time.sleep(self.heartbeat_interval)
            with self._lock:
                contexts = [ctx for ctx in self._active.values() if not ctx.lost]
            if contexts:
                self._renew(contexts)

    def _renew(self, contexts: list[Context]) -> None:
        """Heartbeat these leases once; updates each one's validity and the leader clock offset."""
        leases = [(ctx.workflow_id, ctx.token) for ctx in contexts]
        sent, wall_sent = time.monotonic(), time.time()
        try:
            results = self.client.heartbeat(self.worker_id, leases, timeout=self.heartbeat_interval * 2)
        except CairnError as err:
            log.warning("heartbeat for %d leases failed: %s", len(leases), err)
            return
        except Exception:
            log.exception("heartbeat failed")
            return
        with self._lock:
            for result in results:
                if result.extended and result.expires_at is not None:
                    # One stamp for the whole batch: the leader's "now" is its expiry minus the duration. It
                    # was taken between our send and receive; assuming the earliest errs towards giving up early.
                    stamped = result.expires_at.timestamp() - self.lease_timeout
                    self._leader_offset = stamped - wall_sent
                    self._offset_measured = sent
                    break
            for result in results:
                ctx = self._active.get(result.workflow_id)
                if ctx is None or ctx.token != result.fencing_token:
                    continue
                if result.extended:
                    ctx.valid_until = sent + self.lease_timeout
                    if result.expires_at is not None:
                        ctx.expires_at = result.expires_at.timestamp() - self._leader_offset
                else:
                    ctx.lost = result.error or "lease lost"

    def _confirm_claim(self, ctx: Context) -> None:
        """A claim may have waited in the socket (this process paused) for longer than its lease, and its
        monotonic deadline only starts at receipt; the wall-clock check needs a recent estimate of the
        leader's clock offset (clocks may be skewed or jump). Without one, renew the lease once before any
        step runs: its validity then starts when that heartbeat was sent."""
        if time.monotonic() - self._offset_measured > self.lease_timeout:
            ctx.valid_until = min(ctx.valid_until, time.monotonic())  # nothing runs on the claim alone
            self._renew([ctx])

    # ---- executing one run --------------------------------------------------------------------------

    def _execute(self, task: Task, ctx: Context) -> None:
        wid, token = ctx.workflow_id, ctx.token
        rid = f"{ctx.lease_id}:{token}"
        try:
            definition = self.workflows[task.run.workflow_type]
            self._confirm_claim(ctx)
            ctx.check_lease()  # the claim may have waited in the socket while this process was paused
            output = definition(ctx, task.run.input)
            try:
                to_value(output, "output")
            except InvalidArgumentError as err:
                raise StepResultError(f"the workflow's {err.message}") from None
            ctx.check_lease()
            try:
                self.client.complete_workflow(wid, token, output, request_id=f"{rid}:complete")
            except LeaseLostError:
                raise
            except CairnError as err:
                # The workflow did finish; reporting it failed would run it again. Its lease will expire and the
                # next attempt replays the recorded steps and completes it.
                log.warning("run %s: could not record its completion (%s); its lease will expire", wid, err)
                return
            self.completed += 1
        except (_Lost, LeaseLostError) as lost:
            self.dropped += 1
            log.warning("run %s: %s; dropped", wid, lost)
        except BaseException as exc:  # noqa: BLE001 - a handler's failure must never crash the worker
            self._report_failure(ctx, exc, rid)
        finally:
            self._forget(ctx)

    def _report_failure(self, ctx: Context, exc: BaseException, rid: str) -> None:
        non_retryable = isinstance(exc, NonRetryableError | StepResultError)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.warning("run %s attempt %d failed: %s", ctx.workflow_id, ctx.attempt, detail)
        if ctx.lost:
            self.dropped += 1
            return
        try:
            self.client.fail_workflow(
                ctx.workflow_id, ctx.token, detail, non_retryable=non_retryable, request_id=f"{rid}:fail"
            )
            self.failed += 1
        except LeaseLostError:
            self.dropped += 1
        except CairnError as err:
            log.warning("run %s: could not report the failure (%s); its lease will expire", ctx.workflow_id, err)


__all__ = [
    "Context",
    "NonRetryableError",
    "StepResultError",
    "Worker",
    "WorkflowDefinition",
    "workflow",
    "workflows_in",
]
