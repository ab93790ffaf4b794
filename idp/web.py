"""Browser hardening, error pages and the health check (STYLE.md convention 12)."""

from __future__ import annotations

import logging

from flask import Flask, current_app, has_request_context, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from .delivery.messages import otp_minutes
from .models import db

log = logging.getLogger("idp.web")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' http: https:; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Pages and answers that carry personal data or secrets must never be cached.
_NO_STORE_PREFIXES = (
    "/login",
    "/account",
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
    app.after_request(_harden)
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/", "index", index)
    app.context_processor(_template_globals)


_API = ("/token", "/userinfo", "/introspect", "/revoke")
_CORS_PATHS = {"/.well-known/openid-configuration", "/jwks.json", "/token", "/userinfo", "/revoke"}


def _reject_malformed():
    """NUL bytes (PostgreSQL refuses them) and undecodable Basic credentials: a clear 400/401."""
    values = [*request.args.values(), *request.form.values()]
    if any("\x00" in value for value in values):
        if request.path.startswith(_API):
            return jsonify(error="invalid_request", error_description="NUL byte in input"), 400
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
        "settings": current_app.config["IDP"],
    }


def _format_epoch(seconds: int) -> str:
    """Epoch seconds as a local date and time in the page's language."""
    from datetime import UTC, datetime

    from flask_babel import format_datetime

    return format_datetime(datetime.fromtimestamp(seconds, UTC), "short")


def _harden(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith(_NO_STORE_PREFIXES):
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    if request.path in _CORS_PATHS:
        # Browser-based RPs (public clients) call these directly; no cookies are used.
        headers["Access-Control-Allow-Origin"] = "*"
        headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        headers["Access-Control-Allow-Methods"] = "GET, POST"
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def index():
    from flask import redirect, url_for

    return redirect(url_for("account.home"))


def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any database failure means unhealthy
        log.exception("health check failed")
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok")


def error_page(title: str, message: str, status: int):
    return render_template("error.html", title=title, message=message), status


def _csrf_error(error: CSRFError):
    return error_page(
        _("Session expired"),
        _("This form has expired or was sent twice. Go back, reload the page and try again."),
        400,
    )


def _http_error(error: HTTPException):
    if request.path.startswith(_API):
        if error.code not in (400, 404, 405, 413):
            return error.get_response()  # Authlib's own OAuth error, headers included
        return jsonify(error="invalid_request", error_description=error.name), error.code
    titles = {404: _("Page not found"), 405: _("Method not allowed")}
    return error_page(titles.get(error.code, error.name), error.description or "", error.code)


def _unexpected_error(error: Exception):
    log.exception("unhandled error")
    db.session.rollback()
    if request.path.startswith(_API):
        return jsonify(error="server_error"), 500
    return error_page(_("Something went wrong"), _("Please try again in a moment."), 500)
