"""What an operator does to a professional's account, for the console and the CLI.

Each function is one step, one transaction (docs/CONVENTIONS.md, convention 17):
it commits once, then sends what leaves the building (Logout Tokens, notices).
Every change is audited with the acting administrator (``actor``; None for the
``idp`` command). Nothing here reads the request.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import and_, delete, select

from .. import audit
from ..account import recovery
from ..account.passwords import (
    ADMIN_ROLE,
    AccountActionRefused,
    disable_account,
    keep_an_admin,
    unlock_account,
)
from ..auth import remember, sessions
from ..delivery import DeliveryError, outbox
from ..delivery.messages import send_invitation, send_reset_link
from ..models import PasswordResetToken, PhoneChange, User, db
from ..users import (
    UserError,
    add_user,
    commit_new_user,
    email_taken,
    find_by_username,
    identity_key,
    set_name,
    validate_email_address,
)

__all__ = ["AccountActionRefused", "UserError"]

PER_PAGE = 50
MAX_PAGE = 200  # deeper than anyone reads: refine the search instead (OFFSET costs grow)


def _actor_id(actor: User | None) -> int | None:
    return actor.id if actor is not None else None


# -- search -----------------------------------------------------------------


@dataclass(frozen=True)
class SearchPage:
    users: list[User]
    page: int
    has_next: bool


def _prefix(column, key: str):
    """``column`` starts with ``key``, as a range on the column's own b-tree index:
    exact under a code-point order (SQLite's BINARY, PostgreSQL's C or C.UTF-8
    collation; docs/OPERATING.md). No LIKE beside it: PostgreSQL then misjudges how many
    rows match and sorts all of them instead of reading the index in order."""
    following = ord(key[-1]) + 1
    if following > 0x10FFFF:  # no code point above it: everything from ``key`` on
        return column >= key
    if 0xD800 <= following <= 0xDFFF:  # surrogates: no text holds one, no driver sends one
        following = 0xE000
    return and_(column >= key, column < key[:-1] + chr(following))


def search_users(query: str, page: int = 1, per_page: int = PER_PAGE) -> SearchPage:
    """Accounts whose identifier, e-mail or name starts with ``query`` (compared by
    ``identity_key``: case, accents forms, look-alikes), in the order of the text that
    matched; an empty query lists every account by identifier.

    Three index-ordered reads (one per column, each a prefix range stopping after the
    rows this page needs) merged here: the cost follows the page, not the number of
    matches, so one typed letter stays fast with a million accounts
    (bench/admin_search.py)."""
    page = min(max(page, 1), MAX_PAGE)
    key = identity_key(query)[:254]
    wanted = page * per_page + 1
    columns = [User.username_key, User.email_key, User.name_key] if key else [User.username_key]
    streams = []
    for column in columns:
        statement = select(column, User.id).order_by(column, User.id).limit(wanted)
        if key:
            statement = statement.where(_prefix(column, key))
        streams.append(db.session.execute(statement).all())
    ids: list[int] = []
    seen: set[int] = set()
    for _, user_id in heapq.merge(*streams):
        if user_id not in seen:
            seen.add(user_id)
            ids.append(user_id)
        if len(ids) == wanted:
            break
    shown = ids[(page - 1) * per_page : page * per_page]
    found = {u.id: u for u in db.session.scalars(select(User).where(User.id.in_(shown)))}
    users = [found[i] for i in shown if i in found]
    return SearchPage(users, page, len(ids) > page * per_page and page < MAX_PAGE)


def find(username: str) -> User | None:
    return find_by_username(username)


# -- creation -----------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    user: User
    sent: bool  # False: the e-mail could not leave; ``send_link`` again later


def invite_user(
    username: str,
    email: str,
    *,
    name: str = "",
    profession: str = "",
    roles: list[str] | None = None,
    actor: User | None = None,
) -> Invitation:
    """Create an account without a password and e-mail it a single-use link to choose
    one (the reset page and policy), valid ``[password] invite_link_hours``: the
    operator never sees nor types the user's password. Raises ``UserError``."""
    user = add_user(username, email, None, name=name, profession=profession, roles=roles)
    db.session.flush()  # the id, for the link and the audit
    token = recovery.new_token(user, current_app.config["IDP"]["password"]["invite_link_hours"])
    audit.record(
        "user.invited",
        user_id=user.id,
        actor_id=_actor_id(actor),
        commit=False,
        roles=" ".join(user.roles),
    )
    commit_new_user()
    return Invitation(user, _mail_link(user, token, invitation=True))


def _mail_link(user: User, token: str, *, invitation: bool) -> bool:
    """After the commit: the link leaves by e-mail, never through the outbox (whose rows
    would keep the token in clear); a failure is audited and reported, not raised."""
    url = f"{current_app.config['IDP']['issuer']}/password/reset/{token}"
    try:
        (send_invitation if invitation else send_reset_link)(user, url)
    except DeliveryError:
        audit.record("mail.failed", user_id=user.id, kind="invite" if invitation else "reset")
        return False
    return True


def send_link(user: User, *, actor: User | None = None) -> bool:
    """``send_reset_link``: a new link (older ones die); an invitation again for an
    account that never chose a password. Not throttled: the operator asked."""
    invitation = not user.password_hash
    conf = current_app.config["IDP"]["password"]
    hours = conf["invite_link_hours"] if invitation else conf["reset_link_hours"]
    token = recovery.new_token(user, hours)
    audit.record(
        "password.reset_requested",
        user_id=user.id,
        actor_id=_actor_id(actor),
        commit=False,
        known=True,
        invitation=invitation,
    )
    db.session.commit()
    return _mail_link(user, token, invitation=invitation)


# -- the record ---------------------------------------------------------------


def configured_roles() -> list[str]:
    return list(current_app.config["IDP"]["roles"])


def set_roles(user: User, chosen: list[str], *, actor: User | None = None) -> tuple[list, list]:
    """The roles ticked among the configured ones (``[roles]``); roles the configuration
    does not name are kept. A role in ``[mfa] required_roles`` asks the code from the
    next sign-in on. An admin never removes their own ``admin`` role, nor the last
    enabled admin's (``AccountActionRefused``). Returns (added, removed)."""
    known = set(configured_roles())
    wanted = (set(chosen) & known) | (set(user.roles) - known)
    if actor is not None and actor.id == user.id and ADMIN_ROLE not in wanted:
        raise AccountActionRefused("own_admin_role")
    added, removed = sorted(wanted - set(user.roles)), sorted(set(user.roles) - wanted)
    if ADMIN_ROLE in removed and not keep_an_admin(user, roles=sorted(wanted)):
        db.session.rollback()  # two admins removing each other's role at once: one wins
        raise AccountActionRefused("last_admin_role")
    if added or removed:
        user.roles = sorted(wanted)
        audit.record(
            "roles.changed",
            user_id=user.id,
            actor_id=_actor_id(actor),
            commit=False,
            added=" ".join(added),
            removed=" ".join(removed),
        )
    db.session.commit()
    return added, removed


def edit_record(
    user: User, *, email: str, name: str, profession: str, actor: User | None = None
) -> bool:
    """Name, profession, e-mail. A new address is unverified, voids pending reset links
    (they went to the old one), and the old address gets a notice (the outbox, with
    this change). Raises ``UserError``. Returns whether the address changed."""
    email = validate_email_address(email)
    old = user.email
    changed = email != old
    if changed and email_taken(identity_key(email), other_than=user.id):
        raise UserError("an account with this identifier or e-mail already exists")
    set_name(user, name)
    user.profession = profession.strip()[:100]
    if changed:
        user.email, user.email_key, user.email_verified = email, identity_key(email), False
        db.session.execute(delete(PasswordResetToken).where(PasswordResetToken.user_id == user.id))
        outbox.enqueue("email_changed", user, old=old)
    audit.record(
        "user.updated", user_id=user.id, actor_id=_actor_id(actor), commit=False, email=changed
    )
    commit_new_user()  # the unique keys: a look-alike address saved at the same moment
    if changed:
        outbox.send_soon()
    return changed


# -- actions ------------------------------------------------------------------


def enable(user: User, *, actor: User | None = None) -> None:
    user.disabled = False
    audit.record("account.enabled", user_id=user.id, actor_id=_actor_id(actor), commit=False)
    db.session.commit()


def disable(user: User, *, actor: User | None = None) -> int:
    return disable_account(user, actor=actor)


def unlock(user: User, *, actor: User | None = None) -> int:
    return unlock_account(user, actor=actor)


def end_sessions(user: User, *, actor: User | None = None) -> int:
    """Every session and token of the user (their RPs are told); remembered browsers
    stay (that is ``reset_second_factor``)."""
    ended = sessions.end_all_of(user, "ended_by_operator")
    audit.record(
        "sessions.ended_by_operator",
        user_id=user.id,
        actor_id=_actor_id(actor),
        commit=False,
        count=ended,
    )
    db.session.commit()
    outbox.send_soon()  # the Logout Tokens
    return ended


def reset_second_factor(user: User, *, actor: User | None = None) -> None:
    """ "I lost my phone": the backup phone (and a change of it under way) and every
    remembered browser go; the next sign-in sends the code by e-mail. The user is told."""
    user.backup_phone = None
    if user.last_channel == "sms":
        user.last_channel = None
    db.session.execute(delete(PhoneChange).where(PhoneChange.user_id == user.id))
    remember.forget_user(user)
    audit.record("second_factor.reset", user_id=user.id, actor_id=_actor_id(actor), commit=False)
    outbox.enqueue("second_factor_reset", user)
    db.session.commit()
    outbox.send_soon()


ACTIONS = {
    "disable": disable,
    "enable": enable,
    "unlock": unlock,
    "reset_second_factor": reset_second_factor,
    "send_reset_link": send_link,
    "end_sessions": end_sessions,
}
