"""RP-initiated logout ends the session its ``id_token_hint`` names, and only that one.

Security finding: ``/logout`` compared the hint's user with the browser's user,
so an ID token from the same professional's *other* session (another
workstation, or one an RP leaked) signed this browser out without asking, and
any valid hint cancelled a login in progress. Now the hint's ``sid`` must be
this browser's session; otherwise the confirmation page is shown
(SECURITY.md, "Logout").
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.actions import LoginActions
from tests.factories import make_client, make_user, query_of


@pytest.fixture
def secret(app):
    with app.app_context():
        make_user("alice")
        make_user("bob")
        _, secret = make_client(post_logout_redirect_uris=["https://rp.example/bye"])
    return secret


def _browser(app, username="alice", secret=None, **params):
    """A fresh browser signed in through the RP; returns (login actions, ID token)."""
    login = LoginActions(app.test_client())
    code = login.login_through(username=username, **params)["code"]
    return login, login.exchange(code, secret=secret).json["id_token"]


def _signed_in(login: LoginActions) -> bool:
    return "code" in query_of(login.authorize(prompt="none").location)


def _unverified_claims(id_token: str) -> dict:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_a_hint_from_the_same_users_other_session_asks_first(app, secret):
    here, _ = _browser(app, secret=secret)
    _, elsewhere = _browser(app, secret=secret)  # alice on another workstation
    response = here.client.get("/logout", query_string={"id_token_hint": elsewhere})
    assert response.status_code == 200 and 'name="confirm"' in response.text
    assert _signed_in(here)  # fails on main: alice's other hint signed this browser out


def test_the_hint_of_this_session_ends_it_without_asking_and_only_it(app, secret):
    here, hint = _browser(app, secret=secret)
    other, _ = _browser(app, secret=secret)
    response = here.client.get(
        "/logout",
        query_string={"id_token_hint": hint, "post_logout_redirect_uri": "https://rp.example/bye"},
    )
    assert response.status_code == 302 and response.location == "https://rp.example/bye"
    assert not _signed_in(here)
    assert _signed_in(other)


def test_another_users_hint_asks_first(app, secret):
    here, _ = _browser(app, secret=secret)
    _, bobs = _browser(app, "bob", secret=secret)
    response = here.client.get("/logout", query_string={"id_token_hint": bobs})
    assert response.status_code == 200 and 'name="confirm"' in response.text
    assert _signed_in(here)


def test_a_hint_does_not_cancel_a_login_in_progress(app, secret):
    _, bobs = _browser(app, "bob", secret=secret)
    login = LoginActions(app.test_client())
    login_url = login.authorize().location
    assert "/login" in login_url
    response = login.client.get("/logout", query_string={"id_token_hint": bobs})
    assert response.status_code == 200
    # The login goes on: on main, the hint cleared this browser's login state.
    finished = login.submit_password(login_url, "alice")
    assert finished.status_code == 302 and "code=" in finished.location, finished.text[:300]


def test_the_sid_stays_when_the_same_user_signs_in_again(app, secret):
    """The cookie is replaced at every sign-in, the ``sid`` an RP holds is not: its
    hint still names this session, and its Logout Token will name the same sid."""
    login, first = _browser(app, secret=secret)
    cookie = login.client.get_cookie("idp_sso").value
    code = login.login_through(prompt="login")["code"]
    again = login.exchange(code, secret=secret).json["id_token"]
    assert login.client.get_cookie("idp_sso").value != cookie  # rotated
    assert _unverified_claims(again)["sid"] == _unverified_claims(first)["sid"]
    response = login.client.get("/logout", query_string={"id_token_hint": first})
    assert response.status_code == 200 and 'name="confirm"' not in response.text
    assert not _signed_in(login)


def test_another_user_signing_in_on_the_browser_gets_a_new_sid(app, secret):
    login, alices = _browser(app, secret=secret)
    code = login.login_through(username="bob", prompt="login")["code"]
    bobs = login.exchange(code, secret=secret).json["id_token"]
    assert _unverified_claims(bobs)["sid"] != _unverified_claims(alices)["sid"]
