"""Small primitives for secret values: generation, hashing, comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def random_token(nbytes: int = 32) -> str:
    """URL-safe random string with ``nbytes`` of entropy (256 bits by default)."""
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    """Lookup hash for high-entropy secrets (codes, tokens, session ids)."""
    return hashlib.sha256(value.encode()).hexdigest()


def keyed_hash(key: str, purpose: str, value: str) -> str:
    """HMAC-SHA256 under a per-purpose key, for low-entropy values and IP addresses."""
    derived = hmac.new(key.encode(), purpose.encode(), hashlib.sha256).digest()
    return hmac.new(derived, value.encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode(), b.encode())
