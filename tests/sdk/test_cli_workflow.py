"""`cairn workflow ...` (the installed entry point, as a subprocess) against a live cluster, with real
`cairn worker run` processes executing the runs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import ClusterHandle, wait_until

CAIRN = str(Path(sys.executable).parent / "cairn")

# `cli-double` completes; `cli-boom` records a step, then raises on every attempt. No worker serves
# `cli-idle`, so its runs stay PENDING for as long as a test needs.
WORKFLOWS = textwrap.dedent(
    """
    import cairn


    @cairn.workflow("cli-double")
    def double(ctx, input):
        doubled = ctx.step("double", lambda n: n * 2, input["n"])
        return {"doubled": doubled}


    @cairn.workflow("cli-boom")
    def boom(ctx, input):
        ctx.step("before", lambda: "ok")
        raise RuntimeError(f"boom on attempt {ctx.attempt}")
    """
)


def cli(endpoints: str, *args: str, as_json: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = [CAIRN, *args, "--endpoints", endpoints] + (["--json"] if as_json else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, input=stdin)


def ok(endpoints: str, *args: str, stdin: str | None = None) -> dict:
    proc = cli(endpoints, *args, stdin=stdin)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def refused(endpoints: str, *args: str) -> dict:
    """A command the cluster refuses: exit 1 with {"error": CODE, "message": ...} on stdout."""
    proc = cli(endpoints, *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def endpoints(shared_cluster: ClusterHandle) -> str:
    return ",".join(shared_cluster.cluster.endpoints)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Start `cairn worker run` processes on a module of the WORKFLOWS above; each is stopped (SIGTERM, then
    SIGKILL if it does not exit) when the test ends."""
    module = tmp_path / "cli_workflows.py"
    module.write_text(WORKFLOWS)
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(endpoints: str) -> subprocess.Popen:
        log = tmp_path / f"worker-{len(started)}.log"
        cmd = [CAIRN, "worker", "run", str(module), "--endpoints", endpoints, "--lease-timeout", "2s"]
        with log.open("w") as out:
            proc = subprocess.Popen([*cmd, "--poll-wait", "1"], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        # pytest shows a test's captured output only when it fails.
        print(f"\n---- {log.name} ----\n{log.read_text(errors='replace')[-4000:]}")


def test_start_then_show_and_list(endpoints: str, tmp_path: Path) -> None:
    started = ok(
        endpoints,
        *("workflow", "start", "cli-idle", "cli-run-1", "--input", '{"n": 2, "tags": ["a"]}'),
        *("--label", "team=ops", "--label", "tier=1", "--request-id", "cli-req-1"),
    )
    assert started["workflow_id"] == "cli-run-1" and started["workflow_type"] == "cli-idle"
    assert (started["status"], started["attempt"], started["version"]) == ("PENDING", 1, 1)
    assert started["input"] == {"n": 2, "tags": ["a"]} and started["output"] is None and started["steps"] == []
    assert started["metadata"]["labels"] == {"team": "ops", "tier": "1"} and "raw" not in started
    # A retry with the same request id is the same start: its first result, not ALREADY_EXISTS; the same
    # request id on a different request is refused.
    retry = ok(
        endpoints,
        *("workflow", "start", "cli-idle", "cli-run-1", "--input", '{"tags": ["a"], "n": 2}'),
        *("--label", "tier=1", "--label", "team=ops", "--request-id", "cli-req-1"),
    )
    assert {**retry, "applied_index": 0} == {**started, "applied_index": 0}
    misuse = refused(
        endpoints, "workflow", "start", "cli-idle", "cli-run-1", "--input", "3", "--request-id", "cli-req-1"
    )
    assert misuse["error"] == "FAILED_PRECONDITION" and "cli-req-1" in misuse["message"]

    shown = ok(endpoints, "workflow", "show", "cli-run-1")
    assert {k: shown[k] for k in ("workflow_id", "workflow_type", "status", "attempt", "input", "version")} == {
        "workflow_id": "cli-run-1",
        "workflow_type": "cli-idle",
        "status": "PENDING",
        "attempt": 1,
        "input": {"n": 2, "tags": ["a"]},
        "version": 1,
    }
    assert shown["lease"] is None and shown["lease_holder"] == "" and shown["last_error"] == ""
    table = cli(endpoints, "workflow", "show", "cli-run-1", as_json=False)
    assert table.returncode == 0, table.stderr
    for text in ("workflow run cli-run-1", "PENDING", "cli-idle", '{"n": 2, "tags": ["a"]}', "lease holder"):
        assert text in table.stdout, table.stdout

    # The input from stdin and from a file; no input at all is null.
    from_stdin = ok(endpoints, "workflow", "start", "cli-idle", "cli-run-2", "--input-file", "-", stdin="[1, 2]")
    assert from_stdin["input"] == [1, 2]
    input_file = tmp_path / "input.json"
    input_file.write_text('{"from": "file"}')
    from_file = ok(endpoints, "workflow", "start", "cli-idle", "cli-run-4", "--input-file", str(input_file))
    assert from_file["input"] == {"from": "file"}
    assert ok(endpoints, "workflow", "start", "cli-idle", "cli-run-3")["input"] is None

    listed = ok(endpoints, "workflow", "list", "--prefix", "cli-run-")
    assert [r["workflow_id"] for r in listed] == ["cli-run-1", "cli-run-2", "cli-run-3", "cli-run-4"]
    assert listed[0] == {**listed[0], "workflow_type": "cli-idle", "status": "PENDING", "attempt": 1, "version": 1}
    assert [r["workflow_id"] for r in ok(endpoints, "workflow", "list", "--prefix", "cli-run-", "--limit", "2")] == [
        "cli-run-1",
        "cli-run-2",
    ]
    pending = ok(endpoints, "workflow", "list", "--status", "pending", "--type", "cli-idle", "--prefix", "cli-run-")
    assert len(pending) == 4
    assert ok(endpoints, "workflow", "list", "--status", "COMPLETED", "--prefix", "cli-run-") == []
    assert ok(endpoints, "workflow", "list", "--type", "cli-other", "--prefix", "cli-run-") == []
    listing = cli(endpoints, "workflow", "list", "--prefix", "cli-run-", as_json=False)
    assert listing.returncode == 0 and "4 runs" in listing.stdout and "cli-run-2" in listing.stdout


def test_start_of_an_existing_id_is_already_exists(endpoints: str) -> None:
    ok(endpoints, "workflow", "start", "cli-idle", "cli-dup")
    err = refused(endpoints, "workflow", "start", "cli-idle", "cli-dup")
    assert err["error"] == "ALREADY_EXISTS" and "cli-dup" in err["message"]
    human = cli(endpoints, "workflow", "start", "cli-idle", "cli-dup", as_json=False)
    assert human.returncode == 1 and "error ALREADY_EXISTS:" in human.stdout
    assert refused(endpoints, "workflow", "show", "cli-never-started")["error"] == "NOT_FOUND"


def test_bad_arguments_are_usage_errors(endpoints: str, tmp_path: Path) -> None:
    for bad in ("{not json", "NaN", ""):
        proc = cli(endpoints, "workflow", "start", "cli-idle", "cli-bad", "--input", bad)
        assert proc.returncode == 2 and "--input" in proc.stderr and "not valid JSON" in proc.stderr, proc.stderr
    bad_file = tmp_path / "bad.json"
    bad_file.write_text("{'single': 'quotes'}")
    proc = cli(endpoints, "workflow", "start", "cli-idle", "cli-bad", "--input-file", str(bad_file))
    assert proc.returncode == 2 and "--input-file" in proc.stderr, proc.stderr
    proc = cli(endpoints, "workflow", "start", "cli-idle", "cli-bad", "--input", "1", "--input-file", "-", stdin="2")
    assert proc.returncode == 2 and "not both" in proc.stderr, proc.stderr
    proc = cli(endpoints, "workflow", "start", "cli-idle", "cli-bad", "--label", "no-equals-sign")
    assert proc.returncode == 2 and "--label" in proc.stderr, proc.stderr
    proc = cli(endpoints, "workflow", "list", "--status", "SLEEPING")
    assert proc.returncode == 2 and "--status" in proc.stderr, proc.stderr
    # Nothing reached the cluster.
    assert refused(endpoints, "workflow", "show", "cli-bad")["error"] == "NOT_FOUND"


def test_cancel_a_pending_run_then_again(endpoints: str) -> None:
    ok(endpoints, "workflow", "start", "cli-idle", "cli-cancel")
    cancelled = ok(endpoints, "workflow", "cancel", "cli-cancel", "--reason", "not needed")
    assert cancelled["status"] == "CANCELLED" and cancelled["last_error"] == "cancelled: not needed"
    assert ok(endpoints, "workflow", "show", "cli-cancel")["status"] == "CANCELLED"
    again = refused(endpoints, "workflow", "cancel", "cli-cancel")
    assert again["error"] == "FAILED_PRECONDITION" and "CANCELLED" in again["message"]
    waited = cli(endpoints, "workflow", "wait", "cli-cancel", "--timeout", "10", as_json=False)
    assert waited.returncode == 1 and "CANCELLED" in waited.stdout, waited.stdout + waited.stderr


def test_release_of_a_run_that_is_not_quarantined(endpoints: str) -> None:
    ok(endpoints, "workflow", "start", "cli-idle", "cli-release")
    err = refused(endpoints, "workflow", "release", "cli-release")
    assert err["error"] == "FAILED_PRECONDITION" and "only a QUARANTINED run" in err["message"]
    human = cli(endpoints, "workflow", "release", "cli-release", as_json=False)
    assert human.returncode == 1 and "error FAILED_PRECONDITION:" in human.stdout
    assert ok(endpoints, "workflow", "show", "cli-release")["status"] == "PENDING"


def test_wait_timeout_reports_the_status_it_was_in(endpoints: str) -> None:
    ok(endpoints, "workflow", "start", "cli-idle", "cli-slow")
    human = cli(endpoints, "workflow", "wait", "cli-slow", "--timeout", "0.5", as_json=False)
    assert human.returncode == 1 and "still PENDING after 0.5s" in human.stdout, human.stdout + human.stderr
    as_json = cli(endpoints, "workflow", "wait", "cli-slow", "--timeout", "0.5")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["status"] == "PENDING"
    assert refused(endpoints, "workflow", "wait", "cli-no-such-run", "--timeout", "2")["error"] == "NOT_FOUND"


def test_a_worker_process_completes_a_started_run(endpoints: str, start_worker: Callable) -> None:
    ok(endpoints, "workflow", "start", "cli-double", "cli-done", "--input", '{"n": 21}')
    start_worker(endpoints)
    waited = cli(endpoints, "workflow", "wait", "cli-done", "--timeout", "60", as_json=False)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "cli-done COMPLETED" in waited.stdout and '{"doubled": 42}' in waited.stdout

    shown = ok(endpoints, "workflow", "show", "cli-done")
    assert (shown["status"], shown["attempt"], shown["output"]) == ("COMPLETED", 1, {"doubled": 42})
    assert [(s["name"], s["result"], s["attempt"]) for s in shown["steps"]] == [("double", 42, 1)]
    assert shown["steps"][0]["completed_at"] and shown["finished_at"] and shown["current_step"] == "double"
    table = cli(endpoints, "workflow", "show", "cli-done", as_json=False)
    assert table.returncode == 0 and "steps" in table.stdout and "COMPLETED" in table.stdout
    assert [
        r["workflow_id"] for r in ok(endpoints, "workflow", "list", "--status", "completed", "--prefix", "cli-")
    ] == ["cli-done"]
    assert ok(endpoints, "workflow", "wait", "cli-done")["output"] == {"doubled": 42}


def test_a_run_that_always_raises_is_quarantined_then_released(make_cluster: Callable, start_worker: Callable) -> None:
    handle = make_cluster(overrides={"recovery": {"max_attempts": 2, "retry_backoff": "100ms"}})
    endpoints = ",".join(handle.cluster.endpoints)
    ok(endpoints, "workflow", "start", "cli-boom", "cli-q")
    start_worker(endpoints)

    waited = cli(endpoints, "workflow", "wait", "cli-q", "--timeout", "60", as_json=False)
    assert waited.returncode == 1 and "QUARANTINED" in waited.stdout, waited.stdout + waited.stderr
    assert "boom on attempt 2" in waited.stdout
    shown = ok(endpoints, "workflow", "show", "cli-q")
    assert (shown["status"], shown["attempt"]) == ("QUARANTINED", 2)
    assert "boom on attempt 2" in shown["last_error"] and [s["name"] for s in shown["steps"]] == ["before"]
    quarantined = ok(endpoints, "workflow", "list", "--status", "quarantined")
    assert [r["workflow_id"] for r in quarantined] == ["cli-q"]

    released = ok(endpoints, "workflow", "release", "cli-q")
    assert (released["status"], released["attempt"]) == ("PENDING", 3)
    # The worker runs it again with a fresh budget of two attempts: 3 and 4, then quarantined again.
    again = wait_until(
        lambda: (
            (r := ok(endpoints, "workflow", "show", "cli-q"))["status"] == "QUARANTINED" and r["attempt"] == 4 and r
        ),
        60,
        "the released run was not retried to attempt 4",
        interval=0.2,
    )
    assert "boom on attempt 4" in again["last_error"]
    assert cli(endpoints, "workflow", "wait", "cli-q", "--timeout", "5").returncode == 1
