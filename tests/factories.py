"""Plain factory functions for test data."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

from idp.clients import register_client
from idp.users import create_user

PASSWORD = "Correct-Horse-9-Battery"
REDIRECT_URI = "https://rp.example/callback"


def make_user(username: str = "alice", **kw):
    kw.setdefault("email", f"{username}@exemple.fr")
    kw.setdefault("name", f"{username.title()} Martin")
    password = kw.pop("password", PASSWORD)
    return create_user(username, kw.pop("email"), password, **kw)


def make_client(client_id: str = "rp", **kw):
    """Returns (client_id, secret)."""
    redirect_uris = kw.pop("redirect_uris", [REDIRECT_URI])
    row, secret = register_client(client_id, redirect_uris, **kw)
    return row.client_id, secret


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
