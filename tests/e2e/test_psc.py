"""Pro Santé Connect end to end: gunicorn, a real OpenID provider standing in for PSC
(node-oidc-provider, tests/e2e/psc_standin.mjs), RPs written the usual way
(docs/RELYING_PARTIES.md, "Pro Santé Connect")."""

from __future__ import annotations

import re
from html import unescape

import pytest

from .conftest import PSC_USERS, own_issuer
from .parties import RelyingParty, UserAgent, csrf_of, location_of, query_of
from .server import free_port, serving

PSC, MFA = "eidas1", "urn:idp:acr:2fa"


@pytest.fixture
def psc_agent(psc_node):
    agent = UserAgent(psc_node)
    yield agent
    agent.close()


@pytest.fixture
def psc_rp(psc_node):
    rp = RelyingParty(psc_node, psc_node.clients["confidential"])
    yield rp
    rp.close()


def press_psc(agent: UserAgent, login_url: str):
    page = agent.page(login_url)
    assert "Se connecter avec Pro Santé Connect" in page
    action = unescape(re.search(r'<form method="post" action="(/login/psc\?tx=[^"]+)"', page)[1])
    return agent.http.post(
        agent._absolute(action),
        data={"csrf_token": csrf_of(page)},
        allow_redirects=False,
        timeout=15,
    )


def at_standin(agent: UserAgent, login_url: str, national_id: str, acr: str = "eidas1") -> str:
    """The PSC button, the stand-in's login form; returns where the stand-in sends back."""
    started = press_psc(agent, login_url)
    assert started.status_code == 303, started.text[:300]
    url = location_of(started)
    assert url.startswith(agent.provider.standin.wallet + "/auth?")
    for _ in range(5):  # the stand-in's own redirects, up to its login form
        response = agent.http.get(url, allow_redirects=False, timeout=15)
        if response.status_code != 303 and response.status_code != 302:
            break
        url = location_of(response)
    assert 'name="login"' in response.text, response.text[:300]
    response = agent.http.post(
        url, data={"login": national_id, "acr": acr}, allow_redirects=False, timeout=15
    )
    url = location_of(response)
    while not url.startswith(agent.provider.url("/login/psc/callback")):
        url = location_of(agent.http.get(url, allow_redirects=False, timeout=15))
    return url


def psc_login(agent, rp, national_id="8" + PSC_USERS["psc-alice"], acr="eidas1", **extra):
    request = rp.authorization_request(**extra)
    login_url = agent.authorize(request.url)
    callback = at_standin(agent, login_url, national_id, acr)
    return request, login_url, callback, agent.get(callback)


def test_an_rp_asking_eidas1_gets_psc_only_and_acr_eidas1(psc_agent, psc_rp):
    request = psc_rp.authorization_request(acr_values=PSC)
    login_url = psc_agent.authorize(request.url)
    page = psc_agent.page(login_url)
    assert 'autocomplete="current-password"' not in page and "psc-only-reason" in page
    callback = at_standin(psc_agent, login_url, "8" + PSC_USERS["psc-alice"])
    assert query_of(callback)["iss"] == psc_agent.provider.standin.issuer  # RFC 9207, checked
    back = psc_agent.get(callback)
    assert back.status_code == 302, back.text[:500]
    _, claims = psc_rp.finish(request, location_of(back))
    assert claims["acr"] == PSC and "mfa" in claims["amr"]
    # the same session meets an RP written for our second factor, without a code
    again = psc_rp.authorization_request(acr_values=MFA)
    location = psc_agent.authorize(again.url)
    _, claims = psc_rp.finish(again, location)
    assert claims["acr"] == MFA


def test_an_unlinked_national_id_gets_the_clear_page(psc_agent, psc_rp):
    *_, back = psc_login(psc_agent, psc_rp, national_id="810001000006")  # nobody's RPPS
    assert back.status_code == 403
    assert "n’est rattachée à aucun compte du Portail de santé" in back.text


def test_a_lower_acr_from_psc_is_refused(psc_agent, psc_rp):
    *_, back = psc_login(psc_agent, psc_rp, acr="eidas0")
    assert back.status_code == 400 and "Connexion refusée" in back.text


def test_forged_and_replayed_callbacks_are_refused(psc_agent, psc_rp, new_agent):
    _, login_url, callback, back = psc_login(psc_agent, psc_rp)
    assert back.status_code == 302
    assert psc_agent.get(callback).status_code == 400  # the same callback again
    params = query_of(callback)
    wrong_state = psc_agent.get(f"/login/psc/callback?state=forged&code={params['code']}")
    assert wrong_state.status_code == 400
    # a fresh login of this browser, answered with the code already used
    request = psc_rp.authorization_request(prompt="login")
    fresh = psc_agent.authorize(request.url)
    state = query_of(location_of(press_psc(psc_agent, fresh)))["state"]
    reused = psc_agent.get(f"/login/psc/callback?state={state}&code={params['code']}")
    assert reused.status_code == 400 and "Connexion refusée" in reused.text
    # a callback carried to another browser
    other = UserAgent(psc_agent.provider)
    try:
        other_login = other.authorize(psc_rp.authorization_request().url)
        stolen = at_standin(other, other_login, "8" + PSC_USERS["psc-bruno"])
        assert psc_agent.get(stolen).status_code == 400
    finally:
        other.close()


def test_logout_ends_our_session_and_psc_s(psc_agent, psc_rp):
    request, _, _, back = psc_login(psc_agent, psc_rp)
    token, _ = psc_rp.finish(request, location_of(back))
    logout = psc_agent.provider.url("/logout") + (
        f"?id_token_hint={token['id_token']}&post_logout_redirect_uri=https://rp.example/bye"
        "&state=bye-1"
    )
    out = psc_agent.get(logout)
    assert out.status_code == 303 and out.headers["Location"].startswith(
        psc_agent.provider.standin.wallet + "/session/end"
    )
    url = location_of(out)
    while not url.startswith("https://rp.example/bye"):
        response = psc_agent.http.get(url, allow_redirects=False, timeout=15)
        if response.status_code == 200 and "op.logoutForm" in response.text:  # PSC's own form
            action = re.search(r'action="([^"]+)"', response.text)[1]
            xsrf = re.search(r'name="xsrf" value="([^"]+)"', response.text)[1]
            response = psc_agent.http.post(
                requests_url(url, action), data={"xsrf": xsrf, "logout": "yes"},
                allow_redirects=False, timeout=15,
            )  # fmt: skip
        url = location_of(response)
    assert query_of(url)["state"] == "bye-1"
    # both sessions are over: our prompt=none fails, and PSC asks for the login again
    silent = psc_rp.authorization_request(prompt="none")
    assert query_of(psc_agent.authorize(silent.url))["error"] == "login_required"
    login_url = psc_agent.authorize(psc_rp.authorization_request().url)
    at_standin(psc_agent, login_url, "8" + PSC_USERS["psc-alice"])  # the form again


def requests_url(base: str, action: str) -> str:
    from urllib.parse import urljoin

    return urljoin(base, action)


def test_psc_stopped_gives_a_clear_page_and_the_password_still_works(psc_node):
    port = free_port()
    dead = own_issuer(psc_node.node(
        "psc-dead",
        port,
        psc={"issuer": "http://127.0.0.1:9", "discovery_url": "", "timeout_seconds": 1.0,
             "token_endpoint": "http://127.0.0.1:9/token", "userinfo_endpoint": "http://127.0.0.1:9/u",
             "jwks_uri": "http://127.0.0.1:9/certs"},
    ))  # fmt: skip
    with serving(dead, workers=1):
        agent = UserAgent(dead)
        try:
            rp = RelyingParty(dead, dead.clients["confidential"])
            login_url = agent.authorize(rp.authorization_request().url)
            down = press_psc(agent, login_url)
            assert down.status_code == 503 and "Pro Santé Connect ne répond pas" in down.text
            assert agent.sign_in(login_url).startswith("https://rp.example/callback")
            rp.close()
        finally:
            agent.close()
