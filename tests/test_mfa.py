"""Second factor (M1–M8): when it runs, codes by e-mail and SMS, remembered browsers."""

import json
import threading

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.models import AuditEvent, OtpChallenge, RememberedBrowser, db
from tests.actions import LoginActions, code_in
from tests.factories import make_client, make_user, query_of

PWD, MFA = "urn:idp:acr:pwd", "urn:idp:acr:2fa"
EN = {"Accept-Language": "en"}


@pytest.fixture
def rp(smtp, sms_gateway, app):
    with app.app_context():
        make_user("alice")
        make_user("bruno", roles=["patient_data"])
        make_user("chloe", roles=["patient_data"], backup_phone="+33612345678")
        return make_client()[1]


@pytest.fixture
def login(rp, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _claims(login, query, secret):
    body = login.exchange(query["code"], secret=secret).json
    keys = KeySet.import_key_set(login.client.get("/jwks.json").json)
    return jwt.decode(body["id_token"], keys).claims, body


def _to_otp(login, username="bruno", **params):
    response = login.authorize(**params)
    response = login.submit_password(response.location, username)
    assert response.status_code == 302 and "/login/otp" in response.location, response.location
    return response.location


def test_patient_data_user_gets_an_emailed_code_and_2fa_acr(login, smtp, rp):
    otp_url = _to_otp(login)
    page = login.client.get(otp_url)
    assert "b***@exemple.fr" in page.text
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    assert 'name="remember"' in page.text
    message = smtp.messages[-1]
    assert message["To"] == "bruno@exemple.fr"
    assert message.get_body(preferencelist=("html",)) is not None
    response = login.submit_code(otp_url, code_in(smtp.last_text()))
    claims, body = _claims(login, query_of(response.location), rp)
    assert claims["acr"] == MFA and claims["amr"] == ["pwd", "otp", "mfa"]
    intro = login.client.post(
        "/introspect", data={"token": body["access_token"]}, auth=("rp", rp)
    ).json
    assert intro["acr"] == MFA and intro["amr"] == ["pwd", "otp", "mfa"]


def test_plain_user_gets_the_password_level(login, smtp, rp):
    claims, _ = _claims(login, login.login_through(), rp)
    assert claims["acr"] == PWD and claims["amr"] == ["pwd"]
    assert smtp.messages == []


def test_acr_values_steps_up_a_password_session_with_the_code_only(login, smtp, rp):
    first, _ = _claims(login, login.login_through(), rp)
    response = login.authorize(acr_values=MFA)
    assert "/login/otp" in response.location  # no password page
    response = login.submit_code(response.location, code_in(smtp.last_text()))
    claims, _ = _claims(login, query_of(response.location), rp)
    assert claims["acr"] == MFA and claims["auth_time"] == first["auth_time"]


def test_prompt_none_needing_step_up_is_interaction_required(login, rp):
    login.login_through()
    query = query_of(login.authorize(acr_values=MFA, prompt="none").location)
    assert query["error"] == "interaction_required"


def test_essential_unknown_acr_is_an_error_not_a_lower_level(login):
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": ["urn:gold"]}}})
    query = query_of(login.authorize(claims=claims).location)
    assert query["error"] == "unmet_authentication_requirements"


def test_essential_2fa_acr_claim_runs_the_code_step(login):
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": [MFA]}}})
    _to_otp(login, "alice", claims=claims)


def test_client_default_acr_runs_the_code_step(smtp, app, client):
    with app.app_context():
        make_user("alice")
        make_client("strict", acr=MFA)
    login = LoginActions(client)
    response = login.submit_password(login.authorize("strict").location, "alice")
    assert "/login/otp" in response.location


def test_backup_phone_user_chooses_sms(login, sms_gateway, rp):
    response = login.submit_password(login.authorize().location, "chloe")
    assert "/login/channel" in response.location
    page = login.client.get(response.location)
    assert 'name="channel"' in page.text and 'value="sms"' in page.text
    assert "+33 6 ** ** ** 78" in page.text and "c***@exemple.fr" in page.text
    otp_url = login.choose_channel(response.location, "sms").location
    assert "+33 6 ** ** ** 78" in login.client.get(otp_url).text
    sent = sms_gateway.received[-1]
    assert sent["to"] == "+33612345678"
    assert sms_gateway.headers[-1]["Authorization"] == "Bearer gw-token"
    response = login.submit_code(otp_url, code_in(sent["text"]))
    claims, _ = _claims(login, query_of(response.location), rp)
    assert claims["amr"] == ["pwd", "sms", "otp", "mfa"]


def test_sms_gateway_failure_is_explained_and_email_still_works(login, sms_gateway, smtp):
    sms_gateway.status = 500
    channel_url = login.submit_password(login.authorize().location, "chloe").location
    otp_url = login.choose_channel(channel_url, "sms").location
    page = login.client.get(otp_url)
    assert "could not be sent" in page.text
    with login.client.application.app_context():
        rows = db.session.scalars(db.select(OtpChallenge)).all()
        events = [e.event for e in db.session.scalars(db.select(AuditEvent))]
    assert [(row.code_hash, row.sends) for row in rows] == [("", 1)]  # counted, holds no code
    assert "otp.delivery_failed" in events
    otp_url = login.choose_channel(channel_url, "email").location  # no wait after a failure
    response = login.submit_code(otp_url, code_in(smtp.last_text()))
    assert "code=" in response.location


def test_a_slow_sms_gateway_keeps_the_code_valid_and_says_so(login, sms_gateway, smtp):
    """The gateway answered after the time-out but delivered: that code must work."""
    sms_gateway.delay = 1.5  # the provider waits 1 s
    channel_url = login.submit_password(login.authorize().location, "chloe").location
    otp_url = login.choose_channel(channel_url, "sms").location
    page = login.client.get(otp_url)
    assert "taking longer than expected" in page.text and "could not be sent" not in page.text
    import time

    deadline = time.monotonic() + 5
    while not sms_gateway.received and time.monotonic() < deadline:
        time.sleep(0.05)
    response = login.submit_code(otp_url, code_in(sms_gateway.received[-1]["text"]))
    assert "code=" in response.location


def test_smtp_refusal_is_explained(login, smtp):
    smtp.refuse = True
    otp_url = _to_otp(login)
    assert "could not be sent" in login.client.get(otp_url).text
    smtp.refuse = False


def test_remembered_browser_skips_the_code_for_24_hours(login, smtp, rp, frozen_clock):
    otp_url = _to_otp(login)
    login.submit_code(otp_url, code_in(smtp.last_text()), remember=True)
    count = len(smtp.messages)
    response = login.submit_password(login.authorize(prompt="login").location, "bruno")
    claims, _ = _claims(login, query_of(response.location), rp)
    assert claims["acr"] == MFA and claims["amr"] == ["pwd", "mfa"]
    assert len(smtp.messages) == count
    frozen_clock.advance(24 * 3600 + 1)
    _to_otp(login, prompt="login")


def test_without_the_checkbox_the_code_is_asked_every_time(login, smtp):
    login.submit_code(_to_otp(login), code_in(smtp.last_text()))
    _to_otp(login, prompt="login")


def test_another_user_on_the_browser_cancels_the_remembered_factor(login, smtp, app):
    login.submit_code(_to_otp(login), code_in(smtp.last_text()), remember=True)
    login.login_through(username="alice", prompt="login")
    with app.app_context():
        assert db.session.scalars(db.select(RememberedBrowser)).all() == []
    _to_otp(login, prompt="login")


def test_code_expires_after_five_minutes(login, smtp, frozen_clock):
    otp_url = _to_otp(login)
    frozen_clock.advance(301)
    response = login.submit_code(otp_url, code_in(smtp.last_text()))
    assert response.status_code == 303
    assert "expired" in login.client.get(otp_url).text


def test_attempts_are_capped_then_a_new_code_works(login, smtp, frozen_clock):
    otp_url = _to_otp(login)
    good = code_in(smtp.last_text())
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(5):
        login.submit_code(otp_url, wrong)
    login.submit_code(otp_url, good)
    assert "Too many incorrect codes" in login.client.get(otp_url).text
    frozen_clock.advance(31)
    login.resend(otp_url)
    fresh = code_in(smtp.last_text())
    response = login.submit_code(otp_url, fresh)
    assert "code=" in response.location


def test_resend_has_a_cooldown_and_voids_the_old_code(login, smtp, frozen_clock):
    otp_url = _to_otp(login)
    old = code_in(smtp.last_text())
    login.resend(otp_url)
    assert len(smtp.messages) == 1  # nothing left within the cooldown, and the page says so
    assert "You can ask for a new code in 30 seconds." in login.client.get(otp_url).text
    frozen_clock.advance(31)
    login.resend(otp_url)
    new = code_in(smtp.last_text())
    if old != new:
        login.submit_code(otp_url, old)
        assert "replaced by a newer one" in login.client.get(otp_url).text
    assert "code=" in login.submit_code(otp_url, new).location


def test_wrong_code_says_how_many_attempts_remain(login, smtp):
    otp_url = _to_otp(login)
    good = code_in(smtp.last_text())
    login.submit_code(otp_url, "999999" if good != "999999" else "888888")
    assert "4 attempt(s) left" in login.client.get(otp_url).text


def test_codes_are_stored_hashed_and_never_logged(login, smtp, app, caplog):
    otp_url = _to_otp(login)
    code = code_in(smtp.last_text())
    with app.app_context():
        row = db.session.scalars(db.select(OtpChallenge)).one()
        assert code not in row.code_hash
        details = repr([(e.event, e.detail) for e in db.session.scalars(db.select(AuditEvent))])
    assert code not in details and "otp.sent" in details
    login.submit_code(otp_url, code)
    assert code not in caplog.text


def test_steps_cannot_be_skipped(login):
    login_url = login.authorize().location
    otp_url = login_url.replace("/login?", "/login/otp?")
    response = login.client.get(otp_url)
    assert response.status_code == 302 and "/login?tx=" in response.location


def test_a_code_is_redeemed_once_under_a_race(login, smtp, app):
    otp_url = _to_otp(login)
    code = code_in(smtp.last_text())
    page = login.client.get(otp_url)
    from tests.actions import csrf_of

    token = csrf_of(page.text)
    cookies = {c.key: c.value for c in login.client._cookies.values()}
    results, barrier = [], threading.Barrier(3)

    def attempt():
        browser = app.test_client()
        for key, value in cookies.items():
            browser.set_cookie(key, value)
        barrier.wait()
        response = browser.post(otp_url, data={"csrf_token": token, "code": code})
        results.append(response.status_code == 302 and "code=" in (response.location or ""))

    threads = [threading.Thread(target=attempt) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1


def test_any_password_change_voids_the_remembered_browser(login, smtp, app):
    from idp.models import db
    from idp.users import find_by_username, set_password

    login.submit_code(_to_otp(login), code_in(smtp.last_text()), remember=True)
    with app.app_context():
        set_password(find_by_username("bruno"), "Operator-Set-Pass-77")
        db.session.commit()  # the caller's step commits (set_password is a building block)
    url = login.authorize(prompt="login").location
    response = login.submit_password(url, "bruno", "Operator-Set-Pass-77")
    assert "/login/otp" in response.location


def test_id_token_carries_only_the_requested_user_claims(login, smtp, rp):
    claims = json.dumps({"id_token": {"email": None, "acr": None}})
    query = login.login_through(username="alice", claims=claims)
    id_claims, _ = _claims(login, query, rp)
    assert id_claims["email"] == "alice@exemple.fr" and "name" not in id_claims
