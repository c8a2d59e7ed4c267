"""Auditing reads (audit.reads: true): the node that served a read appends a record through the Raft log.

Reads are many and cheap, so their records are gathered for a short interval and proposed as one entry
(`AuditReadsOp`), stamped with the serving node's clock. Unlike writes, a read is answered before its
record commits: a node that crashes (or loses its leader) in that interval can lose the records of the
reads it served in it; the log says how many were dropped. DESIGN.md "Audit" states this.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cairn_server.internal import command_pb2

from .. import clock

log = logging.getLogger(__name__)

_INTERVAL = 0.2
_MAX_BATCH = 2048
_MAX_PENDING = 100_000
_MAX_FIELD = 256  # characters: at most ~3 KiB a record, so a full batch stays far below the entry cap

Propose = Callable[[bytes, Callable[[object, int], None]], None]


class ReadAuditor:
    def __init__(self, propose: Propose):
        self._propose = propose
        self._pending: list[command_pb2.ReadAccess] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-reads", daemon=True)
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def record(self, identity: str, operation: str, workflow_id: str, code: int) -> None:
        """Fields are cut to 256 characters: a refused read's id was never validated, and one caller's huge ids
        must not push other callers' records over the entry size cap."""
        access = command_pb2.ReadAccess(
            identity=identity[:_MAX_FIELD],
            operation=operation[:_MAX_FIELD],
            workflow_id=workflow_id[:_MAX_FIELD],
            time_ns=clock.now_ns(),
            code=code,
        )
        with self._lock:
            if len(self._pending) >= _MAX_PENDING:
                self.dropped += 1
                return
            self._pending.append(access)

    def _run(self) -> None:
        while not self._stop.wait(_INTERVAL):
            self.flush()

    def flush(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
            if not batch:
                return
            cmd = command_pb2.Command(time_ns=clock.now_ns(), identity="cairn:audit")
            cmd.audit_reads.reads.extend(batch)
            self._propose(cmd.SerializeToString(), self._done(len(batch)))

    def _done(self, count: int) -> Callable[[object, int], None]:
        def done(_result: object, error: int) -> None:
            if error:
                self.dropped += count
                log.warning("%d read audit records were not committed (error %d); %d lost so far", count, error,
                            self.dropped)  # fmt: skip

        return done
