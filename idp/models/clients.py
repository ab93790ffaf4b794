"""Relying parties registered by the operator (``idp client add``)."""

from __future__ import annotations

import hashlib
import hmac

from authlib.oauth2.rfc6749 import ClientMixin, list_to_scope, scope_to_list
from sqlalchemy import JSON, BigInteger, String, bindparam, select
from sqlalchemy.orm import Mapped, mapped_column

from .. import clock
from . import db


def hash_client_secret(secret: str) -> str:
    """SHA-256 of a 256-bit random secret: a slow hash would add nothing but latency."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Client(db.Model, ClientMixin):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(128), default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    client_metadata: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger, default=clock.now)

    @property
    def redirect_uris(self) -> list[str]:
        return self.client_metadata.get("redirect_uris", [])

    @property
    def post_logout_redirect_uris(self) -> list[str]:
        return self.client_metadata.get("post_logout_redirect_uris", [])

    @property
    def token_endpoint_auth_method(self) -> str:
        return self.client_metadata.get("token_endpoint_auth_method", "client_secret_basic")

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def default_acr_values(self) -> list[str]:
        return self.client_metadata.get("default_acr_values", [])

    @property
    def id_token_signed_response_alg(self) -> str | None:
        return self.client_metadata.get("id_token_signed_response_alg")

    @property
    def rotate_refresh_token(self) -> bool:
        """Public clients always rotate (RFC 9700 §4.14.2); ``--no-rotate`` opts out."""
        return self.is_public or self.client_metadata.get("rotate_refresh_token", True)

    @property
    def subject_type(self) -> str:
        return self.client_metadata.get("subject_type", "public")

    @property
    def sector_identifier(self) -> str | None:
        return self.client_metadata.get("sector_identifier")

    @property
    def backchannel_logout_uri(self) -> str | None:
        return self.client_metadata.get("backchannel_logout_uri")

    @property
    def backchannel_logout_session_required(self) -> bool:
        return bool(self.client_metadata.get("backchannel_logout_session_required"))

    @property
    def jwks_uri(self) -> str | None:
        return self.client_metadata.get("jwks_uri")

    @property
    def jwks(self) -> dict | None:
        return self.client_metadata.get("jwks")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        if not scope:
            return ""
        allowed = set(scope_to_list(self.client_metadata.get("scope", "")))
        return list_to_scope([s for s in scope_to_list(scope) if s in allowed])

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, RFC 6749 §3.1.2.3

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.client_secret_hash:
            return False
        return hmac.compare_digest(self.client_secret_hash, hash_client_secret(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        return method == self.token_endpoint_auth_method or (
            not self.is_public and method in ("client_secret_basic", "client_secret_post")
        )

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.client_metadata.get("response_types", ["code"])

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.client_metadata.get("grant_types", [])

    def __repr__(self) -> str:
        return f"<Client {self.client_id}>"


_BY_CLIENT_ID = select(Client.__table__).where(
    Client.__table__.c.client_id == bindparam("client_id")
)


def read_client(client_id: str) -> Client | None:
    """The client as registered now, for the protocol endpoints, which only read it.

    One Core SELECT, and a new ``Client`` built from the row, never attached to
    the session: loading it through the ORM cost a fifth of a refresh grant
    (bench/profile_refresh.py). The operator's changes (``idp.clients``) load
    their own, attached row.
    """
    row = db.session.execute(_BY_CLIENT_ID, {"client_id": client_id}).first()
    return None if row is None else Client(**row._mapping)
