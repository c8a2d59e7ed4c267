"""Durable execution: workflow runs, the pending-run queue, fenced leases, periodic checkpoints, and the
leader's scheduler. Apply handlers here are registered with the StateMachine (`install`)."""

from __future__ import annotations

from ..statemachine import StateMachine
from .leases import LeaseOps, RenewalTimes
from .periodic import PeriodicCheckpoints
from .runs import RunOps


def install(machine: StateMachine) -> RenewalTimes:
    """Register every engine operation and hook with the state machine (once per machine); returns the
    lease renewal times the leader's scheduler decides expiries by."""
    RunOps(machine).install()
    leases = LeaseOps(machine)
    leases.install()
    PeriodicCheckpoints(machine).install()
    return leases.renewals


__all__ = ["RenewalTimes", "install"]
