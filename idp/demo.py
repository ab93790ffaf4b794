"""Demo data for ``idp demo``: one client (the example RP) and three users.

``claim`` runs first: a second ``make run`` while one is serving must stop before it
gives the demo users new passwords (the first one's printout would be wrong).
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket

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
        "roles": ["admin", "patient_data"],  # opens the operator console (/admin/)
        "backup_phone": "+33612345678",
    },
]


class DemoBusy(Exception):
    """Another demo holds this instance folder, or something listens on the port."""


def claim(app: Flask, host: str, port: int) -> int:
    """Take the instance's demo lock and check the port is free, before the database is
    touched; ``DemoBusy`` says what is in the way. Returns the lock's file descriptor,
    held until the process ends (``release`` in tests)."""
    from .config import private_directory

    path = private_directory(app.instance_path) / "demo.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        raise DemoBusy(
            f"another `idp demo` (`make run`) is already running on {app.instance_path}:"
            " use it, or stop it (Ctrl+C in its terminal) first. Nothing was changed."
        ) from None
    try:
        _check_port(host, port)
    except DemoBusy:
        os.close(fd)
        raise
    return fd


def release(fd: int) -> None:
    os.close(fd)  # closing the descriptor drops the lock


def _check_port(host: str, port: int) -> None:
    """Bind the way the development server will (``SO_REUSEADDR``), then let go: a port
    another server listens on is refused, one in TIME_WAIT is not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise DemoBusy(
                f"{host}:{port} is already in use ({exc.strerror}): another `make run`?"
                " Stop it, or pass --port. Nothing was changed."
            ) from None


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
            name="Application de démonstration",
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
    lines.append(
        "Users (identifier, e-mail, password) — either the identifier or the e-mail signs in:"
    )
    for spec in USERS:
        password = _demo_password()  # a fresh one each run, so the printout is always right
        if existing := find_by_username(spec["username"]):
            set_password(existing, password)
            existing.roles = list(spec["roles"])  # an instance from before a demo role was added
            db.session.commit()
        else:
            create_user(password=password, **spec)
        notes = ",".join(spec["roles"]) or "password only"
        if spec.get("backup_phone"):
            notes += f", backup phone {spec['backup_phone']}"
        lines.append(f"  {spec['username']}  {spec['email']}  {password}   ({notes})")
    lines.append("One-time codes and e-mails are printed below, in the server log.")
    lines.append(f'Account console ("Mon compte"): {app.config["IDP"]["issuer"]}/')
    lines.append(f"Operator console (chloe, an admin): {app.config['IDP']['issuer']}/admin/")
    lines.append(
        f"Example RP: run `make rp` in a second terminal, then open {RP_URL}"
        " (127.0.0.1, not localhost: the RP's redirect URI and cookies are registered there)."
    )
    return "\n".join(lines)


def _save_rp_secret(app: Flask, secret: str | None) -> None:
    import os

    from .config import private_directory

    path = private_directory(app.instance_path) / "demo-rp.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)  # whatever the umask, or the mode of an older file
        handle.write(secret or "")
