"""Regression tests for the security review's findings."""

import base64
import json

import pytest

from idp.models import Token, db
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import PASSWORD, REDIRECT_URI, make_client, make_user, query_of

NEW = "Another-Long-Pass-42"


@pytest.fixture
def secret(smtp, app):
    with app.app_context():
        make_user("alice")
        make_user("mallory")
        make_user("bruno", roles=["patient_data"])
        return make_client(post_logout_redirect_uris=["https://rp.example/bye"])[1]


@pytest.fixture
def login(secret, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _refresh(client, secret, refresh_token):
    return client.post(
        "/token",
        auth=("rp", secret),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
    )


def test_https_forms_work_without_a_referer(settings, smtp):
    """Pages send no referrer, so the CSRF check must not demand one."""
    from idp import create_app

    settings["issuer"] = "https://idp.test"
    app = create_app(settings)
    with app.app_context():
        make_user("alice")
    browser = app.test_client()
    url = browser.get("/login", base_url="https://idp.test").location
    page = browser.get(url, base_url="https://idp.test")
    response = browser.post(
        url,
        base_url="https://idp.test",
        data={"csrf_token": csrf_of(page.text), "username": "alice", "password": PASSWORD},
    )
    assert response.status_code == 302 and response.location.endswith("/account/")
    cookie = browser.get_cookie("__Host-idp_sso", domain="idp.test")
    assert cookie is not None and cookie.secure and cookie.http_only
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_revoking_the_access_token_never_revives_a_revoked_refresh_token(login, client, secret):
    tokens = login.exchange(login.login_through()["code"], secret=secret).json
    client.post("/revoke", data={"token": tokens["refresh_token"]}, auth=("rp", secret))
    client.post("/revoke", data={"token": tokens["access_token"]}, auth=("rp", secret))
    assert _refresh(client, secret, tokens["refresh_token"]).json["error"] == "invalid_grant"


def test_tokens_of_a_replaced_session_die_with_a_password_reset(login, client, secret, smtp, app):
    tokens = login.exchange(login.login_through()["code"], secret=secret).json
    login.login_through(prompt="login")  # same browser, new session id
    page = client.get("/password/forgot")
    client.post("/password/forgot", data={"csrf_token": csrf_of(page.text), "identifier": "alice"})
    import re

    link = re.search(r"http://idp\.test(/password/reset/\S+)", smtp.last_text()).group(1)
    page = client.get(link, follow_redirects=True)
    client.post(
        link, data={"csrf_token": csrf_of(page.text), "new_password": NEW, "confirm_password": NEW}
    )
    assert _refresh(client, secret, tokens["refresh_token"]).json["error"] == "invalid_grant"


def test_logout_others_reaches_tokens_of_sessions_taken_over_by_another_user(login, secret, app):
    workstation = LoginActions(app.test_client())
    tokens = workstation.exchange(workstation.login_through()["code"], secret=secret).json
    workstation.login_through(username="mallory", prompt="login")  # Mallory on Alice's desk
    login.client.get("/login")
    url = login.client.get("/login").location
    login.submit_password(url, "alice")
    page = login.client.get("/account/password")
    login.client.post(
        "/account/password",
        data={
            "csrf_token": csrf_of(page.text),
            "current_password": PASSWORD,
            "new_password": NEW,
            "confirm_password": NEW,
            "logout_others": "y",
        },
    )
    refused = _refresh(workstation.client, secret, tokens["refresh_token"])
    assert refused.json["error"] == "invalid_grant"


def test_otp_guesses_are_capped_per_user_across_logins(login, smtp, frozen_clock):
    for _ in range(3):  # 3 logins × 5 wrong codes = the per-user budget of 15
        otp_url = login.submit_password(login.authorize(prompt="login").location, "bruno").location
        good = code_in(smtp.last_text())
        for _ in range(5):
            login.submit_code(otp_url, "000000" if good != "000000" else "111111")
        frozen_clock.advance(31)
    sent = len(smtp.messages)
    otp_url = login.submit_password(login.authorize(prompt="login").location, "bruno").location
    page = login.client.get(otp_url).text
    assert "Too many incorrect codes were typed for your account in the last hour." in page
    assert "You can ask for a new code in" in page and 'value="resend"' not in page
    assert len(smtp.messages) == sent  # no new code for a user under attack
    frozen_clock.advance(3601)
    otp_url = login.submit_password(login.authorize(prompt="login").location, "bruno").location
    assert "code=" in login.submit_code(otp_url, code_in(smtp.last_text())).location


def test_logout_with_someone_elses_id_token_asks_first(login, secret, app):
    mallory = LoginActions(app.test_client())
    hint = mallory.exchange(mallory.login_through(username="mallory")["code"], secret=secret).json[
        "id_token"
    ]
    login.login_through()
    response = login.client.get(
        "/logout",
        query_string={"id_token_hint": hint, "post_logout_redirect_uri": "https://rp.example/bye"},
    )
    assert response.status_code == 200 and 'name="confirm"' in response.text
    assert "code" in query_of(login.authorize(prompt="none").location)


def test_refresh_rotation_never_extends_the_grant(login, client, secret, frozen_clock):
    tokens = login.exchange(login.login_through()["code"], secret=secret).json
    frozen_clock.advance(23 * 3600)
    tokens = _refresh(client, secret, tokens["refresh_token"]).json
    frozen_clock.advance(2 * 3600)
    assert _refresh(client, secret, tokens["refresh_token"]).json["error"] == "invalid_grant"


def test_max_age_zero_always_asks_for_the_password(login):
    login.login_through()
    assert "/login?tx=" in login.authorize(max_age="0").location


def test_openid_requests_need_a_redirect_uri(login):
    response = login.authorize(redirect_uri=None)
    assert response.status_code == 400 and response.location is None


def test_repeated_parameters_are_refused(login, client):
    url = login.authorize().request.url + "&client_id=rp"
    response = client.get(url)
    assert response.status_code == 400 and response.location is None


def test_userinfo_honours_the_claims_parameter(login, client, secret):
    claims = json.dumps({"userinfo": {"email": {"essential": True}}})
    query = login.login_through(scope="openid", claims=claims)
    tokens = login.exchange(query["code"], secret=secret).json
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.json["email"] == "alice@exemple.fr" and "name" not in info.json


def test_unknown_token_type_hint_is_ignored(login, client, secret):
    tokens = login.exchange(login.login_through()["code"], secret=secret).json
    response = client.post(
        "/revoke",
        auth=("rp", secret),
        data={"token": tokens["access_token"], "token_type_hint": "weird"},
    )
    assert response.status_code == 200
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=auth).status_code == 401


def test_a_racing_replay_still_revokes_the_winners_tokens(login, secret, app):
    code = login.login_through()["code"]
    with app.app_context():
        from idp.models import AuthorizationCode

        row = db.session.scalars(db.select(AuthorizationCode)).one()
        row.replayed = True  # what a concurrent replay leaves behind
        db.session.commit()
    tokens = login.exchange(code, secret=secret).json
    with app.app_context():
        assert all(t.access_revoked for t in db.session.scalars(db.select(Token)))
    assert "access_token" in tokens


BAD_BASIC = "Basic " + base64.b64encode(b"\xff:\xff").decode()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("get", "/authorize", {"query_string": {"client_id": "rp", "max_age": "²"}}),
        ("get", "/authorize", {"query_string": {"client_id": "rp", "max_age": "9" * 5000}}),
        (
            "get",
            "/authorize",
            {
                "query_string": {
                    "client_id": "rp",
                    "redirect_uri": REDIRECT_URI,
                    "response_type": "code",
                    "scope": "openid",
                    "claims": '{"id_token":{"acr":{"values":5}}}',
                }
            },
        ),
        (
            "get",
            "/authorize",
            {
                "query_string": {
                    "client_id": "rp",
                    "redirect_uri": REDIRECT_URI,
                    "response_type": "code",
                    "scope": "openid",
                    "claims": "[" * 100000,
                }
            },
        ),
        (
            "post",
            "/token",
            {"headers": {"Authorization": BAD_BASIC}, "data": {"grant_type": "authorization_code"}},
        ),
        ("post", "/revoke", {"headers": {"Authorization": BAD_BASIC}, "data": {"token": "x"}}),
        ("post", "/introspect", {"headers": {"Authorization": BAD_BASIC}, "data": {"token": "x"}}),
        ("post", "/account/sessions/99999999999999999999999/end", {}),
        ("get", "/login", {"query_string": {"tx": "a\x00b"}}),
        ("get", "/authorize", {"query_string": {"client_id": "rp", "login_hint": "a\x00"}}),
        ("post", "/token", {"data": "not json", "content_type": "application/json"}),
        ("get", "/password/reset/" + "x" * 3000, {}),
    ],
)
def test_malformed_input_never_gets_a_500(login, client, method, path, kwargs):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code < 500, response.text[:300]


def test_a_narrowed_refresh_can_widen_back_within_the_grant(login, client, secret):
    tokens = login.exchange(login.login_through()["code"], secret=secret).json
    narrowed = client.post(
        "/token",
        auth=("rp", secret),
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "openid",
        },
    ).json
    assert narrowed["scope"] == "openid"
    widened = client.post(
        "/token",
        auth=("rp", secret),
        data={
            "grant_type": "refresh_token",
            "refresh_token": narrowed["refresh_token"],
            "scope": "openid email",
        },
    ).json
    assert widened["scope"] == "openid email"
    beyond = client.post(
        "/token",
        auth=("rp", secret),
        data={
            "grant_type": "refresh_token",
            "refresh_token": widened["refresh_token"],
            "scope": "openid phone",
        },
    ).json
    assert beyond["error"] == "invalid_scope"


def test_replaying_an_expired_code_still_revokes_its_tokens(login, client, secret, frozen_clock):
    code = login.login_through()["code"]
    tokens = login.exchange(code, secret=secret).json
    frozen_clock.advance(120)
    assert login.exchange(code, secret=secret).json["error"] == "invalid_grant"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=auth).status_code == 401


def test_browser_clients_get_cors_headers(client):
    for path in ("/.well-known/openid-configuration", "/jwks.json", "/token", "/userinfo"):
        response = client.options(path)
        assert response.headers["Access-Control-Allow-Origin"] == "*", path
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_userinfo_with_another_scheme_gets_a_bare_bearer_challenge(client):
    response = client.get("/userinfo", headers={"Authorization": "Basic eDp5"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="http://idp.test"'


def test_templates_see_only_the_settings_they_show(app):
    """The secret key, the mail password and the SMS token are out of a template's reach."""
    app.config["IDP"]["mail"]["password"] = "smtp-password-never-shown"
    with app.test_request_context("/login"):
        app.update_template_context(context := {})
        rendered = app.jinja_env.from_string("{{ settings }} {{ shown }} {{ config }}").render(
            **context
        )
    assert "smtp-password-never-shown" not in rendered
    assert app.config["SECRET_KEY"] not in rendered
    assert set(context["shown"]) == {
        "remember_browser_hours",
        "reset_link_hours",
        "password_min_length",
    }
    assert "settings" not in context and "config" not in app.jinja_env.globals
