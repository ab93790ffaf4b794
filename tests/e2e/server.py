"""The provider under test: a TOML file, the ``idp`` command, gunicorn.

``provision`` writes the configuration (SMTP and SMS pointing at the test's
own servers, see ``edges.py``) and creates everything through the ``idp``
command, as an operator would. ``serving`` runs ``gunicorn 'idp:create_app()'``
in its own process group and kills the whole group afterwards. ``Provider.node``
describes a second gunicorn on the same database and keys with a few settings
changed: a second node of a cluster, used where one setting (a 2-second code
lifetime) must differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO_DIR = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("IDP_TEST_DATABASE_URL", "")
PASSWORD = "Violet-Kettle-42-Harbour"
CLIENTS = {
    # name: (redirect URI, post-logout redirect URI, other ``idp client add`` options)
    "confidential": (
        "https://rp.example/callback",
        "https://rp.example/bye",
        ["--name", "Dossier"],
    ),
    "second": ("https://agenda.example/cb", None, ["--name", "Agenda"]),
    "public": ("https://mobile.example/cb", None, ["--public", "--name", "Appli mobile"]),
}
# One account per story: the provider lives for the whole package, and a story
# that changes a password or spends a per-user code budget must not disturb another.
USERS = {
    "alice": ["--email", "alice@exemple.fr", "--name", "Alice Martin", "--profession", "IDE"],
    "bruno": ["--email", "bruno@exemple.fr", "--name", "Bruno Petit"],
    # e-mailed codes, remembered browser (M1, M5–M8)
    "chantal": ["--email", "chantal@exemple.fr", "--name", "Chantal Roux",
                "--role", "patient_data"],
    # wrong codes, expired code (M2)
    "damien": ["--email", "damien@exemple.fr", "--role", "patient_data"],
    # SMS (M4), also in the browser
    "hugo": ["--email", "hugo@exemple.fr", "--name", "Hugo Blanc", "--role", "patient_data",
             "--phone", "+33612345678"],
    # "log out other devices" (P4)
    "marc": ["--email", "marc@exemple.fr", "--role", "patient_data"],
    # lost password (R1–R6)
    "nina": ["--email", "nina@exemple.fr", "--name", "Nina Faure"],
    # the console in a real browser (A1–A3, P1–P5)
    "karim": ["--email", "karim@exemple.fr", "--name", "Karim Haddad", "--profession", "Médecin"],
    # racing password posts on one login: attackers and victims (through an RP, the console)
    "raoul": ["--email", "raoul@exemple.fr", "--name", "Raoul Girard", "--role", "patient_data"],
    "victor": ["--email", "victor@exemple.fr", "--name", "Victor Lenoir",
               "--role", "patient_data"],
    "romane": ["--email", "romane@exemple.fr", "--role", "patient_data"],
    "violette": ["--email", "violette@exemple.fr", "--role", "patient_data"],
    # a double-clicked password form
    "diane": ["--email", "diane@exemple.fr", "--role", "patient_data"],
    # password replaced by the operator (``idp user set-password``)
    "olga": ["--email", "olga@exemple.fr", "--name", "Olga Morel"],
    # a backup phone added from the console: e-mailed code, then SMS to it (A2–A3)
    "pauline": ["--email", "pauline@exemple.fr", "--name", "Pauline Mercier"],
}  # fmt: skip


@dataclass
class RegisteredClient:
    client_id: str
    secret: str | None
    redirect_uri: str
    post_logout_redirect_uri: str | None = None

    @property
    def is_public(self) -> bool:
        return self.secret is None


@dataclass
class Provider:
    """One gunicorn serving ``issuer``; ``base_url`` is where this node listens."""

    issuer: str
    base_url: str
    workdir: Path
    config_path: Path
    settings: dict
    env: dict[str, str]
    clients: dict[str, RegisteredClient] = field(default_factory=dict)
    users: dict[str, dict] = field(default_factory=dict)
    log_path: Path | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run ``idp --config … ARGS``; fail the test with its stderr if it fails."""
        result = subprocess.run(
            [_bin("idp"), "--config", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.workdir,
            timeout=120,
        )
        assert result.returncode == 0, f"idp {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def get_json(self, path: str) -> dict:
        with requests.get(self.url(path), timeout=10) as response:
            assert response.status_code == 200, response.text
            return response.json()

    def metadata(self) -> dict:
        return self.get_json("/.well-known/openid-configuration")

    def jwks(self) -> dict:
        return self.get_json("/jwks.json")

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def node(self, name: str, port: int, **changes: dict) -> Provider:
        """Another node of this cluster (same issuer, database, keys, secret), some
        settings changed, e.g. ``node("short-otp", port, mfa={"otp_ttl_seconds": 2})``."""
        settings = json.loads(json.dumps(self.settings))
        for table, values in changes.items():
            settings.setdefault(table, {}).update(values)
        config_path = self.workdir / f"{name}.toml"
        config_path.write_text(to_toml(settings))
        return dataclasses.replace(
            self,
            base_url=f"http://127.0.0.1:{port}",
            config_path=config_path,
            settings=settings,
            env={**self.env, "IDP_CONFIG": str(config_path)},
            log_path=self.workdir / f"{name}.log",
        )


def _bin(name: str) -> str:
    """A console script of the venv running pytest (``.venv/bin/…``)."""
    for directory in (Path(sys.executable).parent, REPO_DIR / ".venv" / "bin"):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    assert found, f"{name} not found next to {sys.executable} nor on PATH"
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def to_toml(settings: dict) -> str:
    """Top-level scalars, then one ``[table]`` per dict (all this config needs)."""

    def value(item) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        return json.dumps(item)  # JSON strings, numbers and lists of strings are valid TOML

    lines = [f"{k} = {value(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for table, values in settings.items():
        if isinstance(values, dict):
            lines += ["", f"[{table}]", *(f"{k} = {value(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


def base_settings(
    issuer: str, database_url: str, keys_dir: Path, *, smtp_port: int, sms_url: str, sms_token: str
) -> dict:
    return {
        "issuer": issuer,
        "secret_key": secrets.token_urlsafe(32),
        "database": {"url": database_url},
        "keys": {"dir": str(keys_dir)},
        "mail": {"backend": "smtp", "server": "127.0.0.1", "port": smtp_port},
        "sms": {"backend": "http", "url": sms_url, "token": sms_token, "timeout_seconds": 1.0},
        "password": {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1},
    }


def reset_postgres(url: str) -> None:
    """Empty the test database: the unit suite resets it the same way."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    finally:
        engine.dispose()


def provision(provider: Provider) -> None:
    """``idp init``, then every user and client (a few ``idp`` processes at once)."""
    provider.cli("init")

    def add_user(item: tuple[str, list[str]]) -> tuple[str, dict]:
        username, options = item
        out = provider.cli(
            "user", "add", username, *options, "--password-stdin", "--json", stdin=PASSWORD + "\n"
        )
        return username, {**json.loads(out), "password": PASSWORD}

    def add_client(item: tuple[str, tuple]) -> tuple[str, RegisteredClient]:
        name, (redirect_uri, logout_uri, options) = item
        client_id = f"e2e-{name}"
        args = ["client", "add", client_id, "--redirect-uri", redirect_uri, *options, "--json"]
        if logout_uri:
            args += ["--post-logout-redirect-uri", logout_uri]
        data = json.loads(provider.cli(*args))
        assert data["client_id"] == client_id
        assert (data["client_secret"] is None) == ("--public" in options), data
        return name, RegisteredClient(client_id, data["client_secret"], redirect_uri, logout_uri)

    # Each ``idp`` process spends a second importing; three at a time halve the wait.
    with ThreadPoolExecutor(max_workers=3) as pool:
        users = pool.map(add_user, USERS.items())
        clients = pool.map(add_client, CLIENTS.items())
        provider.users.update(users)
        provider.clients.update(clients)


@contextlib.contextmanager
def serving(provider: Provider, workers: int = 2) -> Iterator[Provider]:
    """gunicorn for ``provider`` until the block ends; the test fails if it never gets healthy.

    The shipped configuration (``idp.gunicorn_conf``: threaded workers, access log)
    with a few options overriding it, and no drain: teardown stops at once."""
    port = int(provider.base_url.rsplit(":", 1)[1])
    with open(provider.log_path, "wb") as log:
        process = subprocess.Popen(
            [
                _bin("gunicorn"),
                "-c", "python:idp.gunicorn_conf",
                "--workers", str(workers),
                "--bind", f"127.0.0.1:{port}",
                "--graceful-timeout", "3",
                "--access-logfile", "-",
                "idp:create_app()",
            ],
            env={**provider.env, "IDP_DRAIN_SECONDS": "0"},
            cwd=provider.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown kills master and workers
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        try:
            _wait_healthy(provider, process)
            yield provider
        finally:
            _stop(process)


def _die_with_parent() -> None:
    """Linux: SIGTERM the gunicorn master if pytest itself is killed (no orphan server)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_healthy(provider: Provider, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{provider.log_tail()}")
        try:
            with requests.get(provider.url("/healthz"), timeout=2) as response:
                if response.status_code == 200 and response.json() == {"status": "ok"}:
                    return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or a worker still booting
        time.sleep(0.1)
    pytest.fail(f"gunicorn not healthy after {timeout} s:\n{provider.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the group (master and workers), SIGKILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:  # a worker that outlived its master would still be in the group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
