"""Authlib endpoints: revocation (RFC 7009), introspection (RFC 7662), userinfo
(OpenID Connect Core §5.3) and RP-initiated logout (OpenID Connect RP-Initiated
Logout 1.0)."""

from __future__ import annotations

import base64
import json

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import UserInfoEndpoint
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import g
from sqlalchemy import or_, select, update

from .. import audit
from ..crypto import sha256_hex
from ..models import Token, User, db
from ..models.tokens import revoke_tokens
from ..subjects import subject_for
from .claims import userinfo_claims


def find_token(token_string: str, hint: str | None = None) -> Token | None:
    """A token row by its access or refresh value (the hint only orders the look-up)."""
    digest = sha256_hex(token_string)
    column = {"access_token": Token.access_token_hash, "refresh_token": Token.refresh_token_hash}
    if hint in column:
        condition = column[hint] == digest
    else:
        condition = or_(Token.access_token_hash == digest, Token.refresh_token_hash == digest)
    row = db.session.scalars(select(Token).where(condition)).first()
    if row is None and hint in column:  # a wrong hint must not hide the token (RFC 7009 §2.1)
        row = db.session.scalars(
            select(Token).where(
                or_(Token.access_token_hash == digest, Token.refresh_token_hash == digest)
            )
        ).first()
    return row


def _check_token_param(request) -> None:
    """``token`` is required; an unknown ``token_type_hint`` is ignored (RFC 7009 §2.1)."""
    if not request.form.get("token"):
        raise InvalidRequestError("Missing 'token'.")


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none", "private_key_jwt"]

    def check_params(self, request, client):
        _check_token_param(request)

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request) -> None:
        """An access token dies alone; a refresh token takes its whole grant with it."""
        is_refresh = token.refresh_token_hash == sha256_hex(request.form["token"])
        if is_refresh:
            revoke_tokens(Token.family_id == token.family_id)
        else:  # the refresh token stays as it was: revoked or not
            db.session.execute(
                update(Token).where(Token.id == token.id).values(access_revoked=True)
            )
        audit.record(
            "token.revoked",
            user_id=token.user_id,
            client_id=token.client_id,
            commit=False,
            kind="refresh_token" if is_refresh else "access_token",
        )
        db.session.commit()


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]

    def check_params(self, request, client):
        _check_token_param(request)

    def query_token(self, token_string, token_type_hint):
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: Token, client, request) -> bool:
        return token.client_id == client.client_id

    def create_endpoint_response(self, request):
        client = self.authenticate_endpoint_client(request)
        token = self.authenticate_token(request, client)
        return 200, self.payload(token, request.form["token"]), default_json_headers

    def payload(self, token: Token | None, value: str) -> dict:
        if token is None:
            return {"active": False}
        is_refresh = token.refresh_token_hash == sha256_hex(value)
        if is_refresh:
            active = token.is_refresh_usable()
        else:
            active = not (token.is_expired() or token.is_revoked())
        if not active or token.user is None or token.user.disabled:
            return {"active": False}
        return self.introspect_token(token, is_refresh)

    def introspect_token(self, token: Token, is_refresh: bool = False) -> dict:
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": "refresh_token" if is_refresh else "Bearer",
            "username": token.user.username,
            "scope": token.scope,
            "sub": subject_for(token.user, self.server.query_client(token.client_id)),
            "aud": token.client_id,
            "iss": self.server.settings["issuer"],
            "exp": token.refresh_expires_at if is_refresh else token.get_expires_at(),
            "iat": token.issued_at,
            "auth_time": token.auth_time,
            "acr": token.acr,
            "amr": list(token.amr),
        }


class UserInfo(UserInfoEndpoint):
    def generate_user_info(self, user: User, scope: str):
        """Scope claims plus those the ``claims`` parameter asked for (Core §5.5)."""
        token = g.get("authlib_server_oauth2_token")
        client = self.server.query_client(token.client_id) if token is not None else None
        return userinfo_claims(user, client, scope, getattr(token, "claims_request", None))

    def get_issuer(self) -> str:
        return self.server.settings["issuer"]


class InvalidIdTokenHint(InvalidRequestError):
    description = "'id_token_hint' is not an ID token issued here."


def _crit_is_a_list_of_names(token: str) -> bool:
    """RFC 7515 §4.1.11: ``crit``, when present, lists header names.

    joserfc iterates over whatever it holds (a TypeError on ``null`` or ``[0]``,
    not a ``JoseError``). Anything that is not a JWS header at all is left to
    joserfc to refuse.
    """
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return True
    if not isinstance(header, dict) or "crit" not in header:
        return True
    crit = header["crit"]
    return isinstance(crit, list) and all(isinstance(name, str) for name in crit)


class EndSession(EndSessionEndpoint):
    """Validates ``id_token_hint`` against our JWKS; ``end_session`` ends the SSO session."""

    def _validate_id_token_hint(self, id_token_hint: str) -> dict:
        """Authlib's check, with one more on the header and a description of our own
        (Authlib's quotes the JOSE error, which may quote the hint's header)."""
        if not _crit_is_a_list_of_names(id_token_hint):
            raise InvalidIdTokenHint()
        try:
            return super()._validate_id_token_hint(id_token_hint)
        except InvalidRequestError as exc:
            raise InvalidIdTokenHint() from exc

    def get_server_jwks(self):
        return self.server.keyring.verification_keys()

    def resolve_client_from_id_token_claims(self, id_token_claims: dict):
        """Our ID tokens name one audience (in a list) and ``azp``."""
        aud = id_token_claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else list(aud or [])
        client_id = id_token_claims.get("azp") or (audiences[0] if len(audiences) == 1 else None)
        return self.server.query_client(client_id) if client_id in audiences else None

    def end_session(self, end_session_request) -> None:
        """Ends the browser's session (and tells its RPs, back-channel logout) only when
        the view decided so (``g.end_browser_session``: confirmed, or the hint's sid)."""
        from ..auth import sessions

        if g.get("end_browser_session", True):
            sessions.end_current(reason="rp_logout")
