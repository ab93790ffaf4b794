"""``/healthz``: what a load balancer sees, draining included (``idp.gunicorn_conf``)."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from idp.models import db


def test_ok_without_the_drain_variable(client, monkeypatch):
    monkeypatch.delenv("IDP_DRAIN_FILE", raising=False)
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_draining_once_the_flag_file_exists(client, monkeypatch, tmp_path):
    flag = tmp_path / "draining"
    monkeypatch.setenv("IDP_DRAIN_FILE", str(flag))
    assert client.get("/healthz").json == {"status": "ok"}  # named, not there yet

    flag.touch()  # what the gunicorn master does on SIGTERM
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json == {"status": "draining"}
    # Only the health check says so: the node keeps serving while it drains.
    assert client.get("/.well-known/openid-configuration").status_code == 200

    flag.unlink()
    assert client.get("/healthz").status_code == 200


def test_draining_is_answered_without_the_database(client, monkeypatch, tmp_path):
    flag = tmp_path / "draining"
    flag.touch()
    monkeypatch.setenv("IDP_DRAIN_FILE", str(flag))
    monkeypatch.setattr(db.session, "execute", _database_down)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json == {"status": "draining"}


def test_unavailable_when_the_database_fails(client, monkeypatch):
    monkeypatch.delenv("IDP_DRAIN_FILE", raising=False)
    monkeypatch.setattr(db.session, "execute", _database_down)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json == {"status": "unavailable"}


def test_an_empty_variable_is_no_drain(client, monkeypatch):
    monkeypatch.setenv("IDP_DRAIN_FILE", "")
    assert client.get("/healthz").status_code == 200


def _database_down(*args, **kwargs):
    raise OperationalError("SELECT 1", {}, Exception("connection refused"))
