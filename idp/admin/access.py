"""Who may open the operator console, and how fresh their code must be.

The ``admin`` role, in a session whose last code (typed, not a remembered
browser) is at most ``[admin] max_session_minutes`` old. A password-only or older
session is stepped up: a fresh code, not the password again (``flow.step_up``).
Anyone else gets 403, signed in or not (docs/OPERATING.md, "The operator console").
"""

from __future__ import annotations

from flask import current_app, g, render_template, request, session

from .. import clock
from ..account.passwords import ADMIN_ROLE
from ..auth import flow, sessions
from ..models import SsoSession, User
from ..oidc.acr import PSC_ACR

# Where to come back to after the sign-in or the step-up (``flow.console_target``).
NEXT = "console_next"
PSC_SKEW_SECONDS = 60  # as ``idp.psc.upstream.LEEWAY_SECONDS`` for PSC's ``exp``


def code_is_fresh(sso: SsoSession) -> bool:
    """A code was typed in this session less than ``max_session_minutes`` ago, or Pro
    Santé Connect (a level above the code) vouched for the user that recently."""
    limit = current_app.config["IDP"]["admin"]["max_session_minutes"] * 60
    if sso.acr == PSC_ACR and sso.psc_id_token:
        # PSC's ``auth_time``, as its ID token says: one in the future (a clock ahead, or
        # a bug) would keep the console open until then, so only a minute's skew counts.
        return -PSC_SKEW_SECONDS <= clock.now() - sso.auth_time <= limit
    acr_ok = sso.acr == current_app.config["IDP"]["acr"]["mfa"]
    return acr_ok and sso.code_at is not None and clock.now() - sso.code_at <= limit


def gate():
    """``before_request`` of the blueprint: None to go on (``g.admin`` set), or the answer."""
    sso = sessions.current()
    if sso is None or ADMIN_ROLE not in sso.user.roles:
        if sso is None:
            session[NEXT] = _here()
        return render_template("admin/forbidden.html", signed_in=sso is not None), 403
    if not code_is_fresh(sso):
        session[NEXT] = _here()
        return flow.step_up(sso, None, fresh_code=True)
    g.admin, g.admin_session = sso.user, sso
    return None


def _here() -> str:
    """This page (a GET of it after a POST: the form is filled again, never replayed)."""
    return request.full_path.rstrip("?") if request.method == "GET" else request.path


def admin() -> User:
    return g.admin
