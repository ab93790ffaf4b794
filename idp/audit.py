"""Audit trail of authentication events (docs/CONVENTIONS.md, convention 11).

Never pass a password, code, token or full callback URL in ``detail``.
"""

from __future__ import annotations

import logging

from flask import current_app, has_request_context, request
from sqlalchemy import insert

from .crypto import keyed_hash
from .logs import request_id
from .models import AuditEvent, db

log = logging.getLogger("idp.audit")
# A Core INSERT, built once: an event costs one statement in the caller's
# transaction, not an ORM object and its flush (README.md, "Performance").
_INSERT = insert(AuditEvent.__table__)


def client_ip_hash() -> str | None:
    """Keyed hash of the client address: correlates events without storing the IP."""
    if not has_request_context() or not request.remote_addr:
        return None
    return keyed_hash(current_app.config["SECRET_KEY"], "audit-ip", request.remote_addr)[:32]


def record(
    event: str,
    *,
    user_id: int | None = None,
    client_id: str | None = None,
    actor_id: int | None = None,
    commit: bool = True,
    level: int = logging.INFO,
    **detail: str | int | bool | None,
) -> None:
    """Store one event and log it (at ``level``); commits unless the caller's transaction will.

    ``actor_id``: the administrator who acted for ``user_id`` (the operator console)."""
    detail = {k: v for k, v in detail.items() if v is not None}
    db.session.execute(
        _INSERT,
        {
            "event": event,
            "user_id": user_id,
            "client_id": client_id,
            "actor_id": actor_id,
            "request_id": request_id(),
            "ip_hash": client_ip_hash(),
            "detail": detail,
        },
    )
    if commit:
        db.session.commit()
    actor = f" actor={actor_id}" if actor_id is not None else ""
    log.log(level, "%s user=%s client=%s%s %s", event, user_id, client_id, actor, detail or "")
