"""Authlib grants: only the hooks Authlib asks for (STYLE.md convention 4).

OpenID Connect Core 1.0 §3.1 (code flow), RFC 7636 (PKCE), RFC 6749 §6
(refresh, rotated, reuse revokes the family — OAuth 2.0 Security BCP §4.14).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
    scope_to_list,
)
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from flask import current_app
from sqlalchemy import select, update

from .. import audit, clock
from ..crypto import random_token, sha256_hex
from ..models import AuthorizationCode, Client, Token, User, db, use_once
from ..models.tokens import revoke_tokens
from .claims import id_token_claims

log = logging.getLogger("idp.oidc")
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none", "private_key_jwt"]


@dataclass(frozen=True)
class GrantUser:
    """Who the code is issued for, and how they authenticated (from the SSO session)."""

    user: User
    sid: str
    auth_time: int
    acr: str
    amr: tuple[str, ...]

    def get_user_id(self) -> int:
        return self.user.id


def revoke_family(family_id: str) -> None:
    """Revoke every token descended from one code (replayed code or refresh token)."""
    revoke_tokens(Token.family_id == family_id)
    db.session.commit()


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only; public clients must use it (RFC 7636, RFC 9700 §2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        client: Client = grant.request.client
        if client.is_public and not data.get("code_challenge"):
            raise InvalidRequestError("Public clients must send a PKCE 'code_challenge' (S256).")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be 'S256'.")
        return super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.code_challenge_method


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def generate_authorization_code(self) -> str:
        return random_token(32)

    def save_authorization_code(self, code: str, request) -> None:
        granted: GrantUser = request.user
        data = request.payload.data
        row = AuthorizationCode(
            code_hash=sha256_hex(code),
            client_id=request.client.client_id,
            user_id=granted.user.id,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            claims_request=getattr(request, "claims_request", None),
            auth_time=granted.auth_time,
            acr=granted.acr,
            amr=list(granted.amr),
            sid=granted.sid,
            family_id=random_token(16),
            expires_at=clock.now() + current_app.config["IDP"]["tokens"]["code_seconds"],
        )
        db.session.add(row)
        db.session.commit()

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """Look the code up, without consuming it: ``redirect_uri`` and PKCE come next.

        A used code is still returned (even expired), so that a replay is recognised
        once the request has proved it holds the code's verifier; consuming it here
        would let anyone who saw a public client's code void it with a wrong one.
        """
        row = db.session.scalars(
            select(AuthorizationCode).where(
                AuthorizationCode.code_hash == sha256_hex(code),
                AuthorizationCode.client_id == client.client_id,
            )
        ).first()
        if row is None or (row.is_expired() and not row.used):
            return None
        return row

    def validate_token_request(self) -> None:
        """Consume the code only once client, ``redirect_uri`` and PKCE passed.

        Authlib checks them in ``super()`` (PKCE in its ``after_validate_token_request``
        hook), so a failed request changes nothing (RFC 6749 §4.1.3, RFC 7636 §4.6).
        Then one conditional UPDATE: of concurrent redemptions exactly one wins; any
        other is a replay of a leaked code and revokes what it gave (RFC 6749 §4.1.2).
        """
        super().validate_token_request()
        row: AuthorizationCode = self.request.authorization_code
        if use_once(AuthorizationCode, row.id):
            return
        db.session.execute(
            update(AuthorizationCode).where(AuthorizationCode.id == row.id).values(replayed=True)
        )
        db.session.commit()
        revoke_family(row.family_id)
        audit.record("code.replayed", user_id=row.user_id, client_id=row.client_id)
        raise InvalidGrantError("Invalid 'code' in request.")

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Kept (marked used) until it expires, so a replay can be recognised."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        user = db.session.get(User, authorization_code.user_id)
        return None if user is None or user.disabled else user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def _validate_token_scope(self, token: Token) -> None:
        """A refresh may narrow the scope, within what was granted (RFC 6749 §6)."""
        requested = set(scope_to_list(self.request.payload.scope or ""))
        if not requested <= set(scope_to_list(token.grant_scope)):
            raise InvalidScopeError()

    def issue_token(self, user: User, refresh_token: Token) -> dict:
        """Without a ``scope`` parameter the new tokens get the whole grant back."""
        scope = self.request.payload.scope or refresh_token.grant_scope
        return self.generate_token(user=user, scope=scope, include_refresh_token=True)

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        row = db.session.scalars(
            select(Token).where(Token.refresh_token_hash == sha256_hex(refresh_token))
        ).first()
        if row is None:
            return None
        if row.refresh_revoked:
            revoke_family(row.family_id)
            audit.record("refresh.replayed", user_id=row.user_id, client_id=row.client_id)
            return None
        return row if row.is_refresh_usable() else None

    def authenticate_user(self, refresh_token: Token) -> User:
        user = db.session.get(User, refresh_token.user_id)
        if user is None or user.disabled:
            raise InvalidGrantError("The account behind this refresh token is disabled.")
        return user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Retire the used refresh token; losing a race counts as reuse."""
        retired = db.session.execute(
            update(Token)
            .where(Token.id == refresh_token.id, Token.refresh_revoked.is_(False))
            .values(refresh_revoked=True, access_revoked=True)
        )
        db.session.commit()
        if retired.rowcount != 1:
            revoke_family(refresh_token.family_id)
            raise InvalidGrantError("Refresh token already used.")


class OpenIDCodeExtension(OpenIDCode):
    """ID tokens for the code flow, signed with the active key of the client's algorithm."""

    def __init__(self, server):
        super().__init__(require_nonce=False)
        self.server = server

    def resolve_client_private_key(self, client: Client):
        return self.server.keyring.signing_key(self.get_client_algorithm(client))[1]

    def get_client_algorithm(self, client: Client) -> str:
        return client.id_token_signed_response_alg or self.server.settings["keys"]["algorithm"]

    def get_encode_header(self, client: Client) -> dict:
        alg = self.get_client_algorithm(client)
        kid, _ = self.server.keyring.signing_key(alg)
        return {"alg": alg, "kid": kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict:
        now = clock.now()
        return {
            "iss": self.server.settings["issuer"],
            "aud": [client.client_id],
            "azp": client.client_id,
            "iat": now,
            "exp": now + self.server.settings["tokens"]["id_token_seconds"],
        }

    def get_authorization_code_claims(self, authorization_code: AuthorizationCode) -> dict:
        """acr, amr, auth_time, nonce, sid, and the user claims ``claims.id_token`` asked for."""
        claims = super().get_authorization_code_claims(authorization_code)
        if authorization_code.sid:
            claims["sid"] = authorization_code.sid
        claims.update(id_token_claims(authorization_code.user, authorization_code.claims_request))
        return claims

    def exists_nonce(self, nonce: str, request) -> bool:
        """Never a replay here: the RP checks ``nonce`` against the ID token (Core §3.1.3.7).

        Refusing a nonce seen before would only break an RP's legitimate retry
        (back button, double click) while protecting nothing on this side.
        """
        return False

    def generate_user_info(self, user: User, scope: str) -> dict:
        """Only ``sub``: profile data goes to /userinfo (data minimisation)."""
        return {"sub": user.subject}
