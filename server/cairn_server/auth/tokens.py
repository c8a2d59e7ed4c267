"""Bearer tokens for clients that cannot do mTLS: `cairn.<token id>.<secret>`, kept only as a salted hash.

The secret is 32 random bytes, so one SHA-256 over salt and secret is enough (a password would need a slow
hash; a random 256-bit secret cannot be guessed). The leader makes the token and proposes only the hash,
so neither the Raft log, the snapshots nor the store ever hold the token itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cairn_server.internal import command_pb2

PREFIX = "cairn"
_NS = 1_000_000_000


def _hash(salt: bytes, secret: bytes) -> bytes:
    return hashlib.sha256(salt + secret).digest()


def new_token(identity: str, now_ns: int, ttl_seconds: int) -> tuple[str, command_pb2.StoredToken]:
    """A fresh token (returned to the caller once) and what the cluster stores for it."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_bytes(32)
    salt = secrets.token_bytes(16)
    stored = command_pb2.StoredToken(
        token_id=token_id,
        identity=identity,
        salt=salt,
        hash=_hash(salt, secret),
        created_ns=now_ns,
        expires_ns=now_ns + ttl_seconds * _NS if ttl_seconds else 0,
    )
    text = base64.urlsafe_b64encode(secret).decode().rstrip("=")
    return f"{PREFIX}.{token_id}.{text}", stored


def parse(token: str) -> tuple[str, bytes] | None:
    """(token id, secret), or None when the text is not shaped like a Cairn token."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1]:
        return None
    try:
        secret = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
    except (ValueError, TypeError):
        return None
    return (parts[1], secret) if len(secret) == 32 else None


def matches(stored: command_pb2.StoredToken, secret: bytes) -> bool:
    return hmac.compare_digest(stored.hash, _hash(stored.salt, secret))


def expired(stored: command_pb2.StoredToken, now_ns: int) -> bool:
    return stored.expires_ns != 0 and stored.expires_ns <= now_ns
