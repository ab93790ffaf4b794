"""Backup phone change (A2–A3): a recent second factor, then a code to the new number.

A password alone must never enrol the second factor: from a password-only
console session the change needs a code sent to the account's e-mail first,
and only then a code sent by SMS to the new number; until that one is typed
the number is no channel. A 2FA session whose code was typed less than
``phone.FRESH_FACTOR_SECONDS`` ago skips the e-mail code. Removal needs the
recent factor only. Every change is announced by e-mail to the account.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, update

from idp.models import AuditEvent, User, db
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import make_client, make_user

PROFILE, CONFIRM, HOME = "/account/profile", "/account/profile/confirm", "/account/"
NEW, NEW_MASKED = "+33612345679", "+33 6 ** ** ** 79"
OLD = "+33611111111"
MFA = "urn:idp:acr:2fa"


def _english(user):
    """Messages go out in the user's language: English here, so the wording is checked
    whatever the state of the French catalogue (the e2e suite reads the French pages)."""
    user.locale = "en"
    db.session.commit()
    return user


@pytest.fixture
def secret(smtp, sms_gateway, app):
    with app.app_context():
        _english(make_user("alice"))  # password only
        _english(make_user("bruno", roles=["patient_data"]))  # every session has the code
        _english(make_user("chloe", roles=["patient_data"], backup_phone=OLD))  # by the operator
        _english(make_user("denis", backup_phone=OLD))  # password only, phone by the operator
        return make_client()[1]


@pytest.fixture
def browser(secret, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _post_form(client, url, data):
    page = client.get(url)
    assert page.status_code == 200, (url, page.status_code, page.location)
    return client.post(url, data={"csrf_token": csrf_of(page.text), **data})


def _sign_in(browser, username="alice", smtp=None, channel="email", remember=False):
    """Console sign-in ("Connexion"); with ``smtp``, types the e-mailed code if one is asked."""
    response = browser.submit_password(browser.client.get("/login").location, username)
    if "/login/channel" in (response.location or ""):
        response = browser.choose_channel(response.location, channel)
    if "/login/otp" in (response.location or ""):
        response = browser.submit_code(response.location, code_in(smtp.last_text()), remember)
    assert response.location.endswith(HOME), response.location
    return response


def _start(browser, number):
    return _post_form(browser.client, PROFILE, {"backup_phone": number})


def _enter(browser, code):
    return _post_form(browser.client, CONFIRM, {"code": code})


def _action(browser, action):
    return _post_form(browser.client, CONFIRM, {"action": action})


def _phone_of(app, username="alice"):
    with app.app_context():
        return db.session.scalars(select(User.backup_phone).filter_by(username=username)).one()


def _events(app):
    with app.app_context():
        return [(e.event, e.detail) for e in db.session.scalars(select(AuditEvent))]


def _names(app):
    return [name for name, _ in _events(app)]


def _wrong(code):
    return "000000" if code != "000000" else "111111"


def _sms_code(gateway, to=NEW):
    sent = [m for m in gateway.received if m["to"] == to]
    assert sent, gateway.received
    return code_in(sent[-1]["text"])


def _mails_to(smtp, address):
    return [m for m in smtp.messages if m["To"] == address]


def _text(message):
    return message.get_body(preferencelist=("plain",)).get_content()


def _offered_channel(app, username):
    """Where a fresh 2FA login of ``username`` goes after the password: channel or code."""
    other = LoginActions(app.test_client())
    other.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    response = other.submit_password(other.authorize(acr_values=MFA).location, username)
    return response.location


# -- a password-only session -------------------------------------------------------


def test_password_only_session_needs_the_email_code_then_the_sms_code(
    browser, app, smtp, sms_gateway
):
    _sign_in(browser)
    response = _start(browser, "06 12 34 56 79")
    assert response.status_code == 302 and response.location.endswith(CONFIRM)
    assert sms_gateway.received == []  # nobody is texted before the account is proved
    (mail,) = _mails_to(smtp, "alice@exemple.fr")
    email_code = code_in(_text(mail))
    assert _phone_of(app) is None

    page = browser.client.get(CONFIRM)
    assert page.status_code == 200
    for contract in ('name="code"', 'autocomplete="one-time-code"', 'inputmode="numeric"'):
        assert contract in page.text
    assert "a***@exemple.fr" in page.text and "by e-mail" in page.text
    assert NEW not in page.text  # where codes go is shown masked
    assert "Resend the code" in page.text and "Cancel" in page.text

    response = _enter(browser, _wrong(email_code))
    assert response.status_code == 303 and response.location.endswith(CONFIRM)
    page = browser.client.get(CONFIRM).text
    assert "4 attempt(s) left" in page and 'role="alert"' in page
    assert "phone.code_failed" in _names(app)
    assert sms_gateway.received == [] and _phone_of(app) is None

    response = _enter(browser, email_code)
    assert response.status_code == 302 and response.location.endswith(CONFIRM)
    assert [m["to"] for m in sms_gateway.received] == [NEW]
    assert _phone_of(app) is None  # not yet: the new number is not proved
    page = browser.client.get(CONFIRM).text
    assert NEW_MASKED in page and "by SMS" in page
    sms_code = _sms_code(sms_gateway)
    if sms_code != email_code:  # the e-mail code does not work twice
        assert _enter(browser, email_code).status_code == 303
        assert _phone_of(app) is None

    response = _enter(browser, sms_code)
    assert response.status_code == 302 and response.location.endswith(HOME)
    assert "Your record was updated." in browser.client.get(HOME).text
    assert _phone_of(app) == NEW
    assert {"phone.change_started", "phone.confirmed"} <= set(_names(app))
    assert "/login/channel" in _offered_channel(app, "alice")  # A3: now a channel


def test_until_confirmed_the_number_is_no_channel(browser, app, smtp, sms_gateway):
    _sign_in(browser)
    _start(browser, NEW)
    _enter(browser, code_in(smtp.last_text()))
    assert [m["to"] for m in sms_gateway.received] == [NEW]
    assert "/login/otp" in _offered_channel(app, "alice")  # no channel choice: e-mail only
    with app.app_context():
        from idp.oidc.claims import all_claims

        claims = all_claims(db.session.scalars(select(User).filter_by(username="alice")).one())
        assert "phone_number" not in claims


def test_a_code_page_without_a_pending_change_goes_back_to_the_form(browser):
    _sign_in(browser)
    response = browser.client.get(CONFIRM)
    assert response.status_code == 302 and response.location.endswith(PROFILE)


def test_the_console_shows_a_pending_change(browser, smtp):
    _sign_in(browser)
    _start(browser, NEW)
    for url in (HOME, PROFILE):
        page = browser.client.get(url).text
        assert "pending confirmation" in page and NEW_MASKED in page, url
        assert CONFIRM in page, url
    _enter(browser, code_in(smtp.last_text()))
    assert "pending confirmation" in browser.client.get(HOME).text


# -- the recent second factor -----------------------------------------------------------


def test_a_2fa_session_with_a_fresh_code_is_asked_only_the_sms_code(
    browser, app, smtp, sms_gateway
):
    _sign_in(browser, "bruno", smtp)
    mails = len(smtp.messages)
    response = _start(browser, NEW)
    assert response.location.endswith(CONFIRM)
    assert len(smtp.messages) == mails  # no e-mail code
    assert [m["to"] for m in sms_gateway.received] == [NEW]
    assert "by SMS" in browser.client.get(CONFIRM).text
    assert _enter(browser, _sms_code(sms_gateway)).location.endswith(HOME)
    assert _phone_of(app, "bruno") == NEW


def test_a_remembered_browser_is_not_a_fresh_code(browser, app, smtp, sms_gateway):
    _sign_in(browser, "bruno", smtp, remember=True)
    response = browser.submit_password(browser.authorize(prompt="login").location, "bruno")
    assert "code=" in response.location  # signed in by the remembered browser: amr pwd, mfa
    mails = len(smtp.messages)
    _start(browser, NEW)
    assert len(smtp.messages) == mails + 1 and sms_gateway.received == []
    assert "by e-mail" in browser.client.get(CONFIRM).text


def test_an_older_2fa_session_is_asked_the_email_code(
    browser, app, smtp, sms_gateway, frozen_clock
):
    from idp.account.phone import FRESH_FACTOR_SECONDS

    _sign_in(browser, "bruno", smtp)
    frozen_clock.advance(FRESH_FACTOR_SECONDS + 1)
    mails = len(smtp.messages)
    _start(browser, NEW)
    assert len(smtp.messages) == mails + 1 and sms_gateway.received == []
    assert "by e-mail" in browser.client.get(CONFIRM).text


def test_a_step_up_with_a_code_counts_as_fresh(browser, app, smtp, sms_gateway):
    _sign_in(browser)  # password only, then the RP asks for the second factor
    response = browser.authorize(acr_values=MFA)
    assert "/login/otp" in response.location
    browser.submit_code(response.location, code_in(smtp.last_text()))
    mails = len(smtp.messages)
    _start(browser, NEW)
    assert len(smtp.messages) == mails and [m["to"] for m in sms_gateway.received] == [NEW]


# -- removal ------------------------------------------------------------------------------


def test_removal_in_a_password_session_needs_the_email_code(browser, app, smtp, sms_gateway):
    _sign_in(browser, "denis")
    response = _start(browser, "")
    assert response.location.endswith(CONFIRM)
    assert _phone_of(app, "denis") == OLD
    page = browser.client.get(CONFIRM).text
    assert "d***@exemple.fr" in page and "remove" in page
    _enter(browser, code_in(smtp.last_text()))
    assert _phone_of(app, "denis") is None
    assert sms_gateway.received == []
    notice = _text(smtp.messages[-1])
    assert "removed" in notice and "If this was not you" in notice
    assert "phone.removed" in _names(app)
    assert "/login/otp" in _offered_channel(app, "denis")


def test_removal_in_a_fresh_2fa_session_is_immediate(browser, app, smtp, sms_gateway):
    _sign_in(browser, "chloe", smtp, channel="email")
    mails = len(smtp.messages)
    response = _start(browser, "")
    assert response.status_code == 302 and response.location.endswith(HOME)
    assert _phone_of(app, "chloe") is None
    assert len(smtp.messages) == mails + 1  # the notice, no code
    assert "removed" in _text(smtp.messages[-1]) and sms_gateway.received == []


# -- the notice ---------------------------------------------------------------------------


@pytest.mark.parametrize(("username", "before"), [("alice", None), ("denis", OLD)])
def test_every_change_is_announced_to_the_account_address(
    browser, app, smtp, sms_gateway, username, before
):
    _sign_in(browser, username)
    _start(browser, NEW)
    _enter(browser, code_in(smtp.last_text()))
    _enter(browser, _sms_code(sms_gateway))
    assert _phone_of(app, username) == NEW
    notice = smtp.messages[-1]
    assert notice["To"] == f"{username}@exemple.fr"
    text = _text(notice)
    assert NEW_MASKED in text and NEW not in text
    assert "If this was not you" in text
    assert notice.get_body(preferencelist=("html",)) is not None


def test_a_failed_notice_does_not_undo_the_change(browser, app, smtp, sms_gateway):
    _sign_in(browser, "bruno", smtp)
    _start(browser, NEW)
    smtp.refuse = True
    response = _enter(browser, _sms_code(sms_gateway))
    smtp.refuse = False
    assert response.location.endswith(HOME)
    assert _phone_of(app, "bruno") == NEW
    assert ("mail.failed", {"kind": "phone_changed"}) in _events(app)


def test_userinfo_says_a_confirmed_number_is_verified(browser, app, smtp, sms_gateway, secret):
    _sign_in(browser)
    _start(browser, NEW)
    _enter(browser, code_in(smtp.last_text()))
    _enter(browser, _sms_code(sms_gateway))
    query = browser.login_through(scope="openid phone", prompt="login")
    token = browser.exchange(query["code"], secret=secret).json["access_token"]
    info = browser.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).json
    assert info["phone_number"] == NEW and info["phone_number_verified"] is True


def test_userinfo_takes_an_operator_set_number_as_verified(app, secret):
    other = LoginActions(app.test_client())
    query = other.login_through(username="denis", scope="openid phone")
    token = other.exchange(query["code"], secret=secret).json["access_token"]
    info = other.client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).json
    assert info["phone_number"] == OLD and info["phone_number_verified"] is True


# -- codes --------------------------------------------------------------------------------


def test_expired_code_is_refused(browser, app, smtp, frozen_clock):
    _sign_in(browser)
    _start(browser, NEW)
    frozen_clock.advance(301)
    assert _enter(browser, code_in(smtp.last_text())).status_code == 303
    assert "expired" in browser.client.get(CONFIRM).text
    assert _phone_of(app) is None


def test_attempts_are_capped(browser, app, smtp, sms_gateway, frozen_clock):
    _sign_in(browser)
    _start(browser, NEW)
    good = code_in(smtp.last_text())
    for _ in range(5):
        _enter(browser, _wrong(good))
    _enter(browser, good)
    assert "Too many incorrect codes" in browser.client.get(CONFIRM).text
    assert sms_gateway.received == [] and _phone_of(app) is None
    frozen_clock.advance(31)
    _action(browser, "resend")
    _enter(browser, code_in(smtp.last_text()))
    assert [m["to"] for m in sms_gateway.received] == [NEW]


def test_resend_has_a_cooldown_and_voids_the_old_code(browser, app, smtp, frozen_clock):
    _sign_in(browser)
    _start(browser, NEW)
    old = code_in(smtp.last_text())
    _action(browser, "resend")
    assert "Wait" in browser.client.get(CONFIRM).text
    assert len(_mails_to(smtp, "alice@exemple.fr")) == 1
    frozen_clock.advance(31)
    _action(browser, "resend")
    new = code_in(smtp.last_text())
    assert len(_mails_to(smtp, "alice@exemple.fr")) == 2
    if old != new:
        _enter(browser, old)
        assert "Incorrect code" in browser.client.get(CONFIRM).text
    assert _enter(browser, new).location.endswith(CONFIRM)  # on to the SMS


def test_a_code_that_could_not_be_sent_is_explained_and_can_be_resent(
    browser, app, smtp, sms_gateway
):
    _sign_in(browser)
    smtp.refuse = True
    assert _start(browser, NEW).location.endswith(CONFIRM)
    assert "could not be sent" in browser.client.get(CONFIRM).text
    smtp.refuse = False
    _action(browser, "resend")  # at once: the failed attempt does not start the cooldown
    sms_gateway.status = 500
    _enter(browser, code_in(smtp.last_text()))
    page = browser.client.get(CONFIRM).text
    assert "could not be sent" in page and "by SMS" in page
    assert _phone_of(app) is None
    sms_gateway.status = 200
    _action(browser, "resend")
    assert _enter(browser, _sms_code(sms_gateway)).location.endswith(HOME)
    assert _phone_of(app) == NEW
    assert _names(app).count("phone.delivery_failed") == 2


def test_codes_count_in_the_users_hourly_budget(browser, app, smtp, sms_gateway):
    from idp import throttle
    from idp.auth import otp

    _sign_in(browser)
    with app.app_context():
        user_id = db.session.scalars(select(User.id).filter_by(username="alice")).one()
        send_key, _fail_key = otp.user_keys(user_id)
        for _ in range(otp.codes_per_hour() - 1):
            throttle.register_failure(send_key, otp.codes_per_hour(), otp.USER_WINDOW)
    _start(browser, NEW)  # the last code of the hour
    _enter(browser, code_in(smtp.last_text()))
    assert sms_gateway.received == []  # the SMS would be one too many
    assert "Too many codes" in browser.client.get(CONFIRM).text
    assert _phone_of(app) is None


def test_wrong_codes_count_in_the_users_failure_budget(browser, app, smtp):
    from idp import throttle
    from idp.auth import otp

    _sign_in(browser)
    _start(browser, NEW)
    with app.app_context():
        user_id = db.session.scalars(select(User.id).filter_by(username="alice")).one()
        _send_key, fail_key = otp.user_keys(user_id)
        assert not throttle.is_blocked(fail_key)
    _enter(browser, _wrong(code_in(smtp.last_text())))
    with app.app_context():
        from idp.models import Throttle

        assert db.session.get(Throttle, fail_key).count == 1


def test_codes_are_stored_hashed_and_never_logged(browser, app, smtp, sms_gateway, caplog):
    from idp.models import PhoneChange

    _sign_in(browser)
    _start(browser, NEW)
    email_code = code_in(smtp.last_text())
    with app.app_context():
        row = db.session.scalars(select(PhoneChange)).one()
        assert email_code not in row.code_hash and len(row.code_hash) == 64
    _enter(browser, email_code)
    sms_code = _sms_code(sms_gateway)
    _enter(browser, sms_code)
    details = repr(_events(app))
    for secret_value in (email_code, sms_code, NEW):
        assert secret_value not in details and secret_value not in caplog.text
    assert NEW_MASKED in details


def test_cancel_drops_the_pending_change(browser, app, smtp):
    _sign_in(browser)
    _start(browser, NEW)
    code = code_in(smtp.last_text())
    response = _action(browser, "cancel")
    assert response.status_code == 302 and response.location.endswith(HOME)
    assert "cancelled" in browser.client.get(HOME).text
    assert browser.client.get(CONFIRM).location.endswith(PROFILE)
    assert _phone_of(app) is None
    with app.app_context():
        from idp.models import PhoneChange

        assert db.session.scalars(select(PhoneChange)).all() == []
    page = browser.client.get(PROFILE)  # the code cannot be used any more
    browser.client.post(CONFIRM, data={"csrf_token": csrf_of(page.text), "code": code})
    assert _phone_of(app) is None


# -- whose change -------------------------------------------------------------------------


def test_another_users_session_cannot_confirm(browser, app, smtp, sms_gateway):
    _sign_in(browser)
    _start(browser, NEW)
    code = code_in(smtp.last_text())
    mallory = LoginActions(app.test_client())
    mallory.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    _sign_in(mallory, "denis")
    assert mallory.client.get(CONFIRM).location.endswith(PROFILE)
    page = mallory.client.get(PROFILE)
    response = mallory.client.post(CONFIRM, data={"csrf_token": csrf_of(page.text), "code": code})
    assert response.status_code == 302 and response.location.endswith(PROFILE)
    assert sms_gateway.received == [] and _phone_of(app) is None and _phone_of(app, "denis") == OLD
    assert _enter(browser, code).location.endswith(CONFIRM)  # alice's change is untouched


def test_another_session_of_the_same_user_cannot_confirm(browser, app, smtp, sms_gateway):
    _sign_in(browser)
    _start(browser, NEW)
    code = code_in(smtp.last_text())
    elsewhere = LoginActions(app.test_client())
    _sign_in(elsewhere)
    assert elsewhere.client.get(CONFIRM).location.endswith(PROFILE)
    page = elsewhere.client.get(PROFILE)
    elsewhere.client.post(CONFIRM, data={"csrf_token": csrf_of(page.text), "code": code})
    assert sms_gateway.received == []


def test_a_code_is_bound_to_its_user(browser, app, smtp, sms_gateway):
    """Even if something rebound the pending row to another account, its code proves nothing."""
    from idp.models import PhoneChange, SsoSession

    _sign_in(browser)
    _start(browser, NEW)
    code = code_in(smtp.last_text())
    mallory = LoginActions(app.test_client())
    _sign_in(mallory, "denis")
    with app.app_context():
        denis = db.session.scalars(select(User).filter_by(username="denis")).one()
        sid = db.session.scalars(select(SsoSession.sid).filter_by(user_id=denis.id)).one()
        db.session.execute(update(PhoneChange).values(user_id=denis.id, sid=sid))
        db.session.commit()
    _post_form(mallory.client, CONFIRM, {"code": code})
    assert sms_gateway.received == []
    assert _phone_of(app, "denis") == OLD


def _race(app, client, url, data, racers=3):
    cookies = {c.key: c.value for c in client._cookies.values()}
    results, barrier = [], threading.Barrier(racers)

    def attempt():
        other = app.test_client()
        for key, value in cookies.items():
            other.set_cookie(key, value)
        barrier.wait()
        results.append(other.post(url, data=data))

    threads = [threading.Thread(target=attempt) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_confirmations_give_one_success(browser, app, smtp, sms_gateway):
    _sign_in(browser)
    _start(browser, NEW)
    token = csrf_of(browser.client.get(CONFIRM).text)
    _race(app, browser.client, CONFIRM, {"csrf_token": token, "code": code_in(smtp.last_text())})
    assert [m["to"] for m in sms_gateway.received] == [NEW]  # one SMS for one e-mail code
    mails = len(smtp.messages)
    results = _race(
        app, browser.client, CONFIRM, {"csrf_token": token, "code": _sms_code(sms_gateway)}
    )
    assert sum(r.status_code == 302 and r.location.endswith(HOME) for r in results) == 1
    assert _names(app).count("phone.confirmed") == 1
    assert len(smtp.messages) == mails + 1  # one notice
    assert _phone_of(app) == NEW


# -- the services, without HTTP ---------------------------------------------------------------


def _session(user, *, amr, age=0):
    from idp import clock
    from idp.crypto import random_token, sha256_hex
    from idp.models import SsoSession

    now = clock.now()
    row = SsoSession(
        cookie_hash=sha256_hex(random_token()),
        sid=random_token(16),
        user_id=user.id,
        auth_time=now - age,
        acr=MFA if "mfa" in amr else "urn:idp:acr:pwd",
        amr=amr,
        created_at=now - age,
        last_seen_at=now,
        expires_at=now + 3600,
    )
    db.session.add(row)
    db.session.commit()
    return row


def test_services_walk_the_change_without_http(smtp, sms_gateway, app):
    from idp.account import phone
    from idp.auth import otp

    with app.app_context():
        user = make_user("emma")
        sso = _session(user, amr=["pwd"])
        assert not phone.fresh_second_factor(sso)
        change = phone.start_phone_change(user, sso, "07 81 23 45 67")
        assert change.step == "email" and change.phone == "+33781234567"
        assert user.backup_phone is None
        with pytest.raises(otp.OtpWrong):
            phone.confirm_phone_code(user, sso, _wrong(code_in(smtp.last_text())))
        assert phone.confirm_phone_code(user, sso, code_in(smtp.last_text())) == "sms_sent"
        assert phone.pending_change(user, sso).step == "sms"
        with pytest.raises(otp.ResendTooSoon):
            phone.resend_phone_code(user, sso)
        assert phone.confirm_phone_code(user, sso, _sms_code(sms_gateway, "+33781234567")) == (
            "confirmed"
        )
        db.session.refresh(user)
        assert user.backup_phone == "+33781234567"
        assert phone.pending_change(user, sso) is None


@pytest.mark.parametrize(
    ("amr", "age", "fresh"),
    [
        (["pwd", "otp", "mfa"], 0, True),
        (["pwd", "sms", "otp", "mfa"], 599, True),
        (["pwd", "otp", "mfa"], 601, False),
        (["pwd", "mfa"], 0, False),  # a remembered browser: no code typed
        (["pwd"], 0, False),
    ],
)
def test_what_counts_as_a_fresh_second_factor(app, amr, age, fresh):
    from idp.account import phone

    assert phone.FRESH_FACTOR_SECONDS == 600
    with app.app_context():
        sso = _session(make_user("emma"), amr=amr, age=age)
        assert phone.fresh_second_factor(sso) is fresh


def test_a_session_of_another_user_is_refused_by_the_services(smtp, app):
    from idp.account import phone
    from idp.auth import otp

    with app.app_context():
        emma, felix = make_user("emma"), make_user("felix")
        emma_sso, felix_sso = _session(emma, amr=["pwd"]), _session(felix, amr=["pwd"])
        phone.start_phone_change(emma, emma_sso, NEW)
        code = code_in(smtp.last_text())
        for user, sso in ((emma, felix_sso), (felix, felix_sso), (felix, emma_sso)):
            assert phone.pending_change(user, sso) is None
            with pytest.raises(otp.OtpExpired):
                phone.confirm_phone_code(user, sso, code)
        assert phone.confirm_phone_code(emma, emma_sso, code) == "sms_sent"


def test_a_stale_confirmation_loses_to_the_first(smtp, sms_gateway, app):
    """Two requests read the pending row and both checked the right code: the state move
    is a compare-and-set, so exactly one of them changes the number."""
    from idp.account import phone
    from idp.models import PhoneChange

    with app.app_context():
        user = make_user("emma")
        sso = _session(user, amr=["pwd", "otp", "mfa"])
        phone.start_phone_change(user, sso, NEW)
        row = db.session.scalars(select(PhoneChange)).one()
        db.session.expunge(row)  # as both racing requests read it
        assert phone._move_on(user, sso, row) == "confirmed"
        assert phone._move_on(user, sso, row) == "stale"
        assert [name for name, _ in _events(app)].count("phone.confirmed") == 1
        assert db.session.scalars(select(User.backup_phone).filter_by(id=user.id)).one() == NEW
