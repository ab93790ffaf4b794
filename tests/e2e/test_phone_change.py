"""A backup phone added from the console, under gunicorn, with a real SMTP server and
SMS gateway: the e-mailed code first (a password-only session), then a code by SMS to
the new number; only then is the number a channel, and ``phone_number_verified``."""

from __future__ import annotations

from .edges import code_in
from .parties import ACR_2FA, location_of

EMAIL = "pauline@exemple.fr"
PHONE, MASKED = "+33781234567", "+33 7 ** ** ** 67"
CONFIRM = "/account/profile/confirm"


def _code_page(agent) -> str:
    page = agent.page(CONFIRM)
    for contract in ('name="code"', 'autocomplete="one-time-code"', 'inputmode="numeric"'):
        assert contract in page, contract
    assert PHONE not in page  # where the code went is shown masked
    return page


def _second_factor_step(new_agent, rp) -> str:
    """Where a fresh 2FA sign-in of pauline goes after the password."""
    request = rp.authorization_request(acr_values=ACR_2FA)
    return new_agent().authorize_and_sign_in(request.url, "pauline")


def test_a_new_backup_phone_needs_the_emailed_code_then_an_sms_to_it(
    agent, new_agent, rp, mailbox, sms_gateway, provider
):
    seen_mail, seen_sms = len(mailbox.to(EMAIL)), len(sms_gateway.requests)
    login_url = agent.authorize(provider.url("/login"))  # "Connexion", without an application
    assert agent.sign_in(login_url, "pauline") == provider.url("/account/")  # password only

    response = agent.submit("/account/profile", {"backup_phone": "07 81 23 45 67"})
    assert response.status_code == 302, response.text[:500]
    assert location_of(response) == provider.url(CONFIRM)
    assert "p***@exemple.fr" in _code_page(agent)
    email_code = code_in(mailbox.text(mailbox.wait_for(EMAIL, seen_mail)))
    assert len(sms_gateway.requests) == seen_sms  # no SMS before the account is proved

    wrong = "000000" if email_code != "000000" else "111111"
    assert agent.submit(CONFIRM, {"code": wrong}).status_code == 303
    assert "Code incorrect. Tentatives restantes" in agent.page(CONFIRM)
    assert len(sms_gateway.requests) == seen_sms

    response = agent.submit(CONFIRM, {"code": email_code})
    assert response.status_code == 302 and location_of(response) == provider.url(CONFIRM)
    assert MASKED in _code_page(agent)
    (sent,) = sms_gateway.requests[seen_sms:]
    assert sent.body["to"] == PHONE and sent.status == 200
    assert len(sent.body["text"]) <= 160 and EMAIL not in sent.body["text"]
    assert "/login/otp?" in _second_factor_step(new_agent, rp)  # not a channel yet

    response = agent.submit(CONFIRM, {"code": code_in(sent.body["text"])})
    assert response.status_code == 302 and location_of(response) == provider.url("/account/")
    home = agent.page("/account/")
    assert "Votre fiche a bien été mise à jour." in home and PHONE in home
    notice = mailbox.wait_for(EMAIL, seen_mail + 2)  # after the code and the login's code
    assert MASKED in mailbox.text(notice) and PHONE not in mailbox.text(notice)

    # From now on the number is a channel, and a verified claim.
    request = rp.authorization_request(acr_values=ACR_2FA, scope="openid profile email phone")
    device = new_agent()
    channel_url = device.authorize_and_sign_in(request.url, "pauline")
    assert channel_url.startswith(provider.url("/login/channel?")), channel_url
    otp_url = device.choose_channel(channel_url, "sms")
    token, claims = rp.finish(request, device.enter_code(otp_url, sms_gateway.code_for(PHONE)))
    assert claims["amr"] == ["pwd", "sms", "otp", "mfa"]
    with rp.userinfo(token["access_token"]) as info:
        assert info.status_code == 200, info.text
        assert info.json()["phone_number"] == PHONE
        assert info.json()["phone_number_verified"] is True
