"""The API fuzz test from the security issue, on a budget CI can afford: hypothesis-drawn requests to every
RPC a node serves, structured and as raw bytes, under several caller credentials, against a real 3-node
cluster. No reply may carry an imprecise code, no node may exit or grow its memory past a bound, nothing may
change that no valid request asked for, and the replicas must agree at the end (tests/fuzz_api.py says how).

Once per profile in PROFILES: "plain" (auth off) and "secure" (TLS, auth and encryption at rest; callers with
no credentials, malformed or unknown ones, forged forwarding claims, the admin, an identity with a narrow
role and one with no role; an answer beyond what access control allows each of them is a violation).

CAIRN_FUZZ_REQUESTS sets the number of calls per profile (default 6000; the file takes about a minute here);
`make fuzz` runs 100 000 through `python -m tests.fuzz_api` (FUZZ_PROFILE=secure for the secure profile).
The report (counts by method, caller and code, rate, memory) is printed, so `pytest -s` shows it; on a
failure it is the assertion message, with each violation's shrunk request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fuzz_api import PROFILES, Fuzzer, served_methods
from tests.support import ClusterHandle

pytestmark = pytest.mark.timeout(600)

REQUESTS = int(os.environ.get("CAIRN_FUZZ_REQUESTS", "6000"))


@pytest.mark.parametrize("profile_name", sorted(PROFILES))
def test_fuzz_every_rpc(make_cluster: Callable[..., ClusterHandle], tmp_path: Path, profile_name: str) -> None:
    profile = PROFILES[profile_name]
    handle = make_cluster(3, overrides=profile.cluster_overrides(tmp_path), secure=profile.secure)
    fuzzer = Fuzzer(handle, profile)
    report = fuzzer.run(REQUESTS)
    print(report.table())

    assert report.requests >= REQUESTS
    assert not report.failed, report.table()
    # The harness itself: every method was called, and valid writes got through (a fuzzer whose requests are
    # all INVALID_ARGUMENT tests the validator and nothing behind it).
    missing = sorted({m.short for m in served_methods()} - set(report.codes))
    assert not missing, f"never called: {missing}"
    writes = ("StateService/PersistState", "StateService/PersistStream", "StateService/CreateCheckpoint")
    if profile.auth_enabled:
        # Most callers are refused by design; with the CI budget each write method alone may see no valid one.
        assert sum(report.codes[m]["OK"] for m in writes) > 0, {m: dict(report.codes[m]) for m in writes}
    else:
        for method in writes:
            assert report.codes[method]["OK"] > 0, f"no {method} succeeded: {dict(report.codes[method])}"
    unused = sorted({c.name for c in fuzzer.callers} - set(report.by_caller))
    assert not unused, f"callers never drawn: {unused}"
    if profile.auth_enabled:
        # Every kind of caller met access control, and the valid ones got past it.
        for caller in fuzzer.callers:
            codes = report.by_caller[caller.name]
            if not caller.authenticated:
                assert codes["UNAUTHENTICATED"] > 0, f"{caller.name} was never refused: {dict(codes)}"
            elif caller.access is not None and not caller.access.admin:
                refused = codes["PERMISSION_DENIED"] + codes["UNAUTHENTICATED"]  # the forged claim: UNAUTHENTICATED
                assert refused > 0, f"{caller.name} was never refused: {dict(codes)}"
        assert report.ok_writes["admin-token"] > 0, dict(report.by_caller["admin-token"])
        assert report.ok_writes["narrow-token"] > 0, dict(report.by_caller["narrow-token"])
