"""Notices through a durable outbox; a stalled mail server holds no page (SECURITY.md).

A password change, reset or operator change writes its notice in the same
transaction; it leaves after the answer, is retried while the mail server is
down or stalls, and is sent once even when several workers try.
"""

from __future__ import annotations

import threading
import time

import pytest

from idp.delivery import outbox
from idp.models import OutboxMessage, db
from tests.actions import LoginActions, csrf_of
from tests.factories import PASSWORD, make_client, make_user

NEW = "Another-Long-Pass-42"


@pytest.fixture
def browser(smtp, settings, app, client):
    with app.app_context():
        make_user("alice")
        make_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    login = LoginActions(client)
    url = client.get("/login").location
    assert login.submit_password(url, "alice").location.endswith("/account/")
    return login


def _change_password(client):
    page = client.get("/account/password")
    data = {
        "csrf_token": csrf_of(page.text),
        "current_password": PASSWORD,
        "new_password": NEW,
        "confirm_password": NEW,
    }
    return client.post("/account/password", data=data)


def _rows(app):
    with app.app_context():
        return db.session.scalars(db.select(OutboxMessage)).all()


def _deliver(app) -> int:
    with app.app_context():
        return outbox.deliver_pending()


def test_a_change_made_while_the_mail_server_refuses_keeps_its_notice(
    browser, app, smtp, frozen_clock
):
    smtp.refuse = True
    response = _change_password(browser.client)
    assert response.status_code == 302  # the change stands, and says so
    assert "Your password was changed." in browser.client.get("/account/").text
    [row] = _rows(app)
    assert row.sent_at is None and row.attempts == 1 and row.kind == "password_changed"
    smtp.refuse = False
    assert _deliver(app) == 0  # not before its retry time
    frozen_clock.advance(61)
    assert _deliver(app) == 1
    assert smtp.messages[-1]["To"] == "alice@exemple.fr"
    frozen_clock.advance(3600)
    assert _deliver(app) == 0  # sent once
    assert len(smtp.messages) == 1


def test_a_stalled_mail_server_holds_no_page(settings, browser, app, smtp, frozen_clock):
    app.config["IDP"]["mail"]["timeout_seconds"] = 1.0
    smtp.stall = 3.0
    started = time.monotonic()
    response = _change_password(browser.client)
    waited = time.monotonic() - started
    assert response.status_code == 302 and waited < 2.5, waited
    [row] = _rows(app)
    assert row.sent_at is None and row.last_error == "DeliverySlow"
    deadline = time.monotonic() + 10  # the stalled hand-over ends before the server stops
    while not smtp.messages and time.monotonic() < deadline:
        time.sleep(0.1)


def test_two_workers_never_send_one_notice_twice(browser, app, smtp, frozen_clock):
    smtp.refuse = True
    _change_password(browser.client)
    smtp.refuse = False
    frozen_clock.advance(61)
    barrier, sent = threading.Barrier(4), []

    def worker() -> None:
        barrier.wait()
        sent.append(_deliver(app))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent) == [0, 0, 0, 1]
    assert len(smtp.messages) == 1


def test_a_notice_is_retried_then_given_up_after_two_days(browser, app, smtp, frozen_clock):
    smtp.refuse = True
    _change_password(browser.client)
    for _ in range(outbox.MAX_ATTEMPTS):
        frozen_clock.advance(3601)
        _deliver(app)
    [row] = _rows(app)
    assert row.gave_up and row.attempts == outbox.MAX_ATTEMPTS and row.sent_at is None
    assert smtp.messages == []


@pytest.mark.parametrize(
    "subject",
    [
        "Votre compte Portail de santé a été rattaché à Pro Santé Connect",
        "Votre compte Portail de santé n’est plus rattaché à Pro Santé Connect",
        "Le mot de passe de votre compte Portail de santé a été modifié",
        "Code : été  à ê « » " + "é" * 80,
        "plain ASCII subject",
    ],
)
def test_a_subject_reaches_the_mailbox_with_every_space(smtp, app, subject):
    """Python's header folding may put the space between two encoded words at a fold,
    where decoders drop it ("rattachéà"): subjects are encoded whole."""
    from idp.delivery.mail import send_mail

    with app.app_context():
        send_mail("alice@exemple.fr", subject, "text")
    assert smtp.messages[-1]["Subject"] == subject
