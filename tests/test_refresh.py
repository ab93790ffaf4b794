"""Refresh tokens (SECURITY.md, "Refresh tokens"): rotation with a short reuse grace,
``--no-rotate`` clients, and one database transaction per refresh.

The race runs real threads against a real HTTP server (werkzeug's threaded
server on loopback, in this process so the clock can be moved); the end-to-end
suite races gunicorn workers too (``tests/e2e/test_refresh_race.py``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import pytest
import requests
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from idp.models import AuditEvent, Token, db
from tests.actions import LoginActions
from tests.conftest import PG_URL
from tests.factories import make_client, make_user

GRACE = 10  # the default [tokens] refresh_reuse_seconds


@pytest.fixture
def secret(app):
    with app.app_context():
        make_user()
        return make_client()[1]


@pytest.fixture
def login(client, secret):
    return LoginActions(client)


def _grant(login, client_id="rp", secret=None) -> dict:
    """A fresh sign-in and code exchange: the first token pair of a new family."""
    response = login.exchange(login.login_through(client_id)["code"], client_id, secret)
    assert response.status_code == 200, response.text
    return response.json


def _refresh(client, refresh_token, client_id="rp", secret=None):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if secret is None:
        return client.post("/token", data={**data, "client_id": client_id})
    return client.post("/token", data=data, auth=(client_id, secret))


def _userinfo(client, access_token) -> int:
    return client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


def _assert_revoked(client, tokens: dict, secret) -> None:
    """Neither token of this answer works any more."""
    assert _userinfo(client, tokens["access_token"]) == 401
    assert _refresh(client, tokens["refresh_token"], secret=secret).json["error"] == (
        "invalid_grant"
    )


def _family_revocation(app):
    """The engine, and the UPDATE a revocation of the (only) grant runs."""
    with app.app_context():
        engine = db.engine
        family = db.session.scalars(select(Token.family_id)).one()
    revoke = (
        Token.__table__.update()
        .where(Token.__table__.c.family_id == family)
        .values(access_revoked=True, refresh_revoked=True, refresh_rotated_at=None)
    )
    return engine, revoke


def _events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def _token_rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Token))


# -- the reuse grace -----------------------------------------------------------------


def test_a_reuse_within_the_grace_gets_a_fresh_pair_and_revokes_nothing(
    app, login, client, secret, frozen_clock
):
    """Two tabs renewing at once, or a retry after a lost answer: both get tokens."""
    first = _grant(login, secret=secret)
    winner = _refresh(client, first["refresh_token"], secret=secret)
    assert winner.status_code == 200, winner.text
    frozen_clock.advance(GRACE - 1)
    again = _refresh(client, first["refresh_token"], secret=secret)
    assert again.status_code == 200, again.text
    assert again.json["refresh_token"] not in (first["refresh_token"], winner.json["refresh_token"])

    for pair in (winner.json, again.json):  # both successors live, in the same family
        assert _userinfo(client, pair["access_token"]) == 200
        renewed = _refresh(client, pair["refresh_token"], secret=secret)
        assert renewed.status_code == 200, renewed.text
        assert _userinfo(client, renewed.json["access_token"]) == 200
    assert _events(app, "refresh.replayed") == []
    with app.app_context():
        families = db.session.scalars(select(Token.family_id).distinct()).all()
    assert len(families) == 1


def test_a_reuse_after_the_grace_revokes_the_family_and_warns(
    app, login, client, secret, frozen_clock, caplog
):
    first = _grant(login, secret=secret)
    successor = _refresh(client, first["refresh_token"], secret=secret).json
    frozen_clock.advance(GRACE)
    with caplog.at_level(logging.INFO, logger="idp.audit"):
        replay = _refresh(client, first["refresh_token"], secret=secret)
    assert replay.status_code == 400 and replay.json["error"] == "invalid_grant"
    assert _userinfo(client, successor["access_token"]) == 401
    dead = _refresh(client, successor["refresh_token"], secret=secret)
    assert dead.json["error"] == "invalid_grant"
    [event] = _events(app, "refresh.replayed")[:1]
    assert event.client_id == "rp" and event.user_id is not None
    warned = [r for r in caplog.records if "refresh.replayed" in r.getMessage()]
    assert warned and all(r.levelno == logging.WARNING for r in warned)


def test_a_zero_grace_treats_any_reuse_as_theft(app, login, client, secret):
    app.config["IDP"]["tokens"]["refresh_reuse_seconds"] = 0
    first = _grant(login, secret=secret)
    successor = _refresh(client, first["refresh_token"], secret=secret).json
    replay = _refresh(client, first["refresh_token"], secret=secret)
    assert replay.json["error"] == "invalid_grant"
    assert _userinfo(client, successor["access_token"]) == 401
    assert len(_events(app, "refresh.replayed")) == 1


def test_a_revoked_grant_has_no_grace(app, login, client, secret, frozen_clock):
    """Revoking the successor (RFC 7009) ends the grant: the rotated token is not a way back."""
    first = _grant(login, secret=secret)
    successor = _refresh(client, first["refresh_token"], secret=secret).json
    revoked = client.post(
        "/revoke", data={"token": successor["refresh_token"]}, auth=("rp", secret)
    )
    assert revoked.status_code == 200
    frozen_clock.advance(1)
    assert _refresh(client, first["refresh_token"], secret=secret).json["error"] == "invalid_grant"


def test_the_grace_never_outlives_the_grant(app, login, client, secret, frozen_clock):
    first = _grant(login, secret=secret)
    frozen_clock.advance(86400 - 5)  # [tokens] refresh_token_days = 1
    assert _refresh(client, first["refresh_token"], secret=secret).status_code == 200
    frozen_clock.advance(5)
    assert _refresh(client, first["refresh_token"], secret=secret).json["error"] == "invalid_grant"


# -- per-client rotation -------------------------------------------------------------


def test_a_no_rotate_client_keeps_its_refresh_token(app, client):
    with app.app_context():
        make_user()
        _, secret = make_client("portal", rotate_refresh=False)
    login = LoginActions(client)
    first = _grant(login, "portal", secret)
    access_tokens = {first["access_token"]}
    for _ in range(2):
        response = _refresh(client, first["refresh_token"], "portal", secret)
        assert response.status_code == 200, response.text
        assert "refresh_token" not in response.json  # keep using the one you have (RFC 6749 §6)
        access_tokens.add(response.json["access_token"])
    assert len(access_tokens) == 3
    assert all(_userinfo(client, token) == 200 for token in access_tokens)
    assert _events(app, "refresh.replayed") == []
    revoked = client.post(
        "/revoke", data={"token": first["refresh_token"]}, auth=("portal", secret)
    )
    assert revoked.status_code == 200
    gone = _refresh(client, first["refresh_token"], "portal", secret)
    assert gone.json["error"] == "invalid_grant"
    assert all(_userinfo(client, token) == 401 for token in access_tokens)


def test_a_public_client_always_rotates(app, client, frozen_clock):
    with app.app_context():
        make_user()
        make_client("mobile", public=True)
    login = LoginActions(client)
    first = _grant(login, "mobile")
    renewed = _refresh(client, first["refresh_token"], "mobile")
    assert renewed.status_code == 200, renewed.text
    assert renewed.json["refresh_token"] != first["refresh_token"]
    frozen_clock.advance(GRACE)
    replay = _refresh(client, first["refresh_token"], "mobile")
    assert replay.json["error"] == "invalid_grant"
    assert (
        _refresh(client, renewed.json["refresh_token"], "mobile").json["error"] == "invalid_grant"
    )


# -- concurrency, over real HTTP -----------------------------------------------------


@pytest.fixture
def live_server(app):
    """The app behind werkzeug's threaded server on loopback: one thread per request."""
    from werkzeug.serving import make_server

    before = set(threading.enumerate())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server")
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)
    for straggler in set(threading.enumerate()) - before:  # request threads (daemons)
        straggler.join(timeout=10)


def _race(url: str, data: dict, auth: tuple[str, str], racers: int) -> list[requests.Response]:
    """``racers`` threads POST the same refresh at the same instant; one connection each."""
    barrier = threading.Barrier(racers)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def refresh() -> None:
        barrier.wait(timeout=10)
        response = requests.post(
            url + "/token", data=data, auth=auth, headers={"Connection": "close"}, timeout=60
        )
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=refresh) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert len(answers) == racers
    return answers


def test_ten_concurrent_refreshes_all_succeed_and_the_grant_survives(
    app, login, client, secret, live_server, frozen_clock, caplog
):
    """mod_auth_openidc refreshing from six workers at once was logged out (4× replayed)."""
    first = _grant(login, secret=secret)
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    answers = _race(live_server, refresh, ("rp", secret), racers=10)
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    bodies = [a.json() for a in answers]
    assert len({b["refresh_token"] for b in bodies}) == 10
    assert all(_userinfo(client, b["access_token"]) == 200 for b in bodies)
    assert _events(app, "refresh.replayed") == []
    last = _refresh(client, bodies[-1]["refresh_token"], secret=secret)  # the family goes on
    assert last.status_code == 200, last.text
    assert _userinfo(client, last.json["access_token"]) == 200

    frozen_clock.advance(GRACE)  # now a reuse of the first token is theft
    with caplog.at_level(logging.INFO, logger="idp.audit"):
        replay = _refresh(client, first["refresh_token"], secret=secret)
    assert replay.json["error"] == "invalid_grant"
    assert len(_events(app, "refresh.replayed")) == 1
    assert any(
        r.levelno == logging.WARNING and "refresh.replayed" in r.getMessage()
        for r in caplog.records
    )
    assert _userinfo(client, last.json["access_token"]) == 401
    dead = _refresh(client, last.json["refresh_token"], secret=secret)
    assert dead.json["error"] == "invalid_grant"


# -- one transaction per refresh -----------------------------------------------------


@contextlib.contextmanager
def failing_commit_of_a_retirement(app, error: Exception):
    """The next COMMIT of a transaction that retired a refresh token fails, once.

    Engine events of this app only: the statement that flips ``refresh_revoked``
    marks its connection, and the ``commit`` event of that connection raises
    before the database commits, as a lost connection or a full disk would.
    """
    fired = []

    def mark(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE TOKENS") and (
            "refresh_revoked" in statement
        ):
            conn.info["retired_a_token"] = True

    def commit(conn):
        if conn.info.pop("retired_a_token", False) and not fired:
            fired.append(True)
            raise error

    def rollback(conn):
        conn.info.pop("retired_a_token", None)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", mark)
    event.listen(engine, "commit", commit)
    event.listen(engine, "rollback", rollback)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", mark)
        event.remove(engine, "commit", commit)
        event.remove(engine, "rollback", rollback)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (OperationalError("COMMIT", {}, Exception("server closed the connection")), 503,
         "temporarily_unavailable"),
        (IntegrityError("COMMIT", {}, Exception("deferred constraint")), 500, "server_error"),
    ],
    ids=["connection_lost", "constraint"],
)  # fmt: skip
def test_a_failed_commit_leaves_nothing_half_written(
    app, login, client, secret, error, status, code
):
    """Before: the successor was committed (and live) before the old token was retired; a
    failure between the two left a live refresh token that no client ever received."""
    first = _grant(login, secret=secret)
    rows = _token_rows(app)
    issued = len(_events(app, "token.issued"))
    with failing_commit_of_a_retirement(app, error) as fired:
        failed = _refresh(client, first["refresh_token"], secret=secret)
    assert fired, "the injected failure never ran"
    assert failed.status_code == status and failed.json == {"error": code}
    assert failed.mimetype == "application/json"

    assert _token_rows(app) == rows  # no successor stored
    assert len(_events(app, "token.issued")) == issued  # no audit row claiming one
    with app.app_context():
        old = db.session.scalars(select(Token)).one()
        assert old.refresh_revoked is False and old.access_revoked is False
    assert _userinfo(client, first["access_token"]) == 200

    retry = _refresh(client, first["refresh_token"], secret=secret)  # the client just retries
    assert retry.status_code == 200, retry.text
    assert _userinfo(client, retry.json["access_token"]) == 200
    assert _events(app, "refresh.replayed") == []


@contextlib.contextmanager
def before_the_recheck(app, action):
    """Run ``action(connection)`` once, just before the refresh re-reads the presented
    token after its commit (``RefreshTokenGrant._revoke_if_revoked_meanwhile``)."""
    fired = []

    def hook(conn, cursor, statement, parameters, context, executemany):
        if not fired and statement.lstrip().upper().startswith(
            "SELECT TOKENS.REFRESH_REVOKED, TOKENS.REFRESH_ROTATED_AT"
        ):
            fired.append(True)
            action(conn)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", hook)
    try:
        yield fired
    finally:
        event.remove(engine, "before_cursor_execute", hook)


ONLY_POSTGRESQL = pytest.mark.skipif(
    not PG_URL,
    reason="the re-check is PostgreSQL's: on SQLite a revocation cannot miss the row "
    "(test_on_sqlite_a_revocation_cannot_come_between_a_refresh_and_its_commit)",
)


@ONLY_POSTGRESQL
def test_a_revocation_racing_a_refresh_reaches_the_tokens_it_gave(app, login, client, secret):
    """On PostgreSQL a family revocation waiting on the refresh's row lock cannot see the
    row that refresh inserted; the refresh looks again once committed (as for codes)."""
    first = _grant(login, secret=secret)
    with app.app_context():
        engine, old_id = db.engine, db.session.scalars(select(Token.id)).one()

    def revoke_missing_the_new_row(_conn):
        with engine.begin() as other:  # what that revocation did: the rows it could see
            other.execute(
                Token.__table__.update()
                .where(Token.__table__.c.id == old_id)
                .values(access_revoked=True, refresh_revoked=True, refresh_rotated_at=None)
            )

    with before_the_recheck(app, revoke_missing_the_new_row) as fired:
        answer = _refresh(client, first["refresh_token"], secret=secret)
    assert fired and answer.status_code == 200, answer.text
    _assert_revoked(client, answer.json, secret)


@ONLY_POSTGRESQL
def test_a_deletion_racing_a_refresh_reaches_the_tokens_it_gave(app, login, client, secret):
    """``idp client remove`` deletes the client's tokens; waiting on the refresh's row
    lock, it cannot see the row the refresh inserted. Before: the re-check found the
    old row gone, logged an error and kept the new tokens."""
    first = _grant(login, secret=secret)
    with app.app_context():
        engine, old_id = db.engine, db.session.scalars(select(Token.id)).one()

    def delete_missing_the_new_row(_conn):
        with engine.begin() as other:
            other.execute(Token.__table__.delete().where(Token.__table__.c.id == old_id))

    with before_the_recheck(app, delete_missing_the_new_row) as fired:
        answer = _refresh(client, first["refresh_token"], secret=secret)
    assert fired and answer.status_code == 200, answer.text
    _assert_revoked(client, answer.json, secret)


@ONLY_POSTGRESQL
def test_a_failed_recheck_still_answers_the_committed_refresh(app, login, client, secret):
    """The refresh is committed: an error then must not make the client retry with a
    token already retired (with the grace off, that retry would revoke its grant)."""
    first = _grant(login, secret=secret)

    def fail(_conn):
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    with before_the_recheck(app, fail) as fired:
        answer = _refresh(client, first["refresh_token"], secret=secret)
    assert fired and answer.status_code == 200, answer.text
    assert _userinfo(client, answer.json["access_token"]) == 200
    assert _refresh(client, answer.json["refresh_token"], secret=secret).status_code == 200


@pytest.mark.skipif(bool(PG_URL), reason="SQLite's locking; PostgreSQL re-checks instead")
def test_on_sqlite_a_revocation_cannot_come_between_a_refresh_and_its_commit(
    app, login, client, secret
):
    """Why SQLite needs no re-check: from the refresh's first write to its commit, a
    family revocation (logout, ``/revoke``, a detected replay) cannot write at all;
    it waits (``busy_timeout``), then reads the database as the commit left it, the
    new tokens included."""
    first = _grant(login, secret=secret)
    engine, revoke = _family_revocation(app)
    attempts, refused = [], []

    def revoke_without_waiting(conn):
        if attempts:
            return  # the refresh's commit only, once (not this revocation's own)
        attempts.append(True)
        with engine.connect() as other:
            other.exec_driver_sql("PRAGMA busy_timeout=0")  # fail where it would wait
            try:
                other.execute(revoke)
                other.commit()
            except OperationalError as error:
                refused.append(str(error.orig))
            finally:
                other.exec_driver_sql("PRAGMA busy_timeout=30000")

    event.listen(engine, "commit", revoke_without_waiting)
    try:
        answer = _refresh(client, first["refresh_token"], secret=secret)
    finally:
        event.remove(engine, "commit", revoke_without_waiting)
    assert answer.status_code == 200, answer.text
    assert refused == ["database is locked"]  # it could only have waited for the commit

    with engine.begin() as other:  # what it does once the refresh has committed
        other.execute(revoke)
    _assert_revoked(client, answer.json, secret)


@ONLY_POSTGRESQL
def test_a_revocation_woken_by_the_refresh_but_committing_after_it_still_reaches_its_tokens(
    app, login, client, secret
):
    """A family revocation (logout, /revoke, password change) blocks on the row the
    refresh retired. When the refresh commits, the revocation's UPDATE resumes (its
    snapshot cannot see the new token), but its transaction still has work to do
    before COMMIT (end_all_of: sessions, outbox, audit). Before: the re-check was a
    plain SELECT, which read the old row's last committed state (retired, not
    revoked) and let the new tokens live; it now waits for the revocation (FOR
    SHARE). Found by an attacker's review; here the revocation commits 0.3 s after
    the re-check starts (without the fix, any commit after the re-check's read)."""
    first = _grant(login, secret=secret)
    engine, revoke = _family_revocation(app)
    blocked, recheck_started, errors = threading.Event(), threading.Event(), []

    def revoker():
        try:
            with engine.connect() as other:
                other.execute(revoke)  # waits on the refresh's row lock
                recheck_started.wait(5)
                time.sleep(0.3)  # the rest of the revoking step
                other.commit()
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    thread = threading.Thread(target=revoker)

    def on_commit(conn):
        if thread.is_alive() or thread.ident is not None:
            return
        thread.start()
        with engine.connect() as probe:  # until the revocation waits on our row lock
            for _ in range(100):
                waiting = probe.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).scalar()
                probe.rollback()
                if waiting:
                    blocked.set()
                    return
                time.sleep(0.05)

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if (
            statement.lstrip()
            .upper()
            .startswith("SELECT TOKENS.REFRESH_REVOKED, TOKENS.REFRESH_ROTATED_AT")
        ):
            recheck_started.set()

    event.listen(engine, "commit", on_commit)
    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        answer = _refresh(client, first["refresh_token"], secret=secret)
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "before_cursor_execute", on_execute)
        thread.join(10)
    assert blocked.is_set() and recheck_started.is_set() and not errors, errors
    assert answer.status_code == 200, answer.text
    # The family was revoked: every token of it must be dead.
    _assert_revoked(client, answer.json, secret)
