"""``private_key_jwt`` client authentication (RFC 7523 §2.2, OpenID Connect Core §9).

A client registered with ``idp client add … --auth-method private_key_jwt`` holds
no shared secret: at the token endpoint, ``/introspect`` and ``/revoke`` it sends
a short-lived JWT signed with its private key, which is checked here against the
public keys it registered (``--jwks``) or publishes (``--jwks-uri``). SECURITY.md,
"Client authentication", lists the checks and the tests behind them.

Authlib's ``JWTBearerClientAssertion`` is the base; its ``__call__`` is replaced
because it resolves keys before it has read the header's ``kid`` (so an unknown
``kid`` cannot trigger a refetch of a rotated ``jwks_uri``), knows only the token
endpoint's audiences, and quotes JOSE errors back to the caller. Every JOSE
operation is joserfc's; nothing here parses a JWT by hand.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    KeyParameterError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from sqlalchemy.exc import IntegrityError

from .. import audit, clock
from ..models import Client, ClientAssertionJti, db

log = logging.getLogger("idp.oidc")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
METHOD = "private_key_jwt"
# Asymmetric signatures only: ``none`` proves nothing, and an HS* algorithm would
# let anyone holding the client's *public* key (it is public) forge an assertion.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
LEEWAY = 60  # seconds of clock skew tolerated on exp, iat and nbf
MAX_LIFETIME = 600  # an exp further than this from now is refused: stored jtis stay bounded
JWKS_TTL = 300  # seconds a fetched jwks_uri document is used before it is fetched again
JWKS_REFETCH_INTERVAL = 60  # at most one fetch per client per minute, whatever the kids sent
JWKS_TIMEOUT = 3.0  # seconds for the whole fetch (connection, answer, body)
JWKS_MAX_BYTES = 64 * 1024
DESCRIPTION = "Client authentication failed."


class Refused(Exception):
    """An assertion refused; ``reason`` goes to the audit trail, never to the client."""

    def __init__(self, reason: str, **detail: str):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class PrivateKeyJWT(JWTBearerClientAssertion):
    """The ``private_key_jwt`` method, registered with ``register_client_auth_method``."""

    CLIENT_AUTH_METHOD = METHOD

    def __init__(self, issuer: str):
        super().__init__(validate_jti=True, leeway=LEEWAY)
        self.issuer = issuer
        self.jwks = JwksCache()

    def get_audiences(self, endpoint: str = "token") -> list[str]:
        """The issuer or the token endpoint; at /introspect and /revoke also their own URL.

        Real RPs send either of the first two (RFC 7523 §3 item 3 names the token
        endpoint, OpenID Connect Core §9 the issuer too); the URLs are those of
        ``idp.oidc.discovery``.
        """
        own = {"revocation": "/revoke", "introspection": "/introspect"}
        audiences = [self.issuer, f"{self.issuer}/token"]
        if endpoint in own:
            audiences.append(self.issuer + own[endpoint])
        return audiences

    # -- around Authlib's ClientAuthentication (called from Server.authenticate_client)
    def before(self, request, endpoint: str) -> None:
        """Note the endpoint (its audiences) and refuse two methods in one request.

        RFC 6749 §2.3: a client uses one authentication method per request. A
        secret that passed next to an assertion that did not would otherwise win.
        """
        request.idp_client_auth_endpoint = endpoint
        form = request.form
        if not (form.get("client_assertion") or form.get("client_assertion_type")):
            return
        if form.get("client_secret") or extract_basic_authorization(request.headers)[0]:
            self._refuse(request, Refused("several_methods"), None)

    def after_refusal(self, request, query_client) -> None:
        """A ``private_key_jwt`` client that sent no assertion (a secret, or nothing) is
        audited like a refused assertion: someone is trying it without its key."""
        if getattr(request, "idp_assertion_refused", False):
            return
        basic_id, basic_secret = extract_basic_authorization(request.headers)
        client_id = basic_id or request.form.get("client_id")
        if not client_id or len(client_id) > 100 or not client_id.isprintable():
            return
        client = query_client(client_id)
        if client is None or client.token_endpoint_auth_method != METHOD:
            return
        secret = basic_secret or request.form.get("client_secret")
        reason = "secret_presented" if secret else "no_assertion"
        audit.record("client.assertion_refused", client_id=client.client_id, reason=reason)

    # -- the method itself
    def __call__(self, query_client, request) -> Client | None:
        form = request.form
        if not (form.get("client_assertion") or form.get("client_assertion_type")):
            return None  # another method's request
        client = None
        try:
            client, header = self._client(query_client, request)
            claims = self._verified_claims(request, client, header)
            self._use_jti(client, claims)
        except Refused as refused:
            self._refuse(request, refused, client)
        request.client = client
        return self.authenticate_client(client)

    def _client(self, query_client, request) -> tuple[Client, dict]:
        """The client named by the assertion's ``sub``, read before any check only to
        find its keys (Authlib does the same); it is verified with them next."""
        form = request.form
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            raise Refused("malformed")
        try:
            header, claims = self.extract_assertion(assertion)
        except (InvalidClientError, JoseError, ValueError, TypeError):
            raise Refused("malformed") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= 100 or not sub.isprintable():
            raise Refused("malformed")  # no client id looks like this: spare the database
        if not isinstance(header, dict):
            raise Refused("malformed")
        client = query_client(sub)
        if client is None:
            raise Refused("unknown_client")
        return client, header

    def _verified_claims(self, request, client: Client, header: dict) -> dict:
        if client.token_endpoint_auth_method != METHOD:
            raise Refused("not_private_key_jwt")
        form_client_id = request.form.get("client_id")
        if form_client_id is not None and form_client_id != client.client_id:
            raise Refused("client_id_mismatch")
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Refused("algorithm")  # none, HS*, or anything else
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise Refused("malformed")
        claims = self._signed_claims(request.form["client_assertion"], client, alg, kid)
        endpoint = getattr(request, "idp_client_auth_endpoint", "token")
        self._check_claims(claims, client, endpoint)
        return claims

    def _signed_claims(self, assertion: str, client: Client, alg: str, kid: str | None) -> dict:
        """Verify against the client's keys; a ``jwks_uri`` is fetched again (rate-limited)
        when no key has this ``kid``, or, without a ``kid``, when none verifies."""
        keys = self.jwks.key_set(client, refresh=False)
        if keys is None:
            raise Refused("jwks_unavailable")
        try:
            return _verify(assertion, keys, alg, kid)
        except Refused as refused:
            stale = refused.reason == "unknown_key" or (
                refused.reason == "bad_signature" and kid is None
            )
            if not (stale and client.jwks_uri):
                raise
            fresh = self.jwks.key_set(client, refresh=True)
            if fresh is None or fresh is keys:
                raise
            return _verify(assertion, fresh, alg, kid)

    def _check_claims(self, claims: dict, client: Client, endpoint: str) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=clock.now,
            leeway=LEEWAY,
            iss={"essential": True, "value": client.client_id},
            sub={"essential": True, "value": client.client_id},
            aud={"essential": True, "values": self.get_audiences(endpoint)},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise Refused("expired") from None
        except MissingClaimError as exc:
            raise Refused("missing_claim", claim=exc.claim) from None
        except ClaimError as exc:
            raise Refused("invalid_claim", claim=exc.claim) from None
        if claims["exp"] > clock.now() + MAX_LIFETIME:
            raise Refused("too_long_lived")

    def _use_jti(self, client: Client, claims: dict) -> None:
        """Insert, and let the unique (client_id, jti_hash) decide under concurrency.

        Committed at once, in its own transaction, before the step the assertion
        authenticates: the jti stays spent whatever that step then does (fails,
        rolls back), so an assertion is accepted once, never "once per success".
        """
        digest = hashlib.sha256(claims["jti"].encode("utf-8", "surrogatepass")).hexdigest()
        db.session.add(
            ClientAssertionJti(
                client_id=client.client_id,
                jti_hash=digest,
                expires_at=int(claims["exp"]) + LEEWAY,
            )
        )
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            raise Refused("replayed") from None

    def _refuse(self, request, refused: Refused, client: Client | None):
        """Audit why; answer only ``invalid_client`` with a short description (401)."""
        request.idp_assertion_refused = True
        audit.record(
            "client.assertion_refused",
            client_id=client.client_id if client is not None else None,
            reason=refused.reason,
            **refused.detail,
        )
        raise InvalidClientError(status_code=401, description=DESCRIPTION)


def _verify(assertion: str, keys: KeySet, alg: str, kid: str | None) -> dict:
    """The claims, if one of the keys fit for ``alg`` (and ``kid``, when sent) signed them.

    joserfc gives every key without a ``kid`` its thumbprint as ``kid``; without a
    ``kid`` in the header, each key of the algorithm's type is tried in turn.
    """
    types = KeySet.algorithm_keys.get(alg, [])
    candidates = [k for k in keys if k.key_type in types and (kid is None or k.kid == kid)]
    if not candidates:
        raise Refused("unknown_key")
    for key in candidates:
        try:
            return jwt.decode(assertion, key, algorithms=[alg]).claims
        except (BadSignatureError, KeyParameterError):
            continue  # another key, or one meant for another algorithm or for encryption
        except (JoseError, ValueError, TypeError):
            # A hostile header (a ``crit`` that is not a list of names…) makes joserfc
            # raise a TypeError rather than a JoseError: a refusal, never a 500.
            raise Refused("malformed") from None
    raise Refused("bad_signature")


@dataclass
class _Fetched:
    keys: KeySet | None
    fetched_at: int
    attempted_at: int


class JwksCache:
    """Clients' ``jwks_uri`` documents, per process, for ``JWKS_TTL`` seconds.

    One fetch at a time per client, at most one per ``JWKS_REFETCH_INTERVAL``
    (an attacker sending unknown ``kid``s cannot make us hammer the RP), each
    bounded by ``JWKS_TIMEOUT`` and ``JWKS_MAX_BYTES`` (a slow or hostile server
    cannot hold a worker or fill its memory).
    """

    def __init__(self):
        self._entries: dict[tuple[str, str], _Fetched] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def key_set(self, client: Client, refresh: bool) -> KeySet | None:
        if not client.jwks_uri:
            return _import(client.jwks)
        slot = (client.client_id, client.jwks_uri)
        with self._guard:
            lock = self._locks.setdefault(slot, threading.Lock())
        with lock:
            now = clock.now()
            entry = self._entries.get(slot)
            fresh = entry is not None and entry.keys is not None
            fresh = fresh and now - entry.fetched_at < JWKS_TTL
            if fresh and not refresh:
                return entry.keys
            if entry is not None and now - entry.attempted_at < JWKS_REFETCH_INTERVAL:
                return entry.keys if fresh else None
            try:
                keys = fetch_jwks(client.jwks_uri)
            except JwksUnavailable as exc:
                log.warning("jwks_uri of client %s unusable: %s", client.client_id, exc)
                kept = entry.keys if fresh else None
                self._entries[slot] = _Fetched(kept, entry.fetched_at if entry else 0, now)
                return kept
            self._entries[slot] = _Fetched(keys, now, now)
            return keys


class JwksUnavailable(Exception):
    """The client's ``jwks_uri`` could not be read as a JWK Set in time."""


def fetch_jwks(uri: str) -> KeySet:
    deadline = time.monotonic() + JWKS_TIMEOUT
    request = urllib.request.Request(uri, headers={"Accept": "application/json"})
    body = bytearray()
    try:
        with urllib.request.urlopen(request, timeout=JWKS_TIMEOUT) as response:
            while chunk := response.read1(8192):
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise JwksUnavailable(f"larger than {JWKS_MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise JwksUnavailable(f"not read within {JWKS_TIMEOUT} s")
    except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
        # URLError and HTTPError are OSErrors, as is a time-out; ValueError: a bad URL.
        raise JwksUnavailable(type(exc).__name__) from None
    try:
        document = json.loads(body)
    except ValueError:
        raise JwksUnavailable("not JSON") from None
    keys = _import(document)
    if keys is None:
        raise JwksUnavailable("not a JWK Set")
    return keys


def _import(document) -> KeySet | None:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        return None
    if not all(isinstance(key, dict) for key in document["keys"]):
        return None
    try:
        return KeySet.import_key_set(document)
    except (JoseError, ValueError, TypeError, KeyError):
        return None
