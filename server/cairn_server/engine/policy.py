"""Pure rules for what happens to a run after an attempt ends badly (a step raised, or the worker's lease
expired): retry after a backoff, quarantine after max_attempts, or fail for good. No I/O."""

from __future__ import annotations

from cairn.v1 import state_pb2
from cairn_server.internal import command_pb2


def attempts_used(run: state_pb2.WorkflowRun) -> int:
    """Attempts counted against the budget: those since the last release (or since the start)."""
    return run.attempt - run.attempt_base


def backoff_ns(policy: command_pb2.Policy, failures: int) -> int:
    """Exponential: retry_backoff, then twice that, ... capped at max_retry_backoff."""
    if failures <= 0:
        return 0
    delay = policy.retry_backoff_ns * (2 ** min(failures - 1, 40))
    return min(delay, policy.max_retry_backoff_ns or delay)


def after_failed_attempt(
    run: state_pb2.WorkflowRun,
    policy: command_pb2.Policy,
    now_ns: int,
    error: str,
    *,
    non_retryable: bool = False,
    crashed: bool = False,
) -> None:
    """Move `run` (RUNNING, its attempt just ended badly) to its next status, in place.

    A crash (expired lease) is retried at once, a raised step after the backoff; either way the attempt
    counts, so a workflow that kills its worker every time ends QUARANTINED instead of looping forever.
    """
    run.last_error = error
    if non_retryable:
        run.status = state_pb2.FAILED
        run.finished_at.FromNanoseconds(now_ns)
        return
    if attempts_used(run) >= max(1, policy.max_attempts):
        run.status = state_pb2.QUARANTINED
        run.last_error = f"{error} (attempt {run.attempt}; {attempts_used(run)} of {policy.max_attempts} used)"
        return
    run.status = state_pb2.PENDING
    ready = now_ns if crashed else now_ns + backoff_ns(policy, attempts_used(run))
    run.attempt += 1
    run.ready_at.FromNanoseconds(ready)
