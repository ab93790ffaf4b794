"""Removal of expired state (``idp purge``): run it daily from cron or a timer.

Rows stay a day past their expiry, so a replayed code or refresh token is
still recognised (and its family revoked) for a while after it dies. The
audit trail is kept: its retention is a policy decision, not a clean-up.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, or_

from . import clock
from .models import (
    AuthorizationCode,
    LoginTransaction,
    PasswordResetToken,
    RememberedBrowser,
    SsoSession,
    Throttle,
    Token,
    db,
)

GRACE = 86400  # seconds kept after expiry


def purge_expired(now: int | None = None) -> dict[str, int]:
    """Delete what expired more than ``GRACE`` ago; return the count per table."""
    limit = (clock.now() if now is None else now) - GRACE
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
        "throttles": delete(Throttle).where(
            and_(Throttle.blocked_until < limit, Throttle.window_start < limit)
        ),
    }
    counts = {name: db.session.execute(stmt).rowcount for name, stmt in statements.items()}
    db.session.commit()
    return counts
