"""``/login/psc`` (start), ``/login/psc/callback`` and ``/login/psc/logged-out``.

Thin views over ``service`` (docs/CONVENTIONS.md, convention 3). Every failure
is a page in the user's language that says what happened and what to do —
PSC down or slow, an answer refused, an identity linked to no account — never
a 500; forged and replayed callbacks are audited (``service.refused``).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from ..auth import flow, sessions, transaction
from ..crypto import random_token, sha256_hex
from . import service
from .service import NotLinked, PscRefused, PscUnavailable

bp = Blueprint("psc", __name__)
# Signed-session keys: the login this browser sent to PSC, and a logout on its way there.
LOGIN_KEY = "psc_login"
LOGOUT_KEY = "psc_logout"
# The PSC login of LOGIN_KEY links the signed-in user instead: {"tx": sha256(tx id), "sid"}.
LINK_KEY = "psc_link"


@bp.before_request
def _only_when_enabled():
    if not service.enabled():
        abort(404)


def problem(title: str, message: str, tx_id: str | None, status: int, **offers):
    """A PSC failure page: what happened, what to do, and the ways on it offers
    (``password``: the password form of this login; ``retry``: PSC again)."""
    tx = transaction.load(tx_id)
    live = tx is not None and tx.step == "password"
    return render_template(
        "psc/problem.html",
        title=title,
        message=message,
        advice=offers.get("advice", ""),
        tx=tx_id if live else None,
        offer_password=live and offers.get("password", True) and not tx.require_psc,
        offer_retry=live and offers.get("retry", True),
    ), status


def _unavailable(tx_id: str | None):
    return problem(
        _("Pro Santé Connect is not answering"),
        _("Pro Santé Connect could not be reached, or did not answer in time."),
        tx_id,
        503,
        advice=_(
            "Try again in a few minutes, or sign in with your identifier and password if"
            " your organisation allows it."
        ),
    )


@bp.post("/login/psc")
def start():
    """The PSC button: check PSC answers, then send the browser there (303)."""
    tx_id = request.args.get("tx")
    tx = transaction.load(tx_id)
    if tx is None:
        from ..auth.views import expired_page

        return expired_page(tx_id)
    if tx.step != "password":
        return redirect(flow.step_url(tx_id, tx.step))
    try:
        url = service.start(tx)
    except PscUnavailable:
        return _unavailable(tx_id)
    if url is None:
        return flow.lost_race(tx_id)
    session[LOGIN_KEY] = tx_id
    return redirect(url, code=303)


@bp.get("/login/psc/callback")
def callback():
    """PSC sends the browser back: the state taken once, the code exchanged, the answer
    checked, the account found by national identifier, the user signed in."""
    tx_id = session.get(LOGIN_KEY)
    pending = service.claim(request.args.get("state", ""), sha256_hex(session.get("browser", "")))
    if pending is None or not tx_id or sha256_hex(tx_id) != pending.tx.tx_hash:
        service.refused("state")
        return problem(
            _("Sign-in refused"),
            _("This Pro Santé Connect answer is not for a sign-in started in this browser."),
            None,
            400,
        )
    session.pop(LOGIN_KEY, None)
    link = session.pop(LINK_KEY, None)
    if not (isinstance(link, dict) and link.get("tx") == pending.tx.tx_hash):
        link = None
    try:  # RFC 9207, before anything else of the answer is believed (an error too)
        service.upstream().check_response_issuer(request.args.get("iss"))
    except PscRefused as refusal:
        service.refused(refusal.reason)
        return problem(
            _("Sign-in refused"),
            _("This Pro Santé Connect answer is not for a sign-in started in this browser."),
            None if link else tx_id,
            400,
        )
    if request.args.get("error"):
        service.refused("psc_error", error=request.args.get("error", "")[:64])
        if link:
            return _link_failed(_("The link to Pro Santé Connect was cancelled or failed."))
        return problem(
            _("Pro Santé Connect sign-in not completed"),
            _("The sign-in with Pro Santé Connect was cancelled or did not succeed."),
            tx_id,
            400,
        )
    if link:
        return _link(pending, link)
    return _finish(pending, tx_id)


def _finish(pending, tx_id: str):
    try:
        identity = service.identify(pending, request.args.get("code", ""))
    except PscUnavailable:
        return _unavailable(tx_id)
    except PscRefused as refusal:
        service.refused(refusal.reason)
        return problem(
            _("Sign-in refused"),
            _(
                "The answer of Pro Santé Connect could not be accepted (its level of"
                " assurance is too low, or it failed our checks)."
            ),
            tx_id,
            400,
        )
    try:
        user = service.account_for(identity)
    except NotLinked:
        service.unlinked(identity)
        return problem(
            _("No account for this identity"),
            _(
                "Your Pro Santé Connect identity is not linked to any account of the"
                " Portail de santé."
            ),
            tx_id,
            403,
            retry=False,
            advice=_(
                "Ask your organisation's administrator to record your RPPS or ADELI number"
                " on your account, then sign in again."
            ),
        )
    return flow.after_psc(pending.tx, tx_id, user, identity)


@bp.post("/account/psc/link")
def start_link():
    """ "Link my Pro Santé Connect identity" (the console): a PSC login whose answer links
    the signed-in user rather than signing anyone in; only from a 2FA session (a
    password-only one confirms with a code first, ``flow.step_up``)."""
    sso = sessions.current()
    if sso is None:
        return redirect(url_for("auth.login"))
    if sso.user.national_id:
        flash(_("Your account is already linked to Pro Santé Connect."), "info")
        return redirect(url_for("account.home"))
    if not service.two_factor(sso):
        flash(
            _(
                "To link your Pro Santé Connect identity, first confirm it is you with a code,"
                " then press “Link my Pro Santé Connect identity” again."
            ),
            "info",
        )
        return flow.step_up(sso, None)
    tx_id = transaction.begin(None)
    try:
        url = service.start(transaction.load(tx_id))
    except PscUnavailable:
        return _link_failed(_("Pro Santé Connect is not answering. Try again in a few minutes."))
    if url is None:
        return redirect(url_for("account.home"))
    session[LOGIN_KEY] = tx_id
    session[LINK_KEY] = {"tx": sha256_hex(tx_id), "sid": sso.sid}
    return redirect(url, code=303)


def _link_failed(message: str):
    flash(message, "error")
    return redirect(url_for("account.home"))


def _link(pending, link: dict):
    """Back from PSC for the console's link: the same session, still 2FA, links the
    identity PSC vouched for (``service.link``)."""
    sso = sessions.current()
    if sso is None or sso.sid != link.get("sid") or not service.two_factor(sso):
        service.refused("link_session")
        return _link_failed(_("Your session changed meanwhile: nothing was linked."))
    try:
        identity = service.identify(pending, request.args.get("code", ""))
    except PscUnavailable:
        return _link_failed(_("Pro Santé Connect is not answering. Try again in a few minutes."))
    except PscRefused as refusal:
        service.refused(refusal.reason)
        return _link_failed(_("The answer of Pro Santé Connect could not be accepted."))
    try:
        national_id = service.link(sso.user, pending, identity)
    except service.LinkRefused as refused:
        return _link_failed(LINK_REFUSED.get(refused.reason, LINK_REFUSED["changed"])())
    flash(_("Your account is now linked to Pro Santé Connect (%(id)s).", id=national_id), "info")
    return redirect(url_for("account.home"))


LINK_REFUSED = {
    "taken": lambda: _(
        "This Pro Santé Connect identity is already linked to another account: ask your"
        " organisation's administrator."
    ),
    "no_national_id": lambda: _(
        "Pro Santé Connect gave no RPPS or ADELI number for this identity: nothing was linked."
    ),
    "changed": lambda: _("Your account was linked or changed meanwhile: nothing was linked."),
}


def logout_at_psc(id_token: str, then: str):
    """After our logout of a PSC session: end PSC's too (RP-initiated logout with its ID
    token as hint), back to ``logged_out`` and on to ``then`` (already validated: the
    RP's registered ``post_logout_redirect_uri``, or our page). None if PSC has no
    end-session endpoint or does not answer."""
    state = random_token(16)
    try:
        url = service.upstream().logout_url(id_token, service.post_logout_redirect_uri(), state)
    except PscUnavailable:
        return None
    if url is None:
        return None
    session[LOGOUT_KEY] = {"state": state, "then": then}
    return redirect(url, code=303)


@bp.get("/login/psc/logged-out")
def logged_out():
    """Back from PSC's logout: on to where our logout was going (never a URL from the query)."""
    pending = session.pop(LOGOUT_KEY, None)
    if isinstance(pending, dict) and pending.get("state") == request.args.get("state"):
        return redirect(pending.get("then") or url_for("psc.done"), code=303)
    return redirect(url_for("psc.done"), code=303)


@bp.get("/login/psc/done")
def done():
    return render_template("oidc/logged_out.html")
