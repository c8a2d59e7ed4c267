"""Key rotation for encryption at rest: the replicated `rotate_keys` op and the background re-encryption pass.

`cairn keys rotate` proposes one RotateKeysOp. Applying it makes each node with encryption add a data key to
its keyring (durably, before any record is sealed under it), make it current for new writes, and start the
pass. Old keys stay in the keyring: records under them stay readable at once, and the pass moves them.

The pass (`ReencryptionPass`) sweeps every column family in key order, in batches. For each batch it reads
the raw (sealed) values, keeps those under an older key, and hands them to `RocksStore.reseal`, which under
the store's write lock re-reads each one and rewrites it under the current key only if it still holds exactly
the value read. Every write of the node (apply, journal, snapshot install) goes through `RocksStore.write`,
which takes the same lock, so a write is either before the check (the value differs: skipped, the write is
already under the current key) or after the rewrite (it replaces the rewritten value): a concurrent write is
never lost, and a deleted record is never resurrected. A batch sealed before the rotation but written after
it (the journal's batch of the same tick) can still put old-key records behind the sweep: the pass therefore
sweeps again until one full sweep finds no old record, and only then records completion in the keyring.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cairn.v1 import cluster_pb2
from cairn_server.internal import command_pb2

from .statemachine import OK, StateMachine
from .storage import RAFT_CFS, STATE_CFS, Batch, RocksStore, StorageError
from .storage.encryption import Keyring, RecordCipher

log = logging.getLogger(__name__)

BATCH_RECORDS = 1000


@dataclass
class PassProgress:
    target: int = 0
    running: bool = False
    complete: bool = False
    rewritten: int = 0
    rewritten_bytes: int = 0
    scanned: int = 0
    busy: float = 0.0  # seconds spent in finished runs
    run_started: float = 0.0  # monotonic, while running
    sweeps: int = 0
    error: str = ""

    def elapsed(self) -> float:
        """Seconds the pass has been working towards `target` (idle time between runs excluded)."""
        return self.busy + (time.monotonic() - self.run_started if self.running else 0.0)


class ReencryptionPass:
    """Moves every record of a store onto the keyring's current key, in the background (module docstring)."""

    def __init__(
        self,
        store: RocksStore,
        keyring: Keyring,
        *,
        batch_records: int = BATCH_RECORDS,
        on_complete: Callable[[int], None] | None = None,
    ):
        self.store, self.keyring = store, keyring
        self.batch_records = batch_records
        self._on_complete = on_complete or keyring.pass_completed
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._again = False
        self._stopping = False
        self.progress = PassProgress(complete=keyring.pass_target == 0)

    def start(self) -> None:
        """Run the pass (again, if one is running: the current key may have changed under it)."""
        with self._lock:
            if self._stopping:
                return
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._again = False
            target = self.keyring.current
            if self.progress.target != target:
                self.progress = PassProgress(target=target)
            self.progress.running, self.progress.complete, self.progress.error = True, False, ""
            self.progress.run_started = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="cairn-reencrypt", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def snapshot(self) -> PassProgress:
        """A consistent copy of the progress (for KeyStatus)."""
        with self._lock:
            return dataclasses.replace(self.progress)

    def wait(self, timeout: float) -> bool:
        """Until the pass is complete (tests, the benchmark)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.progress.complete and not self.progress.running, timeout)

    def _run(self) -> None:
        try:
            while True:
                target = self.keyring.current
                with self._lock:
                    if self.progress.target != target:  # rotated again while running
                        self.progress = PassProgress(target=target, running=True, run_started=time.monotonic())
                found = self._sweep(target)
                if found is None:
                    return  # stopping
                with self._lock:
                    self.progress.sweeps += 1
                    again, self._again = self._again, False
                if found == 0 and self.keyring.current == target:
                    self._on_complete(target)
                    with self._lock:
                        self.progress.complete = True
                        p = self.progress
                        log.info(
                            "re-encryption to data key %d complete: %d records (%d bytes) in %.2f s, %d sweeps",
                            target,
                            p.rewritten,
                            p.rewritten_bytes,
                            p.elapsed(),
                            p.sweeps,
                        )
                        if not again:
                            return
        except StorageError as exc:  # the store has stopped the node (on_error) if the disk is to blame
            self._failed(f"storage: {exc}")
        except Exception as exc:
            log.exception("the re-encryption pass failed; it runs again at the next rotation or restart")
            self._failed(f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                p = self.progress
                if p.running:
                    p.busy += time.monotonic() - p.run_started
                    p.running = False
                self._lock.notify_all()

    def _failed(self, message: str) -> None:
        with self._lock:
            self.progress.error = message

    def _sweep(self, target: int) -> int | None:
        """One pass over every column family; the number of old-key records found (None: stopping)."""
        found = 0
        key_id = RecordCipher.key_id
        for cf in STATE_CFS + RAFT_CFS:
            start = b""
            while True:
                if self._stopping:
                    return None
                old: list[tuple[bytes, bytes]] = []
                scanned, last, exhausted = 0, b"", True
                for key, value in self.store.scan(cf, start=start, raw=True):
                    scanned += 1
                    last = key
                    if key_id(value) != target:
                        old.append((key, value))
                        if len(old) >= self.batch_records:
                            exhausted = False
                            break
                    elif scanned >= 20 * self.batch_records:
                        exhausted = False  # bound the time one scan holds its iterator
                        break
                count = size = 0
                if old:
                    count, size = self.store.reseal(cf, old)
                    found += len(old)
                with self._lock:
                    p = self.progress
                    p.scanned += scanned
                    p.rewritten += count
                    p.rewritten_bytes += size
                if exhausted:
                    break  # the end of this column family
                start = last + b"\x00"  # the first key after `last`
                time.sleep(0)  # let the Raft thread have the GIL between batches
        return found


def count_by_key(store: RocksStore) -> dict[int, int]:
    """Records per key id in every column family (a raw scan: nothing is decrypted)."""
    counts: dict[int, int] = {}
    key_id = RecordCipher.key_id
    for cf in STATE_CFS + RAFT_CFS:
        for _key, value in store.scan(cf, raw=True):
            kid = key_id(value)
            counts[kid] = counts.get(kid, 0) + 1
    return counts


@dataclass
class KeyRotation:
    """The rotate_keys apply handler, this node's pass, and its status (None keyring: encryption off)."""

    machine: StateMachine
    store: RocksStore
    keyring: Keyring | None
    on_fatal: Callable[[str, int], None]
    pass_: ReencryptionPass | None = field(init=False, default=None)
    # Set by the Node: the journal's `rebatch` (writes the batch it is filling, sealed under the old key).
    write_pending: Callable[[], None] = field(init=False, default=lambda: None)

    def __post_init__(self) -> None:
        if self.keyring is not None:
            self.pass_ = ReencryptionPass(self.store, self.keyring)

    def install(self) -> None:
        self.machine.register("rotate_keys", self._apply)

    def resume(self) -> None:
        """At start-up: finish a pass that a stop interrupted (the keyring remembers it is owed)."""
        if self.keyring is not None and self.keyring.pass_target and self.pass_ is not None:
            log.info("resuming the re-encryption pass to data key %d", self.keyring.pass_target)
            self.pass_.start()

    def _apply(self, cmd: command_pb2.Command, batch: Batch, index: int) -> command_pb2.ApplyResult:
        """Not a state change: the key is local to this node. Idempotent per entry (`Keyring.rotate`)."""
        self.rotate_to(index)
        return command_pb2.ApplyResult(code=OK)

    def rotate_to(self, rotation_index: int) -> None:
        """Add the data key of rotation entry `rotation_index` (unless this node has it or a later one)."""
        if self.keyring is None or self.pass_ is None or rotation_index <= self.keyring.last_rotation_index:
            return
        try:
            kid = self.keyring.rotate(rotation_index)
        except OSError as exc:
            # A key that is not durable must never seal a record: stop, and the entry is applied again at restart.
            self.on_fatal(f"writing the keyring for the key rotation at {rotation_index} failed ({exc})", 75)
            return
        log.info("key rotation at index %d: data key %d is current; re-encrypting older records", rotation_index, kid)
        # On the Raft thread, the only other sealer: after this, no batch sealed under an old key is unwritten,
        # so the pass's first sweep sees every old record (it still sweeps until one finds none).
        self.write_pending()
        self.pass_.start()

    def stop(self) -> None:
        if self.pass_ is not None:
            self.pass_.stop()

    def status(self, node_id: str) -> cluster_pb2.KeyStatusResponse:
        assert self.keyring is not None and self.pass_ is not None
        ring, counts = self.keyring, count_by_key(self.store)
        p = self.pass_.snapshot()
        elapsed = p.elapsed()
        pass_msg = cluster_pb2.ReencryptionPass(
            target_key_id=p.target,
            running=p.running,
            complete=ring.pass_target == 0,
            rewritten_records=p.rewritten,
            rewritten_bytes=p.rewritten_bytes,
            scanned_records=p.scanned,
            elapsed_seconds=elapsed,
            records_per_second=p.rewritten / elapsed if elapsed > 0 else 0.0,
            bytes_per_second=p.rewritten_bytes / elapsed if elapsed > 0 else 0.0,
            error=p.error,
        )
        keys = [
            cluster_pb2.DataKey(
                key_id=info.id,
                records=counts.get(info.id, 0),
                created_ns=info.created_ns,
                rotation_index=info.raft_index,
            )
            for info in sorted(ring.infos.values(), key=lambda i: i.id)
        ]
        return cluster_pb2.KeyStatusResponse(
            node_id=node_id,
            current_key_id=ring.current,
            kek_fingerprint=ring.fingerprint,
            keys=keys,
            old_records=sum(n for kid, n in counts.items() if kid != ring.current),
            reencryption=pass_msg,
        )


def bench_reencryption(records: int, value_bytes: int, batch_records: int = BATCH_RECORDS) -> dict[str, float]:
    """Write `records` values into a scratch store, rotate, and time one full pass (`cairn keys bench`)."""
    import base64
    import os
    import tempfile
    from pathlib import Path

    from .config import EncryptionConfig

    with tempfile.TemporaryDirectory(prefix="cairn-rekey-bench-") as tmp:
        key_file = Path(tmp) / "kek"
        key_file.write_text(base64.b64encode(os.urandom(32)).decode())
        key_file.chmod(0o600)
        keyring = Keyring.open(Path(tmp) / "data", EncryptionConfig(enabled=True, key_file=str(key_file)))
        assert keyring is not None
        store = RocksStore(Path(tmp) / "data" / "db", cipher=keyring.cipher)
        try:
            value = os.urandom(value_bytes)
            for start in range(0, records, 5000):
                batch = store.batch()
                for i in range(start, min(records, start + 5000)):
                    batch.put("state", b"wf-%010d" % i, value)
                store.write(batch)
            store.flush_memtables()
            keyring.rotate(1)
            reencrypt = ReencryptionPass(store, keyring, batch_records=batch_records)
            started = time.perf_counter()
            reencrypt.start()
            if not reencrypt.wait(3600):
                raise RuntimeError(f"the pass did not complete: {reencrypt.progress}")
            seconds = time.perf_counter() - started
            p = reencrypt.progress
            if p.rewritten != records or count_by_key(store) != {keyring.current: records}:
                raise RuntimeError(f"the pass rewrote {p.rewritten} of {records} records")
        finally:
            store.close()
    return {
        "records": records,
        "value_bytes": value_bytes,
        "seconds": seconds,
        "records_per_second": records / seconds,
        "mb_per_second": p.rewritten_bytes / seconds / 1e6,
    }


__all__ = ["KeyRotation", "PassProgress", "ReencryptionPass", "bench_reencryption", "count_by_key"]
