"""The suite's rule against silent skips: a skipped test is a test that did not run, so any skip whose
reason is not in ALLOWED_SKIPS fails the session (listed at the end, with what to install).

Loaded as a plugin for every pytest run (`-p tests.skip_policy` in pyproject's addopts), so it holds for
`pytest chaos/tests` on its own as well as for the whole suite. .ci/run provides everything the suite
needs (root, network namespaces, protoc, strace, ...).
"""

from __future__ import annotations

import re

import pytest

# Skips that may pass without failing the session: {regular expression searched in the skip reason:
# why such a skip is not a test silently not running}. Empty: everything the suite needs is provided
# by .ci/run, so in CI every skip is a requirement that went missing. Add an entry only for a skip
# that is correct on the CI machine too (e.g. a test for another OS), never for a missing tool.
ALLOWED_SKIPS: dict[str, str] = {}

# What to do about a missing requirement, by the words a skip reason uses for it (first match).
_REMEDIES: tuple[tuple[str, str], ...] = (
    (r"\broot\b|namespace|netns", "run the suite as root with iproute2 installed (as .ci/run does: sudo .ci/run)"),
    (r"protoc", "install protoc: apt-get install protobuf-compiler"),
    (r"strace", "install strace: apt-get install strace"),
    (r"postgres|psql", "install PostgreSQL (.ci/run's package list)"),
    (r"node\.?js|\bnpm\b", "install Node.js (.ci/run's package list)"),
    (r"could not import|no module named", "install the test dependencies: make install-test"),
)
_DEFAULT_REMEDY = "provide what it needs (.ci/run installs the suite's requirements), or allow it in ALLOWED_SKIPS"


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def allowed(reason: str) -> bool:
    return any(re.search(pattern, reason) for pattern in ALLOWED_SKIPS)


def remedy(reason: str) -> str:
    return next((fix for pattern, fix in _REMEDIES if re.search(pattern, reason, re.IGNORECASE)), _DEFAULT_REMEDY)


class SkipPolicy:
    """Collects every skip (collection and test phases); at the end, fails the session on any not allowed."""

    def __init__(self) -> None:
        self.refused: list[tuple[str, str]] = []  # (node id, reason)

    def _record(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        reason = skip_reason(report)
        if not allowed(reason):
            self.refused.append((report.nodeid, reason))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):  # an xfail is reported as skipped too
            self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            self._record(report)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.refused and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.refused:
            return
        terminalreporter.section("skips not allowed (tests/skip_policy.py ALLOWED_SKIPS): the session fails", red=True)
        for nodeid, reason in self.refused:
            terminalreporter.line(f"SKIPPED {nodeid}: {reason}", red=True)
            terminalreporter.line(f"    to run it: {remedy(reason)}")


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("cairn-skip-policy"):
        config.pluginmanager.register(SkipPolicy(), "cairn-skip-policy")
