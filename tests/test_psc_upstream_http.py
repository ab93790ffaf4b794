"""``idp.psc.upstream`` over real HTTP, PSC's token, userinfo and JWKS endpoints played
by a small local server: client authentication (``client_secret_basic``, and
``private_key_jwt`` when ``[psc] private_key_file`` is set) and a userinfo signed as a
JWT (OpenID Connect Core 1.0 §5.3.2: its ``iss`` is PSC, its ``aud`` names us).
The full flow against a real provider is in tests/e2e/test_psc.py."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from idp.config import load_settings
from idp.psc.upstream import PscRefused, Upstream

CLIENT_ID = "portail"
SECRET = "a-client-secret-of-thirty-two-bytes!"
RPPS = "10000000009"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class PscEndpoints:
    """PSC's token, userinfo and JWKS endpoints on loopback; ``requests`` keeps what came
    to the token endpoint (headers and form), ``userinfo`` is what the next call gets."""

    def __init__(self):
        self.key = ECKey.generate_key("P-256", parameters={"kid": "psc-1"})
        self.token_requests: list[tuple[dict, dict]] = []
        self.userinfo: tuple[str, str] = ("application/json", "{}")
        self.nonce = "n-1"
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_port}/realm"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _handler(self):
        psc = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, content_type: str, body: str, status: int = 200):
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                psc.token_requests.append((dict(self.headers), form))
                token = {
                    "access_token": "at-1",
                    "token_type": "Bearer",
                    "expires_in": 60,
                    "id_token": psc.sign(psc.claims()),
                }
                self._answer("application/json", json.dumps(token))

            def do_GET(self):  # noqa: N802
                if self.path.endswith("/certs"):
                    keys = KeySet([psc.key]).as_dict(private=False)
                    return self._answer("application/json", json.dumps(keys))
                assert self.headers["Authorization"] == "Bearer at-1"
                return self._answer(*psc.userinfo)

            def log_message(self, *args):
                pass

        return Handler

    def claims(self, **overrides) -> dict:
        now = int(time.time())
        base = {"iss": self.issuer, "aud": CLIENT_ID, "sub": "f:psc:1", "iat": now}
        base.update(exp=now + 300, nonce=self.nonce, acr="eidas1", auth_time=now - 5)
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def sign(self, claims: dict, key=None) -> str:
        key = key or self.key
        return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key)

    def settings(self, **overrides) -> dict:
        psc = {
            "enabled": True,
            "issuer": self.issuer,
            "authorization_endpoint": "https://wallet.psc.test/auth",
            "token_endpoint": self.issuer + "/token",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "jwks_uri": self.issuer + "/certs",
            "end_session_endpoint": self.issuer + "/logout",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "timeout_seconds": 2.0,
            **overrides,
        }
        return load_settings({"psc": psc})["psc"]


@pytest.fixture
def psc(monkeypatch):
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the stand-in is plain http
    endpoints = PscEndpoints()
    endpoints._thread.start()
    yield endpoints
    endpoints._server.shutdown()
    endpoints._server.server_close()
    endpoints._thread.join()


def exchange(upstream: Upstream):
    return upstream.exchange("code-1", "v" * 48, "n-1", "https://idp.test/login/psc/callback")


def signed_userinfo(psc: PscEndpoints, key=None, **claims) -> tuple[str, str]:
    body = {"iss": psc.issuer, "aud": CLIENT_ID, "sub": "f:psc:1", "SubjectNameID": "8" + RPPS}
    body.update(claims)
    return "application/jwt", psc.sign({k: v for k, v in body.items() if v is not None}, key)


def test_client_secret_basic_by_default(psc):
    psc.userinfo = ("application/json", json.dumps({"sub": "f:psc:1", "SubjectNameID": RPPS}))
    identity = exchange(Upstream(psc.settings()))
    assert identity.sub == "f:psc:1" and identity.subject_name_id == RPPS
    headers, form = psc.token_requests[0]
    expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"
    assert form["grant_type"] == "authorization_code" and form["code_verifier"] == "v" * 48
    assert "client_assertion" not in form and "client_secret" not in form


def test_private_key_jwt_authenticates_us_with_a_signed_assertion(psc, tmp_path):
    """With ``private_key_file``: no secret leaves, an assertion signed by our key names
    us (``iss`` = ``sub`` = client_id) and PSC's token endpoint (``aud``), once (``jti``)."""
    ours = RSAKey.generate_key(2048)
    pem = tmp_path / "psc-client.pem"
    pem.write_bytes(ours.as_pem(private=True))
    psc.userinfo = ("application/json", json.dumps({"sub": "f:psc:1", "SubjectNameID": RPPS}))
    upstream = Upstream(psc.settings(client_secret="", private_key_file=str(pem)))
    assert exchange(upstream).subject_name_id == RPPS
    exchange(upstream)
    (headers, form), (_, second) = psc.token_requests
    assert "Authorization" not in headers and "client_secret" not in form
    assert form["client_assertion_type"] == JWT_BEARER
    public = RSAKey.import_key(ours.as_pem(private=False))
    token = jwt.decode(form["client_assertion"], public, algorithms=["RS256"])
    claims = token.claims
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == psc.issuer + "/token" and claims["exp"] > time.time()
    assert claims["jti"] != jwt.decode(second["client_assertion"], public).claims["jti"]


def test_a_signed_userinfo_from_psc_for_us_is_read(psc):
    psc.userinfo = signed_userinfo(psc, given_name="Alice")
    identity = exchange(Upstream(psc.settings()))
    assert identity.subject_name_id == "8" + RPPS and identity.given_name == "Alice"
    psc.userinfo = signed_userinfo(psc, aud=["another", CLIENT_ID])
    assert exchange(Upstream(psc.settings())).subject_name_id == "8" + RPPS
    psc.userinfo = signed_userinfo(psc, aud=None)  # no aud: PSC's older answers
    assert exchange(Upstream(psc.settings())).subject_name_id == "8" + RPPS


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://another-provider.test"},
        {"iss": None},
        {"aud": "another-client"},
        {"aud": ["another-client", "a-third"]},
        {"sub": "f:psc:2"},
        {"exp": int(time.time()) - 3600},
    ],
    ids=["other-iss", "no-iss", "other-aud", "aud-without-us", "other-sub", "expired"],
)
def test_a_signed_userinfo_not_from_psc_or_not_for_us_is_refused(psc, claims):
    psc.userinfo = signed_userinfo(psc, **claims)
    with pytest.raises(PscRefused, match="userinfo"):
        exchange(Upstream(psc.settings()))


def test_a_signed_userinfo_by_another_key_or_unsigned_is_refused(psc):
    other = ECKey.generate_key("P-256", parameters={"kid": "psc-1"})
    psc.userinfo = signed_userinfo(psc, key=other)
    with pytest.raises(PscRefused, match="signature"):
        exchange(Upstream(psc.settings()))
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"iss": psc.issuer, "sub": "f:psc:1"}).encode())
    psc.userinfo = ("application/jwt", f"{header}.{body.rstrip(b'=').decode()}.")
    with pytest.raises(PscRefused, match="alg"):
        exchange(Upstream(psc.settings()))
