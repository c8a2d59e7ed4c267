"""Concurrent SDK clients on a few shared workflows, recording every operation.

Operations: cas (a conditional persist on the version the client last saw), write (unconditional),
read (linearizable, sent to a random node, as any-node reads are), checkpoint (observes the state it
captured) and recover (restores a checkpoint this run took). Every write carries a unique value and a
request id of its own, so any read can be traced to the write it saw.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cairn import (
    Client,
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from cairn.errors import CairnError

from .history import FAIL, INFO, OK, HistoryRecorder

DEFINITE_FAILURES = (ConflictError, NotFoundError, FailedPreconditionError, InvalidArgumentError)
WEIGHTS = {"read": 35, "cas": 25, "write": 20, "checkpoint": 10, "recover": 10}


def now() -> int:
    return time.monotonic_ns()


@dataclass
class Workload:
    endpoints: list[str]
    recorder: HistoryRecorder
    keys: list[str]
    clients: int = 8
    seed: int = 0
    op_timeout: float = 3.0
    stream_writes: bool = False
    tls: dict[str, Any] = field(default_factory=dict)  # Client(**tls): a secure cluster's admin credentials
    checkpoints: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # key -> [(id, value)]
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def setup(self) -> None:
        """Give every key a first version (recorded like any write)."""
        with Client(self.endpoints, timeout=30, **self.tls) as client:
            for key in self.keys:
                self._write(client, 0, key, "write", f"init-{key}", None, request_id=f"setup-{key}")

    def start(self, stop: threading.Event) -> None:
        for p in range(1, self.clients + 1):
            t = threading.Thread(target=self._run, args=(p, stop), name=f"client-{p}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float = 30.0) -> None:
        for t in self._threads:
            t.join(timeout)

    # ---- one client --------------------------------------------------------------------------------

    def _run(self, process: int, stop: threading.Event) -> None:
        rng = random.Random(self.seed * 1000 + process)
        client = Client(
            self.endpoints,
            timeout=self.op_timeout,
            attempt_timeout=1.0,
            stream_writes=self.stream_writes,
            **self.tls,
        )
        known: dict[str, int] = {}
        ops, weights = list(WEIGHTS), list(WEIGHTS.values())
        seq = 0
        try:
            while not stop.is_set():
                key = rng.choice(self.keys)
                f = rng.choices(ops, weights)[0]
                seq += 1
                value = f"p{process}-{seq}"
                if f == "read":
                    seen = self._read(client, process, key, rng.choice(self.endpoints))
                    if seen is not None:
                        known[key] = seen
                elif f == "cas":
                    version = self._write(client, process, key, "cas", value, known.get(key, 1))
                    if version is not None:
                        known[key] = version
                elif f == "write":
                    self._write(client, process, key, "write", value, None)
                elif f == "checkpoint":
                    self._checkpoint(client, process, key)
                else:
                    with self._lock:
                        taken = list(self.checkpoints.get(key, []))
                    if taken:
                        cp_id, cp_value = rng.choice(taken)
                        self._write(client, process, key, "recover", cp_value, None, checkpoint_id=cp_id)
        finally:
            client.close()

    def _read(self, client: Client, process: int, key: str, endpoint: str) -> int | None:
        inv = self.recorder.invoke(process=process, f="read", key=key, time=now())
        try:
            # A read pinned to one node gets a short budget, as a client that fails over would give it.
            state = client.get_state(key, include_history=False, endpoint=endpoint, timeout=0.5)
        except NotFoundError:
            self.recorder.complete(inv, OK, now(), value=[0, None])
            return 0
        except CairnError as err:
            self.recorder.complete(inv, FAIL, now(), error=err.code)  # a read that did not happen changes nothing
            return None
        self.recorder.complete(inv, OK, now(), value=[state.version, state.variables.get("value")])
        return state.version

    def _write(
        self,
        client: Client,
        process: int,
        key: str,
        f: str,
        value: str,
        expected: int | None,
        *,
        request_id: str | None = None,
        checkpoint_id: str = "",
    ) -> int | None:
        rid = request_id or uuid.uuid4().hex
        inv = self.recorder.invoke(
            process=process, f=f, key=key, time=now(), value=value, expected=expected, request_id=rid
        )
        try:
            if f == "recover":
                state = client.recover_from_checkpoint(key, checkpoint_id, request_id=rid)
            else:
                state = client.persist_state(
                    key,
                    current_step=f,
                    variables={"value": value},
                    request_id=rid,
                    expected_version=expected if f == "cas" else None,
                )
        except DEFINITE_FAILURES as err:
            self.recorder.complete(inv, FAIL, now(), error=err.code)
            return None
        except CairnError as err:
            self.recorder.complete(inv, INFO, now(), error=err.code)
            return None
        self.recorder.complete(inv, OK, now(), version=state.version)
        return state.version

    def _checkpoint(self, client: Client, process: int, key: str) -> None:
        inv = self.recorder.invoke(process=process, f="checkpoint", key=key, time=now(), request_id=uuid.uuid4().hex)
        try:
            cp = client.create_checkpoint(key, request_id=inv.request_id)
        except DEFINITE_FAILURES as err:
            self.recorder.complete(inv, FAIL, now(), error=err.code)
            return
        except CairnError as err:
            self.recorder.complete(inv, INFO, now(), error=err.code)
            return
        value = cp.state.variables.get("value") if cp.state else None
        self.recorder.complete(inv, OK, now(), value=[cp.version, value])
        with self._lock:
            self.checkpoints.setdefault(key, []).append((cp.id, value))
