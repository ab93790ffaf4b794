"""A real relying party against the real server: code flow, tokens, SSO, logout, keys."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from authlib.integrations.base_client import OAuthError

from .parties import ACR_PWD, query_of


def test_discovery_document(provider):
    meta = provider.metadata()
    issuer = provider.issuer
    assert meta["issuer"] == issuer and not issuer.endswith("/")
    expected = {
        "authorization_endpoint": "/authorize",
        "token_endpoint": "/token",
        "userinfo_endpoint": "/userinfo",
        "jwks_uri": "/jwks.json",
        "revocation_endpoint": "/revoke",
        "introspection_endpoint": "/introspect",
        "end_session_endpoint": "/logout",
    }
    for name, path in expected.items():
        assert meta[name] == issuer + path, name
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["acr_values_supported"]) == {"urn:idp:acr:pwd", "urn:idp:acr:2fa"}
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["response_types_supported"] == ["code"]
    assert {"authorization_code", "refresh_token"} <= set(meta["grant_types_supported"])
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert "none" in meta["token_endpoint_auth_methods_supported"]
    jwks = provider.jwks()
    assert jwks["keys"] and all("d" not in key and "p" not in key for key in jwks["keys"])


def test_code_flow_userinfo_refresh_revoke_and_logout(provider, agent, rp):
    """The life of one sign-in, from the authorization request to RP-initiated logout."""
    request, token = rp.login(agent, "alice")
    assert token["token_type"].lower() == "bearer"
    header, claims = rp.verify_id_token(
        token["id_token"], request, access_token=token["access_token"]
    )
    assert header["alg"] == "RS256"
    assert claims["sub"] == provider.users["alice"]["sub"]
    assert claims["acr"] == ACR_PWD
    assert claims["amr"] == ["pwd"]
    assert claims["sid"]

    with rp.userinfo(token["access_token"]) as info:
        assert info.status_code == 200, info.text
        assert info.json()["sub"] == claims["sub"]
        assert info.json()["email"] == "alice@exemple.fr"
        assert info.json()["name"] == "Alice Martin"

    # Refresh: rotated. The old refresh token presented again at once (a retry, a
    # second tab) gets a fresh pair and revokes nothing; past [tokens]
    # refresh_reuse_seconds it would kill the whole family (test_refresh_race.py).
    first_refresh = token["refresh_token"]
    refreshed = rp.oauth.refresh_token(rp.meta["token_endpoint"], refresh_token=first_refresh)
    assert refreshed["refresh_token"] != first_refresh
    assert refreshed["access_token"] != token["access_token"]
    with rp.userinfo(refreshed["access_token"]) as info:
        assert info.status_code == 200, info.text
    assert rp.introspect(refreshed["access_token"])["active"] is True
    retried = rp.oauth.refresh_token(rp.meta["token_endpoint"], refresh_token=first_refresh)
    assert retried["refresh_token"] not in (first_refresh, refreshed["refresh_token"])
    assert rp.introspect(refreshed["access_token"])["active"] is True
    assert rp.introspect(refreshed["refresh_token"])["active"] is True

    # A second grant in the same SSO session (no password asked), then revocation.
    request, token = rp.login(agent)
    _, again = rp.verify_id_token(token["id_token"], request, access_token=token["access_token"])
    assert again["sid"] == claims["sid"] and again["auth_time"] == claims["auth_time"]
    introspected = rp.introspect(token["access_token"], "access_token")
    assert introspected["active"] is True
    assert introspected["client_id"] == rp.client.client_id
    assert introspected["sub"] == claims["sub"]
    with rp.oauth.revoke_token(
        rp.meta["revocation_endpoint"], token=token["access_token"], token_type_hint="access_token"
    ) as revoked:
        assert revoked.status_code == 200, revoked.text
    assert rp.introspect(token["access_token"]) == {"active": False}
    with rp.userinfo(token["access_token"]) as info:
        assert info.status_code == 401
    with rp.oauth.revoke_token(
        rp.meta["revocation_endpoint"],
        token=token["refresh_token"],
        token_type_hint="refresh_token",
    ) as revoked:
        assert revoked.status_code == 200, revoked.text
    assert rp.introspect(token["refresh_token"], "refresh_token") == {"active": False}
    with pytest.raises(OAuthError) as dead:
        rp.oauth.refresh_token(rp.meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert dead.value.error == "invalid_grant"

    # RP-initiated logout, then the browser is no longer signed in.
    request, token = rp.login(agent)
    rp.verify_id_token(token["id_token"], request)
    logout = agent.get(
        provider.url("/logout?")
        + urlencode(
            {
                "id_token_hint": token["id_token"],
                "post_logout_redirect_uri": rp.client.post_logout_redirect_uri,
                "state": "bye-123",
            }
        )
    )
    assert logout.status_code == 302, logout.text[:500]
    location = logout.headers["Location"]
    assert location.split("?")[0] == rp.client.post_logout_redirect_uri
    assert query_of(location)["state"] == "bye-123"
    assert rp.introspect(token["access_token"])["active"] is False  # tokens of the session die

    silent = rp.authorization_request(prompt="none")
    location = agent.authorize(silent.url)
    assert location.split("?")[0] == rp.client.redirect_uri
    params = query_of(location)
    assert params["error"] == "login_required"
    assert params["state"] == silent.state
    assert params["iss"] == provider.issuer
    assert "code" not in params


def test_sso_second_client_gets_a_code_without_login(provider, agent, new_rp):
    first, second = new_rp("confidential"), new_rp("second")
    request, token = first.login(agent, "bruno")
    _, claims = first.verify_id_token(token["id_token"], request)

    request = second.authorization_request()
    location = agent.authorize(request.url)  # straight back: no /login in between
    assert location.startswith(second.client.redirect_uri), location
    token = second.fetch_token(request, location)
    _, claims2 = second.verify_id_token(
        token["id_token"], request, access_token=token["access_token"]
    )
    assert claims2["aud"] in ([second.client.client_id], second.client.client_id)
    assert claims2["sub"] == claims["sub"] == provider.users["bruno"]["sub"]
    assert claims2["sid"] == claims["sid"]
    assert claims2["auth_time"] == claims["auth_time"]  # no password checked again
    assert claims2["acr"] == ACR_PWD and claims2["amr"] == ["pwd"]


def test_prompt_login_and_max_age(provider, agent, rp):
    request, token = rp.login(agent)
    _, claims = rp.verify_id_token(token["id_token"], request)

    within = rp.authorization_request(max_age="3600")  # the SSO session is recent enough
    location = agent.authorize(within.url)
    token = rp.fetch_token(within, location)
    _, again = rp.verify_id_token(token["id_token"], within)
    assert again["auth_time"] == claims["auth_time"]

    cookie = agent.http.cookies.get("idp_sso")
    forced = rp.authorization_request(prompt="login")
    location = agent.authorize(forced.url)
    assert location.startswith(provider.url("/login?")), location
    token = rp.fetch_token(forced, agent.sign_in(location))
    _, fresh = rp.verify_id_token(token["id_token"], forced)
    assert fresh["auth_time"] >= claims["auth_time"]
    assert agent.http.cookies.get("idp_sso") not in (None, cookie)  # a sign-in rotates the cookie
    assert fresh["sid"] == claims["sid"]  # the same session to the RP (back-channel logout)


def test_max_age_zero_always_asks_for_the_password(provider, agent, rp):
    """OIDC Core §3.1.2.1 (errata set 2): "max_age=0 is equivalent to prompt=login"."""
    time.sleep(1.02 - time.time() % 1)  # start of a second, so the bug cannot hide
    rp.login(agent)
    request = rp.authorization_request(max_age="0")
    location = agent.authorize(request.url)
    assert location.startswith(provider.url("/login?")), location


def test_public_client_with_pkce(provider, agent, new_rp):
    public = new_rp("public")
    assert public.client.is_public
    request = public.authorization_request()
    assert "code_challenge=" in request.url and "code_challenge_method=S256" in request.url
    location = agent.authorize_and_sign_in(request.url)
    code = public.check_callback(request, location)

    # Without the PKCE verifier the code is refused.
    with public.token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": public.client.redirect_uri,
        }
    ) as refused:
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] in {"invalid_request", "invalid_grant"}

    request, token = public.login(agent)  # SSO: same browser, new code
    public.verify_id_token(token["id_token"], request, access_token=token["access_token"])
    with public.userinfo(token["access_token"]) as info:
        assert info.status_code == 200 and info.json()["sub"] == provider.users["alice"]["sub"]
    refreshed = public.oauth.refresh_token(
        public.meta["token_endpoint"], refresh_token=token["refresh_token"]
    )
    assert refreshed["access_token"] != token["access_token"]


def test_key_rotation_old_tokens_verify_new_tokens_use_new_kid(provider, agent, rp):
    request, token = rp.login(agent)
    old_header, _ = rp.verify_id_token(token["id_token"], request)
    old_kid = old_header["kid"]

    def rotate(*options: str) -> str:
        output = provider.cli("keys", "rotate", *options)
        return next(
            line.split(":", 1)[1].split()[0]
            for line in output.splitlines()
            if line.startswith("RS256")
        )

    staged_kid = rotate()
    # Both workers pick the rotation up without a restart (keys.json mtime check):
    # several requests, so that each worker answers some. A staged key is
    # published at once and does not sign yet (RPs' cached JWKS must know it first).
    for _ in range(4):
        kids = {key["kid"] for key in provider.jwks()["keys"]}
        assert {old_kid, staged_kid} <= kids
        request, token = rp.login(agent)
        assert rp.verify_id_token(token["id_token"], request)[0]["kid"] == old_kid

    new_kid = rotate("--now")  # as for a compromised key: signs at once
    assert new_kid not in (old_kid, staged_kid)
    for _ in range(4):
        assert {old_kid, new_kid} <= {key["kid"] for key in provider.jwks()["keys"]}
    rp.verify_id_token(token["id_token"], request)  # signed before, still verifies
    for _ in range(4):
        request, token = rp.login(agent)  # SSO: no password, a new code each time
        header, _ = rp.verify_id_token(token["id_token"], request)
        assert header["kid"] == new_kid


def test_invalid_redirect_uri_is_an_error_page_not_a_redirect(provider, agent, rp):
    request = rp.authorization_request(redirect_uri="https://evil.example/callback")
    response = agent.get(request.url)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert 'http-equiv="refresh"' not in response.text.lower()
    assert "Traceback" not in response.text

    unknown = request.url.replace(rp.client.client_id, "no-such-client")
    response = agent.get(unknown)
    assert response.status_code in (400, 401)
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
