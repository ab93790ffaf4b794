"""Removal of expired state (``idp purge``): run it daily from cron or a timer.

Rows stay a day past their expiry, so a replayed code or refresh token is
still recognised (and its family revoked) for a while after it dies. Audit
rows are kept ``[audit] retention_days`` (docs/OPERATING.md, "The `idp` command": the CNIL's
recommendation for access logs is six months to a year), deleted in batches
so that a first purge of a large table never holds one long transaction.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, or_, select

from . import clock
from .models import (
    AuditEvent,
    AuthorizationCode,
    ClientAssertionJti,
    LoginTransaction,
    OutboxMessage,
    PasswordResetToken,
    RememberedBrowser,
    SsoSession,
    Throttle,
    Token,
    db,
)

GRACE = 86400  # seconds kept after expiry
AUDIT_BATCH = 5000  # audit rows deleted per transaction


def purge_expired(now: int | None = None) -> dict[str, int]:
    """Delete what expired more than ``GRACE`` ago; return the count per table.

    Used client-assertion ids go as soon as their assertion expires: past that,
    the assertion is refused as expired, so its ``jti`` has nothing left to guard.
    """
    now = clock.now() if now is None else now
    limit = now - GRACE
    statements = {
        "authorization_codes": delete(AuthorizationCode).where(
            AuthorizationCode.expires_at < limit
        ),
        "tokens": delete(Token).where(
            Token.issued_at + Token.expires_in < limit,
            or_(Token.refresh_expires_at.is_(None), Token.refresh_expires_at < limit),
        ),
        "sso_sessions": delete(SsoSession).where(SsoSession.expires_at < limit),
        "login_transactions": delete(LoginTransaction).where(LoginTransaction.expires_at < limit),
        "password_reset_tokens": delete(PasswordResetToken).where(
            PasswordResetToken.expires_at < limit
        ),
        "remembered_browsers": delete(RememberedBrowser).where(
            RememberedBrowser.expires_at < limit
        ),
        "outbox": delete(OutboxMessage).where(
            or_(
                OutboxMessage.sent_at < limit,
                OutboxMessage.gave_up & (OutboxMessage.created_at < limit),
            )
        ),
        "throttles": delete(Throttle).where(
            and_(Throttle.blocked_until < limit, Throttle.window_start < limit)
        ),
        "client_assertion_jtis": delete(ClientAssertionJti).where(
            ClientAssertionJti.expires_at < now
        ),
    }
    counts = {name: db.session.execute(stmt).rowcount for name, stmt in statements.items()}
    db.session.commit()
    return counts


def purge_audit(retention_days: int, now: int | None = None) -> int:
    """Delete audit rows older than ``retention_days`` (0: every past row), in batches."""
    cutoff = (clock.now() if now is None else now) - retention_days * 86400
    removed = 0
    while True:
        batch = select(AuditEvent.id).where(AuditEvent.at < cutoff).limit(AUDIT_BATCH)
        ids = list(db.session.scalars(batch))
        if not ids:
            return removed
        removed += db.session.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids))).rowcount
        db.session.commit()
