"""The second factor by e-mail (M1–M8) between a real RP, gunicorn and a real SMTP server.

The code is read from the e-mail aiosmtpd received, as the user would read it.
Pages are in French, the portal's first language (the agents send fr-FR).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .edges import code_in
from .parties import ACR_2FA, ACR_PWD, AuthRequest, query_of

EMAILED = ["pwd", "otp", "mfa"]  # RFC 8176 values, DESIGN.md "Authentication levels"


@dataclass
class CodePage:
    request: AuthRequest  # the RP's authorization request
    url: str  # /login/otp?tx=…
    code: str  # read from the e-mail that came with it


def _to_code_page(agent, rp, mailbox, username: str, **extra: str) -> CodePage:
    """Authorization request (at the agent's node), password if asked, then the code
    page; waits for the e-mail that must have come with it."""
    request = rp.authorization_request(**extra)
    url = request.url.replace(rp.provider.issuer, agent.provider.base_url, 1)
    address = f"{username}@exemple.fr"
    seen = len(mailbox.to(address))
    location = agent.authorize_and_sign_in(url, username)
    assert location.startswith(agent.provider.url("/login/otp?")), location
    return CodePage(request, location, code_in(mailbox.text(mailbox.wait_for(address, seen))))


def _other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_patient_data_user_enters_the_emailed_code_and_gets_2fa(provider, agent, rp, mailbox):
    otp = _to_code_page(agent, rp, mailbox, "chantal")
    message = mailbox.to("chantal@exemple.fr")[-1]
    assert message["Subject"] == "Votre code de connexion au Portail de santé"  # not the code
    assert message.get_body(preferencelist=("html",)) is not None
    page = agent.page(otp.url)
    assert "Un code a été envoyé par e-mail à c***@exemple.fr." in page  # M3, masked
    assert "Valider" in page and 'name="remember"' in page

    token, claims = rp.finish(otp.request, agent.enter_code(otp.url, otp.code))
    assert claims["acr"] == ACR_2FA and claims["amr"] == EMAILED  # M5
    assert claims["sub"] == provider.users["chantal"]["sub"]
    assert claims["auth_time"] <= time.time()
    introspected = rp.introspect(token["access_token"])
    assert introspected["active"] is True and introspected["acr"] == ACR_2FA
    with rp.userinfo(token["access_token"]) as info:
        assert info.status_code == 200 and info.json()["sub"] == claims["sub"]


def test_plain_user_gets_the_password_level_and_steps_up_with_the_code_only(agent, rp, mailbox):
    address = "bruno@exemple.fr"
    seen = len(mailbox.to(address))
    request, token = rp.login(agent, "bruno")
    _, first = rp.verify_id_token(token["id_token"], request)
    assert first["acr"] == ACR_PWD and first["amr"] == ["pwd"]
    assert len(mailbox.to(address)) == seen  # no code for a password-only user

    # The RP asks for more: the code, not the password again (step-up).
    request = rp.authorization_request(acr_values=ACR_2FA)
    otp_url = agent.authorize(request.url)
    assert otp_url.startswith(agent.provider.url("/login/otp?")), otp_url  # not /login
    code = code_in(mailbox.text(mailbox.wait_for(address, seen)))
    _, stepped = rp.finish(request, agent.enter_code(otp_url, code))
    assert stepped["acr"] == ACR_2FA and stepped["amr"] == EMAILED
    assert stepped["auth_time"] == first["auth_time"]  # no password was checked

    # The SSO session now carries the second factor.
    request = rp.authorization_request(prompt="none")
    _, silent = rp.finish(request, agent.authorize(request.url))
    assert silent["acr"] == ACR_2FA and silent["auth_time"] == first["auth_time"]


def test_remembered_browser_skips_the_code_until_another_user_signs_in(
    agent, new_agent, rp, mailbox
):
    address = "chantal@exemple.fr"
    otp = _to_code_page(agent, rp, mailbox, "chantal")
    _, first = rp.finish(otp.request, agent.enter_code(otp.url, otp.code, remember=True))
    assert first["amr"] == EMAILED

    # M6: the password again (prompt=login), but no code on this browser.
    seen = len(mailbox.to(address))
    request = rp.authorization_request(prompt="login")
    location = agent.authorize_and_sign_in(request.url, "chantal")
    _, remembered = rp.finish(request, location)
    assert remembered["acr"] == ACR_2FA and remembered["amr"] == ["pwd", "mfa"]
    assert remembered["auth_time"] >= first["auth_time"]
    assert len(mailbox.to(address)) == seen  # no e-mail either

    # Same user, another browser: not remembered there.
    _to_code_page(new_agent(), rp, mailbox, "chantal")

    # M7: another professional signs in on this browser; Chantal's code is asked again.
    request = rp.authorization_request(prompt="login")
    _, other = rp.finish(request, agent.authorize_and_sign_in(request.url, "bruno"))
    assert other["acr"] == ACR_PWD
    _to_code_page(agent, rp, mailbox, "chantal", prompt="login")


def test_without_the_checkbox_the_code_is_asked_at_every_login(agent, rp, mailbox):
    otp = _to_code_page(agent, rp, mailbox, "chantal")
    rp.finish(otp.request, agent.enter_code(otp.url, otp.code, remember=False))
    _to_code_page(agent, rp, mailbox, "chantal", prompt="login")  # M8: a new code, by e-mail


def test_five_wrong_codes_void_the_code(agent, rp, mailbox):
    otp = _to_code_page(agent, rp, mailbox, "damien")
    otp_url, good = otp.url, otp.code
    for remaining in (4, 3, 2, 1):
        assert agent.enter_code(otp_url, _other_code(good)) == otp_url
        assert f"Code incorrect. Tentatives restantes\u00a0: {remaining}." in agent.page(otp_url)
    assert agent.enter_code(otp_url, _other_code(good)) == otp_url
    page = agent.page(otp_url)
    locked = "Trop de codes incorrects\u00a0: ce code ne fonctionne plus. Demandez un nouveau code."
    assert locked in page and 'name="code"' not in page  # nothing left to type

    # The right code is refused now (posted anyway): the attempts are spent.
    assert agent.submit(otp_url, {"code": good}).status_code == 303
    assert locked in agent.page(otp_url)
    # A new code can be asked for at once: the dead code holds nothing back (issue 10).
    sent = len(mailbox.to("damien@exemple.fr"))
    resend = agent.submit(otp_url, {"action": "resend"})
    assert resend.status_code == 303
    page = agent.page(otp_url)
    assert "Un nouveau code a été envoyé par e-mail" in page and locked not in page
    assert len(mailbox.to("damien@exemple.fr")) == sent + 1


def test_an_expired_code_is_refused_and_a_new_sign_in_sends_a_fresh_one(
    short_otp_node, new_agent, rp, mailbox
):
    """A node whose codes live 2 s; the RP redeems the code at the other node."""
    agent = new_agent(short_otp_node)
    otp = _to_code_page(agent, rp, mailbox, "damien")
    sent = time.monotonic()
    lifetime = short_otp_node.settings["mfa"]["otp_ttl_seconds"]
    time.sleep(max(0.0, lifetime + 0.1 - (time.monotonic() - sent)))  # stored in whole seconds
    assert agent.submit(otp.url, {"code": otp.code}).status_code == 303  # a form left open
    page = agent.page(otp.url)
    assert "Ce code a expiré. Demandez un nouveau code." in page
    assert "valable jusqu" not in page and 'name="code"' not in page

    otp = _to_code_page(agent, rp, mailbox, "damien")
    location = agent.enter_code(otp.url, otp.code)
    assert "error" not in query_of(location)
    _, claims = rp.finish(otp.request, location)  # the token endpoint of the first node
    assert claims["acr"] == ACR_2FA and claims["amr"] == EMAILED
