"""Layered fixtures: ``settings`` → ``app`` → ``client`` / ``runner`` / ``login``.

The database is SQLite by default and PostgreSQL when ``IDP_TEST_DATABASE_URL``
is set; the schema comes from the Alembic migrations, as in production.
"""

from __future__ import annotations

import json
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


def _truncate_all(url: str) -> None:
    """Every PostgreSQL test starts from empty tables (the schema stays)."""
    engine = create_engine(url)
    tables = ", ".join(t.name for t in db.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def settings(tmp_path, template_db, shared_keys) -> dict:
    """Per-test settings; tests tweak them before asking for ``app``."""
    if PG_URL:
        url = PG_URL
        _truncate_all(PG_URL)
    else:
        copy = tmp_path / "idp.sqlite3"
        shutil.copy(template_db.removeprefix("sqlite:///"), copy)
        url = f"sqlite:///{copy}"
    return _settings(tmp_path, url, shared_keys)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
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


class _Mailbox:
    """Messages received by the test SMTP server, parsed."""

    def __init__(self):
        self.messages = []
        self.refuse = False
        self.stall = 0.0  # seconds to sit on DATA before answering: a stalled server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        import asyncio
        from email import message_from_bytes, policy

        if self.stall:
            await asyncio.sleep(self.stall)

        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"

    def last_text(self) -> str:
        message = self.messages[-1]
        return message.get_body(preferencelist=("plain",)).get_content()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp(settings):
    """A real SMTP server (aiosmtpd) on loopback; the app is configured to use it."""
    from aiosmtpd.controller import Controller

    mailbox = _Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.setdefault("mail", {}).update(backend="smtp", server="127.0.0.1", port=port)
    yield mailbox
    controller.stop()


class _Gateway:
    """What the fake SMS gateway received, and how it should answer next."""

    def __init__(self):
        self.received = []
        self.status = 200
        self.delay = 0.0
        self.headers = []


@pytest.fixture
def sms_gateway(settings):
    """An HTTP server standing in for the SMS provider (a true system edge)."""
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    gateway = _Gateway()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            gateway.headers.append(dict(self.headers))
            time.sleep(gateway.delay)
            if gateway.status < 300:
                gateway.received.append(json.loads(body))
            self.send_response(gateway.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.setdefault("sms", {}).update(
        backend="http",
        url=f"http://127.0.0.1:{server.server_port}/send",
        token="gw-token",
        timeout_seconds=1.0,
    )
    yield gateway
    server.shutdown()
    server.server_close()


def _toml(value) -> str:
    if isinstance(value, dict):
        raise TypeError
    return json.dumps(value)


@pytest.fixture
def idp(settings, tmp_path):
    """Run ``idp --config <file> …`` in-process; returns (exit code, stdout, stderr)."""
    from click.testing import CliRunner

    from idp.cli import cli

    path = tmp_path / "idp.toml"

    def run(*args, input=None):
        """Written at each call, so a test may change ``settings`` after asking for it."""
        lines = [f"{k} = {_toml(v)}" for k, v in settings.items() if not isinstance(v, dict)]
        for table, values in settings.items():
            if isinstance(values, dict):
                lines.append(f"[{table}]")
                lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
        path.write_text("\n".join(lines) + "\n")
        result = CliRunner().invoke(cli, ["--config", str(path), *args], input=input)
        return result.exit_code, result.stdout, result.stderr

    return run


@pytest.fixture
def migrating_app(tmp_path, shared_keys):
    """An app on a fresh SQLite file that a test migrates step by step (data written
    at an old revision, then ``upgrade``): returns (app, migrations directory)."""
    settings = {
        "issuer": "http://idp.test",
        "secret_key": "test-secret-key-not-for-production",
        "instance_dir": str(tmp_path / "instance"),
        "database": {"url": f"sqlite:///{tmp_path / 'old.sqlite3'}"},
        "keys": {"dir": str(shared_keys)},
    }
    app = create_app(settings)
    yield app, app.extensions["migrate"].directory
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
