"""The operator console's search over 1,000,000 seeded accounts (a benchmark, not a test).

    PYTHONPATH=. .venv/bin/python bench/admin_search.py [--users N] [--database-url URL]

Without ``--database-url`` a SQLite file in a temporary directory; with a PostgreSQL
URL its ``public`` schema is DROPPED and recreated (use a scratch database). The
schema comes from the migrations (``idp init``); accounts are inserted in bulk
(``executemany`` in batches of 20,000 rows), then ``ANALYZE``. Each query runs 7
times through ``idp.admin.accounts.search_users`` (the console's own service);
the median and the worst are printed beside the 200 ms target.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import unicodedata
from pathlib import Path

from sqlalchemy import create_engine, insert, text

GIVEN = "Jean Marie Élise Louis Chloé Hugo Inès Lucas Léa Nathan Zoé Karim Fatou Yann".split()
FAMILY = (
    "Martin Bernard Dubois Durand Lefebvre Leroy Moreau Simon Laurent Michel Garcia David"
    " Bertrand Roux Vincent Fournier Morel Girard André Mercier Dupont Lambert Bonnet François"
).split()
TARGET_MS = 200
QUERIES = {
    "identifier, exact": "jean.martin0",
    "identifier, prefix": "marie.du",
    "e-mail, prefix": "martin.chlo",
    "name, prefix": "élise moreau",
    "family name (start of identifier)": "fatou.",
    "one letter (worst case)": "m",
    "no match": "zzzz",
}


def _ascii(word: str) -> str:
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _rows(start: int, count: int, random_source: random.Random):
    from idp.users import identity_key

    for n in range(start, start + count):
        given, family = GIVEN[n % len(GIVEN)], FAMILY[(n // len(GIVEN)) % len(FAMILY)]
        if random_source.random() < 0.5:  # half of them in another order of the alphabet
            given, family = GIVEN[(n * 7) % len(GIVEN)], FAMILY[(n * 11) % len(FAMILY)]
        username = f"{_ascii(given)}.{_ascii(family)}{n}"
        email = f"{_ascii(family)}.{_ascii(given)}{n}@hopital.fr"
        name = f"{given} {family}"
        yield {
            "subject": f"s{n}", "username": username, "username_key": username,
            "email": email, "email_key": email, "email_verified": False,
            "name": name, "name_key": identity_key(name), "given_name": given,
            "family_name": family, "profession": "", "roles": [], "locale": "fr",
            "password_hash": "", "password_changed_at": 0, "disabled": False,
            "created_at": 0, "updated_at": 0, "credential_id": f"{n:032x}",
        }  # fmt: skip


def seed(app, users: int) -> float:
    from idp.models import User, db

    started = time.perf_counter()
    source = random.Random(12)
    batch = 20_000
    with app.app_context():
        with db.engine.begin() as conn:
            for start in range(0, users, batch):
                conn.execute(insert(User), list(_rows(start, min(batch, users - start), source)))
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def measure(app) -> list[tuple[str, str, float, float, int]]:
    from idp.admin.accounts import search_users
    from idp.models import db

    results = []
    with app.app_context():
        for label, query in QUERIES.items():
            times, found = [], 0
            for _ in range(7):
                db.session.remove()  # a fresh request's session, a pooled connection
                started = time.perf_counter()
                found = len(search_users(query).users)
                times.append((time.perf_counter() - started) * 1000)
            results.append((label, query, statistics.median(times), max(times), found))
        page = None
        times = []
        for _ in range(7):
            started = time.perf_counter()
            page = search_users("m", page=40)
            times.append((time.perf_counter() - started) * 1000)
        results.append(
            ("page 40 of 'm'", "m", statistics.median(times), max(times), len(page.users))
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    from idp import create_app
    from idp.cli import initialise

    work = Path(tempfile.mkdtemp(prefix="idp-bench-admin-"))
    url = args.database_url or f"sqlite:///{work / 'idp.sqlite3'}"
    if url.startswith("postgresql"):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    app = create_app(
        {"database": {"url": url}, "keys": {"dir": str(work / "keys")},
         "instance_dir": str(work / "instance"), "secret_key": "bench-only", "log_level": "WARNING"}
    )  # fmt: skip
    initialise(app)
    print(f"database: {url.split('@')[-1]}")
    print(f"seeded {args.users:,} accounts in {seed(app, args.users):.1f} s")
    print(
        f"{'query':40} {'typed':16} {'median':>9} {'worst':>9} {'rows':>5}  target {TARGET_MS} ms"
    )
    for label, query, median, worst, rows in measure(app):
        flag = "ok" if median < TARGET_MS else "SLOW"
        print(f"{label:40} {query:16} {median:7.1f}ms {worst:7.1f}ms {rows:5}  {flag}")
    from idp.models import db

    with app.app_context():
        db.engine.dispose()


if __name__ == "__main__":
    main()
