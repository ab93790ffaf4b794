"""Account console (A1–A3), password change (P1–P6), lost password (R1–R6)."""

import re

import pytest

from idp.crypto import sha256_hex
from idp.models import AuditEvent, SsoSession, User, db
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import PASSWORD, make_client, make_user, query_of

EN = {"Accept-Language": "en"}
NEW = "Another-Long-Pass-42"


@pytest.fixture
def secret(smtp, sms_gateway, app):
    with app.app_context():
        make_user("alice")
        make_user("bruno", roles=["patient_data"])
        return make_client()[1]


@pytest.fixture
def browser(secret, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _sign_in(browser, username="alice", password=PASSWORD):
    url = browser.client.get("/login").location
    return browser.submit_password(url, username, password)


def _post_form(client, url, data):
    page = client.get(url, follow_redirects=True)
    return client.post(url, data={"csrf_token": csrf_of(page.text), **data})


def _events(app):
    with app.app_context():
        return [e.event for e in db.session.scalars(db.select(AuditEvent))]


# -- console ---------------------------------------------------------------


def test_console_shows_the_professional_record(browser, app):
    with app.app_context():
        user = db.session.scalars(db.select(User).filter_by(username="alice")).one()
        user.profession, user.backup_phone = "Médecin", "+33612345678"
        db.session.commit()
    assert _sign_in(browser).location.endswith("/account/")
    page = browser.client.get("/account/").text
    for expected in (
        "Alice Martin",
        "alice@exemple.fr",
        "Médecin",
        "+33612345678",
        "/account/profile",
        "/account/password",
        "this browser",
    ):
        assert expected in page


def test_console_needs_a_signed_in_user(client):
    for path in ("/account/", "/account/profile", "/account/password"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.location


def test_console_of_a_role_user_needs_the_second_factor(browser, app, smtp):
    _sign_in(browser)
    with app.app_context():
        user = db.session.scalars(db.select(User).filter_by(username="alice")).one()
        user.roles = ["admin"]
        db.session.commit()
    response = browser.client.get("/account/")
    assert "/login/otp" in response.location
    done = browser.submit_code(response.location, code_in(smtp.last_text()))
    assert done.location.endswith("/account/")
    assert browser.client.get("/account/").status_code == 200


def _confirm_phone(browser, smtp, sms_gateway, to):
    """The code page after the form: in a password-only session the e-mailed code first,
    then the code sent by SMS to the new number (in E.164)."""
    confirm = "/account/profile/confirm"
    response = _post_form(browser.client, confirm, {"code": code_in(smtp.last_text())})
    assert response.status_code == 302 and response.location.endswith(confirm)
    sent = sms_gateway.received[-1]
    assert sent["to"] == to
    return _post_form(browser.client, confirm, {"code": code_in(sent["text"])})


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("+33 7 81 23 45 67", "+33781234567"),
        ("+44 7911 123456", "+447911123456"),
    ],
)
def test_backup_phone_is_validated_and_stored_e164(browser, app, smtp, sms_gateway, typed, stored):
    _sign_in(browser)
    response = _post_form(browser.client, "/account/profile", {"backup_phone": typed})
    assert response.status_code == 302 and response.location.endswith("/account/profile/confirm")
    response = _confirm_phone(browser, smtp, sms_gateway, stored)
    assert response.status_code == 302
    assert "Your record was updated." in browser.client.get("/account/").text
    with app.app_context():
        assert (
            db.session.scalars(db.select(User.backup_phone).filter_by(username="alice")).one()
            == stored
        )
    assert "phone.confirmed" in _events(app)


@pytest.mark.parametrize("typed", ["12345", "01 42 00 00 00", "not a number"])
def test_bad_or_landline_numbers_are_refused_clearly(browser, smtp, sms_gateway, typed):
    _sign_in(browser)
    response = _post_form(browser.client, "/account/profile", {"backup_phone": typed})
    assert response.status_code == 400 and "valid mobile phone number" in response.text
    assert smtp.messages == [] and sms_gateway.received == []  # no code for a bad number


def test_phone_can_be_removed_and_sms_is_offered_from_the_next_login(
    browser, app, smtp, sms_gateway
):
    _sign_in(browser)
    _post_form(browser.client, "/account/profile", {"backup_phone": "0612345678"})
    _confirm_phone(browser, smtp, sms_gateway, "+33612345678")
    response = browser.submit_password(
        browser.authorize(acr_values="urn:idp:acr:2fa", prompt="login").location, "alice"
    )
    assert "/login/channel" in response.location  # A3
    response = _post_form(browser.client, "/account/profile", {"backup_phone": ""})
    assert response.location.endswith("/account/profile/confirm")  # the e-mailed code first
    _post_form(browser.client, "/account/profile/confirm", {"code": code_in(smtp.last_text())})
    with app.app_context():
        assert (
            db.session.scalars(db.select(User.backup_phone).filter_by(username="alice")).one()
            is None
        )


def test_sessions_are_listed_and_one_can_be_ended(browser, app, secret):
    other = LoginActions(app.test_client())
    other.login_through()
    _sign_in(browser)
    page = browser.client.get("/account/").text
    ids = re.findall(r"/account/sessions/([^/\"]+)/end", page)
    assert len(ids) == 2
    cookie = other.client.get_cookie("idp_sso").value
    with app.app_context():  # the other browser's public sid, never a sequential id
        other_id = db.session.scalars(
            db.select(SsoSession.sid).filter_by(cookie_hash=sha256_hex(cookie))
        ).one()
    assert other_id in ids and not other_id.isdigit() and len(other_id) >= 20
    response = browser.client.post(
        f"/account/sessions/{other_id}/end", data={"csrf_token": csrf_of(page)}
    )
    assert response.status_code == 302
    assert query_of(other.authorize(prompt="none").location)["error"] == "login_required"
    assert browser.client.get("/account/").status_code == 200


# -- password change -------------------------------------------------------


def test_weak_password_lists_every_unmet_rule(browser):
    _sign_in(browser)
    response = _post_form(
        browser.client,
        "/account/password",
        {"current_password": PASSWORD, "new_password": "abc", "confirm_password": "abd"},
    )
    assert response.status_code == 400
    for rule in ("12 characters", "digit", "upper-case", "special", "different"):
        assert rule in response.text
    assert (
        'autocomplete="new-password"' in response.text and 'name="logout_others"' in response.text
    )


def test_wrong_current_password_is_refused(browser):
    _sign_in(browser)
    response = _post_form(
        browser.client,
        "/account/password",
        {"current_password": "wrong", "new_password": NEW, "confirm_password": NEW},
    )
    assert response.status_code == 400 and "current password is incorrect" in response.text


def test_reusing_the_current_password_is_refused(browser):
    _sign_in(browser)
    response = _post_form(
        browser.client,
        "/account/password",
        {"current_password": PASSWORD, "new_password": PASSWORD, "confirm_password": PASSWORD},
    )
    assert "differ from your current password" in response.text


def test_password_change_confirms_and_notifies(browser, app, smtp):
    _sign_in(browser)
    response = _post_form(
        browser.client,
        "/account/password",
        {"current_password": PASSWORD, "new_password": NEW, "confirm_password": NEW},
    )
    assert response.status_code == 302
    assert "Your password was changed." in browser.client.get("/account/").text
    assert smtp.messages[-1]["To"] == "alice@exemple.fr"
    assert "vient d’être modifié" in smtp.last_text()  # users get mail in their locale (fr)
    assert "password.changed" in _events(app)
    stranger = app.test_client()
    assert "/account/" not in (_sign_in(LoginActions(stranger), "alice", PASSWORD).location or "")
    assert _sign_in(LoginActions(stranger), "alice", NEW).location.endswith("/account/")


def test_logout_others_ends_other_devices_but_not_this_one(browser, app, secret):
    other = LoginActions(app.test_client())
    tokens = other.exchange(other.login_through()["code"], secret=secret).json
    _sign_in(browser)
    _post_form(
        browser.client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW,
            "confirm_password": NEW,
            "logout_others": "y",
        },
    )
    assert query_of(other.authorize(prompt="none").location)["error"] == "login_required"
    refresh = other.client.post(
        "/token",
        auth=("rp", secret),
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert refresh.json["error"] == "invalid_grant"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert other.client.get("/userinfo", headers=auth).status_code == 401
    assert browser.client.get("/account/").status_code == 200
    assert "sessions.revoked" in _events(app)


def test_expired_password_must_be_renewed_before_going_back(smtp, settings):
    from idp import clock, create_app

    settings["password"]["max_age_days"] = 90
    app = create_app(settings)
    with app.app_context():
        make_user("alice")
        _, secret = make_client()
    browser = LoginActions(app.test_client())
    clock.set_source(lambda: __import__("time").time() + 91 * 86400)
    try:
        response = browser.submit_password(browser.authorize().location, "alice")
        assert "/account/password?tx=" in response.location
        weak = _post_form(
            browser.client, response.location, {"new_password": "x", "confirm_password": "x"}
        )
        assert weak.status_code == 400
        done = _post_form(
            browser.client, response.location, {"new_password": NEW, "confirm_password": NEW}
        )
        assert "code" in query_of(done.location)
    finally:
        clock.set_source(None)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


# -- lost password ---------------------------------------------------------


def _reset_link(smtp) -> str:
    match = re.search(r"http://idp\.test(/password/reset/\S+)", smtp.last_text())
    assert match, smtp.last_text()
    return match.group(1)


def _forgot(client, identifier):
    return _post_form(client, "/password/forgot", {"identifier": identifier})


def test_login_page_links_to_the_lost_password_page(client):
    page = client.get("/login", follow_redirects=True)
    assert "/password/forgot" in page.text


def test_forgot_answers_the_same_whether_or_not_the_account_exists(browser, smtp):
    known = _forgot(browser.client, "ALICE@exemple.fr")
    unknown = _forgot(browser.client, "nobody@exemple.fr")
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    assert len(smtp.messages) == 1 and smtp.messages[0]["To"] == "alice@exemple.fr"
    assert "alice" in smtp.last_text()  # R3: the identifier


def test_reset_link_sets_a_new_password_once_and_ends_sessions(browser, app, smtp, secret):
    other = LoginActions(app.test_client())
    tokens = other.exchange(other.login_through()["code"], secret=secret).json
    _forgot(browser.client, "alice")
    link = _reset_link(smtp)
    opened = browser.client.get(link)  # the token leaves the URL at once (access logs)
    assert opened.status_code == 303 and opened.location == "/password/reset"
    form = browser.client.get("/password/reset")
    assert form.status_code == 200 and "alice" in form.text
    assert link.rsplit("/", 1)[1] not in form.text
    weak = _post_form(browser.client, link, {"new_password": "weak", "confirm_password": "weak"})
    assert weak.status_code == 400 and "digit" in weak.text
    done = _post_form(browser.client, link, {"new_password": NEW, "confirm_password": NEW})
    assert done.status_code == 200 and "signed out everywhere" in done.text
    assert browser.client.get(link).status_code == 410
    assert "Ask for a new link" in browser.client.get(link).text
    assert query_of(other.authorize(prompt="none").location)["error"] == "login_required"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert other.client.get("/userinfo", headers=auth).status_code == 401
    assert _sign_in(LoginActions(app.test_client()), "alice", NEW).location.endswith("/account/")
    assert {"password.reset_requested", "password.reset"} <= set(_events(app))
    assert "vient d’être modifié" in smtp.last_text()  # users get mail in their locale (fr)


def test_reset_link_expires_after_24_hours(browser, smtp, frozen_clock):
    _forgot(browser.client, "alice")
    link = _reset_link(smtp)
    frozen_clock.advance(24 * 3600 + 1)
    assert browser.client.get(link).status_code == 410


def test_a_newer_link_or_a_password_change_voids_the_old_link(browser, smtp, frozen_clock):
    _forgot(browser.client, "alice")
    first = _reset_link(smtp)
    _forgot(browser.client, "alice")
    second = _reset_link(smtp)
    assert browser.client.get(first).status_code == 410
    _sign_in(browser)
    _post_form(
        browser.client,
        "/account/password",
        {"current_password": PASSWORD, "new_password": NEW, "confirm_password": NEW},
    )
    assert browser.client.get(second).status_code == 410


def test_reset_requests_are_throttled_per_account(browser, smtp):
    for _ in range(5):
        response = _forgot(browser.client, "alice")
        assert response.status_code == 200
    assert len(smtp.messages) == 3


def test_unknown_reset_token_gets_the_clear_page(client):
    response = client.get("/password/reset/not-a-token", headers=EN)
    assert response.status_code == 410 and "/password/forgot" in response.text
