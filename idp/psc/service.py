"""A Pro Santé Connect login, as steps of our login transaction (docs/CONVENTIONS.md, 6).

``start`` writes a fresh ``state``, ``nonce`` and PKCE verifier on the pending
transaction (a compare-and-set on the password step: the login has no user
yet); ``claim`` takes them back, once, for the callback of this browser;
``account_for`` finds the one enabled account with PSC's national identifier.
Nothing here links on e-mail or name (SECURITY.md, "Pro Santé Connect").
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select, update

from .. import audit, clock
from ..account import identity as identity_rules
from ..auth import transaction
from ..crypto import random_token, sha256_hex
from ..delivery import outbox
from ..models import LoginTransaction, User, db
from ..oidc.acr import levels_of, satisfies
from ..users import UserError
from .national_id import from_subject_name_id
from .upstream import Identity, PscRefused, PscUnavailable, Upstream

__all__ = ["Identity", "NotLinked", "Pending", "PscRefused", "PscUnavailable"]


class NotLinked(Exception):
    """No enabled account holds PSC's national identifier."""


@dataclass(frozen=True)
class Pending:
    """A PSC login claimed by its callback: the transaction, and what checks PSC's answer."""

    tx: LoginTransaction
    nonce: str
    verifier: str


def enabled() -> bool:
    return bool(current_app.config["IDP"]["psc"]["enabled"])


def upstream() -> Upstream:
    """One per application: it caches PSC's endpoints, keys and reachability."""
    found = current_app.extensions.get("idp_psc")
    if found is None:
        found = current_app.extensions["idp_psc"] = Upstream(current_app.config["IDP"]["psc"])
    return found


def two_factor(sso) -> bool:
    """A session at the second factor's level or above (password and code, or PSC):
    the only ones that may link a PSC identity from the console (SECURITY.md)."""
    levels = levels_of(current_app.config["IDP"])
    return satisfies(sso.acr, levels["mfa"], levels)


def redirect_uri() -> str:
    return current_app.config["IDP"]["issuer"] + "/login/psc/callback"


def post_logout_redirect_uri() -> str:
    return current_app.config["IDP"]["issuer"] + "/login/psc/logged-out"


def start(tx: LoginTransaction) -> str | None:
    """The URL of PSC's authorization page for this login, or None if the login moved
    on meanwhile; ``PscUnavailable`` if PSC does not answer (checked first, so that
    the browser is never sent to a dead host)."""
    psc = upstream()
    if not psc.reachable():
        raise PscUnavailable("PSC does not answer")
    state, nonce, verifier = random_token(24), random_token(24), random_token(48)
    url = psc.authorization_url(redirect_uri(), state, nonce, verifier)
    moved = db.session.execute(
        update(LoginTransaction)
        .where(
            LoginTransaction.id == tx.id,
            LoginTransaction.step == "password",
            LoginTransaction.user_id.is_(None),
        )
        .values(psc_state_hash=sha256_hex(state), psc_nonce=nonce, psc_verifier=verifier)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return url if moved.rowcount == 1 else None


def claim(state: str, browser_hash: str) -> Pending | None:
    """The login this ``state`` was issued for, in this browser, taken once: the state,
    nonce and verifier are cleared by one conditional UPDATE (a replayed callback, or
    a racing one, finds nothing)."""
    if not state or len(state) > 200:
        return None
    state_hash = sha256_hex(state)
    tx = db.session.scalars(
        select(LoginTransaction).where(LoginTransaction.psc_state_hash == state_hash)
    ).first()
    if tx is None or tx.browser_hash != browser_hash or tx.user_id is not None:
        return None
    if tx.expires_at <= clock.now():  # the login expired while the user was at PSC
        return None
    nonce, verifier = tx.psc_nonce, tx.psc_verifier
    taken = db.session.execute(
        update(LoginTransaction)
        .where(LoginTransaction.id == tx.id, LoginTransaction.psc_state_hash == state_hash)
        .values(psc_state_hash=None, psc_nonce=None, psc_verifier=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    if taken.rowcount != 1 or not nonce or not verifier:
        return None
    return Pending(tx, nonce, verifier)


def identify(pending: Pending, code: str) -> Identity:
    """PSC's answer for this login, checked (``upstream.Upstream.exchange``)."""
    if not code or len(code) > 2000:
        raise PscRefused("no code")
    return upstream().exchange(code, pending.verifier, pending.nonce, redirect_uri())


def account_for(identity: Identity) -> User:
    """The one enabled account whose national identifier is PSC's ``SubjectNameID``;
    ``NotLinked`` otherwise. PSC's ``sub`` is noted on it (not committed: the sign-in
    step commits it with the session)."""
    national_id = from_subject_name_id(identity.subject_name_id)
    user = None
    if national_id is not None:
        user = db.session.scalars(select(User).where(User.national_id == national_id)).first()
    if user is None or user.disabled:
        raise NotLinked()
    if user.psc_sub != identity.sub:
        if user.psc_sub is not None:  # another PSC subject for the same national identifier
            audit.record(
                "psc.subject_changed", user_id=user.id, commit=False, psc_sub=identity.sub[:64]
            )
        user.psc_sub = identity.sub
    return user


def refused(reason: str, **detail) -> None:
    """A forged, replayed or unacceptable PSC answer: audited, never a full URL or token."""
    audit.record("psc.refused", reason=reason[:200], **detail)


def password_refused(client_id: str | None) -> None:
    """A password posted to a login whose RP demands PSC's level: never checked (it could
    not sign in there), but audited, so that an operator sees who still tries."""
    audit.record("psc.password_refused", client_id=str(client_id or "")[:100] or None)


def unlinked(identity: Identity) -> None:
    audit.record("psc.unlinked", psc_sub=identity.sub[:64])


def unlink(user: User) -> bool:
    """The user removes the link from the console (one step, committed here): the next
    PSC login finds no account; the notice e-mail goes out. Compare-and-set on the
    identifier as read (``idp.account.identity.write``)."""
    if user.national_id is None:
        return False
    if not identity_rules.write(user, user.national_id, None):
        db.session.rollback()
        return False
    audit.record("psc.unlinked_by_user", user_id=user.id, commit=False)
    db.session.commit()
    outbox.send_soon()  # after the commit: the notice leaves only if the change landed
    return True


class LinkRefused(Exception):
    """The console's link cannot be made: ``reason`` is ``no_national_id`` (PSC gave none
    usable), ``taken`` (another account holds it) or ``changed`` (linked meanwhile)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def link(user: User, pending: Pending, identity: Identity) -> str:
    """The signed-in ``user`` (a 2FA session, checked by the caller) links the PSC identity
    this login returned: its ``SubjectNameID`` becomes the account's national identifier,
    only if no other account holds it, never by e-mail or name (SECURITY.md, "Pro Santé
    Connect"). One step: the link, the closed PSC login, the audit event and the notice
    are committed together. Returns the identifier; ``LinkRefused``."""
    national_id = from_subject_name_id(identity.subject_name_id)
    reason = None
    if national_id is None:
        reason = "no_national_id"
    elif user.national_id is not None:
        reason = "changed"
    elif identity_rules.held_by_another(national_id, user):
        reason = "taken"
    elif not identity_rules.write(user, None, national_id, psc_sub=identity.sub):
        reason = "changed"
    if reason is not None:
        db.session.rollback()
        audit.record("psc.link_refused", user_id=user.id, reason=reason)
        raise LinkRefused(reason)
    transaction.finish(pending.tx)
    audit.record("psc.linked_by_user", user_id=user.id, commit=False, national_id=national_id)
    try:
        identity_rules.commit_or_taken()
    except UserError:
        audit.record("psc.link_refused", user_id=user.id, reason="taken")
        raise LinkRefused("taken") from None
    outbox.send_soon()
    return national_id
