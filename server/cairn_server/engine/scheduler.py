"""The leader's scheduler: expires leases and takes periodic checkpoints, in batches, from due-time indexes.

It runs on every node but acts only while this node is leader. Each tick seeks the start of `lease_due`
and `cp_due` (a million idle workflows cost nothing), and proposes at most one ExpireLeasesOp and one
PeriodicCheckpointsOp at a time, each with up to execution.scheduler_batch entries. Apply re-checks every
entry (token, expiry against the command's stamped time, scheduled due time), so a stale view or a
re-proposal never expires a live lease or takes a second checkpoint for one due time.

A lease is proposed for expiry only when all three hold:
- it is due by the leader's wall clock (the stamped expiry);
- leader-change grace: this node has been leader for a full lease duration (workers cut off by the
  election get that long to reach the new leader and renew);
- no early expiry, whatever the wall clocks do: a full lease duration has passed on this node's monotonic
  clock since it applied the lease's latest grant or extension (leases.RenewalTimes), which happened after
  the worker sent it, so the worker's own deadline (measured on its monotonic clock from before sending)
  has passed too. (A lease this node has not seen renewed is covered by the grace alone.)
A clock jumped forward therefore cannot expire anything early; a clock jumped back delays expiry (apply
still requires the stamped time to reach the stored expiry) by the size of the jump.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cairn_server.internal import command_pb2

from .. import clock, workflow
from ..auth.identity import SCHEDULER
from ..commands import new_command
from ..config import Config
from ..statemachine import StateMachine
from . import periodic
from .leases import RenewalTimes, due_leases, get_lease

log = logging.getLogger(__name__)

Propose = Callable[[bytes, Callable[[object, int], None]], None]
_IN_FLIGHT_TIMEOUT = 5.0


class Scheduler:
    def __init__(
        self,
        *,
        machine: StateMachine,
        config: Config,
        is_leader: Callable[[], bool],
        propose: Propose,
        clock: Callable[[], int] = clock.now_ns,
        renewals: RenewalTimes | None = None,
    ):
        self._renewals = renewals if renewals is not None else RenewalTimes()
        self._machine = machine
        self._config = config
        self._is_leader = is_leader
        self._propose = propose
        self._clock = clock
        self._took_office: float | None = None
        self._in_flight: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self.expired = 0
        self.checkpointed = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def on_leadership(self, leader: bool) -> None:
        """From the Raft role callback: remember when this node took office (monotonic)."""
        self._took_office = time.monotonic() if leader else None

    def _loop(self) -> None:
        while not self._stop.wait(self._config.execution.scheduler_interval):
            if self._took_office is None or not self._is_leader():
                continue
            try:
                self.tick()
            except Exception:  # the scheduler must outlive any one bad tick
                log.exception("scheduler tick failed")

    # ---- one tick ----------------------------------------------------------------------------------

    def tick(self) -> None:
        now = self._clock()
        self._expire_leases(now)
        self._take_checkpoints(now)

    def _begin(self, kind: str) -> bool:
        with self._lock:
            started = self._in_flight.get(kind)
            if started is not None and time.monotonic() - started < _IN_FLIGHT_TIMEOUT:
                return False
            self._in_flight[kind] = time.monotonic()
            return True

    def _end(self, kind: str) -> Callable[[object, int], None]:
        def done(_result: object, _error: int) -> None:
            with self._lock:
                self._in_flight.pop(kind, None)

        return done

    def _in_office(self) -> float:
        took = self._took_office
        return 0.0 if took is None else time.monotonic() - took

    def _expire_leases(self, now: int) -> None:
        if not self._begin("expire"):
            return
        rc, batch = self._config.recovery, self._config.execution.scheduler_batch
        op = command_pb2.ExpireLeasesOp()
        in_office = self._in_office()
        for expires_ns, wid in due_leases(self._machine.store, now, batch):
            lease = get_lease(self._machine.store, wid)
            if lease is None:
                continue
            since_renewal = self._renewals.elapsed(wid, lease.expires_at.ToNanoseconds())
            waited = in_office if since_renewal is None else min(in_office, since_renewal)
            if waited < lease.duration_ms / 1000:
                continue  # the leader-change grace, and a full duration since this node saw the renewal
            entry = op.leases.add(
                workflow_id=wid, fencing_token=lease.fencing_token, expires_ns=lease.expires_at.ToNanoseconds()
            )
            late = (now - expires_ns) / 1e9
            if late > rc.max_recovery_time:
                log.warning("lease on %s expired %.2fs ago, over recovery.max_recovery_time", wid, late)
            if rc.resume_from == "checkpoint":
                restore = self._latest_checkpoint(wid)
                if restore is not None:
                    entry.restore.CopyFrom(restore)
                    if op.ByteSize() > self._config.limits.max_state_bytes:
                        del op.leases[-1]  # one log entry stays within the state size cap; the rest next tick
                        break
        if not op.leases:
            self._end("expire")(None, 0)
            return
        cmd = new_command(self._config, now)
        cmd.identity = SCHEDULER
        cmd.expire_leases.CopyFrom(op)
        self.expired += len(op.leases)
        self._propose(cmd.SerializeToString(), self._end("expire"))

    def _latest_checkpoint(self, workflow_id: str):
        state = self._machine.get_state(workflow_id)
        if state is None or not state.checkpoint.id:
            return None
        cp = self._machine.get_checkpoint(workflow_id, state.checkpoint.id)
        if cp is None or workflow.checksum(cp.state) != cp.checksum:
            log.error("latest checkpoint of %s is missing or corrupt; resuming from the latest step", workflow_id)
            return None
        return cp

    def _take_checkpoints(self, now: int) -> None:
        cp = self._config.checkpointing
        if not cp.enabled or not self._begin("checkpoint"):
            return
        due = periodic.due_checkpoints(self._machine.store, now, self._config.execution.scheduler_batch)
        if not due:
            self._end("checkpoint")(None, 0)
            return
        cmd = new_command(self._config, now)
        cmd.identity = SCHEDULER
        op = cmd.periodic_checkpoints
        op.compress = cp.compression == "zlib"
        op.retain_after_ns = now - int(cp.retention * 1e9)
        for due_ns, wid in due:
            op.due.add(workflow_id=wid, due_ns=due_ns, checkpoint_id=workflow.new_checkpoint_id(now))
        self.checkpointed += len(due)
        self._propose(cmd.SerializeToString(), self._end("checkpoint"))
