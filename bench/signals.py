"""Ctrl-C and SIGTERM unwind the benchmark, but never in the middle of stopping a cluster.

An exception raised by a signal inside `stop()` would leave the members not yet waited for running
after the benchmark exits. `install()` makes SIGINT/SIGTERM raise KeyboardInterrupt/SystemExit as
usual, except inside `deferred()`, where the signal is remembered and raised when the block ends.
Without `install()` (a library caller), `deferred()` changes nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_depth = 0
_pending: int | None = None


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _handler(signum: int, _frame: FrameType | None) -> None:
    global _pending
    if _depth:
        _pending = _pending or signum
        return
    _raise_for(signum)


def install() -> None:
    """SIGINT and SIGTERM unwind (finally blocks run) unless deferred. Main thread only."""
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block is done, then act on the first one that came."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            _raise_for(signum)
