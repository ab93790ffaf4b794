"""Refresh tokens raced across gunicorn workers (SECURITY.md, "Refresh tokens").

Found with real relying parties: mod_auth_openidc refreshing one token from six
workers at once got ``invalid_grant`` and was logged out (the whole grant
revoked, 4× ``refresh.replayed``); two SPA tabs renewing together broke one.
Within ``[tokens] refresh_reuse_seconds`` every racer now gets tokens and the
grant lives on; past it, reuse still revokes the grant.
"""

from __future__ import annotations

import json
import secrets
import threading
import time

import pytest
import requests
from authlib.integrations.base_client import OAuthError

from .parties import RelyingParty
from .server import Provider, RegisteredClient, free_port, serving

RACERS = 10


def _race(url: str, data: dict, auth: tuple[str, str]) -> list[tuple[int, dict, str]]:
    """``RACERS`` threads POST the same refresh at the same instant, one connection each."""
    barrier = threading.Barrier(RACERS)
    answers: list[tuple[int, dict, str]] = []
    lock = threading.Lock()

    def refresh() -> None:
        with requests.Session() as http:
            barrier.wait(timeout=10)
            with http.post(url, data=data, auth=auth, timeout=30) as response:
                with lock:
                    answers.append(
                        (
                            response.status_code,
                            response.json(),
                            response.headers.get("Cache-Control", ""),
                        )
                    )

    threads = [threading.Thread(target=refresh) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == RACERS, answers
    return answers


def _refresh_data(refresh_token: str) -> dict:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token}


def test_concurrent_refreshes_of_one_token_all_succeed_and_the_grant_survives(agent, rp):
    _, token = rp.login(agent)
    answers = _race(
        rp.meta["token_endpoint"],
        _refresh_data(token["refresh_token"]),
        (rp.client.client_id, rp.client.secret),
    )
    assert [status for status, _, _ in answers] == [200] * RACERS, answers
    assert all("no-store" in cache for _, _, cache in answers)  # RFC 6749 §5.1
    bodies = [body for _, body, _ in answers]
    assert len({body["refresh_token"] for body in bodies}) == RACERS
    for body in bodies:
        with rp.userinfo(body["access_token"]) as info:
            assert info.status_code == 200, info.text
    assert rp.introspect(token["refresh_token"])["active"] is False  # retired, all the same

    renewed = rp.refresh(bodies[-1]["refresh_token"])  # the grant goes on
    with rp.userinfo(renewed["access_token"]) as info:
        assert info.status_code == 200, info.text
    assert rp.introspect(bodies[0]["refresh_token"])["active"] is True


@pytest.fixture(scope="module")
def portal(provider) -> RelyingParty:
    """A confidential client registered with ``idp client add --no-rotate``."""
    client_id = f"e2e-portal-{secrets.token_hex(4)}"
    redirect_uri = "https://portal.example/cb"
    out = provider.cli(
        "client", "add", client_id, "--redirect-uri", redirect_uri, "--no-rotate", "--json"
    )
    registered = RegisteredClient(client_id, json.loads(out)["client_secret"], redirect_uri)
    party = RelyingParty(provider, registered)
    yield party
    party.close()


def test_a_no_rotate_client_refreshes_with_one_token_even_concurrently(agent, portal):
    _, token = portal.login(agent)
    answers = _race(
        portal.meta["token_endpoint"],
        _refresh_data(token["refresh_token"]),
        (portal.client.client_id, portal.client.secret),
    )
    assert [status for status, _, _ in answers] == [200] * RACERS, answers
    assert all("refresh_token" not in body for _, body, _ in answers)
    access_tokens = {body["access_token"] for _, body, _ in answers}
    assert len(access_tokens) == RACERS
    for access_token in access_tokens:
        with portal.userinfo(access_token) as info:
            assert info.status_code == 200, info.text
    with portal.token_request(_refresh_data(token["refresh_token"])) as again:
        assert again.status_code == 200, again.text
    assert portal.introspect(token["refresh_token"])["active"] is True


@pytest.fixture(scope="module")
def short_grace_node(provider) -> Provider:
    """A second node (same database and keys) whose reuse grace lasts one second."""
    node = provider.node("short-grace", free_port(), tokens={"refresh_reuse_seconds": 1})
    with serving(node, workers=1):
        yield node


def test_a_reuse_after_the_grace_revokes_the_grant_and_warns(agent, rp, short_grace_node):
    _, token = rp.login(agent)
    url, auth = short_grace_node.url("/token"), (rp.client.client_id, rp.client.secret)
    first = _refresh_data(token["refresh_token"])
    with requests.post(url, data=first, auth=auth, timeout=15) as rotated:
        assert rotated.status_code == 200, rotated.text
        successor = rotated.json()
    time.sleep(2.1)  # times are whole seconds: the one-second grace is over for sure

    with requests.post(url, data=first, auth=auth, timeout=15) as replay:
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert rp.introspect(successor["access_token"])["active"] is False
    with pytest.raises(OAuthError) as dead:
        rp.refresh(successor["refresh_token"])
    assert dead.value.error == "invalid_grant"
    warnings = [
        line
        for line in short_grace_node.log_tail(200).splitlines()
        if " WARNING " in line and "refresh.replayed" in line
    ]
    assert warnings, short_grace_node.log_tail()
