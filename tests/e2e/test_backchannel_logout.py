"""Back-channel logout against gunicorn: two RPs with back-channel URIs (served by a
small HTTP server recording their POSTs) hear of the end of the session they
took part in, whichever way it ends; an RP that is down hears of it when it
comes back; the user's page never waits for them (docs/RELYING_PARTIES.md, "Back-channel logout").
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.test_backchannel_logout import LogoutReceiver

from .parties import RelyingParty, UserAgent
from .server import PASSWORD, RegisteredClient

EVENT = "http://schemas.openid.net/event/backchannel-logout"
NEW = "Copper-Lantern-77-Meadow"
WAIT = 10.0


@pytest.fixture(scope="module")
def receiver():
    found = LogoutReceiver()
    found.start()
    yield found
    found.stop()


def _add_client(provider, name: str, receiver: LogoutReceiver, *options: str) -> RegisteredClient:
    client_id = f"e2e-bc-{name}"
    redirect, bye = f"https://{name}.example/cb", f"https://{name}.example/bye"
    out = provider.cli(
        "client", "add", client_id, "--redirect-uri", redirect,
        "--post-logout-redirect-uri", bye,
        "--backchannel-logout-uri", receiver.url(f"/{name}"), *options, "--json",
    )  # fmt: skip
    return RegisteredClient(client_id, json.loads(out)["client_secret"], redirect, bye)


@pytest.fixture(scope="module")
def bc_clients(provider, receiver) -> dict[str, RegisteredClient]:
    """``dossier`` (session required) and ``agenda``, registered with ``idp client add``."""
    return {
        "dossier": _add_client(
            provider, "dossier", receiver, "--backchannel-logout-session-required"
        ),
        "agenda": _add_client(provider, "agenda", receiver),
    }


def _add_user(provider, username: str) -> None:
    provider.cli(
        "user", "add", username, "--email", f"{username}@exemple.fr", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip


@pytest.fixture
def rps(provider, bc_clients, receiver):
    made = {name: RelyingParty(provider, client) for name, client in bc_clients.items()}
    receiver.received.clear()
    receiver.status.clear()
    yield made
    for rp in made.values():
        rp.close()


def _sign_in_at_both(agent: UserAgent, rps: dict, username: str) -> dict[str, dict]:
    """The user signs in at each RP (SSO after the first); their ID token claims."""
    found = {}
    for name, rp in rps.items():
        request, token = rp.login(agent, username)
        _, claims = rp.verify_id_token(token["id_token"], request)
        found[name] = {"id_token": token["id_token"], **claims}
    return found


def _wait_for(receiver: LogoutReceiver, count: int, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count:
        assert time.monotonic() < deadline, f"{len(receiver.received)} of {count} Logout Tokens"
        time.sleep(0.02)


def _check_tokens(provider, receiver: LogoutReceiver, expected: dict[str, dict]) -> None:
    """Each RP got one Logout Token, verified against /jwks.json, for the right sid."""
    jwks = KeySet.import_key_set(provider.jwks())
    assert sorted(r.path for r in receiver.received) == sorted(f"/{n}" for n in expected)
    for item in receiver.received:
        name = item.path.lstrip("/")
        assert item.content_type == "application/x-www-form-urlencoded"
        decoded = jwt.decode(item.logout_token, jwks, algorithms=["RS256", "ES256"])
        assert decoded.header["typ"] == "logout+jwt"
        claims = decoded.claims
        jwt.JWTClaimsRegistry(
            leeway=5,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": f"e2e-bc-{name}"},
            iat={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(claims)
        assert claims["events"] == {EVENT: {}} and "nonce" not in claims
        assert claims["sid"] == expected[name]["sid"] and claims["sub"] == expected[name]["sub"]


def _rp_logout(agent: UserAgent, rp: RelyingParty, id_token: str):
    query = urlencode(
        {"id_token_hint": id_token, "post_logout_redirect_uri": rp.client.post_logout_redirect_uri}
    )
    started = time.monotonic()
    response = agent.get(f"/logout?{query}")
    return response, time.monotonic() - started


def test_signing_out_at_one_rp_tells_both(provider, new_agent, rps, receiver):
    _add_user(provider, "bcl-lea")
    agent = new_agent()
    claims = _sign_in_at_both(agent, rps, "bcl-lea")
    assert claims["dossier"]["sid"] == claims["agenda"]["sid"]
    response, took = _rp_logout(agent, rps["dossier"], claims["dossier"]["id_token"])
    assert response.status_code == 302, response.text[:300]
    assert response.headers["Location"] == rps["dossier"].client.post_logout_redirect_uri
    _wait_for(receiver, 2)
    _check_tokens(provider, receiver, claims)
    assert took < 1.0, took


def test_logging_out_other_devices_from_another_browser_tells_both(
    provider, new_agent, rps, receiver
):
    _add_user(provider, "bcl-theo")
    workstation, own = new_agent(), new_agent()
    claims = _sign_in_at_both(workstation, rps, "bcl-theo")
    own.sign_in(own.authorize(provider.url("/login")), "bcl-theo")
    assert own.get("/account/").status_code == 200
    assert receiver.received == []  # signing in elsewhere ends nothing
    changed = own.submit(
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW,
            "confirm_password": NEW,
            "logout_others": "y",
        },
    )
    assert changed.status_code == 302, changed.text[:300]
    _wait_for(receiver, 2)
    _check_tokens(provider, receiver, claims)


def test_an_rp_that_is_down_hears_of_it_when_it_is_back(provider, new_agent, rps, receiver):
    _add_user(provider, "bcl-ines")
    agent = new_agent()
    claims = _sign_in_at_both(agent, rps, "bcl-ines")
    receiver.stop()  # both RPs down: connections refused
    try:
        response, took = _rp_logout(agent, rps["agenda"], claims["agenda"]["id_token"])
        assert response.status_code == 302 and took < 1.0, took  # the page answered at once
        time.sleep(0.5)
        assert receiver.received == []
    finally:
        receiver.start()  # back, on the same port
    _wait_for(receiver, 2, timeout=30)  # first retry 10 s after the failure
    _check_tokens(provider, receiver, claims)


def test_fan_out_cost(provider, new_agent, receiver):
    """Not a pass/fail figure: the logout page's time and the time until N RPs have
    their Logout Tokens (in the report); bounds only catch a page that waits."""
    count = 10
    with ThreadPoolExecutor(max_workers=5) as pool:
        clients = list(pool.map(lambda i: _add_client(provider, f"fan{i}", receiver), range(count)))
    _add_user(provider, "bcl-fan")
    agent = new_agent()
    rps = [RelyingParty(provider, client) for client in clients]
    try:
        tokens = [rp.login(agent, "bcl-fan")[1] for rp in rps]
        receiver.received.clear()
        query = urlencode({"id_token_hint": tokens[0]["id_token"]})
        started = time.monotonic()
        response = agent.get(f"/logout?{query}")
        page = time.monotonic() - started
        assert response.status_code == 200
        _wait_for(receiver, count)
        delivered = time.monotonic() - started
    finally:
        for rp in rps:
            rp.close()
    print(f"\nfan-out to {count} RPs: logout page {page * 1000:.0f} ms, "
          f"all delivered after {delivered * 1000:.0f} ms")  # fmt: skip
    assert page < 1.0
