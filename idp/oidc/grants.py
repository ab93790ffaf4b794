"""Authlib grants: only the hooks Authlib asks for (docs/CONVENTIONS.md, convention 4).

OpenID Connect Core 1.0 §3.1 (code flow), RFC 7636 (PKCE), RFC 6749 §6
(refresh, rotated; reuse past a few seconds' grace revokes the family — RFC 9700
§4.14.2, SECURITY.md "Refresh tokens").
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
from sqlalchemy.exc import SQLAlchemyError

from .. import audit, clock
from ..crypto import random_token, sha256_hex
from ..models import AuthorizationCode, Client, Token, User, db, use_once
from ..models.tokens import (
    RefreshGrant,
    find_refresh,
    hold_in_grace,
    hold_live,
    retire_refresh,
    revocation_state,
    revoke_tokens,
)
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


@dataclass(frozen=True)
class TokenOwner:
    """Whom a refresh is for: the grant needs only the id (the read found them enabled)."""

    id: int

    def get_user_id(self) -> int:
        return self.id


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
        db.session.add(row)  # committed by ``authorize.issue``, with the sign-in that led here

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
        The redemption is committed with the tokens it gives (``save_token``): if
        the database fails before, the code is still unused and the RP may retry.
        """
        super().validate_token_request()
        row: AuthorizationCode = self.request.authorization_code
        if use_once(AuthorizationCode, row.id):
            return
        db.session.rollback()
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


def _refresh_replayed(token_id: int, family_id: str, user_id: int, client_id: str) -> None:
    """Reuse of a retired refresh token past its grace: theft assumed, the grant ends.

    Whatever the failed refresh had written is rolled back first; the family's
    revocation and its audit row are then one transaction.
    """
    db.session.rollback()
    revoke_tokens(Token.family_id == family_id)
    audit.record(
        "refresh.replayed",
        user_id=user_id,
        client_id=client_id,
        commit=False,
        level=logging.WARNING,
        token=token_id,
    )
    db.session.commit()


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh (RFC 6749 §6) with rotation, a reuse grace, and one transaction per refresh.

    Authlib calls ``save_token`` (the new row and its ``token.issued`` audit row,
    not committed: ``Server.save_token``) and then ``revoke_old_credential``,
    which retires the presented token by compare-and-set and commits all three
    together, or rolls everything back. The rules are in SECURITY.md, "Refresh
    tokens".
    """

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def _grace_seconds(self) -> int:
        return current_app.config["IDP"]["tokens"]["refresh_reuse_seconds"]

    def _validate_token_scope(self, token: RefreshGrant) -> None:
        """A refresh may narrow the scope, within what was granted (RFC 6749 §6)."""
        requested = set(scope_to_list(self.request.payload.scope or ""))
        if not requested <= set(scope_to_list(token.grant_scope)):
            raise InvalidScopeError()

    def issue_token(self, user: TokenOwner, refresh_token: RefreshGrant) -> dict:
        """Without a ``scope`` parameter the new tokens get the whole grant back.

        A client registered with ``--no-rotate`` (confidential only) gets no new
        refresh token: it keeps using the one it has (RFC 6749 §6 lets the
        server choose); public clients always rotate (RFC 9700 §4.14.2).
        """
        scope = self.request.payload.scope or refresh_token.grant_scope
        rotate = self.INCLUDE_NEW_REFRESH_TOKEN and self.request.client.rotate_refresh_token
        return self.generate_token(user=user, scope=scope, include_refresh_token=rotate)

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshGrant | None:
        """A live token, or one rotated within the grace; any other retired one is theft."""
        row = find_refresh(sha256_hex(refresh_token))
        if row is None:
            return None
        if row.is_refresh_usable() or row.in_reuse_grace(self._grace_seconds):
            return row
        if row.refresh_revoked:
            _refresh_replayed(row.id, row.family_id, row.user_id, row.client_id)
        return None

    def authenticate_user(self, refresh_token: RefreshGrant) -> TokenOwner:
        if refresh_token.user_disabled:
            raise InvalidGrantError("The account behind this refresh token is disabled.")
        return TokenOwner(refresh_token.user_id)

    def revoke_old_credential(self, refresh_token: RefreshGrant) -> None:
        """Retire the presented token (compare-and-set) and commit the whole refresh.

        With rotation, exactly one request retires a live token; any other one
        (a concurrent refresh that read it live, or a reuse) goes on only while
        the retired token is in its grace, checked by a conditional UPDATE that
        also holds the row against a concurrent revocation until the commit.
        Without rotation the token must still be live. A database error
        anywhere propagates before the commit: nothing of the refresh is kept
        and the presented token stays as it was.
        """
        token_id, family_id = refresh_token.id, refresh_token.family_id
        owner = (refresh_token.user_id, refresh_token.client_id)
        now = clock.now()
        rotate = self.request.client.rotate_refresh_token
        if rotate:
            ok = retire_refresh(token_id, now) or self._still_in_grace(token_id, now)
        else:
            ok = hold_live(token_id)
        if not ok:
            if rotate:  # lost a race with grace disabled or over: the grant is compromised
                _refresh_replayed(token_id, family_id, *owner)
            else:
                db.session.rollback()
            raise InvalidGrantError("Refresh token already used.")
        db.session.commit()
        self._revoke_if_revoked_meanwhile(token_id, family_id)

    def _still_in_grace(self, token_id: int, now: int) -> bool:
        grace = self._grace_seconds
        return grace > 0 and hold_in_grace(token_id, now, grace)

    @staticmethod
    def _revoke_if_revoked_meanwhile(token_id: int, family_id: str) -> None:
        """A revocation of the family that waited on our row lock (PostgreSQL, read
        committed) did not see the row we just inserted: look again now that it is
        committed, as ``Server._revoke_if_replayed`` does for codes.

        The look is ``FOR SHARE``: the revocation, woken by our commit, may still
        have work to do before its own (``end_all_of`` ends sessions, writes the
        outbox and the audit); a plain SELECT would read the row as it was before
        it. A row gone altogether (``idp client remove`` deletes its tokens) is a
        revocation too.

        Not on SQLite, where no revocation can miss that row: SQLite lets one
        writer at a time hold the database, from its first write to its commit,
        and a writer that waited reads the database as the commit left it.

        The refresh is committed by now: a database failure here must not turn it
        into an error whose retry would find the presented token already retired.
        """
        if db.engine.dialect.name == "sqlite":
            return
        try:
            state = revocation_state(token_id)
            if state is None or (state.refresh_revoked and state.refresh_rotated_at is None):
                revoke_tokens(Token.family_id == family_id)
            db.session.commit()  # and release the share lock
        except SQLAlchemyError as error:
            db.session.rollback()
            log.warning("refresh: revocation re-check skipped: %s", type(error).__name__)


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
        client = self.server.query_client(authorization_code.client_id)
        claims.update(
            id_token_claims(authorization_code.user, client, authorization_code.claims_request)
        )
        return claims

    def exists_nonce(self, nonce: str, request) -> bool:
        """Never a replay here: the RP checks ``nonce`` against the ID token (Core §3.1.3.7).

        Refusing a nonce seen before would only break an RP's legitimate retry
        (back button, double click) while protecting nothing on this side.
        """
        return False

    def generate_user_info(self, user: User, scope: str) -> dict:
        """Nothing more: ``sub`` (public or pairwise, ``idp.subjects``) came with the code's
        claims, which name the client; profile data goes to /userinfo (data minimisation)."""
        return {}
