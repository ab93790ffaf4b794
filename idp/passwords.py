"""Password hashing with argon2id (argon2-cffi), parameters from ``[password]``."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
    )


def hasher() -> PasswordHasher:
    conf = current_app.config["IDP"]["password"]
    return _hasher(conf["argon2_time_cost"], conf["argon2_memory_kib"], conf["argon2_parallelism"])


def hash_password(password: str) -> str:
    return hasher().hash(password)


@lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_kib, parallelism).hash("not a real password, timing only")


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password; with no stored hash, spend the same time and fail (L3)."""
    ph = hasher()
    if not stored_hash:
        conf = current_app.config["IDP"]["password"]
        stored_hash = _dummy_hash(
            conf["argon2_time_cost"], conf["argon2_memory_kib"], conf["argon2_parallelism"]
        )
        password = password + "\x00never"
    try:
        return ph.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
