"""Pairwise subjects (OpenID Connect Core 1.0 §8.1, ``idp.subjects``).

A client registered with ``--subject-type pairwise`` knows each user by a
``sub`` of its own sector (the host of its redirect URIs): the same at every
sign-in and in every answer (ID token, /userinfo, /introspect, logout hint),
different on another host, never ``users.subject``.
"""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from idp.models import User, db
from tests.actions import LoginActions
from tests.factories import PASSWORD, make_client, make_user, query_of

HOSTS = {
    "lab": "https://lab.example/cb",
    "lab-admin": "https://lab.example/admin/cb",  # same host, same sector as "lab"
    "clinic": "https://clinic.example/cb",
    "portal": "https://portal.example/cb",  # a public-subject client
}


@pytest.fixture
def rps(app) -> dict[str, str]:
    """client id → secret; alice and bruno exist."""
    with app.app_context():
        make_user("alice")
        make_user("bruno")
        secrets = {}
        for client_id, uri in HOSTS.items():
            subject_type = "public" if client_id == "portal" else "pairwise"
            secrets[client_id] = make_client(
                client_id,
                redirect_uris=[uri],
                subject_type=subject_type,
                post_logout_redirect_uris=[uri.rsplit("/", 1)[0] + "/bye"],
            )[1]
    return secrets


def _payload(jwt: str) -> dict:
    segment = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _sign_in(login: LoginActions, client_id: str, secret: str, username="alice") -> dict:
    """An authorization code flow for ``client_id``; returns its tokens."""
    uri = HOSTS[client_id]
    response = login.authorize(client_id, redirect_uri=uri, scope="openid profile email")
    if "/login" in response.location:
        response = login.submit_password(response.location, username, PASSWORD)
    assert response.location.startswith(uri), response.location
    code = query_of(response.location)["code"]
    answer = login.exchange(code, client_id, secret=secret, redirect_uri=uri)
    assert answer.status_code == 200, answer.text
    return answer.json


def _subjects(client, client_id: str, secret: str, tokens: dict) -> set[str]:
    """Every ``sub`` the client is told: ID token, /userinfo, /introspect."""
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    introspected = client.post(
        "/introspect", data={"token": tokens["access_token"]}, auth=(client_id, secret)
    ).json
    return {
        _payload(tokens["id_token"])["sub"],
        client.get("/userinfo", headers=auth).json["sub"],
        introspected["sub"],
    }


def _public_subject(app, username="alice") -> str:
    with app.app_context():
        return db.session.scalars(select(User.subject).filter_by(username=username)).one()


def test_discovery_offers_pairwise_subjects(client):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["subject_types_supported"] == ["public", "pairwise"]


def test_pairwise_clients_on_two_hosts_see_two_subjects(app, client, rps):
    login = LoginActions(client)
    lab = _subjects(client, "lab", rps["lab"], _sign_in(login, "lab", rps["lab"]))
    clinic = _subjects(client, "clinic", rps["clinic"], _sign_in(login, "clinic", rps["clinic"]))
    assert len(lab) == 1 and len(clinic) == 1  # one sub per client, in every answer
    assert lab != clinic
    public = _public_subject(app)
    assert public not in lab | clinic
    assert all(len(sub) == 43 for sub in lab | clinic)  # base64url of an HMAC-SHA256


def test_a_pairwise_client_sees_the_same_subject_every_time(app, rps):
    seen = set()
    for _ in range(2):  # two browsers, two sign-ins
        client = app.test_client()
        tokens = _sign_in(LoginActions(client), "lab", rps["lab"])
        seen |= _subjects(client, "lab", rps["lab"], tokens)
    # Another client of the same host (sector) sees it too, and another user does not.
    client = app.test_client()
    seen |= _subjects(
        client,
        "lab-admin",
        rps["lab-admin"],
        _sign_in(LoginActions(client), "lab-admin", rps["lab-admin"]),
    )
    assert len(seen) == 1 and _public_subject(app) not in seen
    client = app.test_client()
    bruno = _subjects(
        client, "lab", rps["lab"], _sign_in(LoginActions(client), "lab", rps["lab"], "bruno")
    )
    assert bruno != seen


def test_a_public_client_sees_the_users_subject(app, client, rps):
    tokens = _sign_in(LoginActions(client), "portal", rps["portal"])
    assert _subjects(client, "portal", rps["portal"], tokens) == {_public_subject(app)}


def test_logout_with_a_pairwise_id_token_hint_ends_the_session_at_once(client, rps):
    login = LoginActions(client)
    tokens = _sign_in(login, "lab", rps["lab"])
    response = client.get(
        "/logout",
        query_string={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "https://lab.example/bye",
            "state": "s1",
        },
    )
    assert response.status_code == 302 and response.location == "https://lab.example/bye?state=s1"
    again = login.authorize("lab", redirect_uri=HOSTS["lab"], prompt="none")
    assert query_of(again.location)["error"] == "login_required"


def test_a_pairwise_hint_of_another_user_still_asks_for_confirmation(app, client, rps):
    other = app.test_client()
    bruno_tokens = _sign_in(LoginActions(other), "lab", rps["lab"], "bruno")
    _sign_in(LoginActions(client), "lab", rps["lab"])  # alice is signed in here
    response = client.get("/logout", query_string={"id_token_hint": bruno_tokens["id_token"]})
    assert response.status_code == 200 and 'name="confirm"' in response.text


def test_the_subject_depends_on_the_secret_key(app):
    """Changing the secret key changes every pairwise sub (docs/RELYING_PARTIES.md)."""
    from idp.subjects import pairwise_subject

    with app.app_context():
        before = pairwise_subject("lab.example", "s")
        assert pairwise_subject("lab.example", "s") == before
        assert pairwise_subject("clinic.example", "s") != before
        app.config["SECRET_KEY"] = "another-secret"
        assert pairwise_subject("lab.example", "s") != before
