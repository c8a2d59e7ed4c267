"""`cairn audit verify --data-dir DIR`: check a stopped node's audit chain from its RocksDB, read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..integrity import DB_DIR
from ..rpc.audit_service import verify_store
from ..storage import RocksStore


def verify_data_dir(data_dir: Path) -> dict[str, Any]:
    """The verdict as a dict (ok, checked, first_seq, head_seq, head_hash, broken_seq, problem)."""
    db = data_dir / DB_DIR
    if not db.is_dir():
        raise FileNotFoundError(f"{data_dir} holds no node data ({db} is missing); pass state_storage.connection")
    store = RocksStore(db, read_only=True)
    try:
        r = verify_store(store)
    finally:
        store.close()
    return {
        "ok": r.ok,
        "checked": r.checked,
        "first_seq": r.first_seq,
        "head_seq": r.head_seq,
        "head_hash": r.head_hash.hex(),
        "broken_seq": r.broken_seq,
        "problem": r.problem,
    }
