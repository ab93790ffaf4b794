"""The code page tells what really happened (README, "The second factor").

Every state comes from the database (``otp.code_page``): the code in flight,
its channel, whether it expired or is locked, how many codes were sent, how
long before another may go, and the login's and the account's limits. The page
never offers what cannot work, and a notice never contradicts an error.
"""

from __future__ import annotations

import re

import pytest

from idp import throttle
from idp.auth import otp
from idp.models import OtpChallenge, User, db
from tests.actions import LoginActions, code_in
from tests.factories import make_client, make_user


@pytest.fixture
def rp(smtp, sms_gateway, app):
    with app.app_context():
        make_user("bruno", roles=["patient_data"])
        make_user("chloe", roles=["patient_data"], backup_phone="+33612345678")
        return make_client()[1]


@pytest.fixture
def login(rp, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _sms_code(gateway) -> str:
    return code_in(gateway.received[-1]["text"])


def _channel_page(login, username="chloe") -> str:
    url = login.submit_password(login.authorize().location, username).location
    assert "/login/channel" in url, url
    return url


def _attempts(app) -> int:
    with app.app_context():
        return db.session.scalars(db.select(OtpChallenge.attempts)).one()


def test_switching_channel_within_the_cooldown_sends_at_once(
    login, smtp, sms_gateway, frozen_clock
):
    channel_url = _channel_page(login)
    otp_url = login.choose_channel(channel_url, "sms").location
    assert len(sms_gateway.received) == 1 and "by SMS" in login.client.get(otp_url).text
    frozen_clock.advance(10)
    login.choose_channel(channel_url, "email")  # "Receive the code another way" → e-mail
    assert len(smtp.messages) == 1, "the switch must send at once"
    page = login.client.get(otp_url).text
    assert "by e-mail to c***@exemple.fr" in page and "by SMS" not in page
    assert "2 codes were sent for this sign-in: only the last one works." in page
    assert "code=" in login.submit_code(otp_url, code_in(smtp.last_text())).location


def test_a_double_switch_still_sends_one_code(login, smtp, sms_gateway, frozen_clock):
    channel_url = _channel_page(login)
    login.choose_channel(channel_url, "sms")
    login.choose_channel(channel_url, "email")
    login.choose_channel(channel_url, "email")  # a double click on the switch
    assert len(smtp.messages) == 1 and len(sms_gateway.received) == 1


def test_a_replaced_code_is_said_so_and_costs_no_attempt(
    login, app, smtp, sms_gateway, frozen_clock
):
    otp_url = login.choose_channel(_channel_page(login), "sms").location
    late_sms = _sms_code(sms_gateway)
    frozen_clock.advance(31)
    login.resend(otp_url)  # a new SMS: the first one arrives late
    assert len(sms_gateway.received) == 2
    if late_sms == _sms_code(sms_gateway):
        pytest.skip("the two random codes happen to be equal")
    login.submit_code(otp_url, late_sms)
    page = login.client.get(otp_url).text
    assert "This code was replaced by a newer one. Enter the last code you received." in page
    assert "Incorrect code" not in page and _attempts(app) == 0
    assert "2 codes were sent for this sign-in" in page


def test_the_accounts_hourly_limit_says_when_and_offers_nothing_that_cannot_work(login, app, smtp):
    with app.app_context():
        user_id = db.session.scalars(db.select(User.id).filter_by(username="bruno")).one()
        send_key, _ = otp.user_keys(user_id)
        for _ in range(otp.codes_per_hour()):
            throttle.take(send_key, otp.codes_per_hour(), otp.USER_WINDOW)
    url = login.submit_password(login.authorize().location, "bruno").location
    page = login.client.get(url).text
    assert not smtp.messages
    assert "Your account has reached its limit of 10 codes per hour." in page
    assert "You can ask for a new code in 60 minutes." in page
    assert "contact your administrator" in page
    assert "Too many codes were sent for this sign-in" not in page
    assert 'value="resend"' not in page and "another way" not in page
    assert 'name="code"' not in page  # no code was sent: nothing to type


def test_after_five_wrong_codes_a_new_code_can_be_asked_at_once(login, smtp, frozen_clock):
    url = login.submit_password(login.authorize().location, "bruno").location
    good = code_in(smtp.last_text())
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(5):
        login.submit_code(url, wrong)
    page = login.client.get(url).text
    assert "Too many incorrect codes" in page
    assert "valid until" not in page and 'name="code"' not in page
    assert "You can ask for a new code in" not in page
    login.resend(url)  # within 30 s of the first send: the dead code does not hold it back
    assert len(smtp.messages) == 2
    page = login.client.get(url).text
    assert "A new code was sent by e-mail" in page and "Too many incorrect" not in page
    assert "code=" in login.submit_code(url, code_in(smtp.last_text())).location


def test_an_expired_code_shows_no_validity_notice_and_a_new_code_goes_at_once(
    login, smtp, frozen_clock
):
    url = login.submit_password(login.authorize().location, "bruno").location
    assert re.search(r"It is valid until \d\d:\d\d\.", login.client.get(url).text)
    frozen_clock.advance(301)
    page = login.client.get(url).text
    assert "This code has expired. Ask for a new code." in page
    assert "valid until" not in page and "A code was sent" not in page
    assert "Send a new code" in page
    login.resend(url)
    assert len(smtp.messages) == 2 and "valid until" in login.client.get(url).text


def test_the_resend_wait_is_shown_as_a_countdown(login, smtp, frozen_clock):
    url = login.submit_password(login.authorize().location, "bruno").location
    frozen_clock.advance(12)
    page = login.client.get(url).text
    assert 'id="resend-wait" role="status"' in page
    assert "You can ask for a new code in 18 seconds." in page


def test_the_channel_page_preselects_the_last_successful_channel(login, app, sms_gateway):
    otp_url = login.choose_channel(_channel_page(login), "sms").location
    assert "code=" in login.submit_code(otp_url, _sms_code(sms_gateway)).location
    fresh = LoginActions(app.test_client())
    fresh.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    page = fresh.client.get(_channel_page(fresh)).text
    sms_radio = re.search(r'<input[^>]*value="sms"[^>]*>', page)[0]
    email_radio = re.search(r'<input[^>]*value="email"[^>]*>', page)[0]
    assert "checked" in sms_radio and "checked" not in email_radio


def test_the_masked_destination_is_inside_each_radio_label(login):
    page = login.client.get(_channel_page(login)).text
    labels = re.findall(r"<label for=\"[^\"]+\">(.*?)</label>", page, re.S)
    assert any("By SMS" in label and "+33 6 ** ** ** 78" in label for label in labels)
    assert any("By e-mail" in label and "c***@exemple.fr" in label for label in labels)


def test_a_user_without_another_channel_is_not_told_to_choose_one(login, smtp):
    smtp.refuse = True
    url = login.submit_password(login.authorize().location, "bruno").location
    page = login.client.get(url).text
    assert "could not be sent" in page, page
    assert "another way" not in page


def _focused_by_the_browser(page: str) -> str:
    """The first element carrying ``autofocus``: the one the browser focuses."""
    found = re.search(r"<(\w+)[^>]*\bautofocus\b[^>]*>", page)
    assert found, "nothing takes the focus: it would fall to <body>"
    return found.group(0)


def test_a_code_page_without_a_field_focuses_its_message(login, smtp, frozen_clock):
    """Expired, void (5 wrong codes), the login's or the account's limit: there is no
    field to type in, so the message takes the focus, never <body> (issue 10, item 11)."""
    url = login.submit_password(login.authorize().location, "bruno").location
    assert 'name="code"' in _focused_by_the_browser(login.client.get(url).text)
    frozen_clock.advance(301)
    first = _focused_by_the_browser(login.client.get(url).text)
    assert 'id="code-state"' in first and 'role="alert"' in first and 'tabindex="-1"' in first
    for _ in range(otp.MAX_SENDS - 1):  # each expired code is replaced at once
        login.resend(url)
        frozen_clock.advance(301)
    page = login.client.get(url).text
    assert "No more codes can be sent for this sign-in." in page
    assert 'id="code-state"' in _focused_by_the_browser(page)
    assert re.search(
        r'<p class="error" role="alert" id="code-limit" tabindex="-1" autofocus>', page
    )
    assert re.search(r'<a class="button" href="[^"]*/authorize\?', page)
