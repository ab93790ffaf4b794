"""Browser hardening, error pages and the health check (docs/CONVENTIONS.md, convention 12)."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import parse_qsl, urlsplit

from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    jsonify,
    render_template,
    request,
)
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import BadHost, HTTPException, SecurityError

from . import i18n
from .delivery.messages import otp_minutes
from .models import db

log = logging.getLogger("idp.web")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' http: https:; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Browser-based RPs (public clients) call these directly; no cookies are used.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "GET, POST",
}
# On every answer (``_harden``; ``idp.oidc.published`` for discovery and JWKS).
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# Pages and answers that carry personal data or secrets must never be cached.
_NO_STORE_PREFIXES = (
    "/login",
    "/account",
    "/admin",
    "/password",
    "/authorize",
    "/token",
    "/userinfo",
    "/introspect",
    "/revoke",
    "/logout",
)


def init_app(app: Flask) -> None:
    app.before_request(_reject_malformed)
    app.before_request(i18n.remember_choice)
    app.after_request(_harden)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/", "index", index)
    app.add_url_rule("/favicon.ico", "favicon", favicon)
    app.context_processor(_template_globals)
    # Flask puts the whole configuration (secret key, mail password, SMS token) in every
    # template's reach as ``config``: templates get only ``shown`` instead.
    app.jinja_env.globals.pop("config", None)


_API = ("/token", "/userinfo", "/introspect", "/revoke")
_CORS_PATHS = {"/.well-known/openid-configuration", "/jwks.json", "/token", "/userinfo", "/revoke"}


def _reject_malformed():
    """NUL bytes (PostgreSQL refuses them), an undecodable host and undecodable Basic
    credentials: a clear 400/401."""
    if (nul := _holds_nul()) or _undecodable_host():
        if request.path.startswith(_API):
            problem = "NUL byte in input" if nul else "Undecodable Host header"
            return jsonify(error="invalid_request", error_description=problem), 400
        return error_page(_("Invalid request"), _("The request contains invalid characters."), 400)
    auth = request.headers.get("Authorization", "")
    if request.path.startswith(_API) and auth[:6].lower() == "basic ":
        import base64
        import binascii

        try:
            base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            response = jsonify(error="invalid_client", error_description="Malformed credentials")
            response.headers["WWW-Authenticate"] = "Basic"
            return response, 401
    return None


def _holds_nul() -> bool:
    """A NUL in the path, a header (RFC 9110 §5.5 forbids it), or any parameter name or value
    (repeated ones too: a form or Authlib may read any of them)."""
    fields = [request.path, *request.headers.values()]
    for params in (request.args, request.form):
        for name, values in params.lists():
            fields += [name, *values]
    return any("\x00" in field for field in fields)


def _undecodable_host() -> bool:
    """A ``Host`` whose punycode (``xn--…``) does not decode: Werkzeug raises UnicodeError
    building ``request.url`` from it (Python 3.11), which Authlib reads for every request."""
    try:
        request.url  # noqa: B018 - computed (and cached) for the check
    except UnicodeError:
        return True
    return False


def shown_settings(settings: dict) -> dict[str, int]:
    """The only settings pages and messages show: never the whole mapping (secret key,
    mail password, SMS token) in a template's reach."""
    return {
        "remember_browser_hours": settings["mfa"]["remember_browser_hours"],
        "reset_link_hours": settings["password"]["reset_link_hours"],
        "password_min_length": settings["password"]["min_length"],
    }


def _template_globals() -> dict:
    from flask_babel import get_locale

    from .auth import sessions

    in_request = has_request_context() and request.endpoint != "static"
    sso = sessions.current() if in_request else None
    return {
        "signed_in_user": sso.user if sso else None,
        "current_locale": lambda: str(get_locale()),
        "format_datetime": _format_epoch,
        "otp_minutes": otp_minutes,
        "shown": shown_settings(current_app.config["IDP"]),
        "role_label": role_label,
        "language_links": i18n.switch_links if in_request else list,
    }


def role_label(role: str) -> str:
    """A role's name in the page's language, from ``[roles]`` (config.example.toml);
    the raw id only for a role the configuration does not name."""
    from flask_babel import get_locale

    labels = current_app.config["IDP"]["roles"].get(role)
    return labels[str(get_locale())] if labels else role


def _format_epoch(seconds: int) -> str:
    """Epoch seconds as a local date and time in the page's language."""
    from datetime import UTC, datetime

    from flask_babel import format_datetime

    return format_datetime(datetime.fromtimestamp(seconds, UTC), "short")


def _harden(response):
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if request.path.startswith(_NO_STORE_PREFIXES):
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    if request.path in _CORS_PATHS:
        headers.update(CORS_HEADERS)
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


FAVICON_MAX_AGE = 7 * 86400


def favicon():
    """Browsers ask for ``/favicon.ico`` on every page whatever the HTML says: a 121-byte
    icon (``idp/static/favicon.ico``, 16×16) cached for a week, rather than a 404 in every
    log. ``base.html`` names it too. Answered from memory: no file handle per request."""
    global _favicon
    if _favicon is None:
        with open(f"{current_app.static_folder}/favicon.ico", "rb") as icon:
            _favicon = icon.read()
    response = Response(_favicon, mimetype="image/x-icon")
    response.cache_control.public = True
    response.cache_control.max_age = FAVICON_MAX_AGE
    response.add_etag()
    return response.make_conditional(request)


_favicon: bytes | None = None


def index():
    from flask import redirect, url_for

    return redirect(url_for("account.home"))


def _draining() -> bool:
    """Whether gunicorn's master is draining before it stops (``idp.gunicorn_conf``):
    it creates the file that ``$IDP_DRAIN_FILE`` names, which every worker inherits."""
    import os

    flag = os.environ.get("IDP_DRAIN_FILE")
    return bool(flag) and os.path.exists(flag)


def healthz():
    """For the load balancer: 503 while draining (take this node out of rotation, its
    requests are still served) or when the database does not answer — within
    ``[database] timeout_seconds``, even if it hangs rather than refuses."""
    if _draining():
        return jsonify(status="draining"), 503
    if not _database_answers(current_app.config["IDP"]["database"]["timeout_seconds"]):
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")


_probe_slot = threading.Semaphore(1)  # one probe at a time: a hung database costs one thread


def _database_answers(timeout: float) -> bool:
    if not _probe_slot.acquire(blocking=False):
        return False  # the previous probe has not come back: still down
    app, answer = current_app._get_current_object(), {}

    def probe() -> None:
        try:
            with app.app_context():
                try:
                    db.session.execute(text("SELECT 1"))
                    answer["ok"] = True
                except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
                    outage.report(exc)
                finally:
                    db.session.remove()
        finally:
            _probe_slot.release()

    worker = threading.Thread(target=probe, name="healthz", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(answer.get("ok"))


class _Outage:
    """One log line per ``every`` seconds while the database is down, not one traceback
    per request (a 30-second outage used to write some 36,000 lines per node)."""

    def __init__(self, every: float = 10.0):
        self.every, self.last, self.hidden, self.lock = every, 0.0, 0, threading.Lock()

    def report(self, error: BaseException) -> None:
        now = time.monotonic()
        with self.lock:
            if now - self.last < self.every:
                self.hidden += 1
                return
            hidden, self.hidden, self.last = self.hidden, 0, now
        log.error(
            "database unavailable: %s (%d more like it in the last %.0f s)",
            type(error).__name__,
            hidden,
            self.every,
        )


outage = _Outage()


def _database_down(error: Exception) -> bool:
    return isinstance(error, OperationalError | InterfaceError | PoolTimeout) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def error_page(title: str, message: str, status: int):
    if isinstance(request.routing_exception, BadHost | SecurityError):
        # The Host header was refused before routing: no URL (not even the
        # style sheet's) can be built for this request, so no template either.
        return Response(f"{title}\n\n{message}\n", status, mimetype="text/plain")
    return render_template("error.html", title=title, message=message), status


def _csrf_error(error: CSRFError):
    """A form whose CSRF token is too old or whose session is gone: nothing was done.

    Flask-WTF refuses it before the view runs. The page says which of the two it is
    (the token lives ``[session] login_minutes``, like a login; the session cookie
    goes when the browser is closed) and offers the way on: inside a login (``?tx=``)
    the same authorization again, else the page the form was on, or the console."""
    from .auth.views import expired_page

    minutes = current_app.config["IDP"]["session"]["login_minutes"]
    if error.description == "The CSRF token has expired.":
        cause = _("This page stayed open more than %(n)d minutes.", n=minutes)
    elif error.description == "The CSRF session token is missing.":
        cause = _("The browser was closed, or its cookies deleted, since this page was opened.")
    else:
        cause = _("This page is no longer valid.")
    if request.args.get("tx") and request.blueprint in ("auth", "account"):  # a login's step
        reason = _(
            "%(cause)s For your safety, what you typed was not used: start the sign-in again.",
            cause=cause,
        )
        return expired_page(request.args["tx"], _("Page expired"), reason)
    again = urlsplit(_page_again())
    body = render_template(
        "auth/expired.html",
        title=_("Page expired"),
        reason=_("%(cause)s Nothing was changed: load the page again and start over.", cause=cause),
        restart_path=again.path,
        restart_params=parse_qsl(again.query, keep_blank_values=True),
        button=_("Load the page again"),
    )
    return body, 400


def _page_again() -> str:
    """Where "load the page again" leads: the same page when it can be shown, else home."""
    rule = request.url_rule
    if rule is not None and "GET" in (rule.methods or ()):
        return request.full_path.rstrip("?")
    return "/"


def _http_error(error: HTTPException):
    if request.path.startswith(_API):
        if error.code not in (400, 404, 405, 413):
            return error.get_response()  # Authlib's own OAuth error, headers included
        return jsonify(error="invalid_request", error_description=error.name), error.code
    title, message = _explained(error.code)
    return error_page(title or error.name, message, error.code)


def _explained(code: int | None) -> tuple[str | None, str]:
    """A title and a plain explanation in the page's language: never Werkzeug's English."""
    known = {
        400: (
            _("Invalid request"),
            _("The page could not understand this request. Go back and try again."),
        ),
        403: (
            _("Access refused"),
            _("This page is reserved to the portal's administrators."),
        ),
        404: (
            _("Page not found"),
            _(
                "This address does not lead to any page of the portal. Check the address,"
                " or go back to the previous page."
            ),
        ),
        405: (
            _("Method not allowed"),
            _("This page cannot be used this way. Go back and try again."),
        ),
        413: (_("Request too large"), _("The request sent is too large. Go back and try again.")),
        429: (
            _("Too many requests"),
            _("Too many requests were sent. Wait a moment, then try again."),
        ),
    }
    return known.get(code, (None, _("The request could not be completed. Go back and try again.")))


def _unexpected_error(error: Exception):
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be the thing that failed
        db.session.remove()
    # The step did not land: no cookie for a session or remembered browser that the
    # database never stored (SECURITY.md, "One step, one transaction").
    for pending in ("sso_cookie", "browser_cookie", "sso_touch"):
        g.pop(pending, None)
    if _database_down(error):
        outage.report(error)
        retry = {"Retry-After": "30"}
        if request.path.startswith(_API):
            return jsonify(error="temporarily_unavailable"), 503, retry
        body, status = error_page(
            _("Service temporarily unavailable"),
            _("The service cannot reach its database. Try again in a few minutes."),
            503,
        )
        return body, status, retry
    log.exception("unhandled error")
    if request.path.startswith(_API):
        return jsonify(error="server_error"), 500
    return error_page(_("Something went wrong"), _("Please try again in a moment."), 500)
