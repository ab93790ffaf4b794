"""The ``idp`` command (DESIGN.md): init, demo, run, user …, client …, keys …."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from flask import Flask

from .config import ConfigError


class _Context:
    def __init__(self, config: str | None):
        self.config_path = config
        self._app: Flask | None = None

    @property
    def app(self) -> Flask:
        if self._app is None:
            from . import create_app

            self._app = create_app(self.config_path)
        return self._app

    def close(self) -> None:
        """Close database connections when the command ends."""
        if self._app is not None:
            from .models import db

            with self._app.app_context():
                db.session.remove()
                db.engine.dispose()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


@click.group()
@click.option(
    "--config",
    "config",
    envvar="IDP_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML configuration file (default: $IDP_CONFIG, else built-in defaults).",
)
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Operate the identity provider."""
    ctx.obj = _Context(config)
    ctx.call_on_close(ctx.obj.close)


def _app(ctx: click.Context) -> Flask:
    try:
        return ctx.obj.app
    except (ConfigError, RuntimeError) as exc:
        _fail(str(exc))
        raise  # unreachable


def initialise(app: Flask) -> list[str]:
    """Create or upgrade the schema, generate signing keys where missing."""
    from flask_migrate import upgrade

    from .oidc.keys import ensure_keys
    from .oidc.server import oidc

    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
        created = ensure_keys(oidc().keyring.directory)
        oidc().keyring.reload(force=True)
    return created


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create or upgrade the database; generate a signing key if none."""
    created = initialise(_app(ctx))
    click.echo("database ready" + (f"; new keys: {', '.join(created)}" if created else ""))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.pass_context
def run(ctx: click.Context, host: str, port: int) -> None:
    """Development server (use gunicorn 'idp:create_app()' in production)."""
    app = _app(ctx)
    app.config["IDP_BACKGROUND_DELIVERY"] = True  # a server: notices leave after the answer
    app.run(host=host, port=port, debug=False)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.pass_context
def demo(ctx: click.Context, host: str, port: int) -> None:
    """Init, seed a demo client and users, print them, run the server."""
    from .demo import DemoBusy, claim, seed

    app = _app(ctx)
    try:
        claim(app, host, port)  # before the database: a second demo changes no password
    except DemoBusy as busy:
        _fail(str(busy))
    initialise(app)
    with app.app_context():
        click.echo(seed(app))
    app.config["IDP_BACKGROUND_DELIVERY"] = True
    app.run(host=host, port=port, debug=False)


@cli.command()
@click.pass_context
def purge(ctx: click.Context) -> None:
    """Delete state expired for more than a day, and audit rows past their retention."""
    from .maintenance import purge_audit, purge_expired

    app = _app(ctx)
    with app.app_context():
        counts = purge_expired()
        counts["audit_events"] = purge_audit(app.config["IDP"]["audit"]["retention_days"])
    click.echo(", ".join(f"{name}: {count}" for name, count in counts.items()))


from . import cli_admin  # noqa: E402,F401  (registers user, client and keys groups)


def main() -> None:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(
            "database error: "
            + str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[0]
        )
    except OSError as exc:
        _fail(str(exc))
