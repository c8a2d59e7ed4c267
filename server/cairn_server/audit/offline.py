"""`cairn audit verify --data-dir DIR`: check a stopped node's audit chain from its RocksDB, read-only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import EncryptionConfig
from ..integrity import DB_DIR
from ..rpc.audit_service import verify_store
from ..storage import RocksStore
from ..storage.encryption import KEYRING_FILE, Keyring


def verify_data_dir(data_dir: Path, key_file: str | None = None) -> dict[str, Any]:
    """The verdict as a dict (ok, checked, first_seq, head_seq, head_hash, broken_seq, problem). An encrypted
    node's data needs its key-encryption key: `key_file`, else the CAIRN_ENCRYPTION_KEY environment variable."""
    db = data_dir / DB_DIR
    if not db.is_dir():
        raise FileNotFoundError(f"{data_dir} holds no node data ({db} is missing); pass state_storage.connection")
    cipher = None
    if (data_dir / KEYRING_FILE).exists():
        keyring = Keyring.open(data_dir, EncryptionConfig(enabled=True, key_file=key_file))
        cipher = keyring.cipher if keyring is not None else None
    store = RocksStore(db, read_only=True, cipher=cipher)
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
