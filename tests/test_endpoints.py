"""Discovery, JWKS, userinfo, revocation, introspection, logout, health."""

import pytest

from tests.actions import LoginActions
from tests.factories import make_client, make_user, query_of

ISSUER = "http://idp.test"


@pytest.fixture
def rp(app):
    with app.app_context():
        make_user(backup_phone="+33612345678")
        _, secret = make_client(post_logout_redirect_uris=["https://rp.example/bye"])
    return secret


@pytest.fixture
def tokens(client, rp):
    login = LoginActions(client)
    return login.exchange(login.login_through(scope="openid profile email")["code"], secret=rp).json


def test_discovery_is_derived_from_configuration(client):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["issuer"] == ISSUER
    for name in ("authorization", "token", "userinfo", "revocation", "introspection"):
        assert meta[f"{name}_endpoint"].startswith(ISSUER + "/")
    assert meta["end_session_endpoint"] == ISSUER + "/logout"
    assert meta["jwks_uri"] == ISSUER + "/jwks.json"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["acr_values_supported"] == ["urn:idp:acr:pwd", "urn:idp:acr:2fa"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
        "private_key_jwt",
    }
    assert "offline_access" in meta["scopes_supported"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"RS256", "ES256"} <= set(meta["id_token_signing_alg_values_supported"])


def test_jwks_has_public_keys(client):
    keys = client.get("/jwks.json").json["keys"]
    assert keys and all("d" not in k for k in keys)


def test_userinfo_filters_claims_by_scope(client, tokens):
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    info = client.get("/userinfo", headers=auth).json
    assert info["preferred_username"] == "alice" and info["email"] == "alice@exemple.fr"
    assert "phone_number" not in info  # phone scope not granted


def test_userinfo_accepts_post_with_token_in_body(client, tokens):
    response = client.post("/userinfo", data={"access_token": tokens["access_token"]})
    assert response.status_code == 200 and response.json["sub"]


def test_userinfo_without_or_with_bad_token_is_401_with_www_authenticate(client):
    missing = client.get("/userinfo")
    assert missing.status_code == 401
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    bad = client.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["WWW-Authenticate"]


def test_revoked_access_token_stops_working(client, tokens, rp):
    response = client.post("/revoke", data={"token": tokens["access_token"]}, auth=("rp", rp))
    assert response.status_code == 200
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=auth).status_code == 401


def test_revoking_a_refresh_token_revokes_its_access_tokens(client, tokens, rp):
    client.post("/revoke", data={"token": tokens["refresh_token"]}, auth=("rp", rp))
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=auth).status_code == 401


def test_introspection_reports_acr_amr_and_inactive_tokens(client, tokens, rp):
    live = client.post("/introspect", data={"token": tokens["access_token"]}, auth=("rp", rp)).json
    assert live["active"] is True and live["client_id"] == "rp"
    assert live["acr"] == "urn:idp:acr:pwd" and live["amr"] == ["pwd"] and live["iss"] == ISSUER
    unknown = client.post("/introspect", data={"token": "nope"}, auth=("rp", rp)).json
    assert unknown == {"active": False}
    assert client.post("/introspect", data={"token": "x"}).status_code == 401


def test_introspection_hides_other_clients_tokens(app, client, tokens):
    with app.app_context():
        _, other = make_client("other")
    body = client.post(
        "/introspect", data={"token": tokens["access_token"]}, auth=("other", other)
    ).json
    assert body == {"active": False}


def test_logout_with_id_token_hint_redirects_with_state_and_ends_session(client, tokens):
    response = client.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://rp.example/bye",
            "state": "bye-1",
        },
    )
    assert response.status_code == 302
    assert response.location == "https://rp.example/bye?state=bye-1"
    login = LoginActions(client)
    assert query_of(login.authorize(prompt="none").location)["error"] == "login_required"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=auth).status_code == 401


def test_logout_to_unregistered_uri_does_not_redirect(client, tokens):
    response = client.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
    )
    assert response.status_code == 200 and response.location is None


def test_logout_without_hint_asks_for_confirmation(client, tokens):
    page = client.get("/logout")
    assert page.status_code == 200 and 'name="confirm"' in page.text
    assert client.post("/logout", data={"confirm": "yes"}).status_code == 400  # no CSRF token
    login = LoginActions(client)
    assert "code" in query_of(login.authorize(prompt="none").location)


def test_forged_id_token_hint_is_refused(client, tokens):
    header, payload, _ = tokens["id_token"].split(".")
    response = client.get("/logout", query_string={"id_token_hint": f"{header}.{payload}.AAAA"})
    assert response.status_code == 400


def test_healthz_checks_the_database(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_security_headers_on_pages(client):
    response = client.get("/login", follow_redirects=True)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    cookie = response.request.headers.get("Cookie", "")
    assert cookie is not None
