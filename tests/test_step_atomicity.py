"""One step, one database transaction (SECURITY.md, "One step, one transaction").

Each step a user or a relying party takes — the password, the code, the
expired-password renewal, the reset link, the code exchange — either lands
whole or leaves the database exactly as it was, so that trying again works.

The database is made to fail at each of the step's writes in turn, and at its
commit (``FailAt``: SQLAlchemy engine events, raising ``OperationalError`` as a
dropped connection would). After every failed attempt the whole database must
be unchanged; the next attempt goes one write further; the last one succeeds.
A step that committed twice would be caught at its second commit: the first
would already have landed.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from idp import clock
from idp.delivery import outbox
from idp.models import db
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import REDIRECT_URI, make_client, make_user, query_of

NEW = "Brand-New-Password-42"
WRITES = ("INSERT", "UPDATE", "DELETE")


class FailAt:
    """Make the ``n``-th write statement or commit of the app's engine fail, once."""

    def __init__(self, engine, n: int):
        self.engine, self.n, self.seen, self.fired = engine, n, 0, False

    def _tick(self, what: str) -> None:
        self.seen += 1
        if self.seen == self.n:
            self.fired = True
            raise OperationalError(f"injected failure at {what}", None, Exception("gone"))

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(WRITES):
            self._tick(statement.split()[0])

    def _commit(self, conn):
        self._tick("COMMIT")

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._commit)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._commit)


def snapshot(app) -> dict:
    """Every row of every table."""
    with app.app_context():
        db.session.remove()
        return {
            table.name: sorted(
                (tuple(map(repr, row)) for row in db.session.execute(select(table))), key=str
            )
            for table in db.metadata.sorted_tables
        }


def each_failure_then_success(app, attempt, failed_status: int = 503):
    """Run ``attempt()`` with a failure at write 1, 2, … (then at the commit) until it
    runs without one; the database never changes on a failure. Returns the success."""
    with app.app_context():
        engine = db.engine
    before = snapshot(app)
    for n in range(1, 60):
        with FailAt(engine, n) as failure:
            response = attempt()
        if not failure.fired:
            return response, n - 1
        assert response.status_code == failed_status, (n, response.status_code, response.text)
        assert "Set-Cookie" not in response.headers or "idp_sso=" not in str(
            response.headers.getlist("Set-Cookie")
        ), n
        assert snapshot(app) == before, f"half-written after a failure at write/commit {n}"
    raise AssertionError("the step never finished")


@pytest.fixture
def quiet_outbox(monkeypatch):
    """Notices leave after the step (in-line in tests): not part of what is measured here."""
    monkeypatch.setattr(outbox, "send_soon", lambda: True)


@pytest.fixture
def settings(settings):
    settings["password"]["max_age_days"] = 90  # the renewal step exists (moved clock below)
    return settings


@pytest.fixture
def rp(smtp, quiet_outbox, app):
    with app.app_context():
        make_user("alice")
        make_user("bruno", roles=["patient_data"])
        return make_client()[1]


@pytest.fixture
def login(rp, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _post(client, url, **data):
    page = client.get(url)
    token = csrf_of(page.text)
    return lambda: client.post(url, data={"csrf_token": token, **data})


def test_the_password_step_signs_in_whole_or_not_at_all(login, app):
    url = login.authorize().location
    response, writes = each_failure_then_success(
        app, _post(login.client, url, username="alice", password="Correct-Horse-9-Battery")
    )
    assert writes >= 3  # the login closed, the session opened, the RP's code stored
    assert response.location.startswith(REDIRECT_URI) and "code" in query_of(response.location)


def test_the_code_step_spends_the_code_only_with_the_session(login, app, smtp):
    url = login.submit_password(login.authorize().location, "bruno").location
    assert "/login/otp" in url
    code = code_in(smtp.last_text())
    response, writes = each_failure_then_success(
        app, _post(login.client, url, code=code, remember="y")
    )
    assert writes >= 5  # code spent, login closed, browser remembered, session, RP's code
    assert response.location.startswith(REDIRECT_URI) and "code" in query_of(response.location)
    assert "idp_browser" in str(response.headers.getlist("Set-Cookie"))


def test_the_code_exchange_consumes_the_code_only_with_the_tokens(login, app, rp):
    code = login.login_through()["code"]
    response, _ = each_failure_then_success(
        app, lambda: login.exchange(code, secret=rp), failed_status=503
    )
    assert response.status_code == 200 and response.json["access_token"]
    assert login.exchange(code, secret=rp).status_code == 400  # now it is spent


def test_the_reset_link_is_spent_only_with_the_new_password(login, app, smtp):
    client = login.client
    page = client.get("/password/forgot")
    client.post("/password/forgot", data={"csrf_token": csrf_of(page.text), "identifier": "alice"})
    link = re.search(r"http://idp\.test(/password/reset/\S+)", smtp.last_text())[1]
    assert client.get(link).status_code == 303
    response, writes = each_failure_then_success(
        app, _post(client, "/password/reset", new_password=NEW, confirm_password=NEW)
    )
    assert writes >= 4  # link spent, password, notice queued, audit
    assert response.status_code == 200
    fresh = LoginActions(app.test_client())
    signed_in = fresh.submit_password(fresh.client.get("/login").location, "alice", NEW)
    assert signed_in.location.endswith("/account/")


def test_the_renewal_of_an_expired_password_lands_whole(login, app):
    clock.set_source(lambda: __import__("time").time() + 91 * 86400)
    try:
        renew = login.submit_password(login.authorize().location, "alice").location
        assert "/account/password?tx=" in renew
        response, writes = each_failure_then_success(
            app, _post(login.client, renew, new_password=NEW, confirm_password=NEW)
        )
        assert writes >= 5  # login closed, password, notice, session, RP's code
        assert response.location.startswith(REDIRECT_URI)
    finally:
        clock.set_source(None)
