"""A database that stops answering (SECURITY.md, "Resilience").

A TCP server that accepts connections and never says a word stands in for a
hung PostgreSQL: requests must fail within ``[database] timeout_seconds`` (a
French 503 page, ``temporarily_unavailable`` for RPs), ``/healthz`` must say
503 as fast, and the outage must write a bounded number of log lines.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from idp import create_app


@pytest.fixture
def hung_database():
    """Accepts TCP connections and never answers: a database that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


@pytest.fixture
def stranded(settings, hung_database):
    settings["database"] = {
        "url": f"postgresql+psycopg://idp:idp@127.0.0.1:{hung_database}/idp",
        "timeout_seconds": 1,
    }
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    with app.app_context():
        from idp.models import db

        db.engine.dispose()


def _timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_pages_answer_a_french_503_within_seconds(stranded):
    response, waited = _timed(lambda: stranded.test_client().get("/login"))
    assert response.status_code == 503 and waited < 5, waited
    assert "indisponible" in response.text and response.headers["Retry-After"] == "30"


def test_relying_parties_get_temporarily_unavailable(stranded):
    response, waited = _timed(
        lambda: stranded.test_client().post(
            "/token", data={"grant_type": "refresh_token"}, auth=("rp", "secret")
        )
    )
    assert response.status_code == 503 and waited < 5, waited
    assert response.json == {"error": "temporarily_unavailable"}


def test_healthz_says_unavailable_within_the_timeout(stranded):
    response, waited = _timed(lambda: stranded.test_client().get("/healthz"))
    assert response.status_code == 503 and response.json == {"status": "unavailable"}
    assert waited < 2.5, waited


def test_an_outage_writes_a_bounded_number_of_log_lines(stranded, caplog):
    from idp import web

    web.outage.last = 0.0
    client = stranded.test_client()
    with caplog.at_level(logging.INFO):
        for _ in range(4):
            client.get("/login")
            client.get("/healthz")
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) <= 2, [r.getMessage() for r in lines]
    assert not any(r.exc_info for r in lines)  # no tracebacks
