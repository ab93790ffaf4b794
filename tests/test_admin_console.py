"""The operator console over HTTP: who gets in, the step-up, confirmations, CSRF, CSV.

The services themselves are tested in ``test_admin_services.py``.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from idp.models import AuditEvent, Client, User, db

from .actions import LoginActions, code_in, csrf_of
from .factories import make_client, make_user


@pytest.fixture
def people(smtp, app):
    with app.app_context():
        make_user("boss", roles=["admin"])
        make_user("alice")
        make_client("rp")
    return smtp


@pytest.fixture
def login(people, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr"
    return LoginActions(client)


def _sign_in(login, smtp, username="boss", remember=False):
    """The console's own sign-in (no RP): password, then the e-mailed code if asked."""
    start = login.client.get("/login")
    url = start.location if start.status_code == 302 else "/login"
    response = login.submit_password(url, username)
    if "/login/otp" in response.location:
        response = login.submit_code(response.location, code_in(smtp.last_text()), remember)
    return response


def _post(client, url, **data):
    page = client.get(url)
    return client.post(url, data={"csrf_token": csrf_of(page.text), **data})


def test_anonymous_and_non_admins_get_a_french_403(login, people):
    response = login.client.get("/admin/users")
    assert response.status_code == 403 and "Accès refusé" in response.text
    assert response.headers["Cache-Control"] == "no-store"
    _sign_in(login, people, "alice")
    for path in ("/admin/users", "/admin/users/alice", "/admin/clients", "/admin/audit"):
        assert login.client.get(path).status_code == 403
    assert login.client.post("/admin/users/alice", data={"action": "disable"}).status_code in (
        400,
        403,
    )
    assert "Console d" not in login.client.get("/account/").text


def test_an_admin_signs_in_with_the_code_and_comes_back_to_the_console(login, people):
    assert login.client.get("/admin/users?q=ali").status_code == 403  # remembers the page
    response = _sign_in(login, people)
    assert response.location.endswith("/admin/users?q=ali")
    page = login.client.get(response.location)
    assert page.status_code == 200 and "alice@exemple.fr" in page.text
    assert "Console d’administration" in login.client.get("/account/").text


def test_an_old_code_is_asked_again_not_the_password(login, people, frozen_clock):
    _sign_in(login, people)
    assert login.client.get("/admin/audit").status_code == 200
    frozen_clock.advance(31 * 60)
    response = login.client.get("/admin/audit")
    assert response.status_code == 302 and "/login/otp" in response.location
    response = login.submit_code(response.location, code_in(people.last_text()))
    assert response.location.endswith("/admin/audit")


def test_a_remembered_browser_does_not_stand_in_for_the_console_code(login, people):
    _sign_in(login, people, remember=True)
    login.client.post(
        "/logout",
        data={"csrf_token": csrf_of(login.client.get("/account/").text), "confirm": "yes"},
    )
    response = _sign_in(login, people)  # the browser is remembered: no code at sign-in
    assert "/login/otp" not in response.location
    response = login.client.get("/admin/users")
    assert response.status_code == 302 and "/login/otp" in response.location


def test_an_action_asks_for_confirmation_then_acts_and_audits(login, people, app):
    _sign_in(login, people)
    page = _post(login.client, "/admin/users/alice", action="disable")
    assert page.status_code == 200 and 'name="confirm" value="yes"' in page.text
    with app.app_context():
        assert not db.session.scalars(select(User).where(User.username == "alice")).one().disabled
    confirm = login.client.post(
        "/admin/users/alice",
        data={"csrf_token": csrf_of(page.text), "action": "disable", "confirm": "yes"},
    )
    assert confirm.status_code == 303
    assert "désactivé" in login.client.get(confirm.location).text
    with app.app_context():
        alice = db.session.scalars(select(User).where(User.username == "alice")).one()
        event = db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "account.disabled")
        ).one()
        assert alice.disabled and event.actor_id is not None


def test_posts_without_csrf_are_refused(login, people, app):
    _sign_in(login, people)
    response = login.client.post("/admin/users/alice", data={"action": "disable", "confirm": "yes"})
    assert response.status_code == 400
    with app.app_context():
        assert not db.session.scalars(select(User).where(User.username == "alice")).one().disabled


def test_the_admin_cannot_disable_themselves(login, people):
    _sign_in(login, people)
    page = login.client.get("/admin/users/boss")
    assert 'value="disable"' not in page.text
    response = login.client.post(
        "/admin/users/boss",
        data={"csrf_token": csrf_of(page.text), "action": "disable", "confirm": "yes"},
    )
    assert "votre propre compte" in login.client.get(response.location).text


def test_new_user_form_invites_and_never_asks_a_password(login, people, app):
    _sign_in(login, people)
    page = login.client.get("/admin/users")
    assert 'type="password"' not in page.text
    for name in ("username", "email", "name", "profession", "roles"):
        assert f'name="{name}"' in page.text
    response = login.client.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(page.text),
            "username": "dr.new",
            "email": "new@hopital.fr",
            "name": "Nouvelle Personne",
            "profession": "Médecin",
            "roles": ["patient_data"],
        },
    )
    assert response.status_code == 302 and response.location.endswith("/admin/users/dr.new")
    assert "/password/reset/" in people.last_text()
    bad = login.client.post(
        "/admin/users",
        data={"csrf_token": csrf_of(page.text), "username": "x", "email": "not an address"},
    )
    assert bad.status_code == 400 and "aria-invalid" in bad.text


def test_user_page_shows_no_secret(login, people, app):
    _sign_in(login, people)
    page = login.client.get("/admin/users/boss").text
    with app.app_context():
        boss = db.session.scalars(select(User).where(User.username == "boss")).one()
        assert boss.password_hash not in page and boss.credential_id not in page
    assert not re.search(r"\$argon2", page)


def test_client_secret_is_shown_once_after_rotation(login, people, app):
    _sign_in(login, people)
    page = login.client.get("/admin/clients/rp")
    assert page.status_code == 200 and "https://rp.example/callback" in page.text
    confirm = login.client.post(
        "/admin/clients/rp", data={"csrf_token": csrf_of(page.text), "action": "rotate_secret"}
    )
    assert 'value="yes"' in confirm.text
    done = login.client.post(
        "/admin/clients/rp",
        data={"csrf_token": csrf_of(page.text), "action": "rotate_secret", "confirm": "yes"},
    )
    secret = re.search(r'<code class="secret">([^<]+)</code>', done.text).group(1)
    assert secret not in login.client.get("/admin/clients/rp").text
    refused = login.client.post(
        "/admin/clients/rp",
        data={
            "csrf_token": csrf_of(page.text),
            "action": "uris",
            "redirect_uris": "http://evil.example/cb",
        },
    )
    assert refused.status_code == 400 and "https" in refused.text
    with app.app_context():
        assert db.session.get(Client, 1) is not None


def test_audit_page_filters_and_csv(login, people):
    _sign_in(login, people)
    page = login.client.get("/admin/audit?user=boss&event=login.")
    assert page.status_code == 200 and "login.succeeded" in page.text
    assert login.client.get("/admin/audit?since=hier").status_code == 400
    response = login.client.get("/admin/audit?event=login.succeeded&format=csv")
    assert response.mimetype == "text/csv" and response.is_streamed
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0].startswith("at,event,outcome,user,actor") and ",login.succeeded," in lines[1]


def test_unknown_user_or_client_is_404_and_bad_action_400(login, people):
    _sign_in(login, people)
    assert login.client.get("/admin/users/nobody").status_code == 404
    assert login.client.get("/admin/clients/nothing").status_code == 404
    page = login.client.get("/admin/users/alice")
    bad = login.client.post(
        "/admin/users/alice", data={"csrf_token": csrf_of(page.text), "action": "x"}
    )
    assert bad.status_code == 400


def test_a_non_admin_who_tried_the_console_lands_on_their_account(login, people):
    assert login.client.get("/admin/users").status_code == 403
    response = _sign_in(login, people, "alice")
    assert response.location.endswith("/account/")


def test_a_recent_pro_sante_connect_session_opens_the_console_without_a_code(app, frozen_clock):
    """PSC's level is above the code: its sign-in counts as fresh for as long as a code
    would (``[admin] max_session_minutes``); an acr alone, without PSC's token, does not."""
    from idp.admin.access import code_is_fresh
    from idp.models import SsoSession

    limit = app.config["IDP"]["admin"]["max_session_minutes"] * 60
    now = int(frozen_clock.now)
    with app.app_context():
        psc = SsoSession(acr="eidas1", psc_id_token="psc.id.token", auth_time=now - 60)
        assert code_is_fresh(psc)
        psc.auth_time = now - limit - 1
        assert not code_is_fresh(psc)
        assert not code_is_fresh(SsoSession(acr="eidas1", auth_time=now - 60))


def test_the_national_identifier_is_edited_checked_audited_and_announced(login, people, app):
    """Pro Santé Connect's link: a bad number or one another account holds is refused on
    the page; a good one is stored with the acting admin in the audit and the user told."""
    _sign_in(login, people)
    url = "/admin/users/alice"
    refused = _post(login.client, url, action="national_id", national_id="10000000008")
    assert refused.status_code == 400 and "RPPS" in refused.text
    assert 'aria-invalid="true"' in refused.text
    sent = len(people.messages)
    saved = _post(login.client, url, action="national_id", national_id=" 10101010105 ")
    assert saved.status_code == 303
    page = login.client.get(url)
    assert "10101010105" in page.text and "Pro Santé Connect" in page.text
    assert len(people.messages) == sent + 1 and "alice" in people.last_text()
    with app.app_context():
        alice = db.session.scalars(select(User).filter_by(username="alice")).one()
        boss = db.session.scalars(select(User).filter_by(username="boss")).one()
        assert alice.national_id == "10101010105"
        row = db.session.scalars(
            select(AuditEvent).filter_by(event="account.national_id_set", user_id=alice.id)
        ).one()
        assert row.actor_id == boss.id
        make_user("carla")
    taken = _post(
        login.client, "/admin/users/carla", action="national_id", national_id="10101010105"
    )
    assert taken.status_code == 400
    cleared = _post(login.client, url, action="national_id", national_id="")
    assert cleared.status_code == 303
    with app.app_context():
        assert (
            db.session.scalars(select(User).filter_by(username="alice")).one().national_id is None
        )
