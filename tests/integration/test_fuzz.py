"""The API fuzz test from the security issue, on a budget CI can afford: hypothesis-drawn requests to every
RPC a node serves, structured and as raw bytes, under several caller credentials, against a real 3-node
cluster. No reply may carry an imprecise code, no node may exit or grow its memory past a bound, nothing may
change that no valid request asked for, and the replicas must agree at the end (tests/fuzz_api.py says how).

CAIRN_FUZZ_REQUESTS sets the number of calls (default 6000, about a minute here); `make fuzz` runs 100 000
through `python -m tests.fuzz_api`. The report (counts by method and code, rate, memory) is printed, so
`pytest -s` shows it; on a failure it is the assertion message, with each violation's shrunk request.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.fuzz_api import PROFILES, Fuzzer, served_methods
from tests.support import ClusterHandle

pytestmark = pytest.mark.timeout(600)

REQUESTS = int(os.environ.get("CAIRN_FUZZ_REQUESTS", "6000"))


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_fuzz_every_rpc(make_cluster: Callable[..., ClusterHandle], profile_name: str) -> None:
    """Every profile in PROFILES (today "plain", auth off); one with TLS and auth on joins by being added there."""
    profile = PROFILES[profile_name]
    handle = make_cluster(3, overrides=profile.overrides)
    report = Fuzzer(handle, profile).run(REQUESTS)
    print(report.table())

    assert report.requests >= REQUESTS
    assert not report.failed, report.table()
    # The harness itself: every method was called, and valid writes got through (a fuzzer whose requests are
    # all INVALID_ARGUMENT tests the validator and nothing behind it).
    missing = sorted({m.short for m in served_methods()} - set(report.codes))
    assert not missing, f"never called: {missing}"
    for method in ("StateService/PersistState", "StateService/PersistStream", "StateService/CreateCheckpoint"):
        assert report.codes[method]["OK"] > 0, f"no {method} succeeded: {dict(report.codes[method])}"
