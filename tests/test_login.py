"""The password step (L1–L4): generic failures, throttling, the guarded transaction."""

import pytest

from idp.models import AuditEvent, SsoSession, db
from tests.actions import LoginActions, csrf_of
from tests.factories import make_client, make_user

GENERIC = "Incorrect identifier or password."
EN = {"Accept-Language": "en"}


@pytest.fixture
def login(app, client):
    with app.app_context():
        make_user()
        make_client()
    return LoginActions(client)


def _start(client):
    return client.get("/login", headers=EN).location


def _post(client, url, username, password, token=None):
    page = client.get(url, headers=EN)
    data = {"csrf_token": token or csrf_of(page.text), "username": username, "password": password}
    return client.post(url, data=data, headers=EN)


def test_connexion_without_client_ends_in_the_account_page(login, client):
    url = _start(client)
    response = _post(client, url, "alice", "Correct-Horse-9-Battery")
    assert response.status_code == 302 and response.location.endswith("/account/")
    page = client.get("/account/", headers=EN)
    assert "alice@exemple.fr" in page.text


def test_email_is_accepted_case_insensitively(login, client):
    response = _post(client, _start(client), "ALICE@Exemple.FR", "Correct-Horse-9-Battery")
    assert response.location.endswith("/account/")


def test_unknown_user_and_wrong_password_get_the_same_answer(login, client):
    wrong = _post(client, _start(client), "alice", "nope-nope-nope")
    unknown = _post(client, _start(client), "nobody", "nope-nope-nope")
    assert wrong.status_code == unknown.status_code == 200
    assert GENERIC in wrong.text and GENERIC in unknown.text
    strip = lambda r: r.text.replace("alice", "").replace("nobody", "")  # noqa: E731
    import re

    token = re.compile(r'(value="|tx=)[^"]{20,}"')
    assert token.sub("", strip(wrong)) == token.sub("", strip(unknown))


def test_failures_are_audited_without_the_password(app, login, client):
    _post(client, _start(client), "alice", "SecretGuess-1")
    with app.app_context():
        events = db.session.scalars(db.select(AuditEvent)).all()
    assert [e.event for e in events] == ["login.failed"]
    assert "SecretGuess" not in repr([e.detail for e in events])
    assert events[0].ip_hash and "127.0.0.1" not in events[0].ip_hash


def test_identifier_is_throttled_after_repeated_failures(login, client):
    for _ in range(5):
        _post(client, _start(client), "alice", "wrong-password")
    blocked = _post(client, _start(client), "alice", "Correct-Horse-9-Battery")
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    unknown = [_post(client, _start(client), "ghost", "x").status_code for _ in range(6)]
    assert unknown[-1] == 429  # the same for identifiers no account has


def test_throttle_lifts_after_the_window(login, client, frozen_clock):
    for _ in range(5):
        _post(client, _start(client), "alice", "wrong-password")
    frozen_clock.advance(901)
    response = _post(client, _start(client), "alice", "Correct-Horse-9-Battery")
    assert response.status_code == 302


def test_disabled_account_cannot_sign_in(app, login, client):
    from idp.account.passwords import disable_account
    from idp.users import find_by_username

    with app.app_context():
        disable_account(find_by_username("alice"))
    response = _post(client, _start(client), "alice", "Correct-Horse-9-Battery")
    assert GENERIC in response.text


def test_missing_csrf_token_is_refused(login, client):
    url = _start(client)
    client.get(url)
    response = client.post(url, data={"username": "alice", "password": "Correct-Horse-9-Battery"})
    assert response.status_code == 400


def test_login_transaction_is_bound_to_its_browser(app, login, client):
    url = login.authorize().location
    stranger = app.test_client()
    assert stranger.get(url, headers=EN).status_code == 400
    assert "expired" in stranger.get(url, headers=EN).text


def test_login_transaction_expires(login, client, frozen_clock):
    url = login.authorize().location
    frozen_clock.advance(31 * 60)
    assert client.get(url).status_code == 400


def test_session_cookie_is_rotated_and_flagged(app, login, client):
    login.login_through()
    first = client.get_cookie("idp_sso")
    login.login_through(prompt="login")
    second = client.get_cookie("idp_sso")
    assert first.value != second.value
    assert second.http_only and second.same_site == "Lax"
    with app.app_context():
        assert db.session.scalars(db.select(SsoSession)).all().__len__() == 1


def test_account_page_requires_a_session(client):
    response = client.get("/account/")
    assert response.status_code == 302 and "/login" in response.location


def test_password_hash_is_argon2id_and_upgraded_on_login(app, settings, login, client):
    from idp.users import find_by_username

    with app.app_context():
        old = find_by_username("alice").password_hash
    assert old.startswith("$argon2id$")
    settings["password"]["argon2_time_cost"] = 2
    from idp import create_app

    stronger = create_app(settings)
    browser = stronger.test_client()
    _post(browser, _start(browser), "alice", "Correct-Horse-9-Battery")
    with stronger.app_context():
        new = find_by_username("alice").password_hash
        db.session.remove()
        db.engine.dispose()
    assert new != old and ",t=2," in new


def test_connexion_when_already_signed_in_opens_the_console(login, client):
    _post(client, _start(client), "alice", "Correct-Horse-9-Battery")
    response = client.get("/login")
    assert response.status_code == 302 and response.location.endswith("/account/")
