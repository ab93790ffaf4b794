"""A real provider for the end-to-end tests.

``provider`` (package scope) writes a TOML configuration into a temporary
directory, provisions everything through the ``idp`` command (``init``,
``user add``, ``client add --json``), starts ``gunicorn 'idp:create_app()'``
with two workers on a free port and stops the whole process group when the
last test of ``tests/e2e`` is done. Package scope matters: on PostgreSQL the
unit suite and this one share a database, and the server must be gone before
the unit tests drop and recreate the schema (pytest runs ``tests/e2e`` before
``tests/test_*.py``; either order works, each side resets the schema itself).

The helpers below play the two outside parties: ``UserAgent`` is a browser
(cookies, the hosted login form) driven with ``requests``; ``RelyingParty`` is
an application using Authlib's ``OAuth2Session`` with PKCE S256, and checks
ID tokens with joserfc against the published JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

REPO_DIR = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("IDP_TEST_DATABASE_URL", "")
PASSWORD = "Violet-Kettle-42-Harbour"
SCOPE = "openid profile email"
ACR_PWD = "urn:idp:acr:pwd"
# Environment variables that would override the TOML file (idp.config._from_environment).
_OVERRIDES = ("IDP_SECRET_KEY", "IDP_ISSUER", "IDP_DATABASE_URL", "IDP_MAIL_PASSWORD")

CLIENTS = {
    # name: (redirect URI, post-logout redirect URI, other ``idp client add`` options)
    "confidential": (
        "https://rp.example/callback",
        "https://rp.example/bye",
        ["--name", "Dossier"],
    ),
    "second": ("https://agenda.example/cb", None, ["--name", "Agenda"]),
    "public": ("https://mobile.example/cb", None, ["--public", "--name", "Appli mobile"]),
}
USERS = {
    "alice": ["--email", "alice@exemple.fr", "--name", "Alice Martin", "--profession", "IDE"],
    "bruno": ["--email", "bruno@exemple.fr", "--name", "Bruno Petit"],
}


# -- the server ------------------------------------------------------------------


@dataclass
class RegisteredClient:
    client_id: str
    secret: str | None
    redirect_uri: str
    post_logout_redirect_uri: str | None = None

    @property
    def is_public(self) -> bool:
        return self.secret is None


@dataclass
class Provider:
    issuer: str
    workdir: Path
    config_path: Path
    env: dict[str, str]
    clients: dict[str, RegisteredClient] = field(default_factory=dict)
    users: dict[str, dict] = field(default_factory=dict)
    log_path: Path | None = None

    def url(self, path: str) -> str:
        return self.issuer + path

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run ``idp --config … ARGS``; fail the test with its stderr if it fails."""
        result = subprocess.run(
            [_bin("idp"), "--config", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.workdir,
            timeout=120,
        )
        assert result.returncode == 0, f"idp {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def get_json(self, path: str) -> dict:
        with requests.get(self.url(path), timeout=10) as response:
            assert response.status_code == 200, response.text
            return response.json()

    def metadata(self) -> dict:
        return self.get_json("/.well-known/openid-configuration")

    def jwks(self) -> dict:
        return self.get_json("/jwks.json")

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _bin(name: str) -> str:
    """A console script of the venv running pytest (``.venv/bin/…``)."""
    for directory in (Path(sys.executable).parent, REPO_DIR / ".venv" / "bin"):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    assert found, f"{name} not found next to {sys.executable} nor on PATH"
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _write_config(path: Path, issuer: str, database_url: str, keys_dir: Path) -> None:
    path.write_text(
        f"""\
issuer = {_toml_str(issuer)}
secret_key = {_toml_str(secrets.token_urlsafe(32))}

[database]
url = {_toml_str(database_url)}

[keys]
dir = {_toml_str(str(keys_dir))}

[mail]
backend = "console"

[password]
argon2_time_cost = 1
argon2_memory_kib = 8
argon2_parallelism = 1
"""
    )


def _reset_postgres(url: str) -> None:
    """Empty the shared test database: the unit suite resets it the same way."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    finally:
        engine.dispose()


def _provision(provider: Provider) -> None:
    provider.cli("init")
    for username, options in USERS.items():
        data = json.loads(
            provider.cli(
                "user",
                "add",
                username,
                *options,
                "--password-stdin",
                "--json",
                stdin=PASSWORD + "\n",
            )
        )
        provider.users[username] = {**data, "password": PASSWORD}
    for name, (redirect_uri, logout_uri, options) in CLIENTS.items():
        client_id = f"e2e-{name}"
        args = ["client", "add", client_id, "--redirect-uri", redirect_uri, *options, "--json"]
        if logout_uri:
            args += ["--post-logout-redirect-uri", logout_uri]
        data = json.loads(provider.cli(*args))
        assert data["client_id"] == client_id
        assert (data["client_secret"] is None) == ("--public" in options), data
        provider.clients[name] = RegisteredClient(
            client_id, data["client_secret"], redirect_uri, logout_uri
        )


def _start_gunicorn(provider: Provider, port: int, log) -> subprocess.Popen:
    return subprocess.Popen(
        [
            _bin("gunicorn"),
            "--workers", "2",
            "--bind", f"127.0.0.1:{port}",
            "--graceful-timeout", "3",
            "--access-logfile", "-",
            "idp:create_app()",
        ],
        env=provider.env,
        cwd=provider.workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: teardown kills master and workers
        preexec_fn=_die_with_parent,
    )  # fmt: skip


def _die_with_parent() -> None:
    """Linux: SIGTERM the gunicorn master if pytest itself is killed (no orphan server)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_healthy(provider: Provider, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{provider.log_tail()}")
        try:
            with requests.get(provider.url("/healthz"), timeout=2) as response:
                if response.status_code == 200 and response.json() == {"status": "ok"}:
                    return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or a worker still booting
        time.sleep(0.1)
    pytest.fail(f"gunicorn not healthy after {timeout} s:\n{provider.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the group (master and workers), SIGKILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    try:  # a worker that outlived its master would still be in the group
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="package")
def provider(tmp_path_factory) -> Provider:
    workdir = tmp_path_factory.mktemp("e2e")
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    database_url = PG_URL or f"sqlite:///{workdir / 'idp.sqlite3'}"
    if PG_URL:
        _reset_postgres(PG_URL)
    config_path = workdir / "idp.toml"
    _write_config(config_path, issuer, database_url, workdir / "keys")
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
    env["IDP_CONFIG"] = str(config_path)
    found = Provider(issuer, workdir, config_path, env, log_path=workdir / "gunicorn.log")
    _provision(found)
    with pytest.MonkeyPatch.context() as patch, open(found.log_path, "wb") as log:
        # The RP talks to an http:// issuer, a declared test set-up.
        patch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
        process = _start_gunicorn(found, port, log)
        try:
            _wait_healthy(found, process)
            yield found
        finally:
            _stop(process)


# -- the browser -----------------------------------------------------------------


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def csrf_of(html: str) -> str:
    """The hidden ``csrf_token`` input of a form, whatever the attribute order."""
    for tag in re.findall(r"<input\b[^>]*>", html):
        if re.search(r'\bname="csrf_token"', tag):
            match = re.search(r'\bvalue="([^"]*)"', tag)
            assert match, tag
            return match.group(1)
    raise AssertionError("no csrf_token input in the page")


class UserAgent:
    """A browser: keeps the provider's cookies, fills the hosted login form."""

    def __init__(self, provider: Provider):
        self.provider = provider
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def get(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=False, timeout=15)

    def authorize(self, url: str) -> str:
        """GET the authorization URL; returns where it redirects (absolute)."""
        response = self.get(url)
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return urljoin(response.url, response.headers["Location"])

    def sign_in(self, login_url: str, username: str = "alice", password: str = PASSWORD) -> str:
        """Fill the password form at ``login_url``; returns the redirect after it."""
        assert login_url.startswith(self.provider.url("/login")), login_url
        page = self.get(login_url)
        assert page.status_code == 200, page.text[:500]
        assert 'autocomplete="username"' in page.text
        assert 'autocomplete="current-password"' in page.text
        response = self.http.post(
            login_url,
            data={"csrf_token": csrf_of(page.text), "username": username, "password": password},
            allow_redirects=False,  # the RP's redirect URI is not a real server
            timeout=15,
        )
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return urljoin(response.url, response.headers["Location"])

    def authorize_and_sign_in(self, url: str, username: str = "alice") -> str:
        """Authorization request, login form if asked; returns the RP redirect."""
        location = self.authorize(url)
        if location.startswith(self.provider.url("/login")):
            location = self.sign_in(location, username)
        return location


# -- the relying party -----------------------------------------------------------


@dataclass
class AuthRequest:
    url: str
    state: str
    nonce: str
    code_verifier: str


def at_hash(access_token: str, alg: str) -> str:
    """OpenID Connect Core §3.1.3.6: left half of the hash, base64url."""
    digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[alg[-3:]]
    half = digest(access_token.encode("ascii")).digest()
    half = half[: len(half) // 2]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii")


class RelyingParty:
    """An application registered at the provider, written the way RPs write them."""

    def __init__(self, provider: Provider, client: RegisteredClient):
        self.provider = provider
        self.client = client
        self.meta = provider.metadata()
        method = "none" if client.is_public else "client_secret_basic"
        self.oauth = OAuth2Session(
            client.client_id,
            client.secret,
            token_endpoint_auth_method=method,
            revocation_endpoint_auth_method=method,
            scope=SCOPE,
            redirect_uri=client.redirect_uri,
            code_challenge_method="S256",
            default_timeout=15,
        )

    def close(self) -> None:
        self.oauth.close()

    def authorization_request(self, **extra: str) -> AuthRequest:
        nonce = secrets.token_urlsafe(16)
        verifier = secrets.token_urlsafe(48)
        url, state = self.oauth.create_authorization_url(
            self.meta["authorization_endpoint"], nonce=nonce, code_verifier=verifier, **extra
        )
        return AuthRequest(url, state, nonce, verifier)

    def check_callback(self, request: AuthRequest, location: str) -> str:
        """The authorization response: our redirect URI, our state, the right ``iss``."""
        assert location.split("?")[0] == self.client.redirect_uri, location
        params = query_of(location)
        assert "error" not in params, params
        assert params["state"] == request.state
        assert params["iss"] == self.provider.issuer  # RFC 9207
        return params["code"]

    def fetch_token(self, request: AuthRequest, location: str) -> dict:
        self.check_callback(request, location)
        return self.oauth.fetch_token(
            self.meta["token_endpoint"],
            authorization_response=location,
            state=request.state,
            code_verifier=request.code_verifier,
        )

    def token_request(self, data: dict) -> requests.Response:
        """A raw token request (to look at error answers) with this client's credentials."""
        auth = None
        if self.client.is_public:
            data = {**data, "client_id": self.client.client_id}
        else:
            auth = (self.client.client_id, self.client.secret)
        return requests.post(self.meta["token_endpoint"], data=data, auth=auth, timeout=15)

    def login(self, agent: UserAgent, username: str = "alice", **extra: str):
        """The whole front channel and the code exchange: returns (request, token)."""
        request = self.authorization_request(**extra)
        location = agent.authorize_and_sign_in(request.url, username)
        return request, self.fetch_token(request, location)

    def verify_id_token(self, id_token: str, request: AuthRequest | None = None, *,
                        access_token: str | None = None) -> tuple[dict, dict]:  # fmt: skip
        """Signature against /jwks.json and the claims an RP must check (Core §3.1.3.7)."""
        jwks = self.provider.jwks()
        decoded = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
        header, claims = decoded.header, decoded.claims
        assert header["kid"] in {key["kid"] for key in jwks["keys"]}
        registry = jwt.JWTClaimsRegistry(
            leeway=5,
            iss={"essential": True, "value": self.provider.issuer},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            auth_time={"essential": True},
        )
        registry.validate(claims)
        aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        assert self.client.client_id in aud
        assert claims["azp"] == self.client.client_id
        now = time.time()
        assert claims["iat"] <= now + 5 < claims["exp"] + 5
        assert claims["auth_time"] <= claims["iat"]
        if request is not None:
            assert claims["nonce"] == request.nonce
        if access_token is not None:
            assert claims["at_hash"] == at_hash(access_token, header["alg"])
        return header, claims

    def userinfo(self, access_token: str) -> requests.Response:
        return requests.get(
            self.meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=15,
        )

    def introspect(self, token: str, hint: str | None = None) -> dict:
        response = self.oauth.introspect_token(
            self.meta["introspection_endpoint"], token=token, token_type_hint=hint
        )
        assert response.status_code == 200, response.text
        return response.json()


# -- fixtures --------------------------------------------------------------------


@pytest.fixture
def new_agent(provider):
    """``new_agent()`` → a fresh browser (no cookies); closed after the test."""
    made: list[UserAgent] = []

    def make() -> UserAgent:
        made.append(UserAgent(provider))
        return made[-1]

    yield make
    for agent in made:
        agent.close()


@pytest.fixture
def agent(new_agent) -> UserAgent:
    return new_agent()


@pytest.fixture
def new_rp(provider):
    """``new_rp('confidential' | 'second' | 'public')`` → a relying party."""
    made: list[RelyingParty] = []

    def make(name: str = "confidential") -> RelyingParty:
        made.append(RelyingParty(provider, provider.clients[name]))
        return made[-1]

    yield make
    for rp in made:
        rp.close()


@pytest.fixture
def rp(new_rp) -> RelyingParty:
    return new_rp("confidential")
