"""Fixtures: real node processes on loopback, stopped after each test (logs shown on failure).

The rule against silent skips is tests/skip_policy.py, loaded for every run (pyproject's addopts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import ClusterHandle, start_cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def make_cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., ClusterHandle]]:
    handles: list[ClusterHandle] = []

    def make(nodes: int = 3, overrides: dict[str, Any] | None = None, **kwargs: Any) -> ClusterHandle:
        handle = start_cluster(tmp_path_factory.mktemp("cluster"), nodes, overrides, **kwargs)
        handles.append(handle)
        return handle

    yield make
    failed = request.node.stash.get(_FAILED, False)
    for handle in handles:
        if failed:
            for i in range(handle.size):
                print(f"\n---- {handle.cluster.specs[i].node_id} log tail ----\n{handle.cluster.log_tail(i, 40)}")
        handle.close()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    """One 3-node cluster for a module of tests that do not disturb it."""
    handle = start_cluster(tmp_path_factory.mktemp("shared"), 3)
    yield handle
    handle.close()
