"""Password checks in a small pool of lower-priority threads (idp/passwords.py,
``IDP_HASH_THREADS`` / ``IDP_HASH_NICE`` in idp/gunicorn_conf.py)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from idp import passwords


@pytest.fixture
def pool():
    passwords.start_hash_pool(1, 7)
    yield
    passwords.stop_hash_pool()


def test_hashes_and_checks_run_in_the_pool_at_a_lower_priority(app, pool, monkeypatch):
    seen = []
    real = passwords._hasher.__wrapped__  # noqa: SLF001 - the uncached factory

    class Spy:
        def __init__(self, hasher):
            self.hasher = hasher

        def hash(self, password):
            seen.append((threading.current_thread().name, _nice()))
            return self.hasher.hash(password)

        def verify(self, stored, password):
            seen.append((threading.current_thread().name, _nice()))
            return self.hasher.verify(stored, password)

    monkeypatch.setattr(passwords, "hasher", lambda: Spy(real(1, 8, 1)))
    with app.app_context():
        stored = passwords.hash_password("correct horse")
        assert passwords.verify_password(stored, "correct horse")
        assert not passwords.verify_password(stored, "wrong horse")
    assert [name.startswith("argon2") for name, _ in seen] == [True] * 3
    if sys.platform == "linux":
        assert {nice for _, nice in seen} == {_nice() + 7}


def test_without_a_pool_the_caller_hashes(app):
    with app.app_context():
        stored = passwords.hash_password("correct horse")
        assert passwords.verify_password(stored, "correct horse")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_shipped_gunicorn_settings_start_the_pool(monkeypatch):
    from idp import gunicorn_conf

    assert gunicorn_conf.hash_threads >= 1 and 0 < gunicorn_conf.hash_nice <= 19
    started = []
    monkeypatch.setattr(passwords, "start_hash_pool", lambda *args: started.append(args))
    gunicorn_conf.post_worker_init(worker=None)
    assert started == [(gunicorn_conf.hash_threads, gunicorn_conf.hash_nice)]
