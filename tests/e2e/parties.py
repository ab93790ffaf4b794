"""The two outside parties, driven with ``requests``.

``UserAgent`` is a browser: its own cookie jar, the hosted forms filled by
their field names (DESIGN.md "Forms"), French as its language like the
portal's users. ``RelyingParty`` is an application using Authlib's
``OAuth2Session`` with PKCE S256; it checks ID tokens with joserfc against the
published JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import KeySet

from .server import PASSWORD, Provider, RegisteredClient

SCOPE = "openid profile email"
ACR_PWD = "urn:idp:acr:pwd"
ACR_2FA = "urn:idp:acr:2fa"
FRENCH = "fr-FR,fr;q=0.9,en;q=0.5"


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
    """A browser: keeps the provider's cookies, fills the hosted forms."""

    def __init__(self, provider: Provider, language: str = FRENCH):
        self.provider = provider
        self.http = requests.Session()
        self.http.headers["Accept-Language"] = language

    def close(self) -> None:
        self.http.close()

    def tab(self) -> requests.Session:
        """Another connection of this browser (its headers, a copy of its cookies), for a
        request sent from another thread while this one's are in flight: a second tab, a
        double click. Its answers' cookies stay in the tab; the caller closes it."""
        tab = requests.Session()
        tab.headers.update(self.http.headers)
        tab.cookies.update(self.http.cookies)
        return tab

    def get(self, url: str) -> requests.Response:
        return self.http.get(self._absolute(url), allow_redirects=False, timeout=15)

    def _absolute(self, url: str) -> str:
        return url if "://" in url else self.provider.url(url)

    def page(self, url: str) -> str:
        """A page that must render (200); its HTML."""
        response = self.get(url)
        assert response.status_code == 200, (url, response.status_code, response.text[:500])
        return response.text

    def submit(self, url: str, data: dict[str, str]) -> requests.Response:
        """Open the form at ``url`` and post ``data`` with the page's CSRF token."""
        url = self._absolute(url)
        token = csrf_of(self.page(url))
        return self.http.post(
            url, data={"csrf_token": token, **data}, allow_redirects=False, timeout=15
        )

    def authorize(self, url: str) -> str:
        """GET the authorization URL; returns where it redirects (absolute)."""
        response = self.get(url)
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return location_of(response)

    def post_password(self, login_url: str, username: str, password: str) -> requests.Response:
        """Fill the password form at ``login_url``; the raw answer."""
        assert login_url.startswith(self.provider.url("/login")), login_url
        page = self.page(login_url)
        assert 'autocomplete="username"' in page
        assert 'autocomplete="current-password"' in page
        return self.http.post(
            login_url,
            data={"csrf_token": csrf_of(page), "username": username, "password": password},
            allow_redirects=False,  # the RP's redirect URI is not a real server
            timeout=15,
        )

    def sign_in(self, login_url: str, username: str = "alice", password: str = PASSWORD) -> str:
        """The password step with the right password; returns the redirect after it."""
        response = self.post_password(login_url, username, password)
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return location_of(response)

    def authorize_and_sign_in(
        self, url: str, username: str = "alice", password: str = PASSWORD
    ) -> str:
        """Authorization request, then the password form if it is shown; returns the
        redirect after it (the RP, or the next login step)."""
        location = self.authorize(url)
        if location.startswith(self.provider.url("/login?")):
            location = self.sign_in(location, username, password)
        return location

    # -- second factor ---------------------------------------------------------

    def choose_channel(self, channel_url: str, channel: str) -> str:
        """Pick ``email`` or ``sms`` on the channel page; returns the code page URL."""
        assert channel_url.startswith(self.provider.url("/login/channel?")), channel_url
        response = self.submit(channel_url, {"channel": channel})
        assert response.status_code == 302, (response.status_code, response.text[:500])
        return location_of(response)

    def enter_code(self, otp_url: str, code: str, remember: bool = False) -> str:
        """Type the code (and tick "remember"); returns the redirect after it.

        Success goes on (to the RP or the console); a refused code comes back
        to the code page (303), which then shows why.
        """
        assert otp_url.startswith(self.provider.url("/login/otp?")), otp_url
        page = self.page(otp_url)
        for contract in ('name="code"', 'autocomplete="one-time-code"', 'inputmode="numeric"'):
            assert contract in page, contract
        data = {"csrf_token": csrf_of(page), "code": code}
        if remember:
            assert 'name="remember"' in page
            data["remember"] = "y"
        response = self.http.post(otp_url, data=data, allow_redirects=False, timeout=15)
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        return location_of(response)


def location_of(response: requests.Response) -> str:
    return urljoin(response.url, response.headers["Location"])


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

    def finish(self, request: AuthRequest, location: str) -> tuple[dict, dict]:
        """Code exchange and ID token checks; returns (token response, ID token claims)."""
        token = self.fetch_token(request, location)
        _, claims = self.verify_id_token(
            token["id_token"], request, access_token=token["access_token"]
        )
        return token, claims

    def refresh(self, refresh_token: str) -> dict:
        return self.oauth.refresh_token(self.meta["token_endpoint"], refresh_token=refresh_token)

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
