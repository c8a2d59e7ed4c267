"""Storage: one embedded RocksDB per node (see rocksdb.py for the layout)."""

from .rocksdb import RAFT_CFS, STATE_CFS, Batch, RocksStore, StorageError, is_corruption

__all__ = ["RAFT_CFS", "STATE_CFS", "Batch", "RocksStore", "StorageError", "is_corruption"]
