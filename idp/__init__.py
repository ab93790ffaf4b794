"""idp: an OpenID Connect provider for health portals."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from .config import load_settings, make_private, private_directory, resolve_secret_key

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT_DIR = PACKAGE_DIR.parent


def create_app(config: str | os.PathLike | Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI application; ``config`` is a TOML path, a mapping or None."""
    settings = load_settings(config)
    app = Flask(
        __name__,
        template_folder=str(_templates_dir()),
        static_folder=str(PACKAGE_DIR / "static"),
        instance_path=str(Path(settings["instance_dir"]).resolve()),
    )
    app.config.update(_flask_config(settings))
    app.config["IDP"] = settings
    if settings["issuer"].startswith("http://"):
        # An http issuer is a declared development set-up (demo, tests): let
        # Authlib accept plain HTTP, which it refuses otherwise.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    from . import logs, web
    from .delivery import outbox
    from .extensions import babel, csrf, mail, migrate
    from .i18n import select_locale
    from .models import db
    from .oidc import published
    from .oidc import server as oidc_server

    logs.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(PACKAGE_DIR / "migrations"))
    csrf.init_app(app)
    mail.init_app(app)
    babel.init_app(
        app,
        locale_selector=select_locale,
        default_translation_directories=str(PACKAGE_DIR / "translations"),
    )
    oidc_server.init_app(app)
    web.init_app(app)
    outbox.init_app(app)
    published.install(
        app, app.extensions["idp_oidc"].keyring, {**web.SECURITY_HEADERS, **web.CORS_HEADERS}
    )
    if proxies := settings["trusted_proxies"]:  # outermost: every layer sees the client's scheme
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)

    from .account.views import bp as account_bp
    from .account.views import recovery_bp
    from .admin.views import bp as admin_bp
    from .auth.views import bp as auth_bp
    from .oidc.views import bp as oidc_bp
    from .psc.views import bp as psc_bp

    app.register_blueprint(oidc_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(account_bp)
    app.register_blueprint(recovery_bp)
    app.register_blueprint(psc_bp)
    app.register_blueprint(admin_bp)
    return app


def _templates_dir() -> Path:
    """Top-level ``templates/`` in a checkout; packaged copy otherwise."""
    checkout = ROOT_DIR / "templates"
    return checkout if checkout.is_dir() else PACKAGE_DIR / "templates"


def _flask_config(settings: dict) -> dict:
    secure = settings["issuer"].startswith("https://")
    database_url = _database_url(settings["database"]["url"], settings["instance_dir"])
    mail = settings["mail"]
    return {
        "SECRET_KEY": resolve_secret_key(settings),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(
            database_url, settings["database"]["timeout_seconds"]
        ),
        "SESSION_COOKIE_NAME": "__Host-idp_session" if secure else "idp_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        "PREFERRED_URL_SCHEME": "https" if secure else "http",
        "WTF_CSRF_TIME_LIMIT": settings["session"]["login_minutes"] * 60,
        # The Referer check would refuse every form: pages send no referrer
        # (Referrer-Policy: no-referrer). The CSRF token and SameSite cookies remain.
        "WTF_CSRF_SSL_STRICT": False,
        "MAIL_SERVER": mail["server"],
        "MAIL_PORT": mail["port"],
        "MAIL_USE_TLS": mail["use_tls"],
        "MAIL_USE_SSL": mail["use_ssl"],
        "MAIL_USERNAME": mail["username"] or None,
        "MAIL_PASSWORD": mail["password"] or None,
        "MAIL_DEFAULT_SENDER": mail["sender"],
        "MAIL_SUPPRESS_SEND": mail["backend"] == "console",
        "BABEL_DEFAULT_LOCALE": "fr",
        "BABEL_DEFAULT_TIMEZONE": "Europe/Paris",
        "MAX_CONTENT_LENGTH": 1024 * 1024,
        # Set by idp.gunicorn_conf and `idp run`/`demo`: a long-lived server sends
        # notices from a background thread; elsewhere (the CLI, tests) they leave in-line.
        "IDP_BACKGROUND_DELIVERY": os.environ.get("IDP_BACKGROUND_DELIVERY") == "1",
    }


def _engine_options(url: str, timeout: float) -> dict:
    """Time limits, so that a database that stops answering fails requests in seconds
    instead of holding every worker (SECURITY.md, "Resilience").

    SQLite waits on locks only (its busy time-out). PostgreSQL: connection
    time-out, a server-side statement and lock time-out, TCP keep-alives and a
    TCP user time-out for a peer that vanished, and a bounded wait for a pooled
    connection.
    """
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}}
    options: dict = {"pool_pre_ping": True, "pool_timeout": timeout}
    if url.startswith("postgresql"):
        millis = int(timeout * 1000)
        options["connect_args"] = {
            "connect_timeout": max(1, round(timeout)),
            "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
            "keepalives": 1,
            "keepalives_idle": max(1, round(timeout)),
            "keepalives_interval": 1,
            "keepalives_count": 3,
            "tcp_user_timeout": millis,
        }
    return options


def _database_url(url: str, instance_dir: str) -> str:
    """Relative SQLite paths are taken from the working directory, as DESIGN.md shows.

    (Flask-SQLAlchemy would otherwise put them under the instance folder.)
    The database file is created here, mode 0600, before SQLite would create it
    under the umask; SQLite gives its -wal and -shm files the database's mode.
    Its folder is made 0700 when it is the instance folder or is created here.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or ":memory:" in url:
        return url
    raw, sep, query = url[len(prefix) :].partition("?")
    path = Path(raw) if Path(raw).is_absolute() else Path.cwd() / raw
    folder = path.parent
    if not folder.exists() or folder.resolve() == Path(instance_dir).resolve():
        private_directory(folder)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        make_private(path)  # and on every connection, -wal and -shm too (idp.models)
    else:
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    return f"{prefix}{path}{sep}{query}"
