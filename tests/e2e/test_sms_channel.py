"""The SMS channel (M4) through a real HTTP gateway, and what the user sees when it fails.

The gateway is an ``http.server`` in a thread; the provider posts ``{"to",
"text"}`` to it with the configured bearer token (DESIGN.md "Configuration").
"""

from __future__ import annotations

from .edges import SMS_TOKEN, code_in
from .parties import ACR_2FA

PHONE, EMAIL = "+33612345678", "hugo@exemple.fr"
COULD_NOT_SEND = (
    "Le code n’a pas pu être envoyé. Réessayez ou choisissez un autre moyen de réception."
)


def _to_channel_page(agent, rp):
    request = rp.authorization_request()
    location = agent.authorize_and_sign_in(request.url, "hugo")
    assert location.startswith(agent.provider.url("/login/channel?")), location
    return request, location


def test_user_with_a_backup_phone_chooses_sms(agent, rp, sms_gateway, mailbox):
    seen_mail, seen_sms = len(mailbox.to(EMAIL)), len(sms_gateway.requests)
    request, channel_url = _to_channel_page(agent, rp)
    page = agent.page(channel_url)
    assert "Où souhaitez-vous recevoir votre code\u00a0?" in page
    assert 'name="channel"' in page and 'value="email"' in page and 'value="sms"' in page
    assert "h***@exemple.fr" in page and "+33 6 ** ** ** 78" in page  # masked (M3)
    assert PHONE not in page

    otp_url = agent.choose_channel(channel_url, "sms")
    assert "Un code a été envoyé par SMS au +33 6 ** ** ** 78." in agent.page(otp_url)
    (sent,) = sms_gateway.requests[seen_sms:]
    assert sent.path == "/v1/messages" and sent.status == 200
    assert sent.headers["Authorization"] == f"Bearer {SMS_TOKEN}"
    assert sent.headers["Content-Type"].startswith("application/json")
    assert set(sent.body) == {"to", "text"} and sent.body["to"] == PHONE
    assert len(mailbox.to(EMAIL)) == seen_mail  # SMS only

    location = agent.enter_code(otp_url, sms_gateway.code_for(PHONE))
    _, claims = rp.finish(request, location)
    assert claims["acr"] == ACR_2FA and claims["amr"] == ["pwd", "sms", "otp", "mfa"]


def test_gateway_failure_is_explained_and_email_still_works(agent, rp, sms_gateway, mailbox):
    sms_gateway.status = 500
    seen_sms = len(sms_gateway.requests)
    request, channel_url = _to_channel_page(agent, rp)
    otp_url = agent.choose_channel(channel_url, "sms")
    page = agent.page(otp_url)
    assert COULD_NOT_SEND in page
    assert "Un code a été envoyé" not in page
    assert len(sms_gateway.requests) == seen_sms + 1  # it was tried once
    assert "Recevoir le code par un autre moyen" in page

    sms_gateway.reset()
    seen_mail = len(mailbox.to(EMAIL))
    otp_url = agent.choose_channel(channel_url, "email")
    assert "Un code a été envoyé par e-mail à h***@exemple.fr." in agent.page(otp_url)
    mailbox.wait_for(EMAIL, seen_mail)
    _, claims = rp.finish(request, agent.enter_code(otp_url, mailbox.code_for(EMAIL)))
    assert claims["acr"] == ACR_2FA and claims["amr"] == ["pwd", "otp", "mfa"]


def test_a_slow_gateway_says_so_and_its_late_code_works(agent, rp, sms_gateway):
    """The gateway answers after the time-out but delivers: the page must not call it a
    failure, and the code that arrives late must work."""
    sms_gateway.delay = 2.0  # [sms] timeout_seconds = 1.0
    seen_sms = len(sms_gateway.requests)
    request, channel_url = _to_channel_page(agent, rp)
    otp_url = agent.choose_channel(channel_url, "sms")
    page = agent.page(otp_url)
    assert "L’envoi prend plus de temps que prévu" in page and COULD_NOT_SEND not in page
    assert len(sms_gateway.requests) == seen_sms + 1
    location = agent.enter_code(otp_url, sms_gateway.code_for(PHONE))
    _, claims = rp.finish(request, location)
    assert claims["amr"] == ["pwd", "sms", "otp", "mfa"]


def test_sms_text_carries_the_code_and_nothing_about_the_account(agent, rp, sms_gateway):
    """What the gateway (a third party) learns: the number, the code, its lifetime."""
    seen_sms = len(sms_gateway.requests)
    _, channel_url = _to_channel_page(agent, rp)
    agent.choose_channel(channel_url, "sms")
    (sent,) = sms_gateway.requests[seen_sms:]
    text = sent.body["text"]
    assert code_in(text) and "5 min" in text, text
    assert "hugo" not in text.lower() and "exemple.fr" not in text
    assert len(text) <= 160, text  # one SMS segment


def test_resend_after_a_failed_sms_tries_the_sms_again(agent, rp, sms_gateway, mailbox):
    """The failure message says "Réessayez": the resend button retries the chosen channel."""
    sms_gateway.status = 500
    _, channel_url = _to_channel_page(agent, rp)
    otp_url = agent.choose_channel(channel_url, "sms")
    assert COULD_NOT_SEND in agent.page(otp_url)

    sms_gateway.reset()  # the gateway is back
    seen_sms, seen_mail = len(sms_gateway.requests), len(mailbox.to(EMAIL))
    assert agent.submit(otp_url, {"action": "resend"}).status_code == 303
    page = agent.page(otp_url)
    assert len(mailbox.to(EMAIL)) == seen_mail, "the code went by e-mail"
    assert len(sms_gateway.requests) == seen_sms + 1
    assert "Un code a été envoyé par SMS au +33 6 ** ** ** 78." in page
