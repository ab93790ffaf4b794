"""The one module that owns Authlib's server objects (docs/CONVENTIONS.md, convention 4).

``init_app`` builds an ``AuthorizationServer`` and a ``ResourceProtector`` per
application and keeps them in ``app.extensions['idp_oidc']``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    MissingAuthorizationError,
    UnsupportedResponseTypeError,
    UnsupportedTokenTypeError,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import audit, clock
from ..crypto import random_token, sha256_hex
from ..models import Client, Token, db
from ..models.clients import read_client
from ..models.tokens import insert_token
from .client_auth import METHOD as PRIVATE_KEY_JWT
from .client_auth import PrivateKeyJWT
from .endpoints import EndSession, Introspection, Revocation, UserInfo
from .grants import (
    AuthorizationCodeGrant,
    OpenIDCodeExtension,
    RefreshTokenGrant,
    S256CodeChallenge,
)
from .keys import KeyRing


class MalformedRequest(InvalidRequestError):
    """A parameter Authlib would have quoted in an error description it cannot carry."""

    description = "A request parameter holds characters it may not contain."


class UnsupportedResponseType(UnsupportedResponseTypeError):
    """Authlib's error, without the requested value echoed in its description."""

    def __init__(self, redirect_uri: str | None = None):
        OAuth2Error.__init__(
            self, "Only response_type=code is supported.", redirect_uri=redirect_uri
        )
        self.response_type = None

    def get_error_description(self) -> str:
        return self.description


def _refused_description(exc: ValueError) -> bool:
    """Is this Authlib's ``OAuth2Error.__init__`` refusing a description built from input?

    RFC 6749 §4.1.2.1 limits ``error_description`` to printable ASCII without
    ``"`` and ``\\``; Authlib raises ``ValueError`` when its own message quotes a
    parameter holding anything else (a redirect URI ending in a tab, a
    non-ASCII ``response_type``, a JOSE error about a hostile header…).
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code is OAuth2Error.__init__.__code__


@contextmanager
def refusing_malformed_input() -> Iterator[None]:
    """Turn Authlib's refusal (``_refused_description``) into ``invalid_request``, never
    redirected: which parameter held what is unknown, so nothing is trusted yet.

    Any other ``ValueError`` is a bug and propagates (a 500 the tests see).
    """
    try:
        yield
    except ValueError as exc:
        if not _refused_description(exc):
            raise
        raise MalformedRequest() from exc


def _unusable_basic_credentials(header: str | None) -> bool:
    """Would Authlib's ``client_secret_basic`` parser choke on this ``Authorization``?

    It splits any header holding a space into scheme and credentials (``" "`` or
    ``"Basic "`` have none), decodes them as UTF-8 and percent-decodes the
    client id (RFC 6749 §2.3.1), which may then hold a NUL no database takes.
    """
    if not header or " " not in header:
        return False  # no credentials Authlib would read: the other methods apply
    parts = header.split(None, 1)
    if len(parts) != 2:
        return True
    scheme, token = parts
    if scheme.lower() != "basic":
        return False
    try:
        pair = base64.b64decode(token).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return True
    return any("\x00" in unquote(part) for part in pair.split(":", 1))


class Server(AuthorizationServer):
    """Authlib's Flask server with our storage, issuer and error conventions."""

    def __init__(self, settings: dict, keyring: KeyRing):
        super().__init__()
        self.settings = settings
        self.keyring = keyring
        self.private_key_jwt = PrivateKeyJWT(settings["issuer"])

    def query_client(self, client_id: str) -> Client | None:
        return read_client(client_id) if client_id else None

    def save_token(self, token: dict, request) -> None:
        """Store hashes only; lineage (family, session, acr…) comes from the code or parent."""
        code, parent = request.authorization_code, request.refresh_token
        source = code or parent
        refresh = token.get("refresh_token")
        days = self.settings["tokens"]["refresh_token_days"]
        if parent is not None:  # a rotation never extends the grant's lifetime
            refresh_expires_at = parent.refresh_expires_at
        else:
            refresh_expires_at = clock.now() + days * 86400 if refresh else None
        insert_token(
            client_id=request.client.client_id,
            user_id=request.user.id,
            access_token_hash=sha256_hex(token["access_token"]),
            refresh_token_hash=sha256_hex(refresh) if refresh else None,
            token_type=token["token_type"],
            scope=token.get("scope", ""),
            grant_scope=parent.grant_scope if parent is not None else code.scope,
            issued_at=clock.now(),
            expires_in=token["expires_in"],
            refresh_expires_at=refresh_expires_at if refresh else None,
            family_id=source.family_id,
            sid=source.sid,
            auth_time=source.auth_time,
            acr=source.acr,
            amr=list(source.amr),
            claims_request=source.claims_request,
        )
        audit.record(
            "token.issued",
            user_id=request.user.id,
            client_id=request.client.client_id,
            commit=False,
            grant=request.payload.grant_type,
        )
        if code is None:
            return  # a refresh: committed with the old token's retirement (revoke_old_credential)
        db.session.commit()
        self._revoke_if_replayed(code)

    def _revoke_if_replayed(self, code) -> None:
        """A replay that raced this redemption may have revoked the family before our
        tokens existed: look again now that they do (RFC 6749 §4.1.2)."""
        from .grants import revoke_family

        db.session.refresh(code)
        if code.replayed:
            revoke_family(code.family_id)

    def validate_requested_scope(self, scope: str) -> None:
        """Unknown scopes are ignored, not refused (OpenID Connect Core §3.1.2.1)."""

    def get_authorization_grant(self, request):
        """Authlib's look-up, but an unsupported ``response_type`` is never quoted back.

        As in Authlib, the error is redirected only to a redirect URI registered
        for the client (RFC 6749 §4.1.2.1), else shown on our error page.
        """
        if not any(
            cls.check_authorization_endpoint(request) for cls, _ in self._authorization_grants
        ):
            raise UnsupportedResponseType(redirect_uri=self._trusted_redirect_uri(request))
        return super().get_authorization_grant(request)

    def _trusted_redirect_uri(self, request) -> str | None:
        client = self.query_client(request.payload.client_id)
        if client is None:
            return None
        requested = request.payload.redirect_uri
        if not requested:
            return client.get_default_redirect_uri()
        return requested if client.check_redirect_uri(requested) else None

    def authenticate_client(self, request, methods, endpoint="token"):
        if _unusable_basic_credentials(request.headers.get("Authorization")):
            raise InvalidClientError(status_code=401, description="Malformed Basic credentials.")
        self.private_key_jwt.before(request, endpoint)
        try:
            return super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            self.private_key_jwt.after_refusal(request, self.query_client)
            raise

    def create_token_response(self, request=None):
        try:
            with refusing_malformed_input():
                return super().create_token_response(request)
        except MalformedRequest as error:
            return self.handle_error_response(request, error)

    def create_endpoint_response(self, name, request=None):
        try:
            with refusing_malformed_input():
                return super().create_endpoint_response(name, request)
        except MalformedRequest as error:
            return self.handle_error_response(request, error)

    def validate_endpoint_request(self, name, request=None):
        with refusing_malformed_input():
            return super().validate_endpoint_request(name, request)

    def handle_error_response(self, request, error):
        if isinstance(error, InvalidClientError) and not error.redirect_uri:
            error.status_code = 401  # RFC 6749 §5.2, with WWW-Authenticate
        if isinstance(error, MissingAuthorizationError | UnsupportedTokenTypeError):
            # RFC 6750 §3.1: no bearer credentials sent → a bare challenge, no error code.
            challenge = f'Bearer realm="{self.settings["issuer"]}"'
            return self.handle_response(401, "", [("WWW-Authenticate", challenge)])
        response = super().handle_error_response(request, error)
        challenge = response.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("bearer "):
            response.headers["WWW-Authenticate"] = "Bearer " + challenge[7:]
        return response

    def authorization_error(self, request, error):
        """An error raised outside Authlib's authorization response, with ``iss`` added."""
        response = self.handle_error_response(request, error)
        if response.location:
            response.location = _with_issuer(response.location, self.settings["issuer"])
        return response

    def request_from_args(self, args: dict) -> OAuth2Request:
        """Rebuild a stored authorization request to resume it after the login."""
        from urllib.parse import urlencode

        from flask import request as flask_request

        uri = f"{flask_request.url_root.rstrip('/')}/authorize?{urlencode(args)}"
        request = _StoredRequest("GET", uri)
        request.payload = BasicOAuth2Payload(args)
        return request


class _StoredRequest(OAuth2Request):
    @property
    def args(self):
        return self.payload.data

    @property
    def form(self):
        return {}


def _with_issuer(location: str, issuer: str) -> str:
    """RFC 9207: every authorization response, errors included, names the issuer."""
    from authlib.common.urls import add_params_to_uri

    return add_params_to_uri(location, {"iss": issuer})


class _Issuer(IssuerParameter):
    def __init__(self, issuer: str):
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


class _BearerValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> Token | None:
        return db.session.scalars(
            select(Token)
            .options(joinedload(Token.user), joinedload(Token.client))
            .where(Token.access_token_hash == sha256_hex(token_string))
        ).first()

    def validate_token(self, token, scopes, request):
        super().validate_token(token, scopes, request)
        if token.user is None or token.user.disabled:
            from authlib.oauth2.rfc6750 import InvalidTokenError

            raise InvalidTokenError(realm=self.realm)


class Resource(ResourceProtector):
    """Bearer tokens in the header or, for POST forms, the body (RFC 6750 §2.1–2.2)."""

    def parse_request_authorization(self, request):
        from flask import request as flask_request

        if "Authorization" not in request.headers and flask_request.method == "POST":
            token = flask_request.form.get("access_token")
            if token and flask_request.mimetype == "application/x-www-form-urlencoded":
                return self.get_token_validator("bearer"), token
        return super().parse_request_authorization(request)


@dataclass
class OIDC:
    server: Server
    resource: ResourceProtector
    keyring: KeyRing


def init_app(app: Flask) -> None:
    settings = app.config["IDP"]
    keyring = KeyRing(directory=_keys_dir(settings))
    if (keyring.directory / "keys.json").exists():
        keyring.reload()  # a bad key file stops start-up here, not at the first login
    server = Server(settings, keyring)
    server.init_app(app, query_client=server.query_client, save_token=server.save_token)
    server.register_client_auth_method(PRIVATE_KEY_JWT, server.private_key_jwt)
    tokens = settings["tokens"]
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            access_token_generator=lambda **_: random_token(32),
            refresh_token_generator=(lambda **_: random_token(32))
            if tokens["refresh_token_days"] > 0
            else None,
            expires_generator=lambda client, grant_type: tokens["access_token_seconds"],
        ),
    )
    server.register_grant(
        AuthorizationCodeGrant, [S256CodeChallenge(required=True), OpenIDCodeExtension(server)]
    )
    if tokens["refresh_token_days"] > 0:
        server.register_grant(RefreshTokenGrant)
    server.register_extension(_Issuer(settings["issuer"]))

    resource = Resource()
    resource.register_token_validator(_BearerValidator(realm=settings["issuer"]))
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_endpoint(EndSession)
    server.register_endpoint(UserInfo(server=server, resource_protector=resource))
    app.extensions["idp_oidc"] = OIDC(server, resource, keyring)


def _keys_dir(settings: dict):
    from pathlib import Path

    return Path(settings["keys"]["dir"]).resolve()


def oidc() -> OIDC:
    return current_app.extensions["idp_oidc"]
