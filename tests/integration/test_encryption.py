"""Encryption at rest on real 3-node clusters: nothing of a workflow's content in any file of a data directory
(and the same scan finds it without encryption), key rotation with its background pass, and a wrong or missing
key at start-up stopping the node with a clear message and nothing changed on disk."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cairn import FailedPreconditionError
from tests.support import ClusterHandle, start_cluster, wait_until

pytestmark = pytest.mark.timeout(300)

MARKER = "Kx9-marker-Q3rT-never-on-disk"
KEK_ENV = "CAIRN_TEST_ENCRYPTION_KEY"


def new_kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def encrypted(key_file: Path | None = None) -> dict:
    enc: dict = {"enabled": True}
    if key_file is not None:
        enc["key_file"] = str(key_file)
    else:
        enc["key_env"] = KEK_ENV
    return {"state_storage": {"encryption": enc}, "raft": {"snapshot_entries": 100_000}}


def files_with(root: Path, needle: bytes) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every file's bytes (hashed) and mtime, every directory's name: a start-up must leave it all alone."""
    out: dict[str, tuple[str, int]] = {}
    for p in sorted(root.rglob("*")):
        name = str(p.relative_to(root))
        if p.is_dir():
            out[name + "/"] = ("dir", 0)
        else:
            out[name] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def write_content(c: ClusterHandle, tag: str, n: int = 5) -> None:
    """The marker in variables, labels, checkpoints and a workflow run's input."""
    client = c.client
    for i in range(n):
        wid = f"{tag}-wf-{i}"
        client.persist_state(wid, current_step="one", variables={"secret": MARKER, "i": i}, labels={"tag": MARKER})
        client.create_checkpoint(wid)
        client.persist_state(
            wid, current_step="two", variables={"secret": MARKER + "-2", "i": i}, labels={"tag": MARKER}
        )
    client.start_workflow("enc-type", f"{tag}-run", input={"secret": MARKER}, labels={"tag": MARKER})


def leader_applied(c: ClusterHandle) -> int:
    return c.status(c.wait_leader()).applied_index


def install_snapshot_on_a_follower(c: ClusterHandle) -> int:
    """Kill a follower, write past it and compact the leader's log, restart it: it must install the leader's
    snapshot (a sealed file written under another node's data keys). Returns the follower."""
    leader = c.wait_leader()
    follower = next(i for i in range(c.size) if i != leader)
    c.kill(follower)
    write_content(c, "while-down", n=3)
    c.client.snapshot(c.endpoint(leader))
    c.cluster.start_node(follower)
    c.wait_applied(follower, leader_applied(c), timeout=60)
    wait_until(lambda: "installed snapshot at index" in c.log(follower), 30, "the follower installed no snapshot")
    return follower


@pytest.mark.parametrize("encryption", [True, False], ids=["encrypted", "plain"])
def test_no_workflow_content_in_any_file_of_the_data_directories(tmp_path: Path, encryption: bool) -> None:
    key_file = tmp_path / "kek"
    key_file.write_text(new_kek() + "\n")
    key_file.chmod(0o600)
    c = start_cluster(tmp_path / "cluster", overrides=encrypted(key_file) if encryption else {})
    try:
        write_content(c, "first")
        for i in range(c.size):
            c.client.snapshot(c.endpoint(i))
        follower = install_snapshot_on_a_follower(c)
        reader = c.node_client(follower)
        state = reader.get_state("while-down-wf-2", consistency="serializable")
        assert state.variables["secret"] == MARKER + "-2" and state.metadata.labels["tag"] == MARKER
        if encryption:
            status = c.client.key_status(c.endpoint(follower))
            assert status.current_key_id == 1 and status.old_records == 0
        else:
            with pytest.raises(FailedPreconditionError, match="encryption at rest is off"):
                c.client.key_status(c.endpoint(0))
            with pytest.raises(FailedPreconditionError, match="encryption at rest is off"):
                c.client.rotate_keys()
    finally:
        c.close()
    found = {spec.node_id: files_with(spec.node_data_dir, MARKER.encode()) for spec in c.cluster.specs}
    if encryption:
        assert found == {spec.node_id: [] for spec in c.cluster.specs}
        assert all((spec.node_data_dir / "keyring.json").exists() for spec in c.cluster.specs)
    else:  # the same scan does find plain content: it can fail
        assert all(found.values()), found
        assert any("raft.snapshot" in f for files in found.values() for f in files), found


def test_rotation_reencrypts_every_node_and_everything_stays_readable(tmp_path: Path) -> None:
    env = {KEK_ENV: new_kek()}
    c = start_cluster(tmp_path / "cluster", overrides=encrypted(), env=env)
    try:
        ids = [f"rot-{i}" for i in range(300)]
        for wid in ids:
            c.client.persist_state(wid, variables={"secret": MARKER, "id": wid}, labels={"tag": MARKER})
        c.client.create_checkpoint(ids[0])
        before = {s.node_id: s for s in (c.client.key_status(c.endpoint(i)) for i in range(c.size))}
        assert all(s.current_key_id == 1 and s.old_records == 0 for s in before.values())

        follower = c.followers()[0]
        rotated = c.node_client(follower).rotate_keys()  # a follower forwards it to the leader
        assert rotated.leader_key_id == 2 and rotated.rotation_index > 0
        # Old records are readable at once, on every node, while (or after) the pass runs.
        for i in range(c.size):
            c.wait_applied(i, rotated.rotation_index)
            node = c.node_client(i)
            assert node.get_state(ids[-1], consistency="serializable").variables["id"] == ids[-1]
        c.client.persist_state("after-rotation", variables={"secret": MARKER})

        def all_moved() -> bool:
            statuses = [c.client.key_status(c.endpoint(i)) for i in range(c.size)]
            return (
                all(
                    s.current_key_id == 2 and s.pass_complete and s.old_records == 0 and not s.pass_running
                    for s in statuses
                )
                and statuses
            )

        statuses = wait_until(all_moved, 120, "the re-encryption pass did not complete on every node")
        for s in statuses:
            keys = {k.key_id: k.records for k in s.keys}
            assert keys[1] == 0 and keys[2] > 300, s
            assert s.rewritten_records >= 300 and s.records_per_second > 0 and s.error == ""

        # The CLI sees the same, as JSON.
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "cairn.cli",
                "keys",
                "status",
                "--json",
                "--endpoints",
                ",".join(c.cluster.endpoints),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert {n["current_key_id"] for n in json.loads(cli.stdout)} == {2}

        c.cluster.stop()
        c.cluster.start_and_wait(60)
        c.wait_leader()
        for wid in [*ids, "after-rotation"]:
            assert c.client.get_state(wid).variables["secret"] == MARKER
        checkpoint = c.client.get_checkpoint(ids[0], c.client.list_checkpoints(ids[0])[0].id)
        assert checkpoint.state is not None and checkpoint.state.variables["secret"] == MARKER
        after = c.client.key_status(c.endpoint(0))
        assert after.current_key_id == 2 and after.pass_complete

        # Rotating again with the CLI, which follows every node's pass to the end.
        cli = subprocess.run(
            [sys.executable, "-m", "cairn.cli", "keys", "rotate", "--wait", "--json"]
            + ["--endpoints", ",".join(c.cluster.endpoints)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
        nodes = json.loads(cli.stdout)["nodes"]
        assert [(n["current_key_id"], n["old_records"], n["pass_complete"]) for n in nodes] == [(3, 0, True)] * 3
    finally:
        c.close()
    assert all(files_with(spec.node_data_dir, MARKER.encode()) == [] for spec in c.cluster.specs)


def start_fails(c: ClusterHandle, i: int, expected: str) -> None:
    """Start node i and wait for it to exit 1, with `expected` in its log; its data directory must not change."""
    data = c.cluster.specs[i].node_data_dir
    before = tree(data)
    log_size = c.cluster.specs[i].log_path.stat().st_size
    proc = c.cluster.start_node(i)
    assert proc.wait(60) == 1
    log = c.cluster.specs[i].log_path.read_text(errors="replace")[log_size:]
    assert expected in log, log
    assert "Traceback" not in log, log
    assert tree(data) == before


def test_a_wrong_or_missing_key_stops_the_node_and_changes_nothing(tmp_path: Path) -> None:
    kek = new_kek()
    c = start_cluster(tmp_path / "cluster", overrides=encrypted(), env={KEK_ENV: kek})
    try:
        for i in range(20):
            c.client.persist_state(f"k-{i}", variables={"secret": MARKER})
        c.client.snapshot(c.endpoint(c.wait_leader()))
        victim = c.followers()[0]
        c.cluster.stop_node(victim)

        c.cluster.env = {KEK_ENV: new_kek()}
        start_fails(c, victim, "wrong encryption key")
        c.cluster.env = {}
        start_fails(c, victim, f"the environment variable {KEK_ENV} (the encryption key) is not set")
        c.cluster.env = {KEK_ENV: "too-short"}
        start_fails(c, victim, "is not 32 bytes")
        c.cluster.overrides = {}  # encryption off over the encrypted directory
        c.cluster.write_config(c.cluster.specs[victim])
        start_fails(c, victim, "holds encrypted data (keyring.json) but state_storage.encryption is off")

        c.cluster.overrides = encrypted()
        c.cluster.write_config(c.cluster.specs[victim])
        c.cluster.env = {KEK_ENV: kek}
        c.cluster.start_node(victim)
        c.wait_applied(victim, leader_applied(c), timeout=60)
        assert c.node_client(victim).get_state("k-19", consistency="serializable").variables["secret"] == MARKER
    finally:
        c.close()


def test_encryption_on_over_plain_data_is_refused(tmp_path: Path) -> None:
    c = start_cluster(tmp_path / "cluster")
    try:
        c.client.persist_state("plain-wf", variables={"secret": MARKER})
        victim = c.followers()[0]
        c.cluster.stop_node(victim)
        c.cluster.overrides = encrypted()
        c.cluster.write_config(c.cluster.specs[victim])
        c.cluster.env = {KEK_ENV: new_kek()}
        start_fails(c, victim, "holds unencrypted data (db) and state_storage.encryption is on")
    finally:
        c.close()
