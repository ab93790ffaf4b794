"""Renewing an expired password inside a login (P6): the other devices, and two tabs.

A password past ``[password] max_age_days`` is replaced at sign-in. Like the
console's change, the renewal page offers "Sign out of other devices", ticked
by default: every other session, token and remembered browser of the user ends
with the old password. Two tabs submitting it give one outcome.
"""

from __future__ import annotations

import re

import pytest

from idp import clock
from idp.models import User, db
from idp.passwords import verify_password
from tests.actions import LoginActions, csrf_of
from tests.factories import make_client, make_user, query_of

NEW, OTHER = "Renewed-Password-42", "Other-Tab-Password-43"


@pytest.fixture
def settings(settings):
    settings["password"]["max_age_days"] = 90
    return settings


@pytest.fixture
def secret(smtp, app):
    with app.app_context():
        make_user("alice")
        return make_client()[1]


def _expire_password(app) -> None:
    """alice's password was set 91 days ago (sessions opened meanwhile stay live)."""
    with app.app_context():
        alice = db.session.scalars(db.select(User).where(User.username == "alice")).one()
        alice.password_changed_at = clock.now() - 91 * 86400
        db.session.commit()


@pytest.fixture
def later(app, secret):
    _expire_password(app)


def _browser(app) -> LoginActions:
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _signed_in_elsewhere(app, secret) -> tuple[LoginActions, dict]:
    """alice on another device, before her password expired: a session and tokens."""
    other = _browser(app)
    tokens = other.exchange(other.login_through()["code"], secret=secret).json
    return other, tokens


def _renewal_page(browser: LoginActions) -> str:
    url = browser.submit_password(browser.authorize().location, "alice").location
    assert "/account/password?tx=" in url
    return url


def _renew(browser, url, password, **extra):
    page = browser.client.get(url)
    data = {"csrf_token": csrf_of(page.text), "new_password": password}
    return browser.client.post(url, data={**data, "confirm_password": password, **extra})


def test_the_renewal_offers_to_sign_out_other_devices_ticked(app, secret, later):
    page = _browser(app)
    page_html = page.client.get(_renewal_page(page)).text
    assert 'name="logout_others"' in page_html
    box = page_html[page_html.index('name="logout_others"') - 120 :]
    assert "checked" in box[: box.index(">", 120) + 1]


def test_renewal_with_the_box_ticked_ends_other_sessions_and_tokens(app, secret):
    other, tokens = _signed_in_elsewhere(app, secret)
    _expire_password(app)
    browser = _browser(app)
    done = _renew(browser, _renewal_page(browser), NEW, logout_others="y")
    assert "code" in query_of(done.location)  # this browser goes on to the RP
    assert query_of(other.authorize(prompt="none").location)["error"] == "login_required"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert other.client.get("/userinfo", headers=auth).status_code == 401
    assert browser.client.get("/account/").status_code == 200


def test_renewal_with_the_box_unticked_keeps_other_sessions(app, secret):
    other, _ = _signed_in_elsewhere(app, secret)
    _expire_password(app)
    browser = _browser(app)
    done = _renew(browser, _renewal_page(browser), NEW)  # an unticked box is not sent
    assert "code" in query_of(done.location)
    assert "code" in query_of(other.authorize(prompt="none").location)


def test_two_tabs_renewing_at_once_give_one_outcome(app, secret, later):
    browser = _browser(app)
    url = _renewal_page(browser)
    first_form = browser.client.get(url).text
    second_form = browser.client.get(url).text  # the second tab, same login
    post = browser.client.post
    first = post(url, data={"csrf_token": csrf_of(first_form), "new_password": NEW,
                            "confirm_password": NEW, "logout_others": "y"})  # fmt: skip
    second = post(url, data={"csrf_token": csrf_of(second_form), "new_password": OTHER,
                             "confirm_password": OTHER, "logout_others": "y"})  # fmt: skip
    assert "code" in query_of(first.location)
    assert second.status_code in (303, 400) and "code=" not in (second.location or "")
    with app.app_context():
        alice = db.session.scalars(db.select(User).where(User.username == "alice")).one()
        assert verify_password(alice.password_hash, NEW)
        assert not verify_password(alice.password_hash, OTHER)


def test_renewal_form_has_an_error_summary_tied_to_its_fields(app, secret, later):
    browser = _browser(app)
    url = _renewal_page(browser)
    response = _renew(browser, url, "short")
    assert response.status_code == 400
    summary = re.search(
        r'<div class="error-summary" role="alert"[^>]*>(.*?)</div>', response.text, re.S
    )
    assert summary and 'href="#new_password"' in summary.group(1)
    field = re.search(r'<input[^>]*name="new_password"[^>]*>', response.text).group(0)
    assert 'aria-invalid="true"' in field and "autofocus" in field
    assert 'aria-describedby="new_password-hint new_password-errors"' in field
