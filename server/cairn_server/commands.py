"""Building a log entry: everything apply needs is stamped here, by the leader, before proposing.

Times, limits and the engine's policy travel in the command so that replicas with different local
configuration (or clocks) still apply identically.
"""

from __future__ import annotations

from cairn_server.internal import command_pb2

from .config import Config

_NS = 1_000_000_000


def policy(config: Config) -> command_pb2.Policy:
    rc, cp = config.recovery, config.checkpointing
    return command_pb2.Policy(
        max_attempts=rc.max_attempts,
        retry_backoff_ns=int(rc.retry_backoff * _NS),
        max_retry_backoff_ns=int(rc.max_retry_backoff * _NS),
        checkpoint_interval_ns=int(cp.interval * _NS),
        checkpoint_every_versions=cp.every_versions,
        checkpoints_enabled=cp.enabled,
        auto_recovery=rc.auto_recovery,
        audit_enabled=config.audit.enabled,
        audit_retention_ns=int(config.audit.retention * _NS),
    )


def new_command(config: Config, now_ns: int, *, request_id: str = "", body_hash: bytes = b"") -> command_pb2.Command:
    """A command stamped with the leader's time, limits and policy; the caller fills in the op."""
    return command_pb2.Command(
        request_id=request_id,
        body_hash=body_hash,
        time_ns=now_ns,
        dedup_expires_ns=now_ns + int(config.limits.dedup_window * _NS) if request_id else 0,
        history_limit=config.limits.history_limit,
        checkpoint_limit=config.checkpointing.max_per_workflow,
        policy=policy(config),
        require_expected_version=config.synchronization.conflict_resolution == "reject",
    )
