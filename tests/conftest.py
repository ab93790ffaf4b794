"""Layered fixtures: ``settings`` → ``app`` → ``client`` / ``runner`` / ``login``.

The database is SQLite by default and PostgreSQL when ``IDP_TEST_DATABASE_URL``
is set; the schema comes from the Alembic migrations, as in production.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from idp import clock, create_app
from idp.cli import initialise
from idp.models import db

PG_URL = os.environ.get("IDP_TEST_DATABASE_URL", "")
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}
ISSUER = "http://idp.test"


@pytest.fixture(scope="session")
def shared_keys(tmp_path_factory) -> Path:
    """One key directory for the whole run: RSA generation is slow."""
    from idp.oidc.keys import ensure_keys

    path = tmp_path_factory.mktemp("keys")
    ensure_keys(path)
    return path


@pytest.fixture(scope="session")
def template_db(tmp_path_factory, shared_keys) -> str:
    """A migrated database: a SQLite file copied per test, or PostgreSQL truncated per test."""
    work = tmp_path_factory.mktemp("template")
    url = PG_URL or f"sqlite:///{work / 'template.sqlite3'}"
    if PG_URL:
        engine = create_engine(PG_URL)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    app = create_app(_settings(work, url, shared_keys))
    initialise(app)
    with app.app_context():
        db.engine.dispose()
    return url


def _settings(work: Path, url: str, keys: Path) -> dict:
    return {
        "issuer": ISSUER,
        "secret_key": "test-secret-key-not-for-production",
        "instance_dir": str(work / "instance"),
        "database": {"url": url},
        "keys": {"dir": str(keys)},
        "password": dict(CHEAP_ARGON2),
    }


@pytest.fixture
def settings(tmp_path, template_db, shared_keys) -> dict:
    """Per-test settings; tests tweak them before asking for ``app``."""
    if PG_URL:
        url = PG_URL
    else:
        copy = tmp_path / "idp.sqlite3"
        shutil.copy(template_db.removeprefix("sqlite:///"), copy)
        url = f"sqlite:///{copy}"
    return _settings(tmp_path, url, shared_keys)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    with app.app_context():
        if PG_URL:
            tables = ", ".join(t.name for t in db.metadata.sorted_tables)
            db.session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def frozen_clock():
    """Injectable time: ``frozen_clock.advance(seconds)``."""

    class Clock:
        def __init__(self):
            import time

            self.now = time.time()

        def __call__(self) -> float:
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += seconds

    fake = Clock()
    clock.set_source(fake)
    yield fake
    clock.set_source(None)
