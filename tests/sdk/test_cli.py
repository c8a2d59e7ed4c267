"""The `cairn` command (the installed entry point, as a subprocess) against a live cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ClusterHandle

CAIRN = str(Path(sys.executable).parent / "cairn")


@pytest.fixture(scope="module")
def run(shared_cluster: ClusterHandle):
    endpoints = ",".join(shared_cluster.cluster.endpoints)

    def run(*args: str, ok: bool = True, as_json: bool = True) -> object:
        cmd = [CAIRN, *args, "--endpoints", endpoints] + (["--json"] if as_json else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        else:
            assert proc.returncode != 0
        return json.loads(proc.stdout) if as_json else proc.stdout

    return run


def test_state_put_get_list_delete(run) -> None:
    put = run("state", "put", "cli-1", "--step", "charge", "--vars", '{"amount": 12.5}', "--label", "team=pay")
    assert put["version"] == 1 and put["variables"] == {"amount": 12.5} and put["metadata"]["labels"] == {"team": "pay"}
    put2 = run("state", "put", "cli-1", "--step", "ship", "--expected-version", "1")
    assert put2["version"] == 2
    got = run("state", "get", "cli-1")
    assert got["current_step"] == "ship" and [h["version"] for h in got["history"]] == [1, 2]
    assert run("state", "get", "cli-1", "--serializable", "--no-history")["history"] == []
    assert [w["workflow_id"] for w in run("state", "list", "--prefix", "cli-")] == ["cli-1"]
    assert run("state", "delete", "cli-1")["deleted_version"] == 2
    err = run("state", "get", "cli-1", ok=False)
    assert err == {"error": "NOT_FOUND", "message": "workflow 'cli-1' does not exist"}


def test_checkpoint_recover_sync_validate(run) -> None:
    run("state", "put", "cli-2", "--step", "a", "--vars", '{"n": 1}')
    cp = run("checkpoint", "create", "cli-2")
    run("state", "put", "cli-2", "--step", "b", "--vars", '{"n": 2}')
    assert [c["id"] for c in run("checkpoint", "list", "cli-2")] == [cp["id"]]
    assert run("checkpoint", "get", "cli-2", cp["id"])["state"]["variables"] == {"n": 1}
    recovered = run("recover", "cli-2", cp["id"])
    assert recovered["version"] == 3 and recovered["variables"] == {"n": 1}
    assert run("sync", "cli-2")["version"] == 3
    assert run("validate", "cli-2")["valid"] is True


def test_conflict_and_bad_input_exit_non_zero_with_the_code(run) -> None:
    run("state", "put", "cli-3", "--step", "a")
    err = run("state", "put", "cli-3", "--step", "b", "--expected-version", "0", ok=False)
    assert err["error"] == "ABORTED" and "at version 1" in err["message"]
    assert run("state", "put", "bad id", ok=False)["error"] == "INVALID_ARGUMENT"


def test_status_table_and_json(run) -> None:
    status = run("status")
    roles = sorted(n["role"] for n in status["nodes"])
    assert roles == ["FOLLOWER", "FOLLOWER", "LEADER"]
    assert all(n["commit_index"] >= 1 and n["applied_index"] >= 1 and n["term"] >= 1 for n in status["nodes"])
    assert all(len(n["members"]) == 3 for n in status["nodes"])
    table = run("status", as_json=False)
    assert "LEADER" in table and "cluster status" in table


def test_status_exits_non_zero_when_a_node_is_unreachable(shared_cluster: ClusterHandle) -> None:
    endpoints = ",".join([*shared_cluster.cluster.endpoints, "127.0.0.1:1"])
    proc = subprocess.run(
        [CAIRN, "status", "--json", "--endpoints", endpoints], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert any(n["role"] == "UNREACHABLE" for n in json.loads(proc.stdout)["nodes"])
