"""Access control: who the caller is (identity.py), what roles allow (model.py), the replicated tables
(store.py), bearer tokens (tokens.py), and the interceptor that enforces it on every RPC (interceptor.py)."""
