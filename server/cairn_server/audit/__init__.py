"""The audit log: a hash chain of records appended by apply (chain.py) and checked by `verify` (verify.py)."""
