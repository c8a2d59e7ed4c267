"""Due-time indexes (`lease_due`, `cp_due`): keys are due time (8 bytes BE) + workflow id, so the earliest
come first and finding what is due is a seek from the start, whatever the number of idle entries."""

from __future__ import annotations

from ..storage import RocksStore
from ..storage.keys import split_due_key


def due_entries(store: RocksStore, cf: str, now_ns: int, limit: int) -> list[tuple[int, str]]:
    """Up to `limit` (due time, workflow id) of column family `cf` that are due at `now_ns`, earliest first."""
    out: list[tuple[int, str]] = []
    for key, _ in store.scan(cf):
        due_ns, workflow_id = split_due_key(key)
        if due_ns > now_ns or len(out) >= limit:
            break
        out.append((due_ns, workflow_id))
    return out
