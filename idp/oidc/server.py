"""The one module that owns Authlib's server objects (STYLE.md convention 4).

``init_app`` builds an ``AuthorizationServer`` and a ``ResourceProtector`` per
application and keeps them in ``app.extensions['idp_oidc']``.
"""

from __future__ import annotations

from dataclasses import dataclass

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import InvalidClientError, OAuth2Request
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import audit, clock
from ..crypto import random_token, sha256_hex
from ..models import Client, Token, db
from .endpoints import EndSession, Introspection, Revocation, UserInfo
from .grants import (
    AuthorizationCodeGrant,
    OpenIDCodeExtension,
    RefreshTokenGrant,
    S256CodeChallenge,
)
from .keys import KeyRing


class Server(AuthorizationServer):
    """Authlib's Flask server with our storage, issuer and error conventions."""

    def __init__(self, settings: dict, keyring: KeyRing):
        super().__init__()
        self.settings = settings
        self.keyring = keyring

    def query_client(self, client_id: str) -> Client | None:
        if not client_id:
            return None
        return db.session.scalars(select(Client).where(Client.client_id == client_id)).first()

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
        row = Token(
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
        db.session.add(row)
        audit.record(
            "token.issued",
            user_id=request.user.id,
            client_id=request.client.client_id,
            commit=False,
            grant=request.payload.grant_type,
        )
        db.session.commit()
        if code is not None:
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
