"""Reading the audit trail (docs/OPERATING.md, "Reading the audit"): filters, pages, CSV.

The CSV export streams: rows come from the database in batches (``yield_per``)
and leave as they are written, so a month of events never sits in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import aliased

from ..models import AuditEvent, User, db
from ..users import find_by_username

PER_PAGE = 100
BATCH = 500
COLUMNS = (
    "at",
    "event",
    "outcome",
    "user",
    "actor",
    "client_id",
    "ip_hash",
    "request_id",
    "detail",
)
# Events that say a step was refused or went wrong; everything else is a success.
_FAILURE_WORDS = ("failed", "throttled", "refused", "expired", "locked", "invalid", "reused")


class FilterError(ValueError):
    """A filter the page cannot read (a date); ``field`` names it."""

    def __init__(self, field: str):
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class Filters:
    user: str = ""
    event: str = ""
    since: str = ""  # YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)
    until: str = ""


@dataclass(frozen=True)
class Row:
    id: int
    at: int
    event: str
    outcome: str
    user: str | None
    actor: str | None
    client_id: str | None
    ip_hash: str | None
    request_id: str | None
    detail: dict


def outcome(event: str) -> str:
    return "failure" if any(word in event for word in _FAILURE_WORDS) else "success"


def _epoch(value: str, field: str, *, end: bool) -> int | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FilterError(field) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int(moment.timestamp())
    if end and len(value.strip()) == 10:  # a whole day: up to its last second
        seconds += 86400
    return seconds


def _statement(filters: Filters):
    """Events matching the filters, newest first, with the user's and actor's names."""
    subject, actor = aliased(User), aliased(User)
    statement = (
        select(AuditEvent, subject.username, actor.username)
        .outerjoin(subject, subject.id == AuditEvent.user_id)
        .outerjoin(actor, actor.id == AuditEvent.actor_id)
    )
    if filters.user:
        found = find_by_username(filters.user.strip())
        statement = statement.where(AuditEvent.user_id == (found.id if found else -1))
    if filters.event:
        event = filters.event.strip()
        if event.endswith("."):  # a family: "login." finds login.failed, login.succeeded…
            statement = statement.where(AuditEvent.event.startswith(event, autoescape=True))
        else:
            statement = statement.where(AuditEvent.event == event)
    since = _epoch(filters.since, "since", end=False)
    until = _epoch(filters.until, "until", end=True)
    if since is not None:
        statement = statement.where(AuditEvent.at >= since)
    if until is not None:
        statement = statement.where(AuditEvent.at < until)
    return statement.order_by(AuditEvent.id.desc())


def _row(event: AuditEvent, username: str | None, actor: str | None) -> Row:
    return Row(
        event.id,
        event.at,
        event.event,
        outcome(event.event),
        username,
        actor,
        event.client_id,
        event.ip_hash,
        event.request_id,
        event.detail or {},
    )


def page(filters: Filters, before: int | None = None, per_page: int = PER_PAGE):
    """One page of events older than id ``before`` (keyset: each page costs the same),
    and the id to ask for the next page (None: the last one). Raises ``FilterError``."""
    statement = _statement(filters)
    if before is not None:
        statement = statement.where(AuditEvent.id < before)
    found = [_row(*r) for r in db.session.execute(statement.limit(per_page + 1))]
    rows = found[:per_page]
    return rows, (rows[-1].id if len(found) > per_page else None)


def csv_lines(filters: Filters) -> Iterator[str]:
    """The CSV export, line by line (a generator: the response streams it). The
    statement is checked at once (``FilterError`` before the first byte)."""
    statement = _statement(filters).execution_options(yield_per=BATCH)
    return _generate(statement)


def _generate(statement) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(COLUMNS)
    yield flush()
    for event, username, actor in db.session.execute(statement):
        row = _row(event, username, actor)
        writer.writerow(
            [
                datetime.fromtimestamp(row.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                *(
                    _cell(value)
                    for value in (
                        row.event,
                        row.outcome,
                        row.user,
                        row.actor,
                        row.client_id,
                        row.ip_hash,
                        row.request_id,
                        json.dumps(row.detail, ensure_ascii=False, sort_keys=True)
                        if row.detail
                        else "",
                    )
                ),
            ]
        )
        yield flush()


def _cell(value: str | None) -> str:
    """No formula injection when a spreadsheet opens the file (OWASP "CSV Injection"):
    a value starting with = + - @ or a control character is quoted with a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
