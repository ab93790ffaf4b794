"""Registration of relying parties by the operator (``idp client …``)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import current_app
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete, select

from . import audit
from .crypto import random_token
from .models import AuthorizationCode, Client, Token, db
from .models.clients import hash_client_secret
from .oidc.acr import levels_of

SCOPES = "openid profile email phone offline_access"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
SUBJECT_TYPES = ("public", "pairwise")
# Characters never accepted anywhere in a registered URI: controls (CR/LF would
# let a code reach another address than the one registered), spaces, a
# backslash (browsers read it as a slash, servers do not) and a wildcard.
_FORBIDDEN = re.compile(
    r"[\x00-\x20\x7f-\x9f\\*\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]"
)
# A private-use scheme (RFC 8252 §7.1) is a reverse domain name: ``com.example.app``.
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+")


class ClientError(ValueError):
    """A registration was refused; the message says why."""


def check_uri(uri: str, what: str, *, native: bool = False) -> str:
    """Refuse anything but an exact, absolute ``https`` URI (``http`` on loopback).

    ``native`` also accepts a private-use scheme for native applications
    (RFC 8252 §7.1). Never a fragment, userinfo, wildcard, backslash, space or
    control character: the URI is compared byte for byte as registered
    (RFC 6749 §3.1.2.3, RFC 9700 §4.1.3), so what is stored must mean exactly
    one address. Used by the CLI and the operator console alike.
    """
    if not uri or len(uri) > 2000 or _FORBIDDEN.search(uri):
        raise ClientError(
            f"{what} has a space, a control character, a backslash or a wildcard: {uri!r}"
        )
    if "#" in uri:
        raise ClientError(f"{what} must not have a fragment: {uri}")
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise ClientError(f"{what} is not a valid URI: {uri}") from None
    scheme = parts.scheme.lower()
    if scheme in ("https", "http"):
        if not parts.netloc or not parts.hostname:
            raise ClientError(f"{what} must be an absolute URI with a host: {uri}")
        if "@" in parts.netloc:
            raise ClientError(f"{what} must not carry a user name or password: {uri}")
        if scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            raise ClientError(f"{what} must use https (http only on localhost): {uri}")
        return uri
    if native and _PRIVATE_SCHEME.fullmatch(scheme) and not parts.netloc:
        return uri
    if native:
        raise ClientError(
            f"{what} must use https, http on localhost, or a reverse-domain scheme "
            f"such as com.example.app:/callback: {uri}"
        )
    raise ClientError(f"{what} must use https (http only on localhost): {uri}")


def _check_jwks(jwks: dict | None, jwks_uri: str | None) -> dict | None:
    """A client's public keys: a JWK Set document, with no private part."""
    if bool(jwks) == bool(jwks_uri):
        raise ClientError("private_key_jwt needs exactly one of --jwks-uri or --jwks")
    if jwks_uri:
        check_uri(jwks_uri, "JWKS URI")
        return None
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ClientError(
            'the JWKS file must be a JSON object {"keys": [...]} with at least one key'
        )
    private = {"d", "p", "q", "dp", "dq", "qi", "k"}
    if any(not isinstance(key, dict) or private & set(key) for key in keys):
        raise ClientError(
            "the JWKS file must hold public keys only (it has a private or symmetric key)"
        )
    try:
        KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ClientError(f"the JWKS file holds an unreadable key: {exc}") from None
    return {"keys": keys}


def sector_identifier(redirect_uris: list[str]) -> str:
    """The host that pairwise subjects are computed for (OIDC Core §8.1)."""
    hosts = {urlsplit(uri).hostname or urlsplit(uri).scheme for uri in redirect_uris}
    if len(hosts) != 1:
        raise ClientError(
            "a pairwise client's redirect URIs must share one host "
            f"(they have {', '.join(sorted(hosts))})"
        )
    return hosts.pop()


def check_uris(
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str],
    backchannel_logout_uri: str | None,
    backchannel_logout_session_required: bool = False,
) -> None:
    """The URI rules of a registration, and of an operator's later edit."""
    if not redirect_uris:
        raise ClientError("at least one --redirect-uri is required")
    for uri in redirect_uris:
        check_uri(uri, "redirect URI", native=True)
    for uri in post_logout_redirect_uris:
        check_uri(uri, "post-logout redirect URI", native=True)
    if backchannel_logout_uri:
        check_uri(backchannel_logout_uri, "back-channel logout URI")
    elif backchannel_logout_session_required:
        raise ClientError("--backchannel-logout-session-required needs --backchannel-logout-uri")


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
    rotate_refresh: bool = True,
    subject_type: str = "public",
    backchannel_logout_uri: str | None = None,
    backchannel_logout_session_required: bool = False,
    jwks_uri: str | None = None,
    jwks: dict | None = None,
) -> tuple[Client, str | None]:
    """Create a client; returns it with its secret (shown once; only a hash is kept).

    A ``private_key_jwt`` client has no secret: it proves itself with
    assertions signed by the keys of ``jwks`` or ``jwks_uri``.
    """
    if not client_id or len(client_id) > 100 or not client_id.isprintable() or " " in client_id:
        raise ClientError("client id must be 1 to 100 printable characters, without spaces")
    check_uris(
        redirect_uris,
        post_logout_redirect_uris or [],
        backchannel_logout_uri,
        backchannel_logout_session_required,
    )
    if acr and acr not in levels_of(current_app.config["IDP"]).values():
        raise ClientError(f"unknown acr value {acr!r}")
    if auth_method not in AUTH_METHODS:
        raise ClientError(f"auth method must be one of {', '.join(AUTH_METHODS)}")
    if subject_type not in SUBJECT_TYPES:
        raise ClientError(f"subject type must be one of {', '.join(SUBJECT_TYPES)}")
    if public and not rotate_refresh:
        raise ClientError("--no-rotate is for confidential clients: public clients always rotate")
    if public and (jwks or jwks_uri or auth_method == "private_key_jwt"):
        raise ClientError("a public client has no credentials: --public excludes private_key_jwt")
    if auth_method == "private_key_jwt":
        jwks = _check_jwks(jwks, jwks_uri)
    elif jwks or jwks_uri:
        raise ClientError("--jwks-uri and --jwks go with --auth-method private_key_jwt")
    if db.session.scalars(select(Client).where(Client.client_id == client_id)).first():
        raise ClientError(f"client {client_id!r} already exists")
    metadata = {
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": list(post_logout_redirect_uris or []),
        "grant_types": ["authorization_code", *([] if not refresh else ["refresh_token"])],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none" if public else auth_method,
        "scope": SCOPES,
        "subject_type": subject_type,
    }
    if subject_type == "pairwise":
        metadata["sector_identifier"] = sector_identifier(redirect_uris)
    if not rotate_refresh:
        metadata["rotate_refresh_token"] = False
    if backchannel_logout_uri:
        metadata["backchannel_logout_uri"] = backchannel_logout_uri
        metadata["backchannel_logout_session_required"] = backchannel_logout_session_required
    if jwks_uri:
        metadata["jwks_uri"] = jwks_uri
    if jwks:
        metadata["jwks"] = jwks
    if acr:
        metadata["default_acr_values"] = [acr]
    if id_token_alg:
        metadata["id_token_signed_response_alg"] = id_token_alg
    has_secret = not public and auth_method != "private_key_jwt"
    secret = random_token(32) if has_secret else None
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


def remove_client(client_id: str, *, actor_id: int | None = None) -> None:
    """Delete a client with its codes and tokens (they must stop working at once)."""
    client = find_client(client_id)
    if client is None:
        raise ClientError(f"no client {client_id!r}")
    db.session.execute(delete(Token).where(Token.client_id == client_id))
    db.session.execute(delete(AuthorizationCode).where(AuthorizationCode.client_id == client_id))
    db.session.delete(client)
    audit.record("client.removed", client_id=client_id, actor_id=actor_id, commit=False)
    db.session.commit()


def update_uris(
    client_id: str,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str],
    backchannel_logout_uri: str | None,
    *,
    actor_id: int | None = None,
) -> Client:
    """Replace a client's URIs under the rules of ``register_client``; a pairwise
    client's redirect URIs keep their host (its users' ``sub`` depend on it)."""
    client = find_client(client_id)
    if client is None:
        raise ClientError(f"no client {client_id!r}")
    metadata = dict(client.client_metadata)
    session_required = bool(metadata.get("backchannel_logout_session_required"))
    check_uris(redirect_uris, post_logout_redirect_uris, backchannel_logout_uri)
    if metadata.get("subject_type") == "pairwise":
        if sector_identifier(redirect_uris) != metadata.get("sector_identifier"):
            raise ClientError(
                "a pairwise client's redirect URIs must keep the host "
                f"{metadata.get('sector_identifier')} (its users' identifiers depend on it)"
            )
    metadata["redirect_uris"] = list(redirect_uris)
    metadata["post_logout_redirect_uris"] = list(post_logout_redirect_uris)
    metadata.pop("backchannel_logout_uri", None)
    metadata.pop("backchannel_logout_session_required", None)
    if backchannel_logout_uri:
        metadata["backchannel_logout_uri"] = backchannel_logout_uri
        metadata["backchannel_logout_session_required"] = session_required
    client.client_metadata = metadata  # a new dict: the JSON column sees the change
    audit.record("client.updated", client_id=client_id, actor_id=actor_id, commit=False)
    db.session.commit()
    return client


def rotate_secret(client_id: str, *, actor_id: int | None = None) -> str:
    """A new secret, returned once (only its hash is kept); the old one stops at once.
    Only for clients that authenticate with a secret."""
    client = find_client(client_id)
    if client is None:
        raise ClientError(f"no client {client_id!r}")
    if not client.client_secret_hash:
        raise ClientError(f"client {client_id!r} has no secret (public or private_key_jwt)")
    secret = random_token(32)
    client.client_secret_hash = hash_client_secret(secret)
    audit.record("client.secret_rotated", client_id=client_id, actor_id=actor_id, commit=False)
    db.session.commit()
    return secret
