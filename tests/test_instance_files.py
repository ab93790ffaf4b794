"""Local state is private whatever the umask: the instance folder 0700; the SQLite
database, its -wal and -shm, ``instance/secret_key`` and the demo RP secret 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from idp import create_app
from idp.cli import cli, initialise
from idp.models import db
from tests.conftest import CHEAP_ARGON2, ISSUER


@pytest.fixture(params=[0o022, 0o002, 0o000], ids=lambda m: f"umask{m:03o}")
def loose_umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _settings(work: Path, keys: Path, **extra) -> dict:
    """No secret_key: single-node SQLite keeps one in instance/secret_key."""
    instance = work / "instance"
    return {
        "issuer": ISSUER,
        "instance_dir": str(instance),
        "database": {"url": f"sqlite:///{instance / 'idp.sqlite3'}"},
        "keys": {"dir": str(keys)},
        "password": dict(CHEAP_ARGON2),
        **extra,
    }


def _write_something(app) -> None:
    from idp.users import create_user

    with app.app_context():
        create_user(
            username="jdupont",
            email="j.dupont@exemple.fr",
            name="Jeanne Dupont",
            password="correct horse battery staple",
        )


def test_server_files_are_private_whatever_the_umask(tmp_path, shared_keys, loose_umask):
    app = create_app(_settings(tmp_path, shared_keys))
    initialise(app)
    _write_something(app)
    instance = tmp_path / "instance"
    database = instance / "idp.sqlite3"
    try:
        with app.app_context():  # a connection is open: -wal and -shm exist
            db.session.execute(db.text("SELECT count(*) FROM users")).scalar()
            wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
            assert wal.exists() and shm.exists()
            assert (mode(wal), mode(shm)) == (0o600, 0o600)
            db.session.remove()
    finally:
        with app.app_context():
            db.engine.dispose()
    assert mode(instance) == 0o700
    assert mode(database) == 0o600
    assert mode(instance / "secret_key") == 0o600


def test_idp_init_and_demo_files_are_private_whatever_the_umask(tmp_path, shared_keys, loose_umask):
    from idp.demo import seed

    settings = _settings(tmp_path, shared_keys)
    config = tmp_path / "idp.toml"
    config.write_text(
        f'issuer = "{ISSUER}"\n'
        f'instance_dir = "{settings["instance_dir"]}"\n'
        f'[database]\nurl = "{settings["database"]["url"]}"\n'
        f'[keys]\ndir = "{shared_keys}"\n'
        "[password]\nargon2_time_cost = 1\nargon2_memory_kib = 8\nargon2_parallelism = 1\n"
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "init"])
    assert result.exit_code == 0, result.output
    instance = tmp_path / "instance"
    assert mode(instance) == 0o700
    assert mode(instance / "idp.sqlite3") == 0o600
    assert mode(instance / "secret_key") == 0o600

    # ``idp demo`` seeds into an instance folder of its own (database elsewhere).
    demo_instance = tmp_path / "demo-instance"
    app = create_app({**settings, "secret_key": "configured", "instance_dir": str(demo_instance)})
    try:
        with app.app_context():
            seed(app)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    assert mode(demo_instance) == 0o700
    assert mode(demo_instance / "demo-rp.secret") == 0o600


def test_database_outside_the_instance_folder_is_private_too(tmp_path, shared_keys, loose_umask):
    database = tmp_path / "data" / "idp.sqlite3"
    app = create_app(_settings(tmp_path, shared_keys, database={"url": f"sqlite:///{database}"}))
    initialise(app)
    _write_something(app)
    with app.app_context():
        db.engine.dispose()
    assert mode(database.parent) == 0o700  # created by the provider
    assert mode(database) == 0o600


def test_loose_files_of_an_existing_deployment_are_tightened(tmp_path, shared_keys):
    """Files an older version (or a copy) left readable are made private on start."""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    database = instance / "idp.sqlite3"
    import sqlite3

    conn = sqlite3.connect(database)  # WAL kept open: its files stay on disk
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE leftover (x)")
    conn.commit()
    (instance / "secret_key").write_text("an-old-secret-key")
    for path in (
        database,
        Path(f"{database}-wal"),
        Path(f"{database}-shm"),
        instance / "secret_key",
    ):
        os.chmod(path, 0o644)
    try:
        app = create_app(_settings(tmp_path, shared_keys))
        assert app.config["SECRET_KEY"] == "an-old-secret-key"
        initialise(app)
        with app.app_context():
            db.engine.dispose()
        assert mode(Path(f"{database}-wal")) == 0o600
        assert mode(Path(f"{database}-shm")) == 0o600
    finally:
        conn.close()
    assert mode(instance) == 0o700
    assert mode(instance / "secret_key") == 0o600
    assert mode(database) == 0o600


def test_the_process_umask_is_left_alone(tmp_path, shared_keys):
    previous = os.umask(0o022)
    try:
        app = create_app(_settings(tmp_path, shared_keys))
        initialise(app)
        with app.app_context():
            db.engine.dispose()
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(previous)
