"""The client side of Pro Santé Connect: endpoints, code exchange, ID token, userinfo.

Authlib's requests client does the OAuth 2.0 work (PKCE S256, client
authentication ``client_secret_basic`` or ``private_key_jwt``); joserfc checks
every JWT (OpenID Connect Core 1.0 §3.1.3.7). PSC's endpoints are pinned in
``[psc]``; its discovery document (not at the standard path) only fills the
gaps. One ``Upstream`` per application (``service.upstream``) keeps, per
process, what is safe to cache: the endpoints, PSC's JWKS (fetched again when a
token names an unknown ``kid``) and, for a few seconds, whether PSC answers.
See docs/OPERATING.md, "Pro Santé Connect", and SECURITY.md.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import requests
from authlib.common.urls import add_params_to_uri
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from .. import clock

ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "end_session_endpoint",
)
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# eIDAS levels as PSC names them, weakest first: an answer below the one asked is refused.
LEVELS = ("eidas1", "eidas2", "eidas3")
REACHABLE_SECONDS = 5  # how long "PSC answers" (or not) is believed
JWKS_REFRESH_SECONDS = 10  # at most one JWKS fetch per this many seconds for unknown kids
LEEWAY_SECONDS = 60


class PscUnavailable(Exception):
    """PSC is down, slow (past ``timeout_seconds``) or answered with a server error."""


class PscRefused(Exception):
    """PSC's answer cannot be trusted or does not meet the level: ``reason`` is audited."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    """Who PSC says signed in, and how (what the SSO session keeps of it)."""

    sub: str
    subject_name_id: str
    acr: str
    amr: tuple[str, ...]
    auth_time: int
    id_token: str
    given_name: str = ""
    family_name: str = ""


class Upstream:
    def __init__(self, settings: dict):
        self.settings = settings
        self.timeout = settings["timeout_seconds"]
        self._lock = threading.Lock()
        self._endpoints: dict | None = None
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._reachable: tuple[float, bool] | None = None

    # -- endpoints and reachability --------------------------------------------------

    def endpoints(self) -> dict:
        """The pinned endpoints, the missing ones from ``discovery_url`` (fetched once)."""
        if self._endpoints is not None:
            return self._endpoints
        found = {name: self.settings[name] for name in ENDPOINTS}
        issuer = self.settings["issuer"]
        if not all(found.values()):
            document = self._get_json(self.settings["discovery_url"])
            if document.get("issuer") != issuer:
                raise PscUnavailable("the discovery document names another issuer")
            for name in ENDPOINTS:
                value = document.get(name)
                if not found[name] and isinstance(value, str):
                    found[name] = value
            if not all(found[name] for name in ENDPOINTS[:4]):
                raise PscUnavailable("the discovery document lacks an endpoint")
        with self._lock:
            self._endpoints = found
        return found

    def reachable(self) -> bool:
        """Does PSC answer (its JWKS fetched within ``timeout_seconds``)? Believed for
        ``REACHABLE_SECONDS``, so a dead PSC costs one time-out, not one per visitor."""
        now = time.monotonic()
        known = self._reachable
        if known is not None and now - known[0] < REACHABLE_SECONDS:
            return known[1]
        try:
            self._fetch_keys()
            answer = True
        except PscUnavailable:
            answer = False
        self._reachable = (now, answer)
        return answer

    def _get(self, url: str, **kwargs) -> requests.Response:
        try:
            response = requests.get(url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise PscUnavailable(type(exc).__name__) from exc
        if response.status_code >= 500:
            raise PscUnavailable(f"HTTP {response.status_code}")
        return response

    def _get_json(self, url: str) -> dict:
        response = self._get(url)
        try:
            document = response.json()
        except ValueError as exc:
            raise PscUnavailable("not JSON") from exc
        if response.status_code != 200 or not isinstance(document, dict):
            raise PscUnavailable(f"HTTP {response.status_code}")
        return document

    def _fetch_keys(self) -> KeySet:
        document = self._get_json(self.endpoints()["jwks_uri"])
        try:
            keys = KeySet.import_key_set(document)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise PscUnavailable("unreadable JWKS") from exc
        with self._lock:
            self._keys, self._keys_at = keys, time.monotonic()
        return keys

    def _keys_for(self, kid: str | None) -> KeySet:
        """PSC's keys, fetched again (at most every few seconds) for an unknown ``kid``:
        PSC rotates its keys without notice."""
        keys = self._keys
        known = keys is not None and (kid is None or any(k.kid == kid for k in keys.keys))
        if not known and (keys is None or time.monotonic() - self._keys_at > JWKS_REFRESH_SECONDS):
            keys = self._fetch_keys()
        return keys

    # -- the authorization code flow -------------------------------------------------

    def _session(self, redirect_uri: str) -> OAuth2Session:
        settings = self.settings
        if settings["private_key_file"]:
            with open(settings["private_key_file"], encoding="ascii") as handle:
                secret, method = handle.read(), "private_key_jwt"
        else:
            secret, method = settings["client_secret"], "client_secret_basic"
        session = OAuth2Session(
            settings["client_id"],
            secret,
            token_endpoint_auth_method=method,
            scope=settings["scope"],
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            default_timeout=self.timeout,
        )
        if method == "private_key_jwt":
            session.register_client_auth_method(PrivateKeyJWT(self.endpoints()["token_endpoint"]))
        return session

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        with self._session(redirect_uri) as session:
            url, _ = session.create_authorization_url(
                self.endpoints()["authorization_endpoint"],
                state=state,
                code_verifier=verifier,
                nonce=nonce,
                acr_values=self.settings["acr_values"],
            )
        return url

    def exchange(self, code: str, verifier: str, nonce: str, redirect_uri: str) -> Identity:
        """Code → tokens → a checked ID token and userinfo (Core §3.1.3)."""
        endpoints = self.endpoints()
        with self._session(redirect_uri) as session:
            try:
                token = session.fetch_token(
                    endpoints["token_endpoint"], code=code, code_verifier=verifier
                )
            except OAuthError as exc:
                raise PscRefused(f"token endpoint: {exc.error}") from exc
            except requests.RequestException as exc:
                raise PscUnavailable(type(exc).__name__) from exc
            except ValueError as exc:  # a body that is not a token response
                raise PscUnavailable("token endpoint: unreadable answer") from exc
        raw = token.get("id_token")
        if not isinstance(raw, str):
            raise PscRefused("no id_token")
        claims = self.check_id_token(raw, nonce)
        info = self.userinfo(str(token.get("access_token") or ""), claims["sub"])
        return self._identity(raw, claims, info)

    def check_id_token(self, raw: str, nonce: str) -> dict:
        """Signature, ``iss``, ``aud``, ``exp``, ``nonce`` and the level (Core §3.1.3.7)."""
        claims = self._verified(raw)
        registry = jwt.JWTClaimsRegistry(
            now=clock.now,
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.settings["issuer"]},
            aud={"essential": True, "value": self.settings["client_id"]},
            exp={"essential": True},
            sub={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise PscRefused(f"id_token: {exc.error}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.settings["client_id"]:
            raise PscRefused("id_token: azp")
        if not self.meets_level(claims.get("acr")):
            raise PscRefused(f"acr below {self.settings['acr_values']}")
        auth_time = claims.get("auth_time", claims.get("iat"))
        if auth_time is not None and not _plausible_time(auth_time):
            # It becomes our session's auth_time, which RPs compare with max_age.
            raise PscRefused("id_token: auth_time")
        return claims

    def meets_level(self, acr) -> bool:
        wanted = self.settings["acr_values"].split()[0]
        if acr == wanted:
            return True
        if acr not in LEVELS or wanted not in LEVELS:
            return False
        return LEVELS.index(acr) >= LEVELS.index(wanted)

    def _verified(self, raw: str) -> dict:
        """The claims of a JWT signed by PSC: by a JWKS key (by ``kid``), or HS256 with
        our client secret when PSC signs that way; ``none`` and anything else refused."""
        try:
            header = jws.extract_compact(raw.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise PscRefused("not a JWS") from exc
        alg, kid = header.get("alg"), header.get("kid")
        try:
            # HS256 only where the secret is how we authenticate (not with private_key_jwt).
            if (
                alg == "HS256"
                and self.settings["client_secret"]
                and not self.settings["private_key_file"]
            ):
                key = OctKey.import_key(self.settings["client_secret"])
                return dict(jwt.decode(raw, key, algorithms=["HS256"]).claims)
            if alg not in ASYMMETRIC or (kid is not None and not isinstance(kid, str)):
                raise PscRefused(f"alg {alg!r} refused")
            keys = self._keys_for(kid)  # PscUnavailable if PSC does not answer
            return dict(jwt.decode(raw, keys, algorithms=[alg]).claims)
        except JoseError as exc:
            raise PscRefused(f"signature: {exc.error}") from exc
        except (ValueError, TypeError) as exc:
            raise PscRefused("signature: unreadable") from exc

    def userinfo(self, access_token: str, sub: str) -> dict:
        """PSC's userinfo, JSON or a signed JWT; its ``sub`` must be the ID token's (§5.3.2)."""
        headers = {"Authorization": f"Bearer {access_token}"}
        response = self._get(self.endpoints()["userinfo_endpoint"], headers=headers)
        if response.status_code != 200:
            raise PscRefused(f"userinfo: HTTP {response.status_code}")
        if response.headers.get("Content-Type", "").split(";")[0].strip() == "application/jwt":
            info = self._signed_userinfo(response.text.strip())
        else:
            try:
                info = response.json()
            except ValueError as exc:
                raise PscRefused("userinfo: not JSON") from exc
        if not isinstance(info, dict) or info.get("sub") != sub:
            raise PscRefused("userinfo: sub differs from the id_token's")
        return info

    def _signed_userinfo(self, raw: str) -> dict:
        """A signed userinfo names its signer and its reader (Core §5.3.2): ``iss`` must be
        PSC's issuer, ``aud`` (when given) must name us; else it may be another client's
        answer, or another provider's, replayed here."""
        info = self._verified(raw)
        registry = jwt.JWTClaimsRegistry(
            now=clock.now,
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.settings["issuer"]},
            aud={"value": self.settings["client_id"]},
        )
        try:
            registry.validate(info)
        except JoseError as exc:
            raise PscRefused(f"userinfo: {exc.error}") from exc
        return info

    def check_response_issuer(self, iss: str | None) -> None:
        """The authorization response's ``iss`` (RFC 9207), when PSC sends it, must be
        PSC's issuer: a response from another provider this browser was sent to (a
        mix-up attack) is refused before its code goes anywhere."""
        if iss is not None and iss != self.settings["issuer"]:
            raise PscRefused("iss")

    @staticmethod
    def _identity(raw: str, claims: dict, info: dict) -> Identity:
        amr = claims.get("amr")
        if not (isinstance(amr, list) and amr and all(isinstance(v, str) for v in amr)):
            amr = ["mfa"]
        auth_time = claims.get("auth_time", claims.get("iat"))  # plausible: check_id_token
        if not _plausible_time(auth_time):
            auth_time = clock.now()
        name_id = info.get("SubjectNameID") or claims.get("SubjectNameID") or ""

        def text(name: str) -> str:
            value = info.get(name, claims.get(name, ""))
            return value[:100] if isinstance(value, str) else ""

        return Identity(
            sub=str(claims["sub"])[:255],
            subject_name_id=name_id if isinstance(name_id, str) else "",
            acr=claims["acr"],
            amr=tuple(amr[:10]),
            auth_time=auth_time,
            id_token=raw,
            given_name=text("given_name"),
            family_name=text("family_name"),
        )

    def logout_url(self, id_token: str, post_logout_redirect_uri: str, state: str) -> str | None:
        """RP-initiated logout at PSC (its end-session endpoint), or None if it has none."""
        endpoint = self.endpoints().get("end_session_endpoint")
        if not endpoint:
            return None
        return add_params_to_uri(
            endpoint,
            [
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", post_logout_redirect_uri),
                ("state", state),
                ("client_id", self.settings["client_id"]),
            ],
        )


def _plausible_time(value) -> bool:
    """Epoch seconds no later than now (with the leeway) and after 2000: a time PSC could
    have authenticated the user at, which fits our columns."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return 946_684_800 <= value <= clock.now() + LEEWAY_SECONDS
