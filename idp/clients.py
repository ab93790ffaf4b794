"""Registration of relying parties by the operator (``idp client …``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import delete, select

from .crypto import random_token
from .models import AuthorizationCode, Client, Token, db
from .models.clients import hash_client_secret

SCOPES = "openid profile email phone offline_access"
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


class ClientError(ValueError):
    """A registration was refused; the message says why."""


def _check_uri(uri: str, what: str) -> None:
    parts = urlsplit(uri)
    if parts.fragment or not parts.netloc and parts.scheme in ("http", "https"):
        raise ClientError(f"{what} must be an absolute URI without fragment: {uri}")
    if not parts.scheme or parts.scheme in ("javascript", "data", "file"):
        raise ClientError(f"{what} has an unacceptable scheme: {uri}")


def register_client(
    client_id: str,
    redirect_uris: list[str],
    *,
    public: bool = False,
    name: str = "",
    auth_method: str = "client_secret_basic",
    acr: str | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    refresh: bool = True,
    id_token_alg: str | None = None,
) -> tuple[Client, str | None]:
    """Create a client; returns it with its secret (shown once; only a hash is kept)."""
    if not client_id or any(c.isspace() for c in client_id):
        raise ClientError("client id must be non-empty, without spaces")
    if not redirect_uris:
        raise ClientError("at least one --redirect-uri is required")
    for uri in redirect_uris:
        _check_uri(uri, "redirect URI")
    for uri in post_logout_redirect_uris or []:
        _check_uri(uri, "post-logout redirect URI")
    if auth_method not in AUTH_METHODS:
        raise ClientError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    if db.session.scalars(select(Client).where(Client.client_id == client_id)).first():
        raise ClientError(f"client {client_id!r} already exists")
    metadata = {
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": list(post_logout_redirect_uris or []),
        "grant_types": ["authorization_code", *([] if not refresh else ["refresh_token"])],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none" if public else auth_method,
        "scope": SCOPES,
    }
    if acr:
        metadata["default_acr_values"] = [acr]
    if id_token_alg:
        metadata["id_token_signed_response_alg"] = id_token_alg
    secret = None if public else random_token(32)
    client = Client(
        client_id=client_id,
        name=name or client_id,
        client_secret_hash=hash_client_secret(secret) if secret else None,
        client_metadata=metadata,
    )
    db.session.add(client)
    db.session.commit()
    return client, secret


def find_client(client_id: str) -> Client | None:
    return db.session.scalars(select(Client).where(Client.client_id == client_id)).first()


def list_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.client_id)))


def remove_client(client_id: str) -> None:
    """Delete a client with its codes and tokens (they must stop working at once)."""
    client = find_client(client_id)
    if client is None:
        raise ClientError(f"no client {client_id!r}")
    db.session.execute(delete(Token).where(Token.client_id == client_id))
    db.session.execute(delete(AuthorizationCode).where(AuthorizationCode.client_id == client_id))
    db.session.delete(client)
    db.session.commit()
