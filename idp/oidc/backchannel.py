"""OpenID Connect Back-Channel Logout 1.0: every RP of an ended session is told.

A professional who signs out here (or whose sessions end for any other reason:
the console, a password reset or change, an operator) must not leave the
applications' own sessions open on a shared ward workstation. Each RP that was
given an authorization code under an SSO session (``session_clients``) and
registered a ``backchannel_logout_uri`` gets a signed Logout Token when that
session ends (docs/RELYING_PARTIES.md and SECURITY.md, "Back-channel logout").

Delivery goes through the durable outbox (``idp.delivery.outbox``): the
messages are written in the transaction that ends the session, sent after the
answer (a background thread under gunicorn; in-line, bounded, in the ``idp``
command and tests), retried with exponential back-off, abandoned after a bound.

The token is signed *when it is sent*, not when the message is queued: a retry
hours later still carries a fresh ``iat`` and a short ``exp`` (an RP rejects
stale Logout Tokens), it is signed with the key active at that moment (a key
rotated meanwhile is never used past its time), and the outbox never stores a
bearer credential — only the client id and the ``sid``.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request

from joserfc import jwt
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from .. import clock, subjects
from ..crypto import random_token
from ..delivery import DeliveryError
from ..models import Client, OutboxMessage, SessionClient, User, db

log = logging.getLogger("idp.delivery")

KIND = "backchannel_logout"  # the outbox kind
EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_SECONDS = 120  # a Logout Token's lifetime: it is sent at once, or signed anew
TIMEOUT_SECONDS = 5.0  # what one POST may wait for the RP
# Exponential back-off: 10 s, 30 s, 1 min 30, 4 min 30, 13 min 30, 40 min, then
# hourly; abandoned after MAX_ATTEMPTS (about six hours), when any RP session
# that still lives has long needed its user again.
RETRY_DELAYS = (10, 30, 90, 270, 810, 2430, 3600)
MAX_ATTEMPTS = 12


class LogoutNotDelivered(DeliveryError):
    """The RP did not answer 200 or 204: ``reason`` is its status or the error's name."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def subject_for(client: Client, user: User) -> str:
    """The ``sub`` this client knows the user by (pairwise when it was registered so)."""
    return subjects.subject_for(user, client)


def record_participation(sid: str, client_id: str) -> None:
    """Note that ``client_id`` got a code under session ``sid``, in the caller's
    transaction (the code's); a second code for the same pair changes nothing."""
    table = SessionClient.__table__
    values = {"sid": sid, "client_id": client_id, "created_at": clock.now()}
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - the two supported databases are above
        if db.session.scalars(
            select(SessionClient.id).filter_by(sid=sid, client_id=client_id)
        ).first():
            return
        statement = table.insert().values(**values)
    db.session.execute(statement)


def participants(sids: list[str]) -> list[tuple[str, str]]:
    """``(sid, client_id)`` of the RPs of these sessions: read before the sessions go
    (their rows go with them)."""
    if not sids:
        return []
    rows = db.session.execute(
        select(SessionClient.sid, SessionClient.client_id)
        .where(SessionClient.sid.in_(sids))
        .order_by(SessionClient.id)
    )
    return [(sid, client_id) for sid, client_id in rows]


def enqueue(pairs: list[tuple[str, str]], user_id: int) -> int:
    """Queue a Logout Token for each pair whose client registered a back-channel URI,
    in the caller's transaction (the one that ends the sessions). Returns how many."""
    client_ids = {client_id for _, client_id in pairs}
    if not client_ids:
        return 0
    clients = db.session.scalars(select(Client).where(Client.client_id.in_(client_ids))).all()
    listening = {c.client_id for c in clients if c.backchannel_logout_uri}
    queued = 0
    for sid, client_id in pairs:
        if client_id in listening:
            db.session.add(
                OutboxMessage(
                    kind=KIND, user_id=user_id, payload={"client_id": client_id, "sid": sid}
                )
            )
            queued += 1
    return queued


def logout_token(client: Client, user: User, sid: str | None) -> str:
    """A Logout Token (Back-Channel Logout 1.0 §2.4), signed like the client's ID tokens.

    ``sub`` always, ``sid`` when known (always, for sessions ended here), never a
    ``nonce`` (§2.4: it would let the token pass for an ID token); ``typ``
    ``logout+jwt`` (§2.4, explicit typing, RFC 8725 §3.11).
    """
    from .server import oidc  # the server module imports the models' users of this one

    server = oidc().server
    alg = client.id_token_signed_response_alg or server.settings["keys"]["algorithm"]
    kid, key = oidc().keyring.signing_key(alg)
    now = clock.now()
    claims = {
        "iss": server.settings["issuer"],
        "aud": client.client_id,
        "iat": now,
        "exp": now + TOKEN_SECONDS,
        "jti": random_token(16),
        "sub": subject_for(client, user),
        "events": {EVENT: {}},
    }
    if sid:
        claims["sid"] = sid
    return jwt.encode({"alg": alg, "kid": kid, "typ": "logout+jwt"}, claims, key, algorithms=[alg])


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 200/204: retried, never followed (§2.5)."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def deliver(payload: dict, user: User) -> bool:
    """POST one Logout Token; True if the RP took it, False if there is no one to tell
    (the client was removed, or no longer has a back-channel URI). Raises
    ``LogoutNotDelivered`` otherwise."""
    client = db.session.scalars(
        select(Client).where(Client.client_id == payload.get("client_id"))
    ).first()
    if client is None or not client.backchannel_logout_uri:
        return False
    body = urllib.parse.urlencode({"logout_token": logout_token(client, user, payload.get("sid"))})
    request = urllib.request.Request(
        client.backchannel_logout_uri,
        data=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    try:
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, time-out, bad URL
        reason = getattr(exc, "reason", exc)
        raise LogoutNotDelivered(type(reason).__name__) from exc
    if status not in (200, 204):  # §2.8: 200 (or 204, commonly) is success
        raise LogoutNotDelivered(f"HTTP {status}")
    return True
