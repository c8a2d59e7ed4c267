"""The audit log on a real cluster: every write recorded identically on every replica, `cairn audit verify`
online and offline, each kind of tampering on a stopped node's files named, and audited reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from cairn import Client, ConflictError
from cairn.v1 import audit_pb2
from cairn_server.audit.chain import CF
from cairn_server.audit.verify import record_hash, record_key
from cairn_server.integrity import DB_DIR
from cairn_server.storage import RocksStore
from tests.support import start_cluster, wait_until

CAIRN = str(Path(sys.executable).parent / "cairn")


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CAIRN, *args], capture_output=True, text=True, timeout=60)


def heads_equal(client: Client) -> list:
    results = client.audit_verify()
    return results if len({(r.head_seq, r.head_hash) for r in results}) == 1 and results[0].head_seq else []


def test_every_write_is_recorded_identically_on_every_replica(tmp_path: Path) -> None:
    with closing(start_cluster(tmp_path)) as handle:
        c = handle.client
        c.persist_state("au/1", current_step="a", variables={"n": 1}, request_id="req-1")
        c.persist_state("au/1", current_step="a", variables={"n": 1}, request_id="req-1")  # a retry: one record
        with pytest.raises(ConflictError):
            c.persist_state("au/1", current_step="b", expected_version=7, request_id="req-2")
        cp = c.create_checkpoint("au/1")
        c.delete_workflow("au/1", request_id="req-3")

        results = wait_until(lambda: heads_equal(c), 20, "every replica's audit head to agree")
        assert all(r.ok for r in results), results
        records = c.audit_records(after_seq=0, limit=1000)
        mine = [r for r in records if r.workflow_id == "au/1"]
        assert [(r.operation, r.request_id, r.code, r.identity) for r in mine] == [
            ("persist", "req-1", 0, "anonymous"),
            ("persist", "req-2", 10, "anonymous"),
            ("checkpoint", mine[2].request_id, 0, "anonymous"),
            ("delete", "req-3", 0, "anonymous"),
        ]
        assert cp.id and "expected version 7" in mine[1].message
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        # Each node serves the same records (compare one node's list with another's).
        other = c.audit_records(after_seq=0, limit=1000, endpoint=handle.endpoint(2))
        assert [r.hash for r in other[: len(records)]] == [r.hash for r in records]

        endpoints = ",".join(handle.cluster.endpoints)
        verified = cli("audit", "verify", "--endpoints", endpoints, "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        report = json.loads(verified.stdout)
        assert report["ok"] and report["agree"]["ok"] and len(report["nodes"]) == 3
        tail = cli("audit", "tail", "-n", "2", "--endpoints", endpoints, "--json")
        assert tail.returncode == 0 and [r["operation"] for r in json.loads(tail.stdout)][-1] == "delete"
        exported = tmp_path / "audit.jsonl"
        assert cli("audit", "export", "-o", str(exported), "--endpoints", endpoints).returncode == 0
        lines = [json.loads(line) for line in exported.read_text().splitlines()]
        assert [line["hash"] for line in lines][: len(records)] == [r.hash for r in records]


def _tamper(db: Path, how: str) -> None:
    store = RocksStore(db)
    try:
        batch = store.batch()
        five = audit_pb2.AuditRecord.FromString(store.get(CF, record_key(5)))
        if how == "alter":
            five.identity = "mallory"
            batch.put(CF, record_key(5), five.SerializeToString())
        elif how == "rehash":
            five.workflow_id = "elsewhere"
            five.hash = record_hash(five)
            batch.put(CF, record_key(5), five.SerializeToString())
        elif how == "remove":
            batch.delete(CF, record_key(5))
        elif how == "reorder":
            batch.put(CF, record_key(5), store.get(CF, record_key(6)))
            batch.put(CF, record_key(6), five.SerializeToString())
        store.write(batch, sync=True)
    finally:
        store.close()


def test_offline_verify_passes_on_a_healthy_node_and_names_each_tampering(tmp_path: Path) -> None:
    with closing(start_cluster(tmp_path / "cluster")) as handle:
        for i in range(10):
            handle.client.persist_state(f"off/{i}", current_step="s", variables={"i": i})
        wait_until(lambda: heads_equal(handle.client), 20, "every replica's audit head to agree")
        data = handle.cluster.specs[1].node_data_dir
    # The cluster is stopped: verify node 2's files, then copies of them, each tampered one way.
    healthy = cli("audit", "verify", "--data-dir", str(data), "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout)["checked"] >= 10
    expected = {"alter": (5, "altered"), "rehash": (6, "does not follow"), "remove": (5, "missing"),
                "reorder": (5, "reordered")}  # fmt: skip
    for how, (seq, words) in expected.items():
        copy = tmp_path / how
        shutil.copytree(data, copy)
        _tamper(copy / DB_DIR, how)
        proc = cli("audit", "verify", "--data-dir", str(copy), "--json")
        verdict = json.loads(proc.stdout)
        assert proc.returncode == 1 and not verdict["ok"], (how, proc.stdout)
        assert verdict["broken_seq"] == seq and words in verdict["problem"], (how, verdict)


def test_reads_are_audited_when_asked(tmp_path: Path) -> None:
    with closing(start_cluster(tmp_path, overrides={"audit": {"reads": True}})) as handle:
        c = handle.client
        c.persist_state("rd/1", current_step="s")
        c.get_state("rd/1")

        def read_records() -> list:
            return [r for r in c.audit_records(limit=1000) if (r.operation, r.workflow_id) == ("read.GetState", "rd/1")]

        found = wait_until(read_records, 20, "the read's audit record")
        assert found[0].code == 0 and found[0].identity == "anonymous"
        assert all(r.ok for r in wait_until(lambda: heads_equal(c), 20, "audit heads to agree"))


def test_offline_verify_of_an_encrypted_node_needs_its_key(tmp_path: Path) -> None:
    with closing(start_cluster(tmp_path, nodes=1, secure=True)) as handle:
        for i in range(5):
            handle.client.persist_state(f"enc/{i}", current_step="s")
        data, kek = handle.cluster.specs[0].node_data_dir, handle.cluster.tls.kek
    with_key = cli("audit", "verify", "--data-dir", str(data), "--key-file", str(kek), "--json")
    assert with_key.returncode == 0, with_key.stdout + with_key.stderr
    assert json.loads(with_key.stdout)["checked"] >= 5
    without = subprocess.run(
        [CAIRN, "audit", "verify", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "CAIRN_ENCRYPTION_KEY"},
    )
    assert without.returncode == 2 and "CAIRN_ENCRYPTION_KEY" in without.stdout + without.stderr, without
