"""Linking a Pro Santé Connect identity to an account: by the user from the console (only
in a 2FA session, by PSC's national identifier only, never one another account holds),
by an operator (``idp.account.identity.set_national_id``, ``idp user set-national-id``);
each link and unlink audited and announced by e-mail (SECURITY.md, "Pro Santé Connect").
PSC itself is a fake answer here, as in tests/test_psc_login.py."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from idp.account.identity import set_national_id
from idp.models import AuditEvent, User, db
from idp.psc import upstream as psc_upstream
from idp.users import UserError
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import make_client, make_user, query_of
from tests.test_psc_login import RPPS, FakePsc, psc_round_trip, settings  # noqa: F401

OTHER_RPPS = "10101010105"
MFA = "urn:idp:acr:2fa"


@pytest.fixture
def psc(monkeypatch):
    fake = FakePsc()
    monkeypatch.setattr(psc_upstream.Upstream, "reachable", lambda self: fake.up)
    monkeypatch.setattr(psc_upstream.Upstream, "exchange", lambda self, *a: fake.exchange(*a))
    return fake


@pytest.fixture
def login(smtp, app, client):
    with app.app_context():
        make_user("carla")  # not linked yet
        make_user("alice", national_id=RPPS)
        make_client()
    return LoginActions(client)


def user(app, username: str) -> User:
    with app.app_context():
        return db.session.scalars(select(User).filter_by(username=username)).one()


def events(app) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def two_factor_session(login, smtp, username="carla"):
    otp_url = login.authorize(acr_values=MFA).location
    otp_url = login.submit_password(otp_url, username).location
    back = login.submit_code(otp_url, code_in(smtp.last_text()))
    assert back.location.startswith("https://rp.example/callback"), back.location


def press_link(login):
    home = login.client.get("/account/")
    assert "Link my Pro Santé Connect identity" in home.text or "Rattacher" in home.text
    return login.client.post("/account/psc/link", data={"csrf_token": csrf_of(home.text)})


def link_round_trip(login, code="code-1"):
    started = press_link(login)
    assert started.status_code == 303, started.text
    state = query_of(started.location)["state"]
    return login.client.get(f"/login/psc/callback?state={state}&code={code}")


def test_a_2fa_session_links_psc_by_national_id_with_a_notice(login, psc, smtp, app):
    two_factor_session(login, smtp)
    psc.name_id = "8" + OTHER_RPPS
    sent = len(smtp.messages)
    back = link_round_trip(login)
    assert back.status_code == 302 and back.location.endswith("/account/")
    carla = user(app, "carla")
    assert carla.national_id == OTHER_RPPS and carla.psc_sub == "psc-sub-1"
    home = login.client.get("/account/")
    assert OTHER_RPPS in home.text and "/account/psc/unlink" in home.text
    notice = smtp.messages[sent]
    assert notice["To"] == "carla@exemple.fr"
    # every space kept through the SMTP server (idp.delivery.mail._Message)
    assert notice["Subject"] == "Votre compte Portail de santé a été rattaché à Pro Santé Connect"
    assert OTHER_RPPS in smtp.last_text() and "Mon compte" in smtp.last_text()
    assert "psc.linked_by_user" in [e.event for e in events(app)]
    # the link works: a PSC login with that identity now signs carla in
    fresh = LoginActions(app.test_client())
    again, _ = psc_round_trip(fresh, fresh.authorize().location, code="code-2")
    assert again.location.startswith("https://rp.example/callback")


def test_a_password_only_session_is_stepped_up_before_linking(login, psc, smtp, app):
    login.login_through(username="carla")  # password only
    started = press_link(login)
    assert "/login/otp?tx=" in started.location  # the code first, PSC not reached
    assert psc.codes == [] and user(app, "carla").national_id is None
    login.submit_code(started.location, code_in(smtp.last_text()))
    psc.name_id = "8" + OTHER_RPPS
    assert link_round_trip(login).status_code == 302
    assert user(app, "carla").national_id == OTHER_RPPS


def test_an_identity_another_account_holds_is_not_linked(login, psc, smtp, app):
    two_factor_session(login, smtp)
    sent = len(smtp.messages)  # psc.name_id is alice's RPPS
    back = link_round_trip(login)
    assert back.status_code == 302
    page = login.client.get(back.location)
    assert "already linked to another account" in page.text or "déjà rattachée" in page.text
    assert user(app, "carla").national_id is None and user(app, "alice").national_id == RPPS
    assert len(smtp.messages) == sent
    refused = [e for e in events(app) if e.event == "psc.link_refused"]
    assert [e.detail["reason"] for e in refused] == ["taken"]


def test_an_identity_without_a_national_id_is_not_linked(login, psc, smtp, app):
    two_factor_session(login, smtp)
    psc.name_id = "not-a-number"
    link_round_trip(login)
    assert user(app, "carla").national_id is None
    assert [e.detail["reason"] for e in events(app) if e.event == "psc.link_refused"] == [
        "no_national_id"
    ]


def test_a_link_callback_in_another_session_links_nothing(login, psc, smtp, app):
    two_factor_session(login, smtp)
    state = query_of(press_link(login).location)["state"]
    home = login.client.get("/account/")
    login.client.post("/logout", data={"csrf_token": csrf_of(home.text), "confirm": "yes"})
    login.client.get(f"/login/psc/callback?state={state}&code=c")
    assert psc.codes == [] and user(app, "carla").national_id is None
    assert {"state", "link_session"} & {e.detail.get("reason") for e in events(app)}


def test_unlinking_sends_the_notice(login, psc, smtp, app):
    psc_round_trip(login, login.authorize().location)  # alice, by PSC
    home = login.client.get("/account/")
    sent = len(smtp.messages)
    login.client.post("/account/psc/unlink", data={"csrf_token": csrf_of(home.text)})
    assert user(app, "alice").national_id is None
    assert len(smtp.messages) == sent + 1
    assert "Pro Santé Connect" in smtp.messages[-1]["Subject"]
    assert "alice" in smtp.last_text()


def test_the_operator_service_checks_refuses_duplicates_audits_and_notifies(smtp, app):
    with app.app_context():
        carla = make_user("carla", national_id=None)
        alice = make_user("alice", national_id=RPPS)
        carla.psc_sub = "stale"
        db.session.commit()
        with pytest.raises(UserError, match="RPPS"):
            set_national_id(carla, "10000000008", actor=alice)  # wrong Luhn key
        with pytest.raises(UserError, match="another account"):
            set_national_id(carla, RPPS, actor=alice)
        assert set_national_id(carla, f" {OTHER_RPPS} ", actor=alice) == OTHER_RPPS
        assert carla.national_id == OTHER_RPPS and carla.psc_sub is None
        assert set_national_id(carla, None) is None and carla.national_id is None
        rows = db.session.scalars(
            select(AuditEvent).filter_by(event="account.national_id_set").order_by(AuditEvent.id)
        ).all()
        assert [(r.detail, r.actor_id) for r in rows] == [
            ({"national_id": OTHER_RPPS}, alice.id),
            ({"previous": OTHER_RPPS}, None),
        ]
    assert len(smtp.messages) == 2
    assert "rattaché" in smtp.messages[0]["Subject"]


def test_user_set_national_id_command(idp, smtp):
    idp("user", "add", "denis", "--email", "denis@exemple.fr", "--password-stdin",
        input="Vicodin-4-Ever!\n")  # fmt: skip
    code, out, _ = idp("user", "set-national-id", "denis", RPPS)
    assert code == 0 and RPPS in out
    listed = json.loads(idp("user", "list", "--json")[1])["users"]
    assert listed[0]["national_id"] == RPPS
    code, _, err = idp("user", "set-national-id", "denis", "1234")
    assert code != 0 and "national identifier refused" in err
    code, _, err = idp("user", "set-national-id", "denis")
    assert code != 0 and "--clear" in err
    code, _, err = idp("user", "set-national-id", "denis", RPPS, "--clear")
    assert code != 0
    code, out, _ = idp("user", "set-national-id", "denis", "--clear")
    assert code == 0 and "cleared" in out
    assert json.loads(idp("user", "list", "--json")[1])["users"][0]["national_id"] is None
