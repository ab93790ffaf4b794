"""The token endpoint: code redemption, client authentication, refresh rotation."""

import threading

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp.models import AuditEvent, AuthorizationCode, Token, db
from tests.actions import LoginActions
from tests.factories import make_client, make_user

ISSUER = "http://idp.test"


@pytest.fixture
def secret(app):
    with app.app_context():
        make_user()
        return make_client()[1]


@pytest.fixture
def login(client, secret):
    return LoginActions(client)


@pytest.fixture
def mobile(app, client):
    """A public client (PKCE, no secret) for alice."""
    with app.app_context():
        make_user()
        make_client("mobile", public=True)
    return LoginActions(client)


# Token requests that must fail without touching the code (RFC 6749 §4.1.3, RFC 7636 §4.6).
FAILED_ATTEMPTS = pytest.mark.parametrize(
    ("wrong", "error"),
    [
        ({"code_verifier": "x" * 50}, "invalid_grant"),
        ({"code_verifier": "short"}, "invalid_request"),
        ({"redirect_uri": "https://rp.example/other"}, "invalid_grant"),
    ],
    ids=["wrong_verifier", "malformed_verifier", "wrong_redirect_uri"],
)


def _decode(client, id_token):
    keys = KeySet.import_key_set(client.get("/jwks.json").json)
    return jwt.decode(id_token, keys)


def test_code_exchange_returns_a_complete_id_token(login, client, secret):
    code = login.login_through()["code"]
    response = login.exchange(code, secret=secret)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    token = _decode(client, body["id_token"])
    claims = token.claims
    assert token.header["kid"] and token.header["alg"] == "RS256"
    assert claims["iss"] == ISSUER and claims["aud"] == ["rp"] and claims["azp"] == "rp"
    assert claims["nonce"] == "n-456"
    assert claims["acr"] == "urn:idp:acr:pwd" and claims["amr"] == ["pwd"]
    assert {"exp", "iat", "auth_time", "sid", "at_hash", "sub"} <= claims.keys()
    assert claims["sub"] != "alice" and "email" not in claims  # minimal ID token


def test_es256_client_gets_an_es256_id_token(app, client):
    with app.app_context():
        make_user()
        _, secret = make_client("ec", id_token_alg="ES256")
    login = LoginActions(client)
    code = login.login_through("ec")["code"]
    token = _decode(client, login.exchange(code, "ec", secret).json["id_token"])
    assert token.header["alg"] == "ES256"


def test_client_secret_post_is_accepted_when_registered(app, client):
    with app.app_context():
        make_user()
        _, secret = make_client("poster", auth_method="client_secret_post")
    login = LoginActions(client)
    code = login.login_through("poster")["code"]
    response = login.exchange(code, "poster", client_secret=secret)
    assert response.status_code == 200


def test_a_code_is_redeemed_once_and_replay_revokes_its_tokens(login, client, secret):
    code = login.login_through()["code"]
    first = login.exchange(code, secret=secret).json
    second = login.exchange(code, secret=secret)
    assert second.status_code == 400 and second.json["error"] == "invalid_grant"
    assert second.headers["Cache-Control"] == "no-store"
    auth = {"Authorization": f"Bearer {first['access_token']}"}
    assert client.get("/userinfo", headers=auth).status_code == 401


def test_code_expires_after_sixty_seconds(login, secret, frozen_clock):
    code = login.login_through()["code"]
    frozen_clock.advance(61)
    assert login.exchange(code, secret=secret).json["error"] == "invalid_grant"


def test_wrong_pkce_verifier_fails(login, secret):
    code = login.login_through()["code"]
    response = login.exchange(code, secret=secret, code_verifier="x" * 50)
    assert response.json["error"] == "invalid_grant"


def test_wrong_redirect_uri_fails(login, secret):
    code = login.login_through()["code"]
    response = login.exchange(code, secret=secret, redirect_uri="https://rp.example/other")
    assert response.json["error"] == "invalid_grant"


@FAILED_ATTEMPTS
def test_a_failed_redemption_leaves_a_public_clients_code_redeemable(mobile, wrong, error):
    code = mobile.login_through("mobile")["code"]
    failed = mobile.exchange(code, "mobile", **wrong)
    assert failed.status_code == 400 and failed.json["error"] == error
    response = mobile.exchange(code, "mobile")
    assert response.status_code == 200 and "id_token" in response.json


@FAILED_ATTEMPTS
def test_a_failed_redemption_leaves_a_confidential_clients_code_redeemable(
    login, secret, wrong, error
):
    code = login.login_through()["code"]
    failed = login.exchange(code, secret=secret, **wrong)
    assert failed.status_code == 400 and failed.json["error"] == error
    response = login.exchange(code, secret=secret)
    assert response.status_code == 200 and "id_token" in response.json


def _code_replayed(app) -> tuple[bool, list[str]]:
    """The code's ``replayed`` flag and the ``code.replayed`` audit events so far."""
    with app.app_context():
        row = db.session.scalars(db.select(AuthorizationCode)).one()
        events = db.session.scalars(
            db.select(AuditEvent.event).where(AuditEvent.event == "code.replayed")
        ).all()
        return row.replayed, list(events)


@FAILED_ATTEMPTS
def test_a_failed_replay_of_a_used_code_revokes_nothing(app, mobile, client, wrong, error):
    code = mobile.login_through("mobile")["code"]
    tokens = mobile.exchange(code, "mobile").json
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}

    failed = mobile.exchange(code, "mobile", **wrong)
    assert failed.status_code == 400 and failed.json["error"] == error
    assert client.get("/userinfo", headers=auth).status_code == 200
    assert _code_replayed(app) == (False, [])

    replay = mobile.exchange(code, "mobile")  # the real verifier: the code leaked, revoke
    assert replay.status_code == 400 and replay.json["error"] == "invalid_grant"
    assert client.get("/userinfo", headers=auth).status_code == 401
    assert _code_replayed(app) == (True, ["code.replayed"])


def test_a_valid_replay_after_the_code_expired_still_revokes_its_tokens(
    app, login, client, secret, frozen_clock
):
    code = login.login_through()["code"]
    tokens = login.exchange(code, secret=secret).json
    frozen_clock.advance(61)
    replay = login.exchange(code, secret=secret)
    assert replay.status_code == 400 and replay.json["error"] == "invalid_grant"
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=auth).status_code == 401
    assert _code_replayed(app) == (True, ["code.replayed"])


def test_bad_client_secret_is_401_with_www_authenticate(login):
    code = login.login_through()["code"]
    response = login.exchange(code, secret="wrong")
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_unknown_grant_type_and_garbage_get_json_errors(client, secret):
    response = client.post("/token", data={"grant_type": "password"}, auth=("rp", secret))
    assert response.status_code == 400 and response.json["error"] == "unsupported_grant_type"
    response = client.post("/token", data="%%%", content_type="application/json")
    assert response.status_code in (400, 401) and "error" in response.json


def test_public_client_exchanges_with_pkce_only(app, client):
    with app.app_context():
        make_user()
        make_client("mobile", public=True)
    login = LoginActions(client)
    code = login.login_through("mobile")["code"]
    response = login.exchange(code, "mobile")
    assert response.status_code == 200 and "id_token" in response.json


def test_refresh_rotates_and_reuse_revokes_the_family(login, client, secret, frozen_clock):
    """Past ``[tokens] refresh_reuse_seconds`` (tests/test_refresh.py covers the grace)."""
    tokens = login.exchange(login.login_through()["code"], secret=secret).json
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = client.post("/token", data=refresh, auth=("rp", secret))
    assert rotated.status_code == 200
    new = rotated.json
    assert new["refresh_token"] != tokens["refresh_token"]
    old_auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/userinfo", headers=old_auth).status_code == 401

    frozen_clock.advance(11)
    replay = client.post("/token", data=refresh, auth=("rp", secret))
    assert replay.json["error"] == "invalid_grant"
    again = {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]}
    assert client.post("/token", data=again, auth=("rp", secret)).json["error"] == "invalid_grant"
    new_auth = {"Authorization": f"Bearer {new['access_token']}"}
    assert client.get("/userinfo", headers=new_auth).status_code == 401


def test_client_registered_without_refresh_gets_no_refresh_token(app, client):
    with app.app_context():
        make_user()
        _, secret = make_client("short", refresh=False)
    login = LoginActions(client)
    body = login.exchange(login.login_through("short")["code"], "short", secret).json
    assert "refresh_token" not in body


def test_tokens_are_stored_only_as_hashes(app, login, secret):
    body = login.exchange(login.login_through()["code"], secret=secret).json
    with app.app_context():
        row = db.session.scalars(db.select(Token)).one()
        stored = " ".join(str(v) for v in row.__dict__.values())
    assert body["access_token"] not in stored and body["refresh_token"] not in stored


def test_concurrent_redemption_has_exactly_one_winner(app, secret):
    client = app.test_client()
    login = LoginActions(client)
    code = login.login_through()["code"]
    verifier = login.verifier
    results = []
    barrier = threading.Barrier(4)

    def redeem():
        local = LoginActions(app.test_client())
        local.verifier = verifier
        barrier.wait()
        results.append(local.exchange(code, secret=secret).status_code)

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 400, 400, 400]
