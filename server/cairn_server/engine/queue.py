"""The pending-run queue (column family `run_queue`): per workflow type, runs in the order they become ready.

Key: type, NUL, ready time (8 bytes BE), workflow id. A claim looks at the first entry of each type the
worker serves: if it is not ready yet, nothing behind it is, so polling costs one seek per type whatever
the number of waiting runs.
"""

from __future__ import annotations

from ..storage import Batch, RocksStore
from ..storage.keys import queue_key, queue_prefix, split_due_key


def enqueue(batch: Batch, workflow_type: str, ready_ns: int, workflow_id: str) -> None:
    batch.put("run_queue", queue_key(workflow_type, ready_ns, workflow_id), b"")


def dequeue(batch: Batch, workflow_type: str, ready_ns: int, workflow_id: str) -> None:
    batch.delete("run_queue", queue_key(workflow_type, ready_ns, workflow_id))


def ready_runs(store: RocksStore, workflow_type: str, now_ns: int, limit: int) -> list[tuple[int, str]]:
    """Up to `limit` (ready time, workflow id) of `workflow_type` that are ready at `now_ns`, oldest first."""
    prefix = queue_prefix(workflow_type)
    out: list[tuple[int, str]] = []
    for key, _ in store.scan("run_queue", prefix):
        ready_ns, workflow_id = split_due_key(key[len(prefix) :])
        if ready_ns > now_ns or len(out) >= limit:
            break
        out.append((ready_ns, workflow_id))
    return out


def next_ready_time(store: RocksStore, workflow_type: str) -> int | None:
    """When the earliest waiting run of this type becomes ready (None: none waits)."""
    prefix = queue_prefix(workflow_type)
    for key, _ in store.scan("run_queue", prefix):
        return split_due_key(key[len(prefix) :])[0]
    return None
