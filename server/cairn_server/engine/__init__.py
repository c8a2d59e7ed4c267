"""Durable execution: workflow runs, the pending-run queue, fenced leases, periodic checkpoints, and the
leader's scheduler. Apply handlers here are registered with the StateMachine (`install`)."""

from __future__ import annotations

from ..statemachine import StateMachine
from .leases import LeaseOps
from .periodic import PeriodicCheckpoints
from .runs import RunOps


def install(machine: StateMachine) -> None:
    """Register every engine operation and hook with the state machine (once per machine)."""
    RunOps(machine).install()
    LeaseOps(machine).install()
    PeriodicCheckpoints(machine).install()


__all__ = ["install"]
