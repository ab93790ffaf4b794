"""SQLAlchemy models. Times are integer epoch seconds (see ``idp.clock``)."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})

from .account import PasswordResetToken  # noqa: E402
from .assertions import ClientAssertionJti  # noqa: E402
from .audit import AuditEvent, Throttle  # noqa: E402
from .clients import Client  # noqa: E402
from .mfa import OtpChallenge, RememberedBrowser  # noqa: E402
from .outbox import OutboxMessage  # noqa: E402
from .phone import PhoneChange  # noqa: E402
from .sessions import LoginTransaction, SessionClient, SsoSession  # noqa: E402
from .tokens import AuthorizationCode, Token  # noqa: E402
from .users import User  # noqa: E402

__all__ = [
    "AuditEvent",
    "AuthorizationCode",
    "Client",
    "ClientAssertionJti",
    "LoginTransaction",
    "OtpChallenge",
    "OutboxMessage",
    "PasswordResetToken",
    "PhoneChange",
    "RememberedBrowser",
    "SessionClient",
    "SsoSession",
    "Throttle",
    "Token",
    "User",
    "db",
    "use_once",
]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL and a busy timeout let gunicorn workers share one SQLite file safely.

    The database file is made private (0600) first, whatever the umask that
    created it: SQLite then gives the -wal and -shm files it creates the same
    mode. Ones left readable by an older run are made private too.

    ``synchronous=NORMAL``: in WAL mode a commit then writes the WAL without
    waiting for fsync (the WAL is synced at checkpoints). The database stays
    consistent after a crash; a power loss may undo the last commits. With the
    default (FULL) each commit waited on the disk: two fsyncs made up half the
    time of a refresh grant (bench/README.md, "Performance" in README.md).
    """
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        _make_files_private(cursor)
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _make_files_private(cursor) -> None:
    from ..config import make_private

    for _seq, _name, path in cursor.execute("PRAGMA database_list").fetchall():
        if not path:  # in memory, or the temp database
            continue
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                make_private(path + suffix)
            except FileNotFoundError:
                pass  # no such file now (-wal and -shm come and go)


def _install_sqlite_pragmas() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "connect", _sqlite_pragmas):
        event.listen(Engine, "connect", _sqlite_pragmas)


_install_sqlite_pragmas()


def use_once(model: type, row_id: int) -> bool:
    """Flip ``used`` from false to true in one conditional UPDATE; True for the one winner.

    Codes, one-time passwords and reset links are redeemed this way, so two
    concurrent redemptions cannot both succeed, on SQLite as on PostgreSQL: the
    UPDATE holds the row (PostgreSQL) or the database (SQLite) until the step
    commits, and a racing one re-reads ``used`` after that commit.

    It does not commit: the redemption belongs to the step that uses it (the
    session it opens, the tokens, the new password), and lands with it or not at
    all (SECURITY.md, "One step, one transaction").
    """
    from sqlalchemy import update

    result = db.session.execute(
        update(model).where(model.id == row_id, model.used.is_(False)).values(used=True)
    )
    return result.rowcount == 1
