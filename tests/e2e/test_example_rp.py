"""``examples/relying_party.py``, the RP developers copy, run as they run it.

The example runs as a process (``python examples/relying_party.py``) against the
provider under gunicorn; Debian's Chromium signs in through it. The findings of
the review each have a test here that fails against the example on ``main``:
a cookie copied before logout still signed in, a cross-site ``GET /logout``
logging out, a step-up result not tied to the login it came from.

Back-channel logout is tested with Logout Tokens this module signs with its own
key: ``Front`` serves a copy of the provider's discovery document whose
``jwks_uri`` publishes the provider's keys *and* that key (the example reads its
metadata from ``RP_METADATA_URL``). ``Front`` also stands in the token
endpoint for the private_key_jwt test: it checks the client assertion against
the example's own ``/jwks.json``, then forwards the code with a secret, since
the provider side of private_key_jwt is being added separately.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import KeySet, RSAKey

from .edges import code_in
from .parties import UserAgent, location_of
from .server import PASSWORD, REPO_DIR, free_port

EXAMPLE = REPO_DIR / "examples" / "relying_party.py"
ACR_2FA = "urn:idp:acr:2fa"
EVENT = "http://schemas.openid.net/event/backchannel-logout"
# Accounts of this module only (e-mailed step-up codes are looked up per address).
USERS = {
    "estelle": ["--email", "estelle@exemple.fr", "--name", "Estelle Garnier"],
    "fabien": ["--email", "fabien@exemple.fr", "--name", "Fabien Lambert"],
    "gaelle": ["--email", "gaelle@exemple.fr", "--name", "Gaëlle Henry"],
}
SIGNED_OUT = "Not signed in."


# -- the provider's metadata, with a test key and (optionally) a token endpoint ----


@dataclass
class Front:
    """Discovery and JWKS as the provider publishes them, plus ``key``'s public half.

    ``forward_secret`` set: ``/token`` verifies the private_key_jwt assertion
    against ``assertion_jwks_url`` (the RP's own /jwks.json), keeps its claims in
    ``assertions``, and forwards the request to the provider with the secret.
    """

    provider: object
    key: RSAKey
    forward_secret: str | None = None
    assertion_jwks_url: str | None = None
    assertions: list[dict] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def metadata_url(self) -> str:
        return self.url + "/.well-known/openid-configuration"

    def start(self) -> Front:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                if self.path == "/.well-known/openid-configuration":
                    meta = front.provider.metadata()
                    meta["jwks_uri"] = front.url + "/jwks.json"
                    if front.forward_secret:
                        meta["token_endpoint"] = front.url + "/token"
                    self._json(200, meta)
                elif self.path == "/jwks.json":
                    keys = front.provider.jwks()["keys"]
                    self._json(200, {"keys": [*keys, front.key.as_dict(private=False)]})
                else:
                    self._json(404, {})

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                status, answer = front.token(form)
                self._json(status, answer)

            def _json(self, status, data):
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def token(self, form: dict) -> tuple[int, dict]:
        """RFC 7523 §3 checks of the client assertion, then the real token endpoint."""
        try:
            assert form.get("client_assertion_type") == (
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            ), form
            assert "client_secret" not in form
            with requests.get(self.assertion_jwks_url, timeout=10) as published:
                keys = KeySet.import_key_set(published.json())
            decoded = jwt.decode(form["client_assertion"], keys, algorithms=["RS256", "ES256"])
            claims = decoded.claims
            client_id = form.get("client_id") or claims["iss"]
            assert claims["iss"] == claims["sub"] == client_id, claims
            assert claims["aud"] == self.url + "/token", claims  # the endpoint it was sent to
            assert time.time() - 5 <= claims["exp"] <= time.time() + 120, claims  # short-lived
            assert claims["jti"] and all(a["jti"] != claims["jti"] for a in self.assertions)
            assert decoded.header["kid"], decoded.header
        except Exception as exc:  # noqa: BLE001 - reported to the test through `refusals`
            self.refusals.append(repr(exc))
            return 401, {"error": "invalid_client"}
        self.assertions.append(claims)
        assertion_fields = ("client_assertion", "client_assertion_type", "client_id")
        data = {k: v for k, v in form.items() if k not in assertion_fields}
        with requests.post(
            self.provider.metadata()["token_endpoint"],
            data=data,
            auth=(client_id, self.forward_secret),
            timeout=10,
        ) as answer:
            return answer.status_code, answer.json()


# -- the example, as a process -----------------------------------------------------


@dataclass
class ExampleRP:
    url: str
    client_id: str
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def running_example(
    provider, workdir: Path, client_id: str, port: int, **env: str
) -> Iterator[ExampleRP]:
    """``python examples/relying_party.py`` with ``RP_*`` settings, until the block ends."""
    rp = ExampleRP(f"http://127.0.0.1:{port}", client_id, workdir / f"rp-{port}.log")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RP_", "IDP_"))},
        "RP_ISSUER": provider.issuer,
        "RP_CLIENT_ID": client_id,
        "RP_URL": rp.url,
        "AUTHLIB_INSECURE_TRANSPORT": "1",  # the test provider is http on loopback
        **env,
    }
    with open(rp.log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLE)],
            env=environment,
            cwd=workdir,  # no instance/demo-rp.secret here: the secret comes from the env
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the example RP exited:\n{rp.log_tail()}")
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(rp.url + "/", timeout=2).status_code == 200:
                        break
                assert time.monotonic() < deadline, rp.log_tail()
                time.sleep(0.1)
            yield rp
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def register(provider, client_id: str, rp_url: str, *options: str) -> str | None:
    """``idp client add`` for an example RP at ``rp_url``; its secret."""
    data = json.loads(
        provider.cli(
            "client", "add", client_id,
            "--redirect-uri", f"{rp_url}/callback",
            "--post-logout-redirect-uri", f"{rp_url}/",
            "--name", "Exemple", *options, "--json",
        )
    )  # fmt: skip
    return data["client_secret"]


@pytest.fixture(scope="module")
def accounts(provider):
    for username, options in USERS.items():
        provider.cli("user", "add", username, *options, "--password-stdin", stdin=PASSWORD + "\n")
    return {name: options[1] for name, options in USERS.items()}


@pytest.fixture(scope="module")
def test_key() -> RSAKey:
    """The key this module signs Logout Tokens with, published through ``Front``."""
    return RSAKey.generate_key(2048, parameters={"kid": "test-logout-key", "alg": "RS256"})


@pytest.fixture(scope="module")
def front(provider, test_key):
    started = Front(provider, test_key).start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def example(provider, front, accounts, tmp_path_factory) -> Iterator[ExampleRP]:
    """The example RP, registered with a back-channel logout URI."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client_id = f"example-{uuid.uuid4().hex[:8]}"
    secret = register(
        provider, client_id, url, "--backchannel-logout-uri", f"{url}/backchannel-logout"
    )
    workdir = tmp_path_factory.mktemp("example-rp")
    with running_example(
        provider,
        workdir,
        client_id,
        port,
        RP_CLIENT_SECRET=secret,
        RP_METADATA_URL=front.metadata_url,
    ) as rp:
        yield rp


# -- helpers -----------------------------------------------------------------------


def browser_sign_in(browser, provider, example: ExampleRP, username: str) -> None:
    """Through the example's "Log in": the provider's form, then back at the RP."""
    page = browser.page
    page.goto(example.url + "/login")
    if page.url.startswith(provider.url("/login?")):
        page.locator("input[autocomplete=username]").fill(username)
        page.locator("input[autocomplete=current-password]").fill(PASSWORD)
        page.locator("form button[type=submit]").click()
    page.wait_for_url(example.url + "/")
    assert "Signed in as" in page.content(), page.content()[:2000]


def rp_cookie(context, example: ExampleRP) -> dict:
    cookies = [c for c in context.cookies(example.url) if c["name"] == "rp_session"]
    assert len(cookies) == 1, context.cookies(example.url)
    return cookies[0]


def home_with_cookie(example: ExampleRP, value: str) -> str:
    """The RP's home page for a client holding only this cookie value."""
    response = requests.get(
        example.url + "/", cookies={"rp_session": value}, allow_redirects=False, timeout=10
    )
    assert response.status_code == 200, response.text[:500]
    return response.text


def agent_sign_in(agent: UserAgent, example: ExampleRP, username: str) -> None:
    """The same with ``requests`` (one jar for the RP and the provider)."""
    start = agent.http.get(example.url + "/login", allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text[:500]
    back = agent.authorize_and_sign_in(location_of(start), username)
    done = agent.http.get(back, allow_redirects=False, timeout=10)
    assert done.status_code == 302, done.text[:1000]
    assert "Signed in as" in rp_page(agent, example)


def rp_page(agent: UserAgent, example: ExampleRP, path: str = "/") -> str:
    return agent.http.get(example.url + path, allow_redirects=False, timeout=10).text


def claim_of(html: str, name: str) -> str:
    match = re.search(rf'<td id="claim-{name}">([^<]*)</td>', html)
    assert match, html[:2000]
    return match.group(1).strip()


def b64json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# -- F1: logout ends the session; the cookie holds nothing ---------------------------


def test_a_cookie_copied_before_logout_is_dead_after_it(provider, browser, example, accounts):
    browser_sign_in(browser, provider, example, "estelle")
    copied = rp_cookie(browser.context, example)["value"]
    assert "Signed in as" in home_with_cookie(example, copied)  # the copy works… for now

    page = browser.page
    page.goto(example.url + "/logout")  # GET: only asks
    assert "Log out of this application and of the provider?" in page.content()
    assert "Signed in as" in home_with_cookie(example, copied)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(re.escape(example.url) + r"/\?state="))
    assert "You are signed out (here and at the provider)." in page.content()

    assert SIGNED_OUT in home_with_cookie(example, copied)  # the copy is worth nothing now
    other = browser.context.browser.new_context()
    try:
        other.add_cookies([{"name": "rp_session", "value": copied, "url": example.url}])
        tab = other.new_page()
        tab.goto(example.url + "/")
        assert SIGNED_OUT in tab.content()
    finally:
        other.close()


def test_the_cookie_is_httponly_lax_and_opaque(provider, browser, example, accounts):
    browser_sign_in(browser, provider, example, "fabien")
    cookie = rp_cookie(browser.context, example)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # http://127.0.0.1: see the https test below
    assert cookie["expires"] == -1  # a browser-session cookie, no Max-Age
    # Nothing but a random id: no JWT, no JSON, no name, subject or e-mail.
    value = cookie["value"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value), value
    page_html = browser.page.content()
    for personal in ("Fabien", "fabien@exemple.fr", claim_of(page_html, "sub")):
        assert personal not in value
    assert "rp_session" not in browser.page.evaluate("document.cookie")


def _load_example():
    spec = importlib.util.spec_from_file_location("example_relying_party", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_cookie_is_secure_when_the_rp_is_served_over_https(provider):
    module = _load_example()
    settings = module.Settings(
        issuer=provider.issuer, client_id="x", rp_url="https://rp.example", client_secret="s"
    )
    app = module.create_app(settings)
    with app.test_client() as client:
        response = client.get("/login")  # the login state is the first thing kept
        assert response.status_code == 302
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("rp_session=")
        flags = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= flags, cookie
        assert not any(flag.startswith(("max-age", "expires")) for flag in flags), cookie
        assert response.headers["X-Frame-Options"] == "DENY"


# -- F2: logout needs a POST with the session's CSRF token ---------------------------


def test_a_cross_site_get_logout_does_not_log_out(provider, browser, example, accounts, front):
    browser_sign_in(browser, provider, example, "estelle")
    value = rp_cookie(browser.context, example)["value"]
    page = browser.page
    # Another site (localhost is not the same site as 127.0.0.1), with a link the
    # user follows: a top-level GET, which SameSite=Lax lets the cookie go with.
    evil = front.url.replace("127.0.0.1", "localhost") + "/evil"
    page.goto(evil)
    page.set_content(f'<a id="bye" href="{example.url}/logout">Voir la photo</a>')
    page.click("#bye")
    page.wait_for_url(example.url + "/logout")
    assert "Log out of this application and of the provider?" in page.content()
    assert "Signed in as" in home_with_cookie(example, value)
    # Still signed in at the provider too: a new login there needs no password.
    page.goto(example.url + "/login")
    page.wait_for_url(example.url + "/")
    assert "Signed in as" in page.content()
    assert rp_cookie(browser.context, example)["value"] != value  # a new login, a new id
    value = rp_cookie(browser.context, example)["value"]

    # A cross-site form POST: no cookie (SameSite=Lax) and no token.
    page.goto(evil)
    page.set_content(
        f'<form method="post" action="{example.url}/logout">'
        '<input name="csrf_token" value="guess"><button id="go">Go</button></form>'
    )
    page.click("#go")
    page.wait_for_load_state()
    assert "Signed in as" in home_with_cookie(example, value)

    # Same site, the cookie sent, but no token / a wrong token: refused.
    for data in ({}, {"csrf_token": "guess"}, {"csrf_token": ""}):
        refused = requests.post(
            example.url + "/logout",
            data=data,
            cookies={"rp_session": value},
            allow_redirects=False,
            timeout=10,
        )
        assert refused.status_code == 403, (data, refused.status_code)
        assert "Logout refused" in refused.text
    assert "Signed in as" in home_with_cookie(example, value)


# -- F3: the step-up result belongs to the login (ID token) it came from -------------


def test_step_up_is_tied_to_its_own_id_token(
    provider, chromium, rp_pages, example, accounts, mailbox
):
    """Two sessions of one user: the one that stepped up may see the patient record;
    the other, whose ID token says ``pwd``, may not."""
    from .browser import BrowserSession

    plain, stepped = BrowserSession(chromium, rp_pages), BrowserSession(chromium, rp_pages)
    try:
        browser_sign_in(plain, provider, example, "gaelle")
        browser_sign_in(stepped, provider, example, "gaelle")
        for session in (plain, stepped):
            session.page.goto(example.url + "/patient-record")
            assert "needs a two-factor login" in session.page.content()

        address = accounts["gaelle"]
        seen = len(mailbox.to(address))
        page = stepped.page
        page.goto(example.url + "/step-up")
        page.wait_for_url(re.compile(re.escape(provider.url("/login/otp?tx="))))
        code = code_in(mailbox.text(mailbox.wait_for(address, seen)))
        page.locator("input[name=code]").fill(code)
        page.get_by_role("button", name="Valider", exact=True).click()
        page.wait_for_url(example.url + "/")
        assert claim_of(page.content(), "acr") == ACR_2FA
        assert "otp" in claim_of(page.content(), "amr").split()
        page.goto(example.url + "/patient-record")
        assert "Patient record (two-factor login of" in page.content()

        plain.page.goto(example.url + "/patient-record")
        assert "needs a two-factor login" in plain.page.content()
        plain.page.goto(example.url + "/")
        assert claim_of(plain.page.content(), "acr") == "urn:idp:acr:pwd"
    finally:
        plain.close()
        stepped.close()


def test_a_step_up_answered_with_a_lower_acr_is_refused_even_after_another_login(
    provider, agent, example, accounts
):
    """The step-up's wanted ``acr`` goes with its own authorization request: a plain
    login started in another tab meanwhile does not erase it, and an authorization
    request whose ``acr_values`` was stripped in the browser gets a ``pwd`` ID token
    that the example refuses."""
    agent_sign_in(agent, example, "fabien")
    step_up = agent.http.get(example.url + "/step-up", allow_redirects=False, timeout=10)
    assert step_up.status_code == 302 and "acr_values=" in step_up.headers["Location"]
    other_tab = agent.http.get(example.url + "/login", allow_redirects=False, timeout=10)
    assert other_tab.status_code == 302

    parts = urlsplit(location_of(step_up))
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "acr_values"}
    stripped = urlunsplit(parts._replace(query=urlencode(query)))
    callback = agent.authorize(stripped)  # SSO: straight back, with a password-level token
    assert callback.startswith(example.url + "/callback?"), callback
    answer = agent.http.get(callback, allow_redirects=False, timeout=10)
    assert answer.status_code == 403, answer.status_code
    assert f"Step-up not done: asked for {ACR_2FA}, got urn:idp:acr:pwd." in answer.text
    assert claim_of(rp_page(agent, example), "acr") == "urn:idp:acr:pwd"
    refused = agent.http.get(example.url + "/patient-record", allow_redirects=False, timeout=10)
    assert refused.status_code == 403


# -- back-channel logout (Back-Channel Logout 1.0 §2.4–2.8) ---------------------------


def logout_token(
    key: RSAKey, provider, example: ExampleRP, *, header: dict | None = None, **changes
) -> str:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": example.client_id,
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
        "events": {EVENT: {}},
    }
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    head = {"alg": "RS256", "kid": key.kid, "typ": "logout+jwt", **(header or {})}
    head = {k: v for k, v in head.items() if v is not None}
    # jws, not jwt.encode: that one writes ``typ: JWT`` into a header without typ.
    return jws.serialize_compact(head, json.dumps(claims), key)


def post_logout_token(example: ExampleRP, token: str) -> requests.Response:
    return requests.post(
        example.url + "/backchannel-logout",
        data={"logout_token": token},
        allow_redirects=False,
        timeout=10,
    )


def test_a_valid_logout_token_ends_the_sessions_of_that_sid(
    provider, browser, new_agent, example, accounts, test_key
):
    browser_sign_in(browser, provider, example, "estelle")
    page = browser.page
    sid, sub = claim_of(page.content(), "sid"), claim_of(page.content(), "sub")
    elsewhere = new_agent()  # the same user in another browser: another provider session
    agent_sign_in(elsewhere, example, "estelle")
    assert claim_of(rp_page(elsewhere, example), "sid") != sid

    answer = post_logout_token(example, logout_token(test_key, provider, example, sid=sid, sub=sub))
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    page.goto(example.url + "/")
    assert SIGNED_OUT in page.content()
    assert "Signed in as" in rp_page(elsewhere, example)  # another sid: untouched

    # ``sub`` alone: every session of that user ends.
    agent_sign_in(new_agent(), example, "estelle")
    answer = post_logout_token(example, logout_token(test_key, provider, example, sub=sub))
    assert answer.status_code == 200, answer.text
    assert SIGNED_OUT in rp_page(elsewhere, example)


def test_invalid_logout_tokens_are_refused_with_400(provider, agent, example, accounts, test_key):
    agent_sign_in(agent, example, "fabien")
    html = rp_page(agent, example)
    sid, sub = claim_of(html, "sid"), claim_of(html, "sub")
    stranger = RSAKey.generate_key(2048, parameters={"kid": test_key.kid})  # same kid, other key
    replayed = logout_token(test_key, provider, example, sid="some-other-sid")
    assert post_logout_token(example, replayed).status_code == 200  # first use: fine

    def unsigned(**claims) -> str:  # alg "none": what a forger sends
        def part(data: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        return f"{part({'alg': 'none', 'typ': 'logout+jwt'})}.{part(claims)}."

    now = int(time.time())
    bad = {  # why: (token, what the error_description must name)
        "bad signature": (logout_token(stranger, provider, example, sid=sid), "signature"),
        "unknown key": (logout_token(RSAKey.generate_key(2048, parameters={"kid": "nobody"}),
                                     provider, example, sid=sid), "signature|signing key"),
        "alg none": (unsigned(iss=provider.issuer, aud=example.client_id, iat=now,
                              exp=now + 60, jti="x", sid=sid, events={EVENT: {}}), "signature"),
        "wrong aud": (logout_token(test_key, provider, example, sid=sid, aud="another"), "aud"),
        "wrong iss": (logout_token(test_key, provider, example, sid=sid,
                                   iss="https://evil.example"), "iss"),
        "with nonce": (logout_token(test_key, provider, example, sid=sid, nonce="n-0S6"),
                       "nonce"),
        "no events": (logout_token(test_key, provider, example, sid=sid, events=None), "events"),
        "other event": (logout_token(test_key, provider, example, sid=sid,
                                     events={"urn:other": {}}), "events"),
        "neither sid nor sub": (logout_token(test_key, provider, example), "neither sid nor sub"),
        "expired": (logout_token(test_key, provider, example, sid=sid, iat=now - 900,
                                 exp=now - 600), "exp"),
        "no exp": (logout_token(test_key, provider, example, sid=sid, exp=None), "exp"),
        "no iat": (logout_token(test_key, provider, example, sid=sid, iat=None), "iat"),
        "no jti": (logout_token(test_key, provider, example, sid=sid, jti=None), "jti"),
        "wrong typ": (logout_token(test_key, provider, example, header={"typ": "JWT"}, sid=sid),
                      "typ"),
        "replayed jti": (replayed, "jti already used"),
        "not a JWT": ("not.a.jwt", "signature or format"),
        "empty": ("", "missing logout_token"),
    }  # fmt: skip
    for why, (token, reason) in bad.items():
        answer = post_logout_token(example, token)
        assert answer.status_code == 400, (why, answer.status_code, answer.text)
        assert answer.headers["Cache-Control"] == "no-store", why
        assert answer.json()["error"] == "invalid_request", why
        assert re.search(reason, answer.json()["error_description"]), (why, answer.text)
        assert "Signed in as" in rp_page(agent, example), why

    # A missing typ is accepted (the spec says SHOULD), and ends the session.
    answer = post_logout_token(
        example, logout_token(test_key, provider, example, header={"typ": None}, sub=sub, sid=sid)
    )
    assert answer.status_code == 200, answer.text
    assert SIGNED_OUT in rp_page(agent, example)


# -- private_key_jwt --------------------------------------------------------------


def test_private_key_jwt_assertion(provider, agent, accounts, test_key, tmp_path):
    """The example with ``RP_PRIVATE_KEY``: a short-lived RFC 7523 assertion signed
    with the key it publishes at ``/jwks.json`` (and prints with --print-jwks)."""
    key = RSAKey.generate_key(2048)
    key_file = tmp_path / "rp-key.pem"
    key_file.write_bytes(key.as_pem(private=True))
    printed = subprocess.run(
        [sys.executable, str(EXAMPLE), "--private-key", str(key_file), "--print-jwks"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    jwks = json.loads(printed.stdout)
    assert [set(k) & {"d", "p", "q", "dp", "dq", "qi"} for k in jwks["keys"]] == [set()]
    (tmp_path / "rp-jwks.json").write_text(printed.stdout)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client_id = f"example-pkjwt-{uuid.uuid4().hex[:8]}"
    secret = register(provider, client_id, url)  # the front forwards with it (see the docstring)
    front = Front(provider, test_key, forward_secret=secret, assertion_jwks_url=url + "/jwks.json")
    front.start()
    try:
        with running_example(
            provider,
            tmp_path,
            client_id,
            port,
            RP_PRIVATE_KEY=str(key_file),
            RP_METADATA_URL=front.metadata_url,
        ) as example:
            assert requests.get(url + "/jwks.json", timeout=10).json() == jwks
            agent_sign_in(agent, example, "gaelle")
            agent_sign_in(agent, example, "gaelle")  # a second assertion: another jti
    finally:
        front.stop()
    assert front.refusals == []
    assert len(front.assertions) == 2
    assert front.assertions[0]["jti"] != front.assertions[1]["jti"]


# -- against the provider's own Logout Tokens and client authentication ------------
# The provider sides of back-channel logout and of private_key_jwt are being added
# separately: these run as soon as the provider does them, and are skipped until then.


def test_back_channel_logout_sent_by_the_provider(provider, browser, example, accounts):
    if not provider.metadata().get("backchannel_logout_supported"):
        pytest.skip("the provider does not send Logout Tokens yet (backchannel_logout_supported)")
    browser_sign_in(browser, provider, example, "gaelle")
    copied = rp_cookie(browser.context, example)["value"]
    page = browser.page
    page.goto(provider.url("/logout"))  # signing out at the provider, not at the RP
    page.locator("form button[type=submit]").click()
    page.wait_for_load_state()
    deadline = time.monotonic() + 15  # the provider may send it from a background thread
    while "Signed in as" in home_with_cookie(example, copied):
        assert time.monotonic() < deadline, "the example RP session outlived the provider's"
        time.sleep(0.2)


def test_private_key_jwt_with_the_provider(provider, agent, accounts, tmp_path):
    key = RSAKey.generate_key(2048)
    key_file = tmp_path / "rp-key.pem"
    key_file.write_bytes(key.as_pem(private=True))
    jwks_file = tmp_path / "rp-jwks.json"
    printed = subprocess.run(
        [sys.executable, str(EXAMPLE), "--private-key", str(key_file), "--print-jwks"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    jwks_file.write_text(printed.stdout)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client_id = f"example-pkjwt-{uuid.uuid4().hex[:8]}"
    assert register(
        provider, client_id, url, "--auth-method", "private_key_jwt", "--jwks", str(jwks_file)
    ) is None  # fmt: skip

    # Does the provider check assertions yet? A made-up code tells: invalid_grant
    # once the client is authenticated, invalid_client before.
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    token_endpoint = provider.metadata()["token_endpoint"]
    key.ensure_kid()
    assertion = private_key_jwt_sign(
        key, client_id, token_endpoint, alg="RS256", header={"kid": key.kid}, expires_in=60
    )
    with requests.post(
        token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": "made-up",
            "redirect_uri": f"{url}/callback",
            "client_id": client_id,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        timeout=10,
    ) as probe:
        if probe.json().get("error") == "invalid_client":
            pytest.skip("the provider does not verify private_key_jwt assertions yet")
        assert probe.json()["error"] == "invalid_grant", probe.text

    with running_example(provider, tmp_path, client_id, port, RP_PRIVATE_KEY=str(key_file)) as rp:
        agent_sign_in(agent, rp, "gaelle")


def test_idp_demo_registers_the_example_with_its_back_channel_logout_uri(tmp_path, shared_keys):
    """``idp demo`` (SQLite of its own, not the provider's database) and the example agree."""
    from idp import create_app
    from idp.cli import initialise
    from idp.clients import find_client
    from idp.demo import DEMO_CLIENT, RP_URL, seed
    from idp.models import db
    from tests.conftest import CHEAP_ARGON2, ISSUER

    instance = tmp_path / "instance"
    app = create_app(
        {
            "issuer": ISSUER,
            "instance_dir": str(instance),
            "database": {"url": f"sqlite:///{instance / 'idp.sqlite3'}"},
            "keys": {"dir": str(shared_keys)},
            "password": dict(CHEAP_ARGON2),
        }
    )
    try:
        initialise(app)
        with app.app_context():
            seed(app)
            client = find_client(DEMO_CLIENT)
            assert client.backchannel_logout_uri == f"{RP_URL}/backchannel-logout"
            assert client.backchannel_logout_session_required is True
            assert client.redirect_uris == [f"{RP_URL}/callback"]
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    settings = _load_example().Settings()
    assert (settings.rp_url, settings.client_id) == (RP_URL, DEMO_CLIENT)
