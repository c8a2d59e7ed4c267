"""Encryption at rest: the record format, the keyring, the sealed store and snapshot files, the re-encryption pass."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

import pytest

from cairn_server.config import EncryptionConfig
from cairn_server.internal import command_pb2, snapshot_pb2
from cairn_server.raft import snapshot as snapshot_module
from cairn_server.raft.journal import RocksJournal
from cairn_server.raft.snapshot import SnapshotError, Snapshots, read_snapshot_file, write_snapshot_file
from cairn_server.rekey import ReencryptionPass, count_by_key
from cairn_server.statemachine import StateMachine
from cairn_server.storage import RocksStore, StorageError
from cairn_server.storage.encryption import (
    KEYRING_FILE,
    OVERHEAD,
    DecryptError,
    EncryptionError,
    Keyring,
    RecordCipher,
    parse_kek,
)

MARKER = b"Zq7-SECRET-MARKER-do-not-leak"
ENV = "CAIRN_TEST_KEK"


def kek_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def config(monkeypatch: pytest.MonkeyPatch, text: str | None = None) -> EncryptionConfig:
    monkeypatch.setenv(ENV, text or kek_text())
    return EncryptionConfig(enabled=True, key_env=ENV)


def files_contain(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def tree_fingerprint(root: Path) -> dict[str, tuple[str, int]]:
    """Every file's bytes and mtime: 'changes nothing on disk' is compared with this."""
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    } | {str(p.relative_to(root)) + "/": ("dir", 0) for p in root.rglob("*") if p.is_dir()}


# ---- the key-encryption key ----------------------------------------------------------------------


def test_a_kek_is_32_bytes_as_base64_or_hex() -> None:
    raw = os.urandom(32)
    assert parse_kek(base64.b64encode(raw).decode() + "\n", "t") == raw
    assert parse_kek(raw.hex(), "t") == raw
    for bad in ("", "abc", base64.b64encode(os.urandom(16)).decode(), "zz" * 32):
        with pytest.raises(EncryptionError, match="not 32 bytes"):
            parse_kek(bad, "t")


# ---- the record format -----------------------------------------------------------------------------


def cipher() -> RecordCipher:
    return RecordCipher({1: os.urandom(32), 2: os.urandom(32)}, 2)


def test_a_record_is_version_key_id_nonce_and_ciphertext_and_opens_only_where_it_was_sealed() -> None:
    c = cipher()
    record = c.seal("state", b"wf-1", MARKER)
    assert record[0] == 1 and int.from_bytes(record[1:5], "big") == 2 and RecordCipher.key_id(record) == 2
    assert len(record) == len(MARKER) + OVERHEAD and MARKER not in record
    assert c.open("state", b"wf-1", record) == MARKER
    with pytest.raises(DecryptError) as moved_key:
        c.open("state", b"wf-2", record)  # swapped with another workflow's record
    assert moved_key.value.corrupt
    with pytest.raises(DecryptError) as moved_cf:
        c.open("history", b"wf-1", record)
    assert moved_cf.value.corrupt
    for pos in (0, 3, 10, len(record) - 1):  # version, key id, nonce, tag
        tampered = bytearray(record)
        tampered[pos] ^= 0x01
        with pytest.raises(DecryptError):
            c.open("state", b"wf-1", bytes(tampered))


def test_an_unknown_key_id_is_not_corruption_but_is_named() -> None:
    record = RecordCipher({7: os.urandom(32)}, 7).seal("state", b"k", b"v")
    with pytest.raises(DecryptError, match="data key 7") as err:
        cipher().open("state", b"k", record)
    assert not err.value.corrupt


def test_old_keys_stay_readable_after_the_current_key_changes_and_nonces_never_repeat() -> None:
    c = RecordCipher({1: os.urandom(32)}, 1)
    old = c.seal("state", b"k", b"old")
    c.add_key(2, os.urandom(32), make_current=True)
    new = c.seal("state", b"k", b"new")
    assert (RecordCipher.key_id(old), RecordCipher.key_id(new)) == (1, 2)
    assert c.open("state", b"k", old) == b"old" and c.open("state", b"k", new) == b"new"
    nonces = {c.seal("state", b"k", b"")[5:17] for _ in range(20000)}
    assert len(nonces) == 20000


# ---- the keyring -------------------------------------------------------------------------------------


def test_the_keyring_is_created_once_and_reopened_with_the_same_kek(tmp_path: Path, monkeypatch) -> None:
    cfg = config(monkeypatch)
    ring = Keyring.open(tmp_path / "data", cfg)
    assert ring is not None and ring.current == 1 and (tmp_path / "data" / KEYRING_FILE).exists()
    kek = base64.b64decode(os.environ[ENV])
    assert kek not in (tmp_path / "data" / KEYRING_FILE).read_bytes()
    record = ring.cipher.seal("state", b"k", MARKER)
    again = Keyring.open(tmp_path / "data", cfg)
    assert again is not None and again.cipher.open("state", b"k", record) == MARKER
    assert again.fingerprint == ring.fingerprint


def test_a_wrong_kek_is_named_and_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    Keyring.open(tmp_path, config(monkeypatch))
    before = tree_fingerprint(tmp_path)
    with pytest.raises(EncryptionError, match="wrong encryption key"):
        Keyring.open(tmp_path, config(monkeypatch))
    assert tree_fingerprint(tmp_path) == before


def test_a_missing_kek_names_the_variable_or_the_file_and_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(EncryptionError, match=f"environment variable {ENV}"):
        Keyring.open(tmp_path / "new", EncryptionConfig(enabled=True, key_env=ENV))
    with pytest.raises(EncryptionError, match="key_file .*nope"):
        Keyring.open(tmp_path / "new", EncryptionConfig(enabled=True, key_file=str(tmp_path / "nope")))
    assert not (tmp_path / "new").exists()


def test_a_kek_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "kek"
    key_file.write_text(os.urandom(32).hex() + "\n")
    key_file.chmod(0o600)
    cfg = EncryptionConfig(enabled=True, key_file=str(key_file))
    assert Keyring.open(tmp_path / "data", cfg) is not None
    assert Keyring.open(tmp_path / "data", cfg) is not None


def test_no_silent_mixing_of_encrypted_and_plain_data(tmp_path: Path, monkeypatch) -> None:
    plain = tmp_path / "plain"
    RocksStore(plain / "db").close()
    before = tree_fingerprint(plain)
    with pytest.raises(EncryptionError, match="unencrypted data"):
        Keyring.open(plain, config(monkeypatch))
    assert tree_fingerprint(plain) == before
    Keyring.open(tmp_path / "sealed", config(monkeypatch))
    with pytest.raises(EncryptionError, match="encryption is off"):
        Keyring.open(tmp_path / "sealed", EncryptionConfig(enabled=False))
    assert Keyring.open(tmp_path / "empty", EncryptionConfig(enabled=False)) is None


def test_rotation_is_durable_and_idempotent_per_entry(tmp_path: Path, monkeypatch) -> None:
    cfg = config(monkeypatch)
    ring = Keyring.open(tmp_path, cfg)
    assert ring is not None
    old = ring.cipher.seal("state", b"k", b"v1")
    assert ring.rotate(42) == 2 and ring.rotate(42) == 2 and ring.current == 2
    assert ring.pass_target == 2 and ring.last_rotation_index == 42
    again = Keyring.open(tmp_path, cfg)
    assert again is not None and again.current == 2 and again.pass_target == 2
    assert again.cipher.open("state", b"k", old) == b"v1"
    again.pass_completed(2)
    assert Keyring.open(tmp_path, cfg).pass_target == 0  # type: ignore[union-attr]


# ---- the sealed store -----------------------------------------------------------------------------------


def sealed_store(tmp_path: Path, monkeypatch) -> tuple[RocksStore, Keyring]:
    ring = Keyring.open(tmp_path, config(monkeypatch))
    assert ring is not None
    return RocksStore(tmp_path / "db", cipher=ring.cipher), ring


def test_every_value_is_sealed_on_disk_and_read_back_plain(tmp_path: Path, monkeypatch) -> None:
    store, _ = sealed_store(tmp_path, monkeypatch)
    batch = store.batch()
    for i in range(200):
        batch.put("state", f"wf-{i}".encode(), MARKER + str(i).encode())
        batch.put("raftlog", i.to_bytes(8, "big"), b"term" + MARKER)
    store.write(batch, sync=True)
    assert store.get("state", b"wf-7") == MARKER + b"7"
    assert [v for _, v in store.scan("state", b"wf-199")] == [MARKER + b"199"]
    assert all(MARKER not in v for _, v in store.scan("state", raw=True))
    store.flush_memtables()
    assert files_contain(tmp_path, MARKER) == []
    store.close()
    plain = RocksStore(tmp_path / "plain")  # the same writes without a cipher: the scan does find them
    batch = plain.batch()
    for i in range(200):
        batch.put("state", f"wf-{i}".encode(), MARKER + str(i).encode())
    plain.write(batch, sync=True)
    plain.flush_memtables()
    assert files_contain(tmp_path / "plain", MARKER)
    plain.close()


def test_a_record_moved_or_tampered_on_disk_is_corruption(tmp_path: Path, monkeypatch) -> None:
    store, ring = sealed_store(tmp_path, monkeypatch)
    batch = store.batch()
    batch.put("state", b"a", b"alpha")
    batch.put("state", b"b", b"beta")
    store.write(batch)
    store.close()
    plain = RocksStore(tmp_path / "db")  # what an attacker with the files can do: swap two values
    a, b = plain.get("state", b"a"), plain.get("state", b"b")
    swap = plain.batch()
    swap.put("state", b"a", b)  # type: ignore[arg-type]
    swap.put("state", b"b", a)  # type: ignore[arg-type]
    plain.write(swap)
    plain.close()
    errors: list[str] = []
    store = RocksStore(tmp_path / "db", cipher=ring.cipher, on_error=errors.append)
    with pytest.raises(StorageError, match="Corruption"):
        store.get("state", b"a")
    assert errors and "Corruption" in errors[0]
    assert any("Corruption" in p for p in store.verify())
    store.close()


# ---- sealed snapshot files ------------------------------------------------------------------------------------


def fill(machine: StateMachine, n: int) -> None:
    for i in range(n):
        cmd = command_pb2.Command(request_id=f"r{i}", body_hash=b"h", time_ns=1000 + i, dedup_expires_ns=10**18)
        cmd.persist.workflow_id, cmd.persist.current_step = f"w{i % 7}", f"s{i}"
        cmd.persist.variables.update({"secret": MARKER.decode(), "i": i})
        machine.apply(cmd.SerializeToString(), i + 2)


def header() -> snapshot_pb2.SnapshotHeader:
    return snapshot_pb2.SnapshotHeader(
        format=1,
        last=snapshot_pb2.LogEntryRef(command=MARKER, index=301, term=2),
        previous=snapshot_pb2.LogEntryRef(command=b"p", index=300, term=2),
    )


def test_a_sealed_snapshot_installs_on_a_node_with_other_data_keys_but_the_same_kek(tmp_path, monkeypatch) -> None:
    text = kek_text()
    src_ring = Keyring.open(tmp_path / "a", config(monkeypatch, text))
    dst_ring = Keyring.open(tmp_path / "b", config(monkeypatch, text))
    assert src_ring is not None and dst_ring is not None
    src_store = RocksStore(tmp_path / "a" / "db", cipher=src_ring.cipher)
    src = StateMachine(src_store)
    fill(src, 300)
    snap = tmp_path / "a" / "raft.snapshot"
    write_snapshot_file(src_store, header(), snap, src_ring)
    assert MARKER not in snap.read_bytes()
    dst_store = RocksStore(tmp_path / "b" / "db", cipher=dst_ring.cipher)
    dst = StateMachine(dst_store)
    fatal: list[str] = []
    snaps = Snapshots(dst_store, dst, RocksJournal(dst_store, sync=True), tmp_path / "b", fatal.append, dst_ring)
    last, _previous, _ = snaps.deserialize(str(snap))
    assert last == (MARKER, 301, 2) and not fatal
    assert [dst.digest(f"w{k}") for k in range(7)] == [src.digest(f"w{k}") for k in range(7)]
    dst_store.flush_memtables()
    assert files_contain(tmp_path / "b", MARKER) == []
    src_store.close()
    dst_store.close()


def test_a_sealed_snapshot_refuses_another_kek_no_kek_and_any_damage(tmp_path: Path, monkeypatch) -> None:
    ring = Keyring.open(tmp_path / "a", config(monkeypatch))
    other = Keyring.open(tmp_path / "b", config(monkeypatch))
    assert ring is not None and other is not None
    store = RocksStore(tmp_path / "a" / "db", cipher=ring.cipher)
    fill(StateMachine(store), 200)
    monkeypatch.setattr(snapshot_module, "_CHUNK", 4096)  # many chunks
    snap = tmp_path / "snap"
    write_snapshot_file(store, header(), snap, ring)
    assert read_snapshot_file(snap, ring)[0].last.index == 301
    sealed = snap.read_bytes()
    assert sealed.count(b"\x00\x00\x10\x10") >= 3  # u32 length of a full chunk: 4096 + 16-byte tag
    # Cut off after a full chunk (the outer checksum recomputed, as a deliberate edit would): the last-chunk flag
    # of what remains does not authenticate.
    cut = sealed.rindex(b"\x00\x00\x10\x10")
    snap.write_bytes(sealed[:cut] + hashlib.sha256(sealed[:cut]).digest())
    with pytest.raises(SnapshotError, match="authentication"):
        read_snapshot_file(snap, ring)
    snap.write_bytes(sealed)
    with pytest.raises(SnapshotError, match="fingerprint") as wrong:
        read_snapshot_file(snap, other)
    assert not wrong.value.corrupt
    with pytest.raises(SnapshotError, match="encryption is off") as off:
        read_snapshot_file(snap)
    assert not off.value.corrupt
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0x01
    snap.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum") as flipped:
        read_snapshot_file(snap, ring)
    assert flipped.value.corrupt
    # A flip with the outer checksum recomputed (a deliberate edit) still fails the chunk's tag.
    body = bytes(data[:-32])
    snap.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(SnapshotError, match="authentication"):
        read_snapshot_file(snap, ring)
    store.close()


# ---- the re-encryption pass -----------------------------------------------------------------------------------


def test_the_pass_moves_every_record_to_the_new_key_without_losing_a_concurrent_write(tmp_path, monkeypatch) -> None:
    store, ring = sealed_store(tmp_path, monkeypatch)
    n = 6000
    for start in range(0, n, 500):
        batch = store.batch()
        for i in range(start, start + 500):
            batch.put("state", f"wf-{i:05d}".encode(), b"v0")
            if i % 3 == 0:
                batch.put("history", f"wf-{i:05d}".encode(), b"h")
        store.write(batch)
    assert count_by_key(store) == {1: n + n // 3}
    ring.rotate(10)
    reencrypt = ReencryptionPass(store, ring, batch_records=100)
    stop = threading.Event()
    written: dict[bytes, bytes] = {}

    def writer() -> None:  # overwrites and deletes while the pass runs, as apply would
        round_ = 0
        while not stop.is_set() and round_ < 50:
            round_ += 1
            batch = store.batch()
            for i in range(round_ % 7, n, 97):
                key = f"wf-{i:05d}".encode()
                if i % 5 == 0:
                    batch.delete("state", key)
                    written[key] = b""
                else:
                    value = f"v{round_}".encode()
                    batch.put("state", key, value)
                    written[key] = value
            store.write(batch)

    thread = threading.Thread(target=writer)
    thread.start()
    reencrypt.start()
    assert reencrypt.wait(60), reencrypt.progress
    stop.set()
    thread.join()
    reencrypt.start()  # the writer may have finished after the last sweep: sweep again, it finds nothing old
    assert reencrypt.wait(60)
    assert set(count_by_key(store)) == {2}
    assert ring.pass_target == 0 and reencrypt.progress.rewritten > 0
    for key, value in written.items():
        assert store.get("state", key) == (value or None), key
    untouched = [f"wf-{i:05d}".encode() for i in range(n) if f"wf-{i:05d}".encode() not in written]
    assert all(store.get("state", k) == b"v0" for k in untouched)
    store.close()


def test_a_plain_snapshot_from_a_leader_without_encryption_is_installed_and_then_sealed(tmp_path, monkeypatch) -> None:
    src_store = RocksStore(tmp_path / "plain" / "db")
    src = StateMachine(src_store)
    fill(src, 50)
    ring = Keyring.open(tmp_path / "b", config(monkeypatch))
    assert ring is not None
    received = tmp_path / "b" / "raft.snapshot"
    write_snapshot_file(src_store, header(), received)
    assert MARKER in received.read_bytes()
    dst_store = RocksStore(tmp_path / "b" / "db", cipher=ring.cipher)
    dst = StateMachine(dst_store)
    fatal: list[str] = []
    snaps = Snapshots(dst_store, dst, RocksJournal(dst_store, sync=True), tmp_path / "b", fatal.append, ring)
    snaps.deserialize(str(received))
    assert not fatal and dst.digest("w3") == src.digest("w3")
    dst_store.flush_memtables()
    assert files_contain(tmp_path / "b", MARKER) == []
    assert read_snapshot_file(received, ring)[0].last.index == 301  # still the same snapshot, now sealed
    src_store.close()
    dst_store.close()


def test_the_rotate_keys_op_adds_one_key_per_entry_and_is_a_no_op_without_encryption(tmp_path, monkeypatch) -> None:
    from cairn_server.rekey import KeyRotation

    store, ring = sealed_store(tmp_path, monkeypatch)
    machine = StateMachine(store)
    rotation = KeyRotation(machine, store, ring, on_fatal=lambda reason, code: pytest.fail(reason))
    rotation.install()
    written: list[bool] = []
    rotation.write_pending = lambda: written.append(True)
    cmd = command_pb2.Command(time_ns=1)
    cmd.rotate_keys.SetInParent()
    assert machine.apply(cmd.SerializeToString(), 5).code == 0
    assert ring.current == 2 and ring.last_rotation_index == 5 and written == [True]
    rotation.rotate_to(5)  # the same entry again (a snapshot that includes it): nothing new
    assert ring.current == 2 and len(ring.infos) == 2
    assert rotation.pass_ is not None and rotation.pass_.wait(30)
    assert set(count_by_key(store)) == {2}
    rotation.stop()
    store.close()

    plain_store = RocksStore(tmp_path / "plain")
    plain = StateMachine(plain_store)
    KeyRotation(plain, plain_store, None, on_fatal=lambda reason, code: pytest.fail(reason)).install()
    assert plain.apply(cmd.SerializeToString(), 5).code == 0 and plain.applied_index == 5
    plain_store.close()
