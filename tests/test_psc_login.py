"""A Pro Santé Connect login through our pages, PSC itself replaced by a fake answer
(the real exchange is tested against a stand-in provider in tests/e2e/test_psc.py):
the button, the single-use state, linking by national identifier only, the levels
an RP gets (docs/RELYING_PARTIES.md, "Pro Santé Connect")."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from idp.models import AuditEvent, SsoSession, User, db
from idp.psc import upstream as psc_upstream
from idp.psc.upstream import Identity, PscRefused, PscUnavailable
from tests.actions import LoginActions, csrf_of
from tests.factories import make_client, make_user, query_of

RPPS = "10000000009"
MFA, PSC = "urn:idp:acr:2fa", "eidas1"


@pytest.fixture
def settings(settings):
    settings["psc"] = {
        "enabled": True,
        "issuer": "https://auth.psc.test/realm",
        "authorization_endpoint": "https://wallet.psc.test/auth",
        "token_endpoint": "https://auth.psc.test/realm/token",
        "userinfo_endpoint": "https://auth.psc.test/realm/userinfo",
        "jwks_uri": "https://auth.psc.test/realm/certs",
        "end_session_endpoint": "https://auth.psc.test/realm/logout",
        "client_id": "portail",
        "client_secret": "a-client-secret-of-thirty-two-bytes!",
    }
    return settings


class FakePsc:
    """What PSC answers: the identity, or an exception; records the nonces it saw."""

    def __init__(self):
        self.up = True
        self.answer: Exception | None = None
        self.name_id = "8" + RPPS
        self.codes: list[str] = []

    def exchange(self, code, verifier, nonce, redirect_uri):
        assert verifier and nonce and redirect_uri.endswith("/login/psc/callback")
        if self.answer is not None:
            raise self.answer
        self.codes.append(code)
        return Identity(
            sub="psc-sub-1",
            subject_name_id=self.name_id,
            acr="eidas1",
            amr=("pop", "mfa"),
            auth_time=1_700_000_000,
            id_token="psc.id.token",
        )


@pytest.fixture
def psc(monkeypatch):
    fake = FakePsc()
    monkeypatch.setattr(psc_upstream.Upstream, "reachable", lambda self: fake.up)
    monkeypatch.setattr(psc_upstream.Upstream, "exchange", lambda self, *a: fake.exchange(*a))
    return fake


@pytest.fixture
def rp(app, smtp):
    with app.app_context():
        make_user("alice", national_id=RPPS)
        make_user("bruno", roles=["patient_data"])
        return make_client()[1]


@pytest.fixture
def login(rp, client):
    return LoginActions(client)


def press_psc(login, login_url):
    page = login.client.get(login_url)
    assert "Pro Santé Connect" in page.text
    return login.client.post(
        login_url.replace("/login?", "/login/psc?"), data={"csrf_token": csrf_of(page.text)}
    )


def psc_round_trip(login, login_url, code="code-1"):
    """The button, PSC's authorization page (not visited), then PSC's redirect back."""
    started = press_psc(login, login_url)
    assert started.status_code == 303, started.text
    state = query_of(started.location)["state"]
    return login.client.get(f"/login/psc/callback?state={state}&code={code}"), state


def id_claims(login, location, secret) -> dict:
    body = login.exchange(query_of(location)["code"], secret=secret).json
    keys = KeySet.import_key_set(login.client.get("/jwks.json").json)
    return jwt.decode(body["id_token"], keys).claims


def test_the_button_sends_pkce_state_nonce_scope_and_acr_to_psc(login, psc):
    started = press_psc(login, login.authorize().location)
    assert started.location.startswith("https://wallet.psc.test/auth?")
    query = query_of(started.location)
    assert query["scope"] == "openid scope_all" and query["acr_values"] == "eidas1"
    assert query["code_challenge_method"] == "S256" and query["code_challenge"]
    assert query["state"] and query["nonce"] and query["client_id"] == "portail"
    assert query["redirect_uri"] == "http://idp.test/login/psc/callback"


def test_an_rp_asking_eidas1_gets_psc_only_then_eidas1_and_psc_facts(login, psc, rp, app):
    login_url = login.authorize(acr_values=PSC).location
    page = login.client.get(login_url)
    assert 'autocomplete="current-password"' not in page.text
    assert "psc-only-reason" in page.text
    back, _ = psc_round_trip(login, login_url)
    assert back.status_code == 302 and back.location.startswith("https://rp.example/callback")
    claims = id_claims(login, back.location, rp)
    assert claims["acr"] == PSC and claims["amr"] == ["pop", "mfa"]
    assert claims["auth_time"] == 1_700_000_000
    with app.app_context():
        row = db.session.scalars(select(SsoSession)).one()
        assert row.acr == PSC and row.psc_id_token == "psc.id.token"
        assert db.session.scalars(select(User).filter_by(username="alice")).one().psc_sub


def test_a_psc_session_meets_2fa_without_a_code_and_says_2fa(login, psc, rp, smtp):
    psc_round_trip(login, login.authorize().location)
    again = login.authorize(acr_values=MFA)
    assert again.location.startswith("https://rp.example/callback")  # no code page
    assert id_claims(login, again.location, rp)["acr"] == MFA
    assert smtp.messages == [] if hasattr(smtp, "messages") else True


def test_a_password_and_code_session_does_not_meet_eidas1(login, psc, rp):
    login.login_through(username="alice")  # password-only session
    silent = login.authorize(acr_values=PSC, prompt="none")
    assert query_of(silent.location)["error"] == "interaction_required"
    asked = login.authorize(acr_values=PSC)
    assert (
        "/login?" in asked.location and "psc-only-reason" in login.client.get(asked.location).text
    )


def test_a_password_post_on_a_psc_only_login_is_refused_said_and_audited(login, psc, app):
    login_url = login.authorize(acr_values=PSC).location
    page = login.client.get(login_url)
    posted = login.client.post(
        login_url,
        data={"csrf_token": csrf_of(page.text), "username": "alice", "password": "x" * 20},
    )
    assert posted.status_code == 400
    assert 'role="alert"' in posted.text and "Pro Santé Connect" in posted.text
    assert "does not accept a password" in posted.text or "n’accepte pas" in posted.text
    assert 'action="/login/psc?tx=' in posted.text  # the way in it needs, on the page
    assert 'autocomplete="current-password"' not in posted.text
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).filter_by(event="psc.password_refused")).one()
        assert event.client_id == "rp" and event.user_id is None
        assert "x" * 20 not in str(event.detail)


def test_the_state_is_single_use_and_bound_to_the_browser(login, psc, app, rp):
    login_url = login.authorize().location
    first, state = psc_round_trip(login, login_url)
    assert first.status_code == 302
    replay = login.client.get(f"/login/psc/callback?state={state}&code=code-1")
    assert replay.status_code == 400 and psc.codes == ["code-1"]
    forged = login.client.get("/login/psc/callback?state=forged&code=x")
    assert forged.status_code == 400
    other = app.test_client()  # another browser with a state this one was given
    login2 = LoginActions(other)
    started = press_psc(login2, login2.authorize().location)
    stolen = query_of(started.location)["state"]
    assert login.client.get(f"/login/psc/callback?state={stolen}&code=c").status_code == 400
    with app.app_context():
        events = db.session.scalars(select(AuditEvent.event)).all()
        assert events.count("psc.refused") >= 3


def test_a_callback_naming_another_issuer_is_refused_and_audited(login, psc, app):
    """RFC 9207: PSC's answer says who sent it; another provider's answer (a mix-up)
    is refused before its code is exchanged, as a wrong ``state`` is."""
    login_url = login.authorize().location
    state = query_of(press_psc(login, login_url).location)["state"]
    back = login.client.get(f"/login/psc/callback?state={state}&code=c&iss=https://evil.test")
    assert back.status_code == 400 and psc.codes == []
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).filter_by(event="psc.refused")).one()
        assert event.detail == {"reason": "iss"}
        assert db.session.scalars(select(SsoSession)).all() == []
    # PSC's own issuer, or no iss at all (PSC may not send it), goes on
    state = query_of(press_psc(login, login_url).location)["state"]
    good = login.client.get(
        f"/login/psc/callback?state={state}&code=c2&iss=https://auth.psc.test/realm"
    )
    assert good.status_code == 302 and psc.codes == ["c2"]


def test_an_error_answer_naming_another_issuer_is_refused_as_iss(login, psc, app):
    login_url = login.authorize().location
    state = query_of(press_psc(login, login_url).location)["state"]
    back = login.client.get(f"/login/psc/callback?state={state}&error=x&iss=")
    assert back.status_code == 400
    with app.app_context():
        reasons = [e.detail.get("reason") for e in db.session.scalars(select(AuditEvent))]
        assert "iss" in reasons and "psc_error" not in reasons


def test_an_unlinked_identity_gets_the_clear_page_and_an_audit_event(login, psc, app):
    psc.name_id = "810101010105"  # a valid RPPS no account holds
    back, _ = psc_round_trip(login, login.authorize().location)
    assert back.status_code == 403
    assert "n’est rattachée à aucun compte du Portail de santé" in back.text or (
        "not linked to any account" in back.text
    )
    with app.app_context():
        assert "psc.unlinked" in db.session.scalars(select(AuditEvent.event)).all()
        assert db.session.scalars(select(SsoSession)).all() == []


def test_a_disabled_account_is_not_signed_in(login, psc, app):
    with app.app_context():
        db.session.scalars(select(User).filter_by(username="alice")).one().disabled = True
        db.session.commit()
    back, _ = psc_round_trip(login, login.authorize().location)
    assert back.status_code == 403


@pytest.mark.parametrize("failure", [PscRefused("signature"), PscRefused("acr below eidas1")])
def test_a_refused_answer_is_a_clear_400_and_audited(login, psc, app, failure):
    psc.answer = failure
    back, _ = psc_round_trip(login, login.authorize().location)
    assert back.status_code == 400 and "Traceback" not in back.text
    with app.app_context():
        assert "psc.refused" in db.session.scalars(select(AuditEvent.event)).all()


def test_psc_down_gives_a_clear_page_offering_the_password(login, psc):
    psc.up = False
    login_url = login.authorize().location
    down = press_psc(login, login_url)
    assert down.status_code == 503 and 'href="/login?tx=' in down.text
    psc.up, psc.answer = True, PscUnavailable("ReadTimeout")
    slow, _ = psc_round_trip(login, login_url)
    assert slow.status_code == 503
    assert login.submit_password(login_url).location.startswith("https://rp.example/callback")


def test_psc_error_answer_is_a_clear_page(login, psc):
    login_url = login.authorize().location
    state = query_of(press_psc(login, login_url).location)["state"]
    back = login.client.get(f"/login/psc/callback?state={state}&error=access_denied")
    assert back.status_code == 400 and 'href="/login?tx=' in back.text


def test_logout_of_a_psc_session_ends_it_at_psc_then_goes_on(login, psc, app):
    psc_round_trip(login, login.authorize().location)
    home = login.client.get("/account/")
    out = login.client.post("/logout", data={"csrf_token": csrf_of(home.text), "confirm": "yes"})
    assert out.status_code == 303 and out.location.startswith("https://auth.psc.test/realm/logout")
    query = query_of(out.location)
    assert query["id_token_hint"] == "psc.id.token"
    assert query["post_logout_redirect_uri"] == "http://idp.test/login/psc/logged-out"
    with app.app_context():
        assert db.session.scalars(select(SsoSession)).all() == []
    back = login.client.get(f"/login/psc/logged-out?state={query['state']}")
    assert back.status_code == 303


def test_discovery_lists_eidas1(client):
    assert "eidas1" in client.get("/.well-known/openid-configuration").json["acr_values_supported"]


def test_without_psc_there_is_no_button_and_no_eidas1(app, settings, client):
    from idp import create_app

    settings["psc"] = {"enabled": False}
    other = create_app(settings)
    try:
        meta = other.test_client().get("/.well-known/openid-configuration").json
        assert "eidas1" not in meta["acr_values_supported"]
        assert other.test_client().get("/login/psc/callback").status_code == 404
    finally:
        with other.app_context():
            db.engine.dispose()


def test_the_user_can_remove_the_link_from_the_console(login, psc, app):
    psc_round_trip(login, login.authorize().location)
    home = login.client.get("/account/")
    assert RPPS in home.text
    removed = login.client.post("/account/psc/unlink", data={"csrf_token": csrf_of(home.text)})
    assert removed.status_code == 302
    with app.app_context():
        alice = db.session.scalars(select(User).filter_by(username="alice")).one()
        assert alice.national_id is None and alice.psc_sub is None
        assert "psc.unlinked_by_user" in db.session.scalars(select(AuditEvent.event)).all()


def test_a_login_that_expired_while_at_psc_is_not_completed(login, psc, app, frozen_clock):
    """The callback of a login past its lifetime exchanges nothing and signs nobody in."""
    started = press_psc(login, login.authorize().location)
    state = query_of(started.location)["state"]
    frozen_clock.advance(app.config["IDP"]["session"]["login_minutes"] * 60 + 1)
    late = login.client.get(f"/login/psc/callback?state={state}&code=code-1")
    assert late.status_code == 400 and psc.codes == []


def test_another_psc_subject_for_the_same_number_is_audited(login, psc, app):
    with app.app_context():
        alice = db.session.scalars(select(User).filter_by(username="alice")).one()
        alice.psc_sub = "an-earlier-psc-subject"
        db.session.commit()
    back, _ = psc_round_trip(login, login.authorize().location)
    assert back.status_code == 302
    with app.app_context():
        alice = db.session.scalars(select(User).filter_by(username="alice")).one()
        assert alice.psc_sub == "psc-sub-1"
        events = db.session.scalars(select(AuditEvent.event)).all()
        assert "psc.subject_changed" in events
