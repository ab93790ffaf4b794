"""``private_key_jwt`` client authentication (RFC 7523 §2.2, OpenID Connect Core §9).

A cheap probe: a token request with an unknown ``code`` answers ``invalid_grant``
(400) once the client is authenticated, ``invalid_client`` (401) when it is not.
The full flows (code, refresh, /introspect, /revoke) run with real assertions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from idp import clock
from idp.models import AuditEvent, ClientAssertionJti, Token, db
from idp.oidc import client_auth
from tests.actions import LoginActions
from tests.conftest import ISSUER, _free_port
from tests.factories import REDIRECT_URI, make_client, make_user

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_ENDPOINT = ISSUER + "/token"
REFUSED = {"error": "invalid_client", "error_description": "Client authentication failed."}


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


@pytest.fixture(scope="module")
def other_rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})


def public_jwks(*keys) -> dict:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def sign(key, *, alg="RS256", kid=True, client_id="pk", aud=TOKEN_ENDPOINT, **claims) -> str:
    """An assertion as an RP makes it; a claim given as ``None`` is left out."""
    now = clock.now()
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    body.update(claims)
    header = {"alg": alg, **({"kid": key.kid} if kid else {})}
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key, [alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def probe(client, assertion, auth=None, **extra):
    """A token request whose ``code`` is unknown: 400 once authenticated, 401 if not."""
    data = {
        "grant_type": "authorization_code",
        "code": "unknown-code",
        "redirect_uri": REDIRECT_URI,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }
    return client.post("/token", data=data, auth=auth)


def authenticated(response) -> bool:
    if response.status_code == 400 and response.json["error"] == "invalid_grant":
        return True
    assert response.status_code == 401, response.text
    assert response.json == REFUSED
    return False


def refusals(app) -> list[tuple[str | None, dict]]:
    with app.app_context():
        rows = db.session.scalars(
            db.select(AuditEvent)
            .where(AuditEvent.event == "client.assertion_refused")
            .order_by(AuditEvent.id)
        ).all()
        return [(row.client_id, row.detail) for row in rows]


@pytest.fixture
def pk(app, rsa_key, ec_key):
    """A private_key_jwt client "pk" with an RSA and an EC key (inline JWKS), a secret
    client "rp", and alice."""
    with app.app_context():
        make_user()
        make_client("pk", auth_method="private_key_jwt", jwks=public_jwks(rsa_key, ec_key))
        return make_client("rp")[1]


class _JwksServer:
    """What the RP's jwks_uri serves, and how."""

    def __init__(self):
        self.document: dict = {"keys": []}
        self.body: bytes | None = None
        self.status = 200
        self.delay = 0.0
        self.hits = 0
        self.release = threading.Event()
        self.uri = ""


@pytest.fixture
def jwks_server():
    """The RP's jwks_uri on loopback; handler threads are joined at the end."""
    state = _JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state.hits += 1
            if state.delay:
                state.release.wait(state.delay)
            body = state.body if state.body is not None else json.dumps(state.document).encode()
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the provider gave up first

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = False  # server_close() joins a handler still sleeping
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    state.uri = f"http://127.0.0.1:{server.server_port}/jwks.json"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()
    thread.join()


# -- success ----------------------------------------------------------------------


def test_code_and_refresh_grants_with_a_key_registered_by_file(app, client, idp, tmp_path, rsa_key):
    """``idp client add --jwks FILE``; the code, then the refresh grant, authenticated
    by assertions (aud = token endpoint, then = issuer); no secret anywhere."""
    with app.app_context():
        make_user()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public_jwks(rsa_key)))
    code, out, err = idp(
        "client", "add", "pk", "--redirect-uri", REDIRECT_URI,
        "--auth-method", "private_key_jwt", "--jwks", str(path),
    )  # fmt: skip
    assert code == 0, err
    assert "secret" not in out.lower()
    login = LoginActions(client)
    response = login.exchange(
        login.login_through(client_id="pk", scope="openid offline_access")["code"],
        client_id="pk",
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=sign(rsa_key),
    )
    assert response.status_code == 200, response.text
    tokens = response.json
    assert tokens["id_token"] and tokens["refresh_token"]
    refreshed = client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": sign(rsa_key, aud=ISSUER),
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json["access_token"] != tokens["access_token"]
    assert refusals(app) == []


@pytest.mark.parametrize("aud", [TOKEN_ENDPOINT, ISSUER, ["https://other.example", ISSUER]])
@pytest.mark.parametrize("kid", [True, False], ids=["kid", "no_kid"])
@pytest.mark.parametrize(
    ("alg", "key"), [("RS256", "rsa_key"), ("PS256", "rsa_key"), ("ES256", "ec_key")]
)
def test_accepted_assertions(app, client, pk, request, alg, key, kid, aud):
    key = request.getfixturevalue(key)
    assertion = sign(key, alg=alg, kid=kid, aud=aud)
    assert ("kid" in jws.extract_compact(assertion.encode()).headers()) is kid
    assert authenticated(probe(client, assertion))


def test_without_kid_every_key_of_the_type_is_tried(app, client, rsa_key, other_rsa_key):
    with app.app_context():
        make_client("pk", auth_method="private_key_jwt", jwks=public_jwks(rsa_key, other_rsa_key))
    assert authenticated(probe(client, sign(other_rsa_key, kid=False)))
    assert authenticated(probe(client, sign(rsa_key, kid=False)))


def test_assertion_within_the_clock_leeway_is_accepted(client, pk, rsa_key):
    now = clock.now()
    assert authenticated(probe(client, sign(rsa_key, exp=now - 30, iat=now + 30)))


def test_client_id_parameter_naming_the_client_is_accepted(client, pk, rsa_key):
    assert authenticated(probe(client, sign(rsa_key), client_id="pk"))


def test_what_authlib_clients_send(app, client, pk, rsa_key):
    """Authlib's client side (``PrivateKeyJWT`` for ``OAuth2Session``, no ``kid``): its
    default hour-long assertion is over the 10-minute limit; ``expires_in`` fixes it
    (docs/RELYING_PARTIES.md)."""
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    assert not authenticated(probe(client, private_key_jwt_sign(rsa_key, "pk", TOKEN_ENDPOINT)))
    assert refusals(app) == [("pk", {"reason": "too_long_lived"})]
    short = private_key_jwt_sign(rsa_key, "pk", TOKEN_ENDPOINT, expires_in=300)
    assert authenticated(probe(client, short))


# -- refusals ---------------------------------------------------------------------


def _hs256_with_public_key(rsa_key) -> str:
    """The classic confusion: the RSA public key's PEM used as an HMAC secret."""
    now = clock.now()
    header = b64(json.dumps({"alg": "HS256", "kid": rsa_key.kid}).encode())
    claims = {"iss": "pk", "sub": "pk", "aud": TOKEN_ENDPOINT, "exp": now + 60, "jti": "hs"}
    payload = b64(json.dumps(claims).encode())
    secret = rsa_key.as_pem(private=False)
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _alg_none() -> str:
    now = clock.now()
    header = b64(json.dumps({"alg": "none"}).encode())
    claims = {"iss": "pk", "sub": "pk", "aud": TOKEN_ENDPOINT, "exp": now + 60, "jti": "none"}
    return f"{header}.{b64(json.dumps(claims).encode())}."


REFUSALS = {
    "wrong_aud": (lambda k: sign(k, aud="https://elsewhere.example/token"), "invalid_claim"),
    "userinfo_aud": (lambda k: sign(k, aud=ISSUER + "/userinfo"), "invalid_claim"),
    "revoke_aud_at_token": (lambda k: sign(k, aud=ISSUER + "/revoke"), "invalid_claim"),
    "aud_list_without_us": (lambda k: sign(k, aud=["https://a.example"]), "invalid_claim"),
    "wrong_iss": (lambda k: sign(k, iss="someone-else"), "invalid_claim"),
    "unknown_sub": (lambda k: sign(k, sub="nobody"), "unknown_client"),
    "expired": (lambda k: sign(k, exp=clock.now() - 61), "expired"),
    "too_long_lived": (lambda k: sign(k, exp=clock.now() + 3600), "too_long_lived"),
    "iat_in_future": (lambda k: sign(k, iat=clock.now() + 300), "invalid_claim"),
    "missing_exp": (lambda k: sign(k, exp=None), "missing_claim"),
    "missing_jti": (lambda k: sign(k, jti=None), "missing_claim"),
    "empty_jti": (lambda k: sign(k, jti=""), "invalid_claim"),
    "unknown_kid": (lambda k: sign(RSAKey.generate_key(2048, parameters={"kid": "new"})),
                    "unknown_key"),
    "foreign_key": (lambda k: sign(RSAKey.generate_key(2048), kid=False), "bad_signature"),
    "alg_none": (lambda k: _alg_none(), "algorithm"),
    "alg_hs256_public_key": (_hs256_with_public_key, "algorithm"),
    "garbage": (lambda k: "not.a.jwt", "malformed"),
    "hostile_crit": (lambda k: _with_header(k, {"crit": None}), "malformed"),
}  # fmt: skip


def _with_header(key, extra) -> str:
    now = clock.now()
    claims = {"iss": "pk", "sub": "pk", "aud": TOKEN_ENDPOINT, "exp": now + 60, "jti": "c"}
    header = b64(json.dumps({"alg": "RS256", "kid": key.kid, **extra}).encode())
    payload = b64(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64(bytes(256))}"


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_assertions(app, client, pk, rsa_key, case):
    """Each is ``invalid_client`` (401, a short description), audited with its reason,
    without the assertion itself; no jti is spent."""
    make, reason = REFUSALS[case]
    assertion = make(rsa_key)
    assert not authenticated(probe(client, assertion))
    [(client_id, detail)] = refusals(app)
    assert detail["reason"] == reason
    assert client_id == (None if case in ("garbage", "unknown_sub") else "pk")
    assert set(detail) <= {"reason", "claim"}  # nothing of the assertion is stored
    with app.app_context():
        assert db.session.scalars(db.select(ClientAssertionJti)).all() == []


def test_a_replayed_assertion_is_refused(app, client, pk, rsa_key):
    assertion = sign(rsa_key, jti="once")
    assert authenticated(probe(client, assertion))
    assert not authenticated(probe(client, assertion))
    # Another assertion with the same jti is a replay too, until the first expires.
    assert not authenticated(probe(client, sign(rsa_key, jti="once", exp=clock.now() + 120)))
    assert refusals(app) == [("pk", {"reason": "replayed"})] * 2


def test_two_concurrent_uses_of_one_assertion_one_wins(app, pk, rsa_key, monkeypatch):
    """Both requests pass every check, then reach the INSERT together: the unique
    (client_id, jti) lets exactly one through."""
    assertion = sign(rsa_key)
    barrier = threading.Barrier(2, timeout=10)
    use_jti = client_auth.PrivateKeyJWT._use_jti

    def together(self, client, claims):
        barrier.wait()
        return use_jti(self, client, claims)

    monkeypatch.setattr(client_auth.PrivateKeyJWT, "_use_jti", together)
    results = []

    def attempt():
        results.append(authenticated(probe(app.test_client(), assertion)))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]
    assert [detail["reason"] for _, detail in refusals(app)] == ["replayed"]


def test_a_secret_presented_by_a_private_key_jwt_client_is_refused(app, client, pk):
    data = {"grant_type": "authorization_code", "code": "c", "redirect_uri": REDIRECT_URI}
    basic = client.post("/token", data=data, auth=("pk", "guessed-secret"))
    post = client.post("/token", data={**data, "client_id": "pk", "client_secret": "x"})
    bare = client.post("/token", data={**data, "client_id": "pk"})
    for response in (basic, post, bare):
        assert response.status_code == 401 and response.json["error"] == "invalid_client"
    reasons = [d["reason"] for c, d in refusals(app) if c == "pk"]
    assert reasons[-3:] == ["secret_presented", "secret_presented", "no_assertion"]


def test_an_assertion_presented_by_a_secret_client_is_refused(app, client, pk, rsa_key):
    assert not authenticated(probe(client, sign(rsa_key, client_id="rp")))
    assert refusals(app) == [("rp", {"reason": "not_private_key_jwt"})]


def test_an_assertion_next_to_a_secret_is_refused(app, client, pk, rsa_key):
    """One method per request (RFC 6749 §2.3): a good secret does not excuse a bad assertion."""
    secret = pk
    assert not authenticated(probe(client, "forged", auth=("rp", secret)))
    assert not authenticated(probe(client, sign(rsa_key), client_id="rp", client_secret=secret))
    assert [d["reason"] for _, d in refusals(app)] == ["several_methods"] * 2


def test_a_client_id_naming_another_client_is_refused(app, client, pk, rsa_key):
    assert not authenticated(probe(client, sign(rsa_key), client_id="rp"))
    assert refusals(app) == [("pk", {"reason": "client_id_mismatch"})]


def test_a_wrong_assertion_type_is_refused(app, client, pk, rsa_key):
    response = probe(client, sign(rsa_key), client_assertion_type="urn:other")
    assert not authenticated(response)
    assert refusals(app) == [(None, {"reason": "malformed"})]


# -- jwks_uri ---------------------------------------------------------------------


@pytest.fixture
def pk_uri(app, idp, jwks_server, rsa_key):
    """ "pk" registered with ``idp client add --jwks-uri``, serving the RSA key."""
    jwks_server.document = public_jwks(rsa_key)
    with app.app_context():
        make_user()
    code, _, err = idp(
        "client", "add", "pk", "--redirect-uri", REDIRECT_URI,
        "--auth-method", "private_key_jwt", "--jwks-uri", jwks_server.uri,
    )  # fmt: skip
    assert code == 0, err
    return jwks_server


def test_code_flow_with_keys_from_the_jwks_uri_fetched_once(app, client, pk_uri, rsa_key):
    login = LoginActions(client)
    for _ in range(2):
        response = login.exchange(
            login.login_through(client_id="pk")["code"],
            client_id="pk",
            client_assertion_type=ASSERTION_TYPE,
            client_assertion=sign(rsa_key),
        )
        assert response.status_code == 200, response.text
    assert pk_uri.hits == 1  # cached


def test_the_cached_jwks_is_fetched_again_after_its_lifetime(client, pk_uri, rsa_key, frozen_clock):
    assert authenticated(probe(client, sign(rsa_key)))
    frozen_clock.advance(client_auth.JWKS_TTL + 1)
    assert authenticated(probe(client, sign(rsa_key)))
    assert pk_uri.hits == 2


def test_a_key_rotated_at_the_rp_is_fetched_on_its_unknown_kid(
    app, client, pk_uri, rsa_key, other_rsa_key, frozen_clock
):
    """New kid → refetch, at most once a minute per client: an attacker sending
    unknown kids cannot make the provider hammer the RP."""
    assert authenticated(probe(client, sign(rsa_key)))
    pk_uri.document = public_jwks(rsa_key, other_rsa_key)
    frozen_clock.advance(30)
    assert not authenticated(probe(client, sign(other_rsa_key)))  # within the minute
    assert pk_uri.hits == 1
    frozen_clock.advance(31)
    assert authenticated(probe(client, sign(other_rsa_key)))
    assert pk_uri.hits == 2
    for kid in ("ghost-1", "ghost-2", None):
        ghost = RSAKey.generate_key(2048, parameters={"kid": kid} if kid else None)
        assert not authenticated(probe(client, sign(ghost, kid=kid is not None)))
    assert pk_uri.hits == 2
    assert {d["reason"] for _, d in refusals(app)} == {"unknown_key", "bad_signature"}


def test_a_key_rotated_without_kids_is_fetched_on_a_bad_signature(
    client, pk_uri, rsa_key, other_rsa_key, frozen_clock
):
    assert authenticated(probe(client, sign(rsa_key, kid=False)))
    pk_uri.document = public_jwks(other_rsa_key)
    frozen_clock.advance(61)
    assert authenticated(probe(client, sign(other_rsa_key, kid=False)))
    assert pk_uri.hits == 2


def test_a_jwks_uri_that_is_down_refuses_the_client(app, client, rsa_key):
    with app.app_context():
        make_client(
            "pk",
            auth_method="private_key_jwt",
            jwks_uri=f"http://127.0.0.1:{_free_port()}/jwks.json",
        )
    assert not authenticated(probe(client, sign(rsa_key)))
    assert refusals(app) == [("pk", {"reason": "jwks_unavailable"})]


@pytest.mark.parametrize(
    "trouble",
    ["slow", "error", "too_large", "not_json", "not_a_key_set"],
)
def test_a_faulty_jwks_uri_refuses_the_client_quickly(
    app, client, pk_uri, rsa_key, monkeypatch, trouble
):
    monkeypatch.setattr(client_auth, "JWKS_TIMEOUT", 0.5)
    if trouble == "slow":
        pk_uri.delay = 30
    elif trouble == "error":
        pk_uri.status = 500
    elif trouble == "too_large":
        pk_uri.body = json.dumps({"keys": [], "pad": "x" * 100_000}).encode()
    elif trouble == "not_json":
        pk_uri.body = b"<html>"
    else:
        pk_uri.body = b'{"keys": "nope"}'
    started = time.monotonic()
    assert not authenticated(probe(client, sign(rsa_key)))
    assert time.monotonic() - started < 2
    # Within the minute the provider does not ask again: it answers at once.
    assert not authenticated(probe(client, sign(rsa_key)))
    assert pk_uri.hits == 1
    assert [d["reason"] for _, d in refusals(app)] == ["jwks_unavailable"] * 2


# -- /introspect and /revoke ------------------------------------------------------


def test_introspection_and_revocation_with_assertions(app, client, pk, rsa_key, ec_key):
    login = LoginActions(client)
    tokens = login.exchange(
        login.login_through(client_id="pk")["code"],
        client_id="pk",
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=sign(ec_key, alg="ES256", aud=ISSUER),
    ).json
    access = tokens["access_token"]

    def call(path, key=rsa_key, **kw):
        assertion = sign(key, **kw)
        data = {"token": access, "client_assertion_type": ASSERTION_TYPE}
        return client.post(path, data={**data, "client_assertion": assertion})

    for aud in (ISSUER + "/introspect", ISSUER, TOKEN_ENDPOINT):
        response = call("/introspect", aud=aud)
        assert response.status_code == 200 and response.json["active"] is True
    wrong = call("/introspect", aud=ISSUER + "/revoke")
    assert wrong.status_code == 401 and wrong.json == REFUSED
    assert call("/revoke", aud=ISSUER + "/revoke").status_code == 200
    assert call("/introspect", aud=ISSUER).json == {"active": False}
    assert call("/revoke", aud="https://elsewhere.example").status_code == 401
    with app.app_context():
        assert db.session.scalars(db.select(Token)).one().access_revoked
    assert [d["claim"] for _, d in refusals(app)] == ["aud", "aud"]


# -- bookkeeping ------------------------------------------------------------------


def test_used_jtis_are_purged_once_their_assertion_expired(app, client, pk, rsa_key, idp):
    assert authenticated(probe(client, sign(rsa_key, exp=clock.now() + 300)))
    assert "client_assertion_jtis: 0" in idp("purge")[1]
    with app.app_context():
        [row] = db.session.scalars(db.select(ClientAssertionJti)).all()
        assert len(row.jti_hash) == 64 and row.client_id == "pk"
    clock.set_source(lambda: time.time() + 300 + client_auth.LEEWAY + 1)
    try:
        assert "client_assertion_jtis: 1" in idp("purge")[1]
    finally:
        clock.set_source(None)


def test_discovery_lists_private_key_jwt_and_only_asymmetric_algorithms(client):
    meta = client.get("/.well-known/openid-configuration").json
    for endpoint in ("token", "revocation", "introspection"):
        assert "private_key_jwt" in meta[f"{endpoint}_endpoint_auth_methods_supported"]
        algs = meta[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert algs == list(client_auth.ALGORITHMS)
        assert {"RS256", "PS256", "ES256"} <= set(algs)
        assert not any(alg == "none" or alg.startswith("HS") for alg in algs)
