"""The operator console end to end: gunicorn, a real RP, real e-mail (docs/OPERATING.md).

One administrator (``root``, created with ``idp user add --role admin`` as the
guide says) acts from the console; each story's professional is its own account,
created here through the ``idp`` command or the console's invitation.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from authlib.integrations.base_client import OAuthError

from .parties import ACR_2FA, location_of, query_of
from .server import PASSWORD

NEW = "Premier-Mot-De-Passe-42"


@pytest.fixture(scope="module")
def accounts(provider):
    """The admin and each story's professional, through the ``idp`` command."""
    for username, options in {
        "root": ["--role", "admin"],
        "leaver": [],
        "lostphone": ["--role", "patient_data"],
        "promoted": [],
        "locked": [],
    }.items():
        provider.cli(
            "user", "add", username, "--email", f"{username}@exemple.fr", *options,
            "--password-stdin", stdin=PASSWORD + "\n",
        )  # fmt: skip
    return provider


@pytest.fixture
def admin(accounts, new_agent, mailbox):
    """A browser signed in as ``root`` with a fresh code: the console opens."""
    agent = new_agent()
    login = location_of(agent.get("/login"))
    otp_url = agent.sign_in(login, "root")
    seen = len(mailbox.to("root@exemple.fr"))
    mailbox.wait_for("root@exemple.fr", seen - 1 if seen else 0)
    agent.enter_code(otp_url, mailbox.code_for("root@exemple.fr"))
    assert "Professionnels" in agent.page("/admin/users")
    return agent


def _act(admin, username: str, action: str) -> str:
    """A user page's button, then its confirmation; the page shown afterwards."""
    url = f"/admin/users/{username}"
    confirm = admin.submit(url, {"action": action})
    assert confirm.status_code == 200 and 'name="confirm"' in confirm.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text).group(1)
    done = admin.http.post(
        admin.provider.url(url),
        data={"csrf_token": token, "action": action, "confirm": "yes"},
        allow_redirects=False,
        timeout=15,
    )
    assert done.status_code == 303, done.text[:300]
    return admin.page(url)


def _with_code(agent, rp, mailbox, username, remember=False, **extra):
    address = f"{username}@exemple.fr"
    request = rp.authorization_request(**extra)
    seen = len(mailbox.to(address))
    location = agent.authorize_and_sign_in(request.url, username)
    assert location.startswith(agent.provider.url("/login/otp?")), location
    mailbox.wait_for(address, seen)
    location = agent.enter_code(location, mailbox.code_for(address), remember=remember)
    return rp.finish(request, location)


def test_an_invited_professional_chooses_a_password_and_signs_in_at_an_rp(
    admin, new_agent, rp, mailbox
):
    created = admin.submit(
        "/admin/users",
        {"username": "dr.invite", "email": "invite@exemple.fr", "name": "Inès Vite",
         "profession": "Médecin", "roles": "patient_data"},
    )  # fmt: skip
    assert created.status_code == 302, created.text[:500]
    mail = mailbox.text(mailbox.wait_for("invite@exemple.fr"))
    assert "dr.invite" in mail and "72" in mail
    link = re.search(r"(http://\S+/password/reset/\S+)", mail).group(1)
    user = new_agent()
    form = location_of(user.get(link))
    done = user.submit(form, {"new_password": NEW, "confirm_password": NEW})
    assert done.status_code == 200, done.text[:500]
    assert user.get(link).status_code == 410  # single use
    request = rp.authorization_request()
    otp_url = user.authorize_and_sign_in(request.url, "dr.invite", NEW)
    mailbox.wait_for("invite@exemple.fr", 1)
    location = user.enter_code(otp_url, mailbox.code_for("invite@exemple.fr"))
    _, claims = rp.finish(request, location)
    assert claims["acr"] == ACR_2FA


def test_disable_ends_the_rps_session_and_refresh_token(admin, agent, rp, mailbox):
    request, token = rp.login(agent, "leaver")
    assert "désactivé" in _act(admin, "leaver", "disable")
    silent = rp.authorization_request(prompt="none")
    params = query_of(agent.authorize(silent.url))
    assert params["error"] == "login_required"
    with pytest.raises(OAuthError) as refused:
        rp.refresh(token["refresh_token"])
    assert refused.value.error == "invalid_grant"
    export = admin.get("/admin/audit?user=leaver&event=account.disabled&format=csv")
    assert export.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["event"], r["user"], r["actor"], r["outcome"]) for r in rows] == [
        ("account.disabled", "leaver", "root", "success")
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[0]["at"])


def test_reset_second_factor_makes_the_remembered_browser_ask_the_code(admin, agent, rp, mailbox):
    _with_code(agent, rp, mailbox, "lostphone", remember=True)
    request = rp.authorization_request(prompt="login")
    rp.finish(request, agent.authorize_and_sign_in(request.url, "lostphone"))  # remembered
    seen = len(mailbox.to("lostphone@exemple.fr"))
    _act(admin, "lostphone", "reset_second_factor")
    notice = mailbox.text(mailbox.wait_for("lostphone@exemple.fr", seen))
    assert "second facteur" in notice
    _with_code(agent, rp, mailbox, "lostphone", prompt="login")


def test_a_role_granted_asks_the_code_at_the_next_sign_in(admin, agent, rp, mailbox):
    _, claims = rp.finish(*_plain(agent, rp, "promoted"))
    assert claims["acr"] != ACR_2FA
    saved = admin.submit("/admin/users/promoted", {"action": "roles", "roles": "patient_data"})
    assert saved.status_code == 303
    _, claims = _with_code(agent, rp, mailbox, "promoted", prompt="login")
    assert claims["acr"] == ACR_2FA


def _plain(agent, rp, username):
    request = rp.authorization_request()
    return request, agent.authorize_and_sign_in(request.url, username)


def test_unlock_lets_a_locked_professional_in_again(admin, agent, rp):
    request = rp.authorization_request()
    login = agent.authorize(request.url)
    for _ in range(6):
        agent.post_password(login, "locked", "wrong password!")
    assert agent.post_password(login, "locked", PASSWORD).status_code != 302
    assert "Bloqué" in admin.page("/admin/users/locked")
    assert "débloqué" in _act(admin, "locked", "unlock")
    rp.finish(request, agent.sign_in(login, "locked"))
