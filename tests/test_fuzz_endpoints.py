"""Property-based abuse tests: no request, however malformed, makes an endpoint answer 5xx.

Issue "abuse resistance", item 4. Each test drives one endpoint, GET and POST,
with requests built by hypothesis: the endpoint's parameters, each one valid,
dropped, repeated or replaced by hostile text (control characters, NUL,
non-ASCII, ``"``, ``\\``, percent signs, strings up to ~20 kB), unknown
parameters, undecodable raw query strings, form, JSON, multipart and raw
bodies, JWT look-alikes with hostile headers, and arbitrary latin-1 header
values (``Accept-Language``, ``Cookie``, ``Host``, ``X-Forwarded-*``,
``Authorization``, ``Content-Type``…). The browser is signed in or not; live
login transactions at every step, real tokens, an unused code, a real reset
link and a valid CSRF token are among the candidate values, so requests get
past the first check.

The properties: the status is below 500, and a redirect never leaves the
provider except to a registered ``redirect_uri`` or ``post_logout_redirect_uri``
(or to the host the client named itself, as Werkzeug's redirect from a path
with ``//`` does).

Examples per endpoint: ``IDP_FUZZ_EXAMPLES``; by default 2,000 on SQLite and
400 on PostgreSQL — what CI runs. Runs are derandomized (the same examples
every time, so CI is reproducible), so the PostgreSQL run repeats the first
400 of the SQLite run's inputs: it checks the same handling against the other
database rather than new inputs, and the input space is covered once, on the
faster database (16 endpoints, 32,000 requests, about 4.5 min on a quiet
2-core machine). Runs keep no example database. A deeper run, e.g. before a
release: ``IDP_FUZZ_EXAMPLES=10000 .venv/bin/pytest tests/test_fuzz_endpoints.py``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import string
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Response
from werkzeug.wsgi import get_host

from idp import create_app
from idp.auth import sessions
from idp.config import DEFAULTS
from idp.crypto import sha256_hex
from idp.models import LoginTransaction, SsoSession, User, db
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import PASSWORD, REDIRECT_URI, make_client, make_user, pkce_pair

_ON_POSTGRES = bool(os.environ.get("IDP_TEST_DATABASE_URL"))
EXAMPLES = int(os.environ.get("IDP_FUZZ_EXAMPLES", "400" if _ON_POSTGRES else "2000"))
FUZZ = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one app per test; World keeps examples independent
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

LOGOUT_URI = "https://rp.example/bye"
MFA = "urn:idp:acr:2fa"
REGISTERED = (REDIRECT_URI, LOGOUT_URI)  # the only places a redirect may leave us for


def ref(name: str) -> str:
    """A placeholder for a live value of the world (a token, a transaction id…).

    Strategies are built once; ``_send`` swaps placeholders for the current values.
    """
    return f"\u27e6{name}\u27e7"


REF = re.compile("\u27e6(\\w+)\u27e7")

# -- text ----------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\x00",
    "\x0b",
    "\x7f",
    "\\",
    '"',
    "'",
    "`",
    "%",
    "%00",
    "%zz",
    "%ff%fe",
    "+",
    "&",
    "=",
    "#",
    "?",
    ";",
    "é",
    "ß",
    "☃",
    "\u202e",
    "\ufeff",
    "\U0001f600",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "%(x)s",
    "{}",
    "[]",
    "null",
    "true",
    "0",
    "-1",
    "1e309",
    "NaN",
    "99999999999999999999999",
    "https://evil.example/cb",
    "javascript:alert(1)",
    "//evil.example",
    "https://rp.example@evil.example/",
    "a" * 300,
    "x" * 20000,
    "é" * 6000,
    "\t" * 7000,
    '"\\' * 5000,
]
SUFFIXES = ["\t", "\\", '"', "é", " ", "\x00", "%", "#x", "?a=b", "\x7f", "\u2028"]
LATIN1 = st.characters(codec="latin-1", exclude_characters="\r\n")  # what WSGI headers carry

short_text = st.text(max_size=24)  # any code point but surrogates: controls, NUL, non-ASCII…
hostile = st.one_of(
    st.sampled_from(NASTY),
    short_text,
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=24),
)
keys = st.one_of(st.sampled_from(NASTY[:30]), short_text)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | short_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(short_text, children, max_size=3)
    ),
    max_leaves=6,
)


def value_of(valid: list[str], extra=None):
    """A valid value, a valid value with a hostile suffix, hostile text (or ``extra``)."""
    choices = [hostile] if extra is None else [hostile, extra]
    if not valid:
        return st.one_of(*choices)
    return st.one_of(
        st.sampled_from(valid),
        st.builds(str.__add__, st.sampled_from(valid), st.sampled_from(SUFFIXES)),
        *choices,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(header, claims, signature: bytes) -> str:
    parts = [json.dumps(header).encode(), json.dumps(claims).encode(), signature]
    return ".".join(_b64(part) for part in parts)


_jose_header = st.one_of(
    st.fixed_dictionaries(
        {"alg": value_of(["RS256", "ES256", "none", "HS256"]), "kid": hostile},
        optional={"typ": hostile, "crit": json_values, "jku": hostile, "b64": json_values},
    ),
    json_values,
)
_jose_claims = st.one_of(
    st.fixed_dictionaries(
        {"iss": value_of(["http://idp.test"]), "aud": json_values, "exp": json_values},
        optional={"sub": hostile, "azp": json_values, "nbf": json_values},
    ),
    json_values,
)
# Compact JWS look-alikes: hostile headers and claims, or our real ID token re-headed.
jwt_like = st.one_of(
    st.builds(_jwt, _jose_header, _jose_claims, st.binary(max_size=64)),
    st.builds(lambda h: _b64(json.dumps(h).encode()) + "." + ref("id_token_rest"), _jose_header),
)


ACTIONS = ["valid", "valid", "value", "drop", "repeat"]


@st.composite
def pairs(draw, known: dict[str, list[str]]):
    """Parameters as ``(key, value)`` pairs: each known one valid, hostile, dropped or repeated."""
    out = []
    everything_valid = draw(st.integers(0, 3)) == 0  # to reach the deepest paths too
    for key, valid in known.items():
        action = "valid" if everything_valid else draw(st.sampled_from(ACTIONS))
        if action == "drop":
            continue
        if action == "valid" and valid:
            out.append((key, draw(st.sampled_from(valid))))
            continue
        extra = jwt_like if key in ("id_token_hint", "token", "access_token") else None
        out.append((key, draw(value_of(valid, extra))))
        if action == "repeat":
            out.append((key, draw(value_of(valid, extra))))
    out += draw(st.lists(st.tuples(keys, hostile), max_size=2))
    return out


# -- headers and bodies ----------------------------------------------------------

HEADER_NAMES = [
    "Accept-Language",
    "Accept",
    "Authorization",
    "Cookie",
    "Host",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "User-Agent",
    "Origin",
    "Referer",
    "If-Modified-Since",
    "If-None-Match",
    "Range",
    "Content-Type",
    "Content-Encoding",
    "X-Request-Id",
]
latin1_text = st.text(alphabet=LATIN1, max_size=40)
AUTHORIZATION = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            " x",
            "x ",
            "Basic",
            "Basic ",
            "Basic  ",
            "Basic Og==",
            "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
            "Basic " + base64.b64encode('rp:é\x00"\\'.encode()).decode(),
            "Basic " + base64.b64encode(b"rp%00:x").decode(),
            "Basic !!!",
            "Bearer",
            "Bearer ",
            "Bearer " + ref("access_token"),
            "bearer  " + ref("access_token") + "\t",
            "Bearer a b c",
            "Digest username=x",
        ]
    ),
    # Basic credentials, encoded in _send once the placeholders are resolved
    st.tuples(st.just("basic"), value_of(["rp", "spa", ""]), value_of([ref("secret"), ""])),
    st.builds(lambda h: "Bearer " + h, latin1_text),
    st.builds(lambda h: "Basic " + h, latin1_text),
    st.builds(lambda h: "Bearer " + h, jwt_like),
    latin1_text,
)
HOST = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            ".",
            "a..b",
            "localhost:99999",
            "localhost:x",
            "[::1",
            "[::1]:80",
            "évil.example",
            "a b",
            "x" * 64 + ".example",
            "x" * 300,
            "-.example",
            "xn--zz",
            "idp.test\x00",
        ]
    ),
    latin1_text,
)
OTHER_HEADERS = st.one_of(
    latin1_text,
    st.sampled_from(
        [
            "",
            "en",
            "fr-FR,fr;q=0.9,en;q=0.8",
            "*;q=abc,en;q=1e999",
            "xx;q=0.5;;;,",
            "session=é; idp_sso=\x00",
            "idp_sso=" + "a" * 5000,
            "1.2.3.4, 5.6.7.8",
            "https",
            "gopher",
            "unknown, ::1, \x7f",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            "application/json; charset=latin-7",
            "application/x-www-form-urlencoded; charset=ebcdic",
            "bytes=0-1,-5",
            "\xe9\xff",
            "a\x00b",
            "x" * 20000,
        ]
    ),
)
HEADER_VALUES = {"Authorization": AUTHORIZATION, "Host": HOST}


@st.composite
def header_sets(draw, focus: tuple[str, ...]):
    """A few arbitrary headers; ``Host`` a quarter of the time, each ``focus`` one half."""
    names = draw(st.lists(st.sampled_from(HEADER_NAMES), max_size=3, unique=True))
    names += [name for name in focus if draw(st.booleans())]
    if draw(st.integers(0, 3)) == 0:
        names.append("Host")
    return {name: draw(HEADER_VALUES.get(name, OTHER_HEADERS)) for name in names}


RAW_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/json",
    "text/plain",
    "application/octet-stream",
]
raw_query = st.one_of(
    st.text(alphabet=string.printable + "é\x00", max_size=60), st.sampled_from(["&&=&==", "%"])
)


@dataclass
class Endpoint:
    """One route, the parameters it reads and how its path may vary."""

    path: str
    params: dict[str, list[str]]
    paths: list[str] = field(default_factory=list)  # valid variants of the path
    fuzz_path: str | None = None  # a prefix after which the last segment is hostile
    focus: tuple[str, ...] = ()  # headers it reads: sent more often


@dataclass
class Request:
    method: str
    path: str
    query: list | str | None  # pairs, or a raw query string
    body: tuple | None  # ("form", pairs) | ("json", value) | ("raw", bytes, content type)
    headers: dict
    signed_in: bool


@st.composite
def requests(draw, endpoint: Endpoint):
    method = draw(st.sampled_from(["GET", "POST"]))
    path = draw(st.sampled_from([endpoint.path, *endpoint.paths]))
    if endpoint.fuzz_path and draw(st.booleans()):
        path = endpoint.fuzz_path + quote(draw(hostile), safe="")[:4000]
    params = draw(pairs(endpoint.params))
    where = draw(st.sampled_from(["query", "query", "body", "both", "raw"]))
    query = body = None
    if where in ("query", "both") or method == "GET":
        query = params
    if where == "raw":
        query = draw(raw_query)
    if method == "POST":
        kind = draw(st.sampled_from(["form", "form", "form", "json", "raw", "none"]))
        if kind == "form":
            body = ("form", params if where in ("body", "both") else draw(pairs(endpoint.params)))
        elif kind == "json":
            body = ("json", draw(st.one_of(st.just(dict(params)), json_values)))
        elif kind == "raw":
            content_type = draw(st.one_of(st.sampled_from(RAW_TYPES), st.text(LATIN1, max_size=30)))
            body = ("raw", draw(st.binary(max_size=200)), content_type)
    headers = draw(header_sets(endpoint.focus))
    return Request(method, path, query, body, headers, draw(st.booleans()))


# -- the endpoints ---------------------------------------------------------------

CSRF = [ref("csrf")]
API = ("Authorization",)
TOKENS = [ref("access_token"), ref("refresh_token"), ref("id_token")]
CLIENT_AUTH = {"client_id": ["rp", "spa"], "client_secret": [ref("secret")]}
CLAIMS = [
    json.dumps({"id_token": {"acr": {"essential": True, "values": [MFA]}}}),
    json.dumps({"userinfo": {"email": None}, "id_token": {"amr": {"values": ["otp"]}}}),
    '{"id_token": {"acr": {"essential": "yes"}}}',
    '{"id_token": {"amr": {"essential": true, "values": ["otp", 1]}}}',
    "[1]",
    "{" * 2000,
]
ENDPOINTS = {
    "authorize": Endpoint(
        "/authorize",
        {
            "response_type": ["code", "token", "code id_token", "none"],
            "client_id": ["rp", "spa", "nobody"],
            "redirect_uri": [REDIRECT_URI, "https://evil.example/cb"],
            "scope": ["openid profile email", "openid offline_access", "profile"],
            "state": ["st-1"],
            "nonce": ["n-1"],
            "code_challenge": [pkce_pair()[1]],
            "code_challenge_method": ["S256", "plain"],
            "prompt": ["none", "login", "none login", "consent select_account"],
            "max_age": ["0", "60", "soon"],
            "ui_locales": ["en", "fr-FR en"],
            "login_hint": ["alice", "bruno@exemple.fr"],
            "acr_values": [MFA, "urn:idp:acr:pwd", "urn:gold"],
            "claims": CLAIMS,
            "request": ["eyJhbGciOiJub25lIn0.e30."],
            "request_uri": ["https://rp.example/req"],
            "response_mode": ["query", "fragment", "form_post"],
            "id_token_hint": [ref("id_token")],
        },
    ),
    "token": Endpoint(
        "/token",
        {
            "grant_type": [
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "password",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
            ],
            "code": [ref("code")],
            "redirect_uri": [REDIRECT_URI],
            "code_verifier": [ref("verifier")],
            "refresh_token": [ref("refresh_token")],
            "scope": ["openid", "offline_access"],
            **CLIENT_AUTH,
        },
        focus=API,
    ),
    "userinfo": Endpoint("/userinfo", {"access_token": [ref("access_token")]}, focus=API),
    "revoke": Endpoint(
        "/revoke",
        {"token": TOKENS, "token_type_hint": ["access_token", "refresh_token"], **CLIENT_AUTH},
        focus=API,
    ),
    "introspect": Endpoint(
        "/introspect",
        {"token": TOKENS, "token_type_hint": ["access_token", "refresh_token"], **CLIENT_AUTH},
        focus=API,
    ),
    "logout": Endpoint(
        "/logout",
        {
            "id_token_hint": [ref("id_token"), "eyJhbGciOiJub25lIn0.e30."],
            "post_logout_redirect_uri": [LOGOUT_URI, "https://evil.example/bye"],
            "client_id": ["rp", "spa"],
            "state": ["st-2"],
            "ui_locales": ["en", "fr"],
            "logout_hint": ["alice"],
            "confirm": ["yes"],
            "csrf_token": CSRF,
        },
    ),
    "login": Endpoint(
        "/login",
        {
            "tx": [ref("tx_password"), ref("tx_otp")],
            "username": ["alice", "bruno", "alice@exemple.fr"],
            "password": ["wrong password", PASSWORD],
            "csrf_token": CSRF,
        },
    ),
    "login_channel": Endpoint(
        "/login/channel",
        {"tx": [ref("tx_channel"), ref("tx_otp")], "channel": ["email", "sms"], "csrf_token": CSRF},
    ),
    "login_otp": Endpoint(
        "/login/otp",
        {
            "tx": [ref("tx_otp"), ref("tx_password")],
            "code": ["000000", ref("otp_code")],
            "remember": ["y"],
            "action": ["resend"],
            "csrf_token": CSRF,
        },
    ),
    "account": Endpoint("/account/", {"ui_locales": ["en"]}, paths=["/"]),
    "account_profile": Endpoint(
        "/account/profile",
        {"backup_phone": ["06 12 34 56 78", "+33612345678", ""], "csrf_token": CSRF},
    ),
    "account_password": Endpoint(
        "/account/password",
        {
            "tx": [ref("tx_renew")],
            "current_password": [PASSWORD],
            "new_password": ["Another-Long-Pass-42", "short"],
            "confirm_password": ["Another-Long-Pass-42"],
            "logout_others": ["y"],
            "csrf_token": CSRF,
        },
    ),
    "account_sessions": Endpoint(
        "/account/sessions/" + ref("other_session") + "/end",
        {"csrf_token": CSRF},
        paths=["/account/sessions/0/end", "/account/sessions/" + "x" * 22 + "/end"],
        fuzz_path="/account/sessions/",
    ),
    "password_forgot": Endpoint(
        "/password/forgot",
        {"identifier": ["alice", "alice@exemple.fr", "nobody"], "csrf_token": CSRF},
    ),
    "password_reset": Endpoint(
        ref("reset_path"),
        {
            "new_password": ["Another-Long-Pass-42", "short"],
            "confirm_password": ["Another-Long-Pass-42"],
            "csrf_token": CSRF,
        },
        paths=["/password/reset/x", "/password/reset/" + ref("reset_token") + "x"],
        fuzz_path="/password/reset/",
    ),
    "static": Endpoint(
        "/.well-known/openid-configuration",
        {"tx": [ref("tx_password")]},
        paths=["/jwks.json", "/healthz", "/static/idp.css", "/static/../idp/__init__.py"],
        fuzz_path="/",
    ),
}


# -- the world: users, clients, a signed-in browser, tokens and login steps ------


class World:
    """The live values requests refer to, restored when a request used one up."""

    def __init__(self, app, smtp):
        self.app, self.smtp = app, smtp
        with app.app_context():
            make_user("alice")
            make_user("bruno", roles=["patient_data"])
            make_user("chloe", roles=["patient_data"], backup_phone="+33612345678")
            dora = make_user("dora")  # her password is expired: the renew step
            db.session.execute(update(User).where(User.id == dora.id).values(password_changed_at=0))
            db.session.commit()
            secret = make_client(post_logout_redirect_uris=[LOGOUT_URI])[1]
            make_client("spa", public=True)
        self.browser = app.test_client()
        self.login = LoginActions(self.browser)
        query = self.login.login_through(scope="openid offline_access")
        tokens = self.login.exchange(query["code"], secret=secret).json
        code = self.login.login_through()["code"]  # from the SSO session; never redeemed
        LoginActions(app.test_client()).login_through()  # alice's other session, to end
        with app.app_context():
            other_session = db.session.scalars(
                select(SsoSession.sid).order_by(SsoSession.id)
            ).all()[-1]
        page = self.browser.get("/password/forgot")
        csrf = csrf_of(page.text)
        self.browser.post("/password/forgot", data={"csrf_token": csrf, "identifier": "alice"})
        reset_path = re.search(r"http://idp\.test(/password/reset/\S+)", smtp.last_text())[1]
        self.values = {
            "secret": secret,
            "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"],
            "id_token": tokens["id_token"],
            "id_token_rest": tokens["id_token"].split(".", 1)[1],
            "code": code,
            "verifier": self.login.verifier,
            "csrf": csrf,
            "reset_path": reset_path,
            "reset_token": reset_path.rsplit("/", 1)[1],
            "other_session": str(other_session),
        }
        self.cookies = {}
        self.unavailable: set[str] = set()
        self.keep_cookies()
        self.restore()

    def keep_cookies(self) -> None:
        for name in ("session", "idp_sso", "idp_browser"):
            if (cookie := self.browser.get_cookie(name)) is not None:
                self.cookies[name] = cookie.value

    def restore(self) -> None:
        """Bring back the signed-in session and the transactions a request used up."""
        with self.app.app_context():
            sso = db.session.scalar(
                select(SsoSession).where(
                    SsoSession.cookie_hash == sha256_hex(self.cookies["idp_sso"])
                )
            )
            steps = dict(
                db.session.execute(
                    select(LoginTransaction.tx_hash, LoginTransaction.step).where(
                        LoginTransaction.tx_hash.in_(
                            [sha256_hex(self.values.get(f"tx_{s}", "")) for s in STEPS]
                        )
                    )
                ).all()
            )
            db.session.remove()
        for cookie in ("session", "idp_sso", "idp_browser"):  # requests may have replaced them
            if cookie in self.cookies:
                self.browser.set_cookie(cookie, self.cookies[cookie])
        if sso is None:
            self._sign_in()
        for step, username in STEPS.items():
            tx = self.values.get(f"tx_{step}", "")
            if steps.get(sha256_hex(tx)) != step and step not in self.unavailable:
                self.values[f"tx_{step}"] = self._open(step, username)

    def _sign_in(self) -> None:
        """A new SSO session for alice in this browser, as her password step would open it.

        Straight through ``sessions.start``: a password form may be throttled by now,
        and this keeps the browser's Flask session, so its transactions live on.
        """
        with self.app.test_request_context():
            alice = db.session.scalars(select(User).where(User.username == "alice")).one()
            opened = sessions.start(
                alice, auth_time=int(time.time()), acr="urn:idp:acr:pwd", amr=["pwd"]
            )
            db.session.commit()  # ``start`` leaves the commit to the step (here: this helper)
            self.cookies["idp_sso"] = opened.cookie
            db.session.remove()
        self.browser.set_cookie("idp_sso", self.cookies["idp_sso"])

    def _open(self, step: str, username: str | None) -> str:
        """A login transaction of this browser at ``step`` (the step ``username`` leads to).

        If requests made that impossible (an account throttled, a password changed),
        the step is left out from then on: its requests get an unknown ``tx``.
        """
        location = self.login.authorize(prompt="login").location or ""
        if username is not None and "/login?tx=" in location:
            location = self.login.submit_password(location, username).location or ""
        found = re.search(r"[?&]tx=([^&]+)", location)
        if found is None or urlsplit(location).path != STEP_PATHS[step]:
            self.unavailable.add(step)
            return "gone"
        if username == "bruno":
            sent = [m for m in self.smtp.messages if m["To"] == "bruno@exemple.fr"][-1]
            self.values["otp_code"] = code_in(sent.get_body(("plain",)).get_content())
        return found[1]

    def resolve(self, value):
        if isinstance(value, str):
            return REF.sub(lambda m: self.values.get(m[1], m[0]), value)
        if isinstance(value, list | tuple):
            return type(value)(self.resolve(v) for v in value)
        if isinstance(value, dict):
            return {self.resolve(k): self.resolve(v) for k, v in value.items()}
        return value


STEPS = {"password": None, "otp": "bruno", "channel": "chloe", "renew": "dora"}
STEP_PATHS = {
    "password": "/login",
    "otp": "/login/otp",
    "channel": "/login/channel",
    "renew": "/account/password",
}


@pytest.fixture
def world(settings, smtp):
    settings["trusted_proxies"] = 1  # X-Forwarded-* are read, as behind the production proxy
    settings["password"]["max_age_days"] = 30
    if "allow_networks" in DEFAULTS.get("throttle", {}):
        # The World's own browser (loopback) must always be able to start a login;
        # fuzzed X-Forwarded-For addresses are still counted.
        settings["throttle"] = {"allow_networks": ["127.0.0.0/8"]}
    app = create_app(settings)
    app.config["TESTING"] = True
    yield World(app, smtp)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _send(world: World, request: Request) -> Response:
    """Run one request through the WSGI app.

    Not through Flask's test client: it decodes the ``Host`` itself (for its cookie
    jar) and would fail on hosts the application must refuse.
    """
    world.restore()
    query = world.resolve(request.query)
    if isinstance(query, list):
        query = urlencode(query)
    data, content_type = None, None
    if request.body is not None:
        kind, payload, *rest = world.resolve(request.body)
        if kind == "form":
            data, content_type = urlencode(payload), "application/x-www-form-urlencoded"
        elif kind == "json":
            data, content_type = json.dumps(payload), "application/json"
        else:
            data, content_type = payload, rest[0]
    headers = {}
    for name, value in world.resolve(request.headers).items():
        if isinstance(value, tuple):  # ("basic", user, password)
            value = "Basic " + base64.b64encode(f"{value[1]}:{value[2]}".encode()).decode()
        headers[name] = value
    if content_type is not None:
        headers.setdefault("Content-Type", content_type)
    cookies = [f"{k}={v}" for k, v in world.cookies.items()] if request.signed_in else []
    if "Cookie" in headers:
        cookies.append(headers["Cookie"])
    builder = EnvironBuilder(
        path=world.resolve(request.path),
        base_url="http://localhost/",
        method=request.method,
        query_string=query,
        data=data,
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    for name, value in {**headers, "Cookie": "; ".join(cookies)}.items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    if not cookies:
        del environ["HTTP_COOKIE"]
    response = Response(*run_wsgi_app(world.app, environ, buffered=True))
    response.asked_for = get_host(environ)  # the host the client named, as Werkzeug reads it
    return response


@pytest.mark.parametrize("name", list(ENDPOINTS))
@FUZZ
@given(data=st.data())
def test_no_input_makes_an_endpoint_fail(world, name, data):
    request = data.draw(requests(ENDPOINTS[name]), label="request")
    with _send(world, request) as response:
        assert response.status_code < 500, response.get_data(as_text=True)[:300]
        if 300 <= response.status_code < 400 and response.location:
            target = urlsplit(response.location)
            # Werkzeug's own redirects (a path with "//") name the host the client asked for.
            if (target.scheme or target.netloc) and target.netloc != response.asked_for:
                assert response.location.startswith(REGISTERED), response.location
