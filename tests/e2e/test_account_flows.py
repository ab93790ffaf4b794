"""Password change with "log out other devices" (P4) and the lost password (R1–R6),
across separate browsers (cookie jars), a real RP and real e-mail."""

from __future__ import annotations

import re

import pytest
from authlib.integrations.base_client import OAuthError

from .parties import ACR_2FA, query_of
from .server import PASSWORD

NEW = "Second-Lantern-77-Orchard"


def _tokens_with_code(agent, rp, mailbox, username: str, remember: bool):
    """Sign in through the RP with the e-mailed code; returns the token response."""
    address = f"{username}@exemple.fr"
    request = rp.authorization_request()
    seen = len(mailbox.to(address))
    otp_url = agent.authorize_and_sign_in(request.url, username)
    assert otp_url.startswith(agent.provider.url("/login/otp?")), otp_url
    mailbox.wait_for(address, seen)
    location = agent.enter_code(otp_url, mailbox.code_for(address), remember=remember)
    token, claims = rp.finish(request, location)
    assert claims["acr"] == ACR_2FA
    return token


def _assert_signed_out(agent, rp, token) -> None:
    """The browser's SSO session, and the tokens the RP got through it, are dead."""
    silent = rp.authorization_request(prompt="none")
    params = query_of(agent.authorize(silent.url))
    assert params["error"] == "login_required" and params["state"] == silent.state
    assert params["iss"] == rp.provider.issuer
    with pytest.raises(OAuthError) as refused:
        rp.refresh(token["refresh_token"])
    assert refused.value.error == "invalid_grant"
    with rp.userinfo(token["access_token"]) as info:
        assert info.status_code == 401
    assert rp.introspect(token["access_token"])["active"] is False


def test_logout_others_ends_the_other_devices_but_not_this_one(new_agent, rp, mailbox):
    device_a, device_b = new_agent(), new_agent()
    token_a = _tokens_with_code(device_a, rp, mailbox, "marc", remember=True)
    token_b = _tokens_with_code(device_b, rp, mailbox, "marc", remember=True)

    seen = len(mailbox.to("marc@exemple.fr"))
    form = device_b.page("/account/password")
    assert 'name="logout_others"' in form and "Se déconnecter des autres appareils" in form
    assert form.count('autocomplete="new-password"') == 2
    changed = device_b.submit(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW,
            "confirm_password": NEW,
            "logout_others": "y",
        },
    )
    assert changed.status_code == 302 and changed.headers["Location"].endswith("/account/")
    assert "Votre mot de passe a bien été modifié." in device_b.page("/account/")  # P5
    notice = mailbox.wait_for("marc@exemple.fr", seen)
    assert notice["Subject"] == "Votre mot de passe Portail de santé a été modifié"

    _assert_signed_out(device_a, rp, token_a)
    # Device A's remembered second factor went too: the code is asked again.
    request = rp.authorization_request()
    location = device_a.authorize_and_sign_in(request.url, "marc", NEW)
    assert location.startswith(device_a.provider.url("/login/otp?")), location
    with rp.userinfo(token_b["access_token"]) as info:  # B's own tokens were kept
        assert info.status_code == 200

    # Device B is still signed in, with its tokens and its remembered browser.
    assert device_b.get("/account/").status_code == 200
    silent = rp.authorization_request(prompt="none")
    _, claims = rp.finish(silent, device_b.authorize(silent.url))
    assert claims["acr"] == ACR_2FA
    assert rp.refresh(token_b["refresh_token"])["access_token"]
    again = rp.authorization_request(prompt="login")
    _, claims = rp.finish(again, device_b.authorize_and_sign_in(again.url, "marc", NEW))
    assert claims["amr"] == ["pwd", "mfa"]  # B's remembered second factor stayed


def test_lost_password_link_by_email_ends_old_sessions(new_agent, rp, mailbox, provider):
    address = "nina@exemple.fr"
    old_device, device = new_agent(), new_agent()
    _, old_token = rp.login(old_device, "nina")

    # R1: the link from the login page; R2: identifier or e-mail, any case.
    login_page = device.page(device.authorize(rp.authorization_request().url))
    assert 'href="/password/forgot?tx=' in login_page and "Mot de passe oublié\u00a0?" in login_page
    assert "Réinitialiser le mot de passe" in device.page("/password/forgot")
    seen = len(mailbox.to(address))
    known = device.submit("/password/forgot", {"identifier": "Nina@Exemple.FR"})
    unknown = device.submit("/password/forgot", {"identifier": "personne@exemple.fr"})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text and "Consultez votre messagerie" in known.text  # R5

    # R3: the e-mail gives the identifier and the link.
    message = mailbox.text(mailbox.wait_for(address, seen))
    assert "Votre identifiant\u00a0: nina" in message
    match = re.search(re.escape(provider.issuer) + r"(/password/reset/[\w-]+)", message)
    assert match, message
    link = match.group(1)
    opened = device.get(link)  # the token leaves the URL at once (proxy and access logs)
    assert opened.status_code == 303 and opened.headers["Location"] == "/password/reset"
    form = device.page("/password/reset")
    assert "Identifiant\u00a0: nina" in form

    weak = device.submit("/password/reset", {"new_password": "nina", "confirm_password": "nina"})
    assert weak.status_code == 400 and "1 chiffre minimum." in weak.text  # R6 (P3)
    done = device.submit("/password/reset", {"new_password": NEW, "confirm_password": NEW})
    assert done.status_code == 200 and "déconnecté de tous vos appareils" in done.text
    again = device.get(link)  # R4: once
    assert again.status_code == 410 and 'href="/password/forgot"' in again.text

    _assert_signed_out(old_device, rp, old_token)
    request = rp.authorization_request()
    login_url = device.authorize(request.url)
    refused = device.post_password(login_url, "nina", PASSWORD)
    assert refused.status_code == 200
    assert "Identifiant ou mot de passe incorrect." in refused.text
    location = device.sign_in(login_url, "nina", NEW)
    _, claims = rp.finish(request, location)
    assert claims["sub"] == provider.users["nina"]["sub"]


def test_operator_set_password_signs_the_user_out_everywhere(agent, rp, mailbox, provider):
    address = "olga@exemple.fr"
    _, token = rp.login(agent, "olga")
    seen = len(mailbox.to(address))

    out = provider.cli("user", "set-password", "olga", "--password-stdin", stdin=NEW + "\n")
    assert "olga" in out

    _assert_signed_out(agent, rp, token)
    notice = mailbox.wait_for(address, seen)
    assert notice["Subject"] == "Votre mot de passe Portail de santé a été modifié"
    assert "vient d’être modifié" in mailbox.text(notice)
    request = rp.authorization_request()
    login_url = agent.authorize(request.url)
    assert agent.post_password(login_url, "olga", PASSWORD).status_code == 200  # old one refused
    _, claims = rp.finish(request, agent.sign_in(login_url, "olga", NEW))
    assert claims["sub"] == provider.users["olga"]["sub"]
