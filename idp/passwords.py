"""Password hashing with argon2id (argon2-cffi), parameters from ``[password]``.

Under gunicorn the hashes run in a small pool of threads per worker, at a lower
CPU priority (``IDP_HASH_THREADS``, ``IDP_HASH_NICE`` in ``idp/gunicorn_conf.py``):
a burst of logins then queues for the pool and yields the cores to the quick
requests (token, discovery, pages) instead of starving them, and the memory for
hashing is bounded by the pool, not by the request threads (SECURITY.md,
"Resilience"). Elsewhere (tests, ``idp`` commands) they run in the caller's thread.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


_pool: ThreadPoolExecutor | None = None


def start_hash_pool(threads: int, nice: int) -> None:
    """Hash in ``threads`` threads of this process from now on, each ``nice`` steps
    below the request threads (Linux sets the nice value per thread, and argon2's
    own lane threads inherit it); called once per gunicorn worker."""
    global _pool

    def lower_priority() -> None:
        if nice and sys.platform == "linux":
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

    _pool = ThreadPoolExecutor(threads, thread_name_prefix="argon2", initializer=lower_priority)


def stop_hash_pool() -> None:
    """Back to hashing in the caller's thread (tests)."""
    global _pool
    pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True)


def _hashing(work: Callable, *args):
    pool = _pool
    return work(*args) if pool is None else pool.submit(work, *args).result()


def hash_password(password: str) -> str:
    return _hashing(hasher().hash, password)


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
        return _hashing(ph.verify, stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return hasher().check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
