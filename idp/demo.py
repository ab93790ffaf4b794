"""Demo data for ``idp demo``: one client (the example RP) and three users."""

from __future__ import annotations

import secrets

from flask import Flask

from .clients import find_client, register_client
from .models import db
from .users import create_user, find_by_username, set_password

DEMO_CLIENT = "demo-rp"
RP_URL = "http://127.0.0.1:5001"
USERS = [
    {
        "username": "alice",
        "email": "alice@exemple.fr",
        "name": "Alice Martin",
        "profession": "Médecin généraliste",
        "roles": [],
    },
    {
        "username": "bruno",
        "email": "bruno@exemple.fr",
        "name": "Bruno Petit",
        "profession": "Pharmacien",
        "roles": ["patient_data"],
    },
    {
        "username": "chloe",
        "email": "chloe@exemple.fr",
        "name": "Chloé Bernard",
        "profession": "Infirmière",
        "roles": ["patient_data"],
        "backup_phone": "+33612345678",
    },
]


def _demo_password() -> str:
    """Random per run, meeting the policy: no password ever lives in code."""
    return f"Demo-{secrets.token_urlsafe(9)}#7a"


def seed(app: Flask) -> str:
    """Create what is missing and return a printable summary (passwords of new users)."""
    lines = [f"Provider: {app.config['IDP']['issuer']}"]
    client = find_client(DEMO_CLIENT)
    if client is None:
        _, secret = register_client(
            DEMO_CLIENT,
            [f"{RP_URL}/callback"],
            name="Demo relying party",
            post_logout_redirect_uris=[f"{RP_URL}/"],
            # The example ends its sessions when the provider's session ends
            # (OpenID Connect Back-Channel Logout 1.0), matched by ``sid``.
            backchannel_logout_uri=f"{RP_URL}/backchannel-logout",
            backchannel_logout_session_required=True,
        )
        _save_rp_secret(app, secret)
        lines.append(f"Client {DEMO_CLIENT}: secret saved to instance/demo-rp.secret")
    else:
        lines.append(
            f"Client {DEMO_CLIENT}: already registered (secret in instance/demo-rp.secret)"
        )
    lines.append("Users (identifier / password):")
    for spec in USERS:
        password = _demo_password()  # a fresh one each run, so the printout is always right
        if existing := find_by_username(spec["username"]):
            set_password(existing, password)
            db.session.commit()
        else:
            create_user(password=password, **spec)
        notes = ",".join(spec["roles"]) or "password only"
        if spec.get("backup_phone"):
            notes += f", backup phone {spec['backup_phone']}"
        lines.append(f"  {spec['username']} / {password}   ({notes})")
    lines.append("One-time codes and e-mails are printed below, in the server log.")
    lines.append(f"Example RP: python examples/relying_party.py  → {RP_URL}")
    return "\n".join(lines)


def _save_rp_secret(app: Flask, secret: str | None) -> None:
    import os

    from .config import private_directory

    path = private_directory(app.instance_path) / "demo-rp.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)  # whatever the umask, or the mode of an older file
        handle.write(secret or "")
