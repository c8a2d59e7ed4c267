"""The node's wall clock: the one function through which it reads the time of day.

The leader stamps every command's time (and so every lease expiry, retry time and checkpoint due
time) from `now_ns`. Reading it through one function lets a test skew or jump one node's clock (the
`clock.offset` failpoint) the way NTP or an operator would. Decisions about how long something has
lasted on this node (election timeouts, lease expiry on the leader, waits) use time.monotonic(),
which a wall-clock jump does not move.
"""

from __future__ import annotations

import time

from . import failpoints


def now_ns() -> int:
    """Wall-clock time in nanoseconds since the epoch, as this node believes it to be."""
    offset = failpoints.value("clock.offset")
    now = time.time_ns()
    return now + int(failpoints.seconds(offset) * 1e9) if offset else now
