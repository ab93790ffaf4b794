"""``make bench``: every figure beside its physical limit, measured in the same run.

A benchmark, not a test (issue 13). It builds its own provider in a temporary
directory (SQLite in WAL, e-mail to a local aiosmtpd sink), provisions it with
the ``idp`` command, serves it with the shipped gunicorn settings
(``-c python:idp.gunicorn_conf``: gthread, 8 threads, one hashing thread) and drives it from
Python threads over keep-alive connections (``http.client``; ``requests`` for
the browser steps, which need cookies). With one worker, the server is pinned
to the first CPU and the load generator to the second, so "per worker" means
"per core"; with two workers both share the two CPUs with the load generator.

The limits, measured first in this process on one core:

* argon2id ``PasswordHasher.verify`` at the project's parameters (``[password]``
  defaults from ``idp.config``): one password login cannot cost less;
* ``cryptography`` RS256 (RSA-2048, PKCS#1 v1.5, SHA-256) and ES256 (P-256)
  signatures: a code exchange signs one ID token (the access token is opaque);
  a refresh answer carries no ID token here, so its floor is the bare Flask one;
* a bare Flask "hello" under the same gunicorn settings: what any request costs.

Results go to ``bench/results/<UTC time>.json`` (and ``latest.json``); a PNG
of the ratios too when matplotlib is installed (``pip install -e '.[bench]'``).

    python bench/perf.py [--seconds 4] [--users 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read from Location
SCOPE = "openid profile email offline_access"
PASSWORD = "Bench-Violet-Kettle-42"
MFA_USERS = 8  # one per login thread: each reads its own codes from the sink
MAX_ERRORS = 20


class BenchError(RuntimeError):
    """An answer other than the one the protocol step expects."""


# --- measurement -------------------------------------------------------------------------


@dataclass
class Stats:
    ops: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    server_cpu: float | None = None  # seconds of CPU the server's workers spent meanwhile

    @property
    def rate(self) -> float:
        return self.ops / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def load(
    op: Callable[[int], None],
    *,
    threads: int,
    seconds: float,
    setup: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> Stats:
    """``op(i)`` in ``threads`` threads until ``seconds`` pass (or ``op`` raises StopIteration)."""
    stats = Stats()
    lock = threading.Lock()
    halt = stop or threading.Event()
    clock: dict[str, float] = {}

    def start() -> None:
        clock["t0"] = time.perf_counter()

    ready = threading.Barrier(threads + 1, action=start)
    ends: list[float] = []

    def worker(i: int) -> None:
        try:
            if setup is not None:
                setup(i)
        except Exception as exc:  # noqa: BLE001 - reported; the barrier must still be reached
            stats.errors.append(f"setup: {exc!r}")
        ready.wait()
        deadline = clock["t0"] + seconds
        while not halt.is_set() and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                op(i)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - counted and shown
                with lock:
                    stats.errors.append(str(exc) if isinstance(exc, BenchError) else repr(exc))
                    if len(stats.errors) >= MAX_ERRORS:
                        halt.set()
                continue
            t1 = time.perf_counter()
            with lock:
                stats.ops += 1
                stats.latencies.append(t1 - t0)
        with lock:
            ends.append(time.perf_counter())

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    for thread in pool:
        thread.join()
    stats.elapsed = max(ends) - clock["t0"]
    return stats


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """This thread (and the threads it starts) on ``cpus`` for the block."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def rate_for(fn: Callable[[], None], seconds: float) -> float:
    done, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        fn()
        done += 1
    return done / elapsed


def hasher_for(argon2: dict):
    from argon2 import PasswordHasher

    hasher = PasswordHasher(
        time_cost=argon2["argon2_time_cost"],
        memory_cost=argon2["argon2_memory_kib"],
        parallelism=argon2["argon2_parallelism"],
    )
    return hasher, hasher.hash(PASSWORD)


def hash_rate(argon2: dict, seconds: float, cpu: set[int] | None) -> float:
    """Bare argon2id verifies per second: on ``cpu`` alone, or (None) per CPU with two
    hashes at once on every CPU (argon2 releases the GIL): the node's ceiling / 2."""
    hasher, stored = hasher_for(argon2)
    if cpu is not None:
        with pinned(cpu):
            return rate_for(lambda: hasher.verify(stored, PASSWORD), seconds)
    counts = [0, 0]
    t0 = time.perf_counter()

    def hash_loop(i: int) -> None:
        while time.perf_counter() - t0 < seconds:
            hasher.verify(stored, PASSWORD)
            counts[i] += 1

    pair = [threading.Thread(target=hash_loop, args=(i,)) for i in range(2)]
    for thread in pair:
        thread.start()
    for thread in pair:
        thread.join()
    return sum(counts) / (time.perf_counter() - t0) / 2


def bare_limits(argon2: dict, seconds: float, cpu: set[int]) -> dict[str, float]:
    """The physical limits, one core, in this process."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    message = secrets.token_bytes(600)  # about an ID token's signing input
    limits = {"argon2_verify_1core": hash_rate(argon2, seconds, cpu)}
    with pinned(cpu):
        limits["rs256_sign_1core"] = rate_for(
            lambda: rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256()), seconds / 2
        )
        limits["es256_sign_1core"] = rate_for(
            lambda: ec_key.sign(message, ec.ECDSA(hashes.SHA256())), seconds / 2
        )
    limits["argon2_verify_node"] = 2 * hash_rate(argon2, seconds, None)
    return limits


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


@contextlib.contextmanager
def gunicorn(
    app: str,
    *,
    workers: int,
    env: dict,
    cwd: Path,
    cpus: set[int] | None,
    log: Path,
    port: int | None = None,
) -> Iterator[tuple[int, int]]:
    """The shipped settings (``idp.gunicorn_conf``), ``workers`` workers, no drain.

    ``--max-requests 0``: the shipped recycling (about every 1,000 requests) would
    restart a worker every few seconds of a benchmark and measure its boot."""
    port = port or free_port()

    def child() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    with open(log, "ab") as out:
        process = subprocess.Popen(
            [
                venv_bin("gunicorn"), "-c", "python:idp.gunicorn_conf",
                "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                "--max-requests", "0", "--graceful-timeout", "3", "--log-level", "warning",
                app,
            ],
            env={**env, "IDP_DRAIN_SECONDS": "0", "PYTHONPATH": str(ROOT)},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=child,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn {app} did not start:\n{log.read_text()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz" if app.startswith("idp") else "/")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            time.sleep(0.1)
        time.sleep(1.0 if workers > 1 else 0.3)  # every worker booted
        yield process.pid, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def worker_pids(master: int) -> list[str]:
    try:
        return Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return []


def workers_cpu_seconds(master: int) -> float:
    """User + system CPU time the workers of a gunicorn master have used (all threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in worker_pids(master):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
    return total / ticks


def worker_rss_mib(master: int) -> list[float]:
    """Peak resident memory (VmHWM) of each worker of a gunicorn master."""
    peaks = []
    for pid in worker_pids(master):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return peaks


class Conn:
    """One keep-alive connection (``http.client``), reopened if the server closed it."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(self, method: str, path: str, body: str | None = None, headers=None):
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                answer = self.conn.getresponse()
                return answer.status, answer.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str) -> bytes:
        status, data = self.send("GET", path)
        if status != 200:
            raise BenchError(f"GET {path}: {status}")
        return data


# --- the provider ------------------------------------------------------------------------


@dataclass
class Client:
    client_id: str
    secret: str
    alg: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()


class Bench:
    """A provisioned provider (config, database, keys) in a temporary directory."""

    def __init__(self, root: Path, argon2: dict, smtp_port: int):
        self.root = root
        self.argon2 = argon2
        self.db_path = root / "idp.sqlite3"
        self.config = root / "idp.toml"
        self.issuer = "http://127.0.0.1:0"  # set per server: the issuer is the URL served
        self.smtp_port = smtp_port
        self.clients: dict[str, Client] = {}
        self.port = 0
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
        self.env["IDP_CONFIG"] = str(self.config)
        self.secret_key = secrets.token_urlsafe(48)

    def write_config(self, port: int) -> None:
        """Every node of this bench shares database, keys and secret; the issuer is its URL."""
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        q = json.dumps
        password = "".join(f"{key} = {value}\n" for key, value in self.argon2.items())
        self.config.write_text(
            f"issuer = {q(self.issuer)}\nsecret_key = {q(self.secret_key)}\n"
            f"instance_dir = {q(str(self.root / 'instance'))}\n"
            f"[database]\nurl = {q('sqlite:///' + str(self.db_path))}\n"
            f"[keys]\ndir = {q(str(self.root / 'keys'))}\n"
            f'[mail]\nbackend = "smtp"\nserver = "127.0.0.1"\nport = {self.smtp_port}\n'
            f"[password]\n{password}"
            "[tokens]\ncode_seconds = 600\n"  # codes are minted ahead of the exchange rows
            # One address (the load generator) starts every login of the run.
            "[throttle]\nlogins_started_per_hour = 100000000\n"
            "[mfa]\ncodes_per_hour = 100000000\n"
        )

    def idp(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [venv_bin("idp"), "--config", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.root,
            env={**self.env, "PYTHONPATH": str(ROOT)},
        )
        if done.returncode != 0:
            raise SystemExit(f"idp {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def provision(self) -> None:
        self.write_config(free_port())
        self.idp("init")
        self.idp(
            "user",
            "add",
            "pw",
            "--email",
            "pw@bench.example",
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
        for i in range(MFA_USERS):
            self.idp(
                "user",
                "add",
                f"mfa{i}",
                "--email",
                f"mfa{i}@bench.example",
                "--role",
                "patient_data",
                "--password-stdin",
                stdin=PASSWORD + "\n",
            )
        for alg in ("RS256", "ES256"):
            out = self.idp(
                "client",
                "add",
                f"rp-{alg.lower()}",
                "--redirect-uri",
                REDIRECT_URI,
                "--id-token-alg",
                alg,
                "--json",
            )
            data = json.loads(out.strip().splitlines()[-1])
            self.clients[alg] = Client(data["client_id"], data["client_secret"], alg)

    def seed_users(self, total: int) -> int:
        """Copies of the ``pw`` row up to ``total`` users, in one statement (bulk)."""
        with sqlite3.connect(self.db_path) as conn:
            have = conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]
            if have >= total:
                return have
            columns = [row[1] for row in conn.execute("PRAGMA table_info(users)")]
            unique = {"subject", "username", "email", "username_key", "email_key", "credential_id"}
            made = {
                "subject": "'seed-' || hex(randomblob(16))",
                "username": "'seed' || n.i",
                "email": "'seed' || n.i || '@bench.example'",
                "username_key": "hex(randomblob(32))",
                "email_key": "hex(randomblob(32))",
                "credential_id": "lower(hex(randomblob(16)))",
            }
            names = [c for c in columns if c != "id"]
            values = [made[c] if c in unique else f"u.{c}" for c in names]
            conn.execute(
                f"WITH RECURSIVE n(i) AS (SELECT {have} UNION ALL SELECT i + 1 FROM n "
                f"WHERE i < {total - 1}) INSERT INTO users ({', '.join(names)}) "
                f"SELECT {', '.join(values)} FROM n, users u WHERE u.username = 'pw'"
            )
            return conn.execute("SELECT COUNT(*) FROM users").fetchone()[0]

    def storage(self) -> dict[str, dict]:
        """Bytes on disk (table and its indexes, from dbstat) per row."""
        out = {}
        with sqlite3.connect(self.db_path) as conn:
            for table in ("sso_sessions", "tokens", "authorization_codes", "users"):
                rows = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
                size = conn.execute(
                    "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = ? OR name IN "
                    "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?)",
                    (table, table),
                ).fetchone()[0]
                out[table] = {"rows": rows, "bytes": size, "per_row": size / rows if rows else None}
        return out


def in_process(root: Path, argon2: dict):
    """A provisioned provider and its Flask app in this process (the profilers), its
    log quiet (no audit line per request on stderr)."""
    import logging

    bench = Bench(root, argon2, smtp_port=1)
    bench.provision()
    from idp import create_app

    app = create_app(str(bench.config))
    logging.getLogger("idp").setLevel(logging.WARNING)
    return bench, app


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def auth_params(client: Client) -> tuple[dict, str, str, str]:
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": state,
        "nonce": nonce,
        "prompt": "consent",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return params, state, nonce, verifier


def code_of(location: str, state: str, issuer: str) -> str:
    if not location.startswith(REDIRECT_URI):
        raise BenchError(f"expected a redirect to the RP, got {location[:160]!r}")
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    if query.get("state") != state or query.get("iss") != issuer or "code" not in query:
        raise BenchError(f"bad authorization response: {query}")
    return query["code"]


FORM = re.compile(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", re.S | re.I)
INPUT = re.compile(r"<input[^>]*>", re.I)


def form_of(html: str, needle: str) -> tuple[str | None, dict[str, str]]:
    """The POST form containing ``needle``: its action and hidden inputs."""
    for form in FORM.findall(html):
        if needle in form:
            action = re.search(r'action="([^"]*)"', form)
            hidden = {}
            for tag in INPUT.findall(form):
                name = re.search(r'name="([^"]+)"', tag)
                value = re.search(r'value="([^"]*)"', tag)
                if name and 'type="hidden"' in tag:
                    hidden[name.group(1)] = unescape(value.group(1)) if value else ""
            return (unescape(action.group(1)) if action else None), hidden
    raise BenchError(f"no form with {needle!r} in the page")


class Browser:
    """One user agent's cookies; runs the front channel like a browser."""

    def __init__(self, bench: Bench, mailbox=None):
        self.bench = bench
        self.http = requests.Session()
        self.http.trust_env = False
        self.mailbox = mailbox
        self.post_seconds: list[float] = []

    def url(self, path: str) -> str:
        return urljoin(self.bench.issuer + "/", path)

    def login(self, client: Client, username: str, email: str | None = None) -> tuple[str, ...]:
        """authorize → login page → password POST (→ e-mailed code) → code."""
        self.http.cookies.clear()
        params, state, nonce, verifier = auth_params(client)
        answer = self.http.get(self.url("/authorize"), params=params, allow_redirects=False)
        if answer.status_code != 302:
            raise BenchError(f"authorize: {answer.status_code} {answer.text[:200]}")
        page = self.http.get(self.url(answer.headers["Location"]))
        action, hidden = form_of(page.text, 'name="password"')
        seen = len(self.mailbox.to(email)) if email else 0
        t0 = time.perf_counter()
        answer = self.http.post(
            urljoin(page.url, action or page.url),
            data={**hidden, "username": username, "password": PASSWORD},
            allow_redirects=False,
        )
        self.post_seconds.append(time.perf_counter() - t0)
        location = answer.headers.get("Location", "")
        for _ in range(6):  # the second factor, when asked
            if location.startswith(REDIRECT_URI):
                return code_of(location, state, self.bench.issuer), nonce, verifier
            if answer.status_code not in (302, 303) or email is None:
                raise BenchError(f"after the password: {answer.status_code} {location[:120]}")
            page = self.http.get(self.url(location))
            if 'name="code"' in page.text:
                action, hidden = form_of(page.text, 'name="code"')
                message = self.mailbox.wait_for(email, seen)
                code = re.search(r"\b(\d{6})\b", self.mailbox.text(message)).group(1)
                data = {**hidden, "code": code}
            else:  # the channel page: e-mail
                action, hidden = form_of(page.text, 'name="channel"')
                data = {**hidden, "channel": "email"}
            answer = self.http.post(
                urljoin(page.url, action or page.url), data=data, allow_redirects=False
            )
            location = answer.headers.get("Location", "")
        raise BenchError("the login did not come back to the RP")

    def authorize_sso(self, client: Client) -> tuple[str, str, str]:
        params, state, nonce, verifier = auth_params(client)
        params.pop("prompt")
        answer = self.http.get(self.url("/authorize"), params=params, allow_redirects=False)
        return (
            code_of(answer.headers.get("Location", ""), state, self.bench.issuer),
            nonce,
            verifier,
        )


def token(conn: Conn, client: Client, form: dict) -> dict:
    status, data = conn.send(
        "POST",
        "/token",
        body=urlencode(form),
        headers={
            "Authorization": client.basic(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    if status != 200:
        raise BenchError(f"token: {status} {data[:200]!r}")
    return json.loads(data)


def exchange(conn: Conn, client: Client, code: str, verifier: str) -> dict:
    return token(
        conn,
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
    )


def verify_id_token(bench: Bench, keys, client: Client, id_token: str, nonce: str) -> None:
    from joserfc import jwt
    from joserfc.jwt import JWTClaimsRegistry

    decoded = jwt.decode(id_token, keys, algorithms=[client.alg])
    JWTClaimsRegistry(
        iss={"essential": True, "value": bench.issuer},
        aud={"essential": True, "value": client.client_id},
        nonce={"essential": True, "value": nonce},
    ).validate(decoded.claims)


# --- the scenarios ------------------------------------------------------------------------


def node_rows(
    bench: Bench,
    mailbox,
    workers: int,
    seconds: float,
    quick: bool,
    only: list[str],
    master: int,
    argon2: dict,
    hash_cpu: set[int] | None,
) -> dict:
    """Every per-node figure for ``workers`` workers (the node must be serving);
    ``only``: the rows whose name contains one of these words (all if empty).
    Each row also gets the CPU the workers spent per operation (``cpu_ms``): with
    the rate, it tells work from waiting (locks, sleeps, an idle core).

    The hash-bound rows get their own limit (``hash_limit``): the bare verify timed
    on ``hash_cpu`` (per CPU of the node if None) just before and just after them,
    while the server is idle: a limit timed minutes earlier drifts with the
    machine's other load (shared CPUs, memory bandwidth) and so did the ratio."""

    def timed(op, **kwargs) -> Stats:
        before = workers_cpu_seconds(master)
        stats = load(op, **kwargs)
        stats.server_cpu = workers_cpu_seconds(master) - before
        return stats

    def want(name: str) -> bool:
        return not only or any(word in name for word in only)

    from joserfc.jwk import KeySet

    out: dict[str, dict] = {}
    port = bench.port
    conns = [Conn(port) for _ in range(16)]
    keys = KeySet.import_key_set(json.loads(conns[0].get("/jwks.json")))
    pw_threads = 4 * workers  # 4 browsers per worker: the hash pool (1) stays busy

    def record(name: str, stats: Stats, ops_per_item: int = 1) -> None:
        out[name] = {
            "rate": stats.rate,
            "per_worker": stats.rate / workers,
            "p50_ms": stats.pct(0.5),
            "p99_ms": stats.pct(0.99),
            "ops": stats.ops,
            "errors": len(stats.errors),
            "first_error": stats.errors[0] if stats.errors else None,
            "cpu_ms": 1000 * stats.server_cpu / stats.ops if stats.ops else None,
        }
        print(
            f"  {name:<28} {stats.rate:8.1f}/s  p50 {stats.pct(0.5) or 0:7.1f} ms  "
            f"p99 {stats.pct(0.99) or 0:7.1f} ms  server CPU "
            f"{fmt(out[name]['cpu_ms'], '6.2f')} ms/op  errors {len(stats.errors)}",
            flush=True,
        )

    for path, name in (("/.well-known/openid-configuration", "discovery"), ("/jwks.json", "jwks")):
        if want(name):
            record(name, timed(lambda i, p=path: conns[i].get(p), threads=8, seconds=seconds))

    browsers = [Browser(bench, mailbox) for _ in range(pw_threads)]
    rs = bench.clients["RS256"]

    def password_post(i: int) -> None:
        b = browsers[i]
        b.login(rs, "pw")

    hash_rows = ("password POST", "login (password only)", "login (password + e-mailed code)")
    hash_before = hash_rate(argon2, seconds / 2, hash_cpu) if any(map(want, hash_rows)) else None

    if want("password POST"):
        stats = timed(password_post, threads=pw_threads, seconds=seconds * 1.5)
        post = [s for b in browsers for s in b.post_seconds]
        # POSTs/s: the GETs around them are a few ms beside a hash; the latencies are the POSTs'.
        stats.latencies = post
        record("password POST", stats)

    def full_login(i: int, username: str = "pw", email: str | None = None) -> None:
        code, nonce, verifier = browsers[i].login(rs, username, email)
        tokens = exchange(conns[i], rs, code, verifier)
        verify_id_token(bench, keys, rs, tokens["id_token"], nonce)

    if want("login (password only)"):
        stats = timed(full_login, threads=pw_threads, seconds=seconds * 1.5)
        record("login (password only)", stats)
    if want("login (password + e-mailed code)"):
        stats = timed(
            lambda i: full_login(i, f"mfa{i}", f"mfa{i}@bench.example"),
            threads=min(pw_threads, MFA_USERS),
            seconds=seconds * 1.5,
        )
        record("login (password + e-mailed code)", stats)
    if hash_before is not None:
        hash_limit = (hash_before + hash_rate(argon2, seconds / 2, hash_cpu)) / 2
        for name in hash_rows:
            if name in out:
                out[name]["hash_limit"] = hash_limit

    # Code exchange and refresh, per ID token algorithm.
    threads = 8
    per_thread = 40 if quick else 150 * workers
    for alg, client in bench.clients.items():
        if not (want(f"code exchange {alg}") or want(f"refresh {alg}")):
            continue
        minted: list[list[tuple[str, str, str]]] = [[] for _ in range(threads)]
        sso = [Browser(bench) for _ in range(threads)]

        def mint(i: int, client=client, minted=minted, sso=sso) -> None:
            sso[i].login(client, "pw")
            minted[i] += [sso[i].authorize_sso(client) for _ in range(per_thread)]

        timed(lambda i: None, threads=threads, seconds=0, setup=mint)
        refresh: list[str | None] = [None] * threads

        def code_exchange(i: int, client=client, minted=minted, refresh=refresh) -> None:
            if not minted[i]:
                raise StopIteration
            code, _nonce, verifier = minted[i].pop()
            refresh[i] = exchange(conns[i], client, code, verifier)["refresh_token"]

        stats = timed(code_exchange, threads=threads, seconds=seconds)
        if want(f"code exchange {alg}"):
            record(f"code exchange {alg}", stats)

        def refresh_grant(i: int, client=client, refresh=refresh) -> None:
            if refresh[i] is None:
                raise BenchError("no refresh token")
            answer = token(
                conns[i], client, {"grant_type": "refresh_token", "refresh_token": refresh[i]}
            )
            refresh[i] = answer["refresh_token"]

        if want(f"refresh {alg}"):
            record(f"refresh {alg}", timed(refresh_grant, threads=threads, seconds=seconds))
    return out


def isolation(bench: Bench, seconds: float) -> dict:
    """Refresh and discovery p99, one request at a time, idle and while logins saturate."""
    client = bench.clients["RS256"]
    conns = [Conn(bench.port), Conn(bench.port)]
    browser = Browser(bench)
    code, _nonce, verifier = browser.login(client, "pw")
    chain = [exchange(conns[0], client, code, verifier)["refresh_token"]]

    def probe(i: int) -> None:
        if i == 0:
            answer = token(
                conns[0], client, {"grant_type": "refresh_token", "refresh_token": chain[0]}
            )
            chain[0] = answer["refresh_token"]
        else:
            conns[1].get("/.well-known/openid-configuration")
        time.sleep(0.01)  # a steady trickle, not a second load

    def split(stats_pair: list[Stats]) -> dict:
        return {
            "refresh_p99_ms": stats_pair[0].pct(0.99),
            "refresh_p50_ms": stats_pair[0].pct(0.5),
            "discovery_p99_ms": stats_pair[1].pct(0.99),
            "discovery_p50_ms": stats_pair[1].pct(0.5),
        }

    def probes() -> list[Stats]:
        found = [Stats(), Stats()]

        def one(i: int) -> None:
            found[i] = load(lambda _j: probe(i), threads=1, seconds=seconds)

        pair = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for thread in pair:
            thread.start()
        for thread in pair:
            thread.join()
        return found

    idle = split(probes())
    stop = threading.Event()
    browsers = [Browser(bench) for _ in range(12)]
    background = threading.Thread(
        target=lambda: load(
            lambda i: browsers[i].login(client, "pw"), threads=12, seconds=seconds + 3, stop=stop
        ),
        daemon=True,
    )
    background.start()
    time.sleep(1.5)  # the hashes are running
    busy = split(probes())
    stop.set()
    background.join()
    return {"idle": idle, "logins_saturating": busy}


def hello_rows(seconds: float, workers: int, cpus, root: Path) -> dict:
    with gunicorn(
        "bench.hello:app",
        workers=workers,
        env=dict(os.environ),
        cwd=root,
        cpus=cpus,
        log=root / "hello.log",
    ) as (master, port):
        conns = [Conn(port) for _ in range(8)]
        before = workers_cpu_seconds(master)
        stats = load(lambda i: conns[i].get("/"), threads=8, seconds=seconds)
        cpu = workers_cpu_seconds(master) - before
    return {
        "rate": stats.rate,
        "per_worker": stats.rate / workers,
        "p50_ms": stats.pct(0.5),
        "p99_ms": stats.pct(0.99),
        "cpu_ms": 1000 * cpu / stats.ops if stats.ops else None,
    }


# --- report ---------------------------------------------------------------------------


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
    }


def table(results: dict) -> list[tuple]:
    """(measure [workers, users], figure/s per worker, p50, p99, server CPU ms per operation,
    limit, limit/s, ratio)."""
    lim = results["limits"]
    rows: list[tuple] = []
    for run in results["runs"].values():
        workers = run["workers"]
        hello = results["hello"][str(workers)]["per_worker"]
        r = run["rows"]
        hash_limit = lim["argon2_verify_1core"] if workers == 1 else lim["argon2_verify_node"] / 2
        hash_name = "argon2 verify/core" if workers == 1 else "argon2 verify (node)/2"
        # (each hash-bound row carries the bare rate timed around it: ``hash_limit``)
        label = f"{workers}w {run['users']:,} users"
        plan = [
            ("password POST", hash_name, hash_limit),
            ("login (password only)", hash_name, hash_limit),
            ("login (password + e-mailed code)", hash_name, hash_limit),
            ("code exchange RS256", "RS256 sign/core", lim["rs256_sign_1core"]),
            # A refresh answer carries no ID token here: no signature, the floor is Flask's.
            ("refresh RS256", "Flask hello (no sig.)", hello),
            ("code exchange ES256", "ES256 sign/core", lim["es256_sign_1core"]),
            ("refresh ES256", "Flask hello (no sig.)", hello),
            ("discovery", "Flask hello", hello),
            ("jwks", "Flask hello", hello),
        ]
        node = results.get("node")
        if isinstance(node, dict) and workers == 1:
            # node-oidc-provider answers with a new RS256 ID token; ours without.
            plan.append(("refresh RS256", "node-oidc-provider", node["refresh_rate"]))
        for name, limit_name, limit in plan:
            if name not in r:
                continue
            row = r[name]
            if limit_name == hash_name:
                limit = row.get("hash_limit", limit)  # timed around the row (node_rows)
            rows.append(
                (
                    f"{name} [{label}]",
                    row["per_worker"],
                    row["p50_ms"],
                    row["p99_ms"],
                    row.get("cpu_ms"),
                    limit_name,
                    limit,
                    row["per_worker"] / limit if limit else None,
                )
            )
    return rows


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(results: dict) -> list[str]:
    lines = [
        f"machine: {results['machine']['nproc']} CPUs, {results['machine']['cpu']}, "
        f"Python {results['machine']['python']}, SQLite {results['machine']['sqlite']}",
        f"argon2id: {results['argon2']}",
        "",
        f"{'measure [workers, users]':<52} {'/s/worker':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU ms':>7}  {'limit (same run)':<24} {'limit/s':>8} {'ratio':>6}",
    ]
    lines.append("-" * len(lines[-1]))
    for name, rate, p50, p99, cpu_ms, limit_name, limit, ratio in table(results):
        lines.append(
            f"{name:<52} {fmt(rate, '9.1f')} {fmt(p50, '8.1f')} {fmt(p99, '8.1f')} "
            f"{fmt(cpu_ms, '7.2f')}  {limit_name:<24} {fmt(limit, '8.1f')} {fmt(ratio, '6.2f')}"
        )
    runs = results["runs"]
    if "1w" in runs and "2w" in runs:
        lines.append("")
        lines.append("scaling, 2 workers / 1 worker (same node, total rate):")
        for name in ("password POST", "code exchange RS256", "refresh RS256", "discovery"):
            one, two = runs["1w"]["rows"].get(name), runs["2w"]["rows"].get(name)
            if one and two and one["rate"]:
                lines.append(f"  {name:<28} {two['rate'] / one['rate']:5.2f}x")
    if "1w-large" in runs:
        big = runs["1w-large"]
        lines.append("")
        lines.append(f"{big['users']:,} users / {runs['1w']['users']:,} users (1 worker, rate):")
        for name, row in big["rows"].items():
            small = runs["1w"]["rows"].get(name)
            if small and small["rate"]:
                lines.append(f"  {name:<28} {row['rate'] / small['rate']:5.2f}x")
    iso = results.get("isolation")
    if iso:
        lines.append("")
        lines.append("isolation (2 workers; one probe at a time; 12 threads of password logins):")
        for what in ("refresh", "discovery"):
            idle = iso["idle"][f"{what}_p99_ms"]
            busy = iso["logins_saturating"][f"{what}_p99_ms"]
            ratio = busy / idle if idle and busy else None
            lines.append(
                f"  {what:<10} p99 idle {fmt(idle, '7.1f')} ms, while logins "
                f"{fmt(busy, '7.1f')} ms: x{fmt(ratio, '.1f')}"
            )
    lines.append("")
    lines.append("storage (SQLite pages of the table and its indexes / rows):")
    for table_name, info in results["storage"].items():
        lines.append(
            f"  {table_name:<20} {info['rows']:>8} rows  {fmt(info['per_row'], '8.0f')} bytes/row"
        )
    lines.append(
        "peak RSS per worker (MiB): "
        + ", ".join(
            f"{k}: {' '.join(f'{v:.0f}' for v in run.get('rss_mib', []))}"
            for k, run in runs.items()
        )
    )
    node = results["node"]
    if isinstance(node, dict):
        node = (
            f"{node['version']}, refresh RS256 {node['refresh_rate']:.0f}/s on one core "
            f"(p50 {fmt(node['p50_ms'], '.1f')} ms, p99 {fmt(node['p99_ms'], '.1f')} ms; "
            "in-memory storage, an RS256 ID token in each answer)"
        )
    lines.append(f"node-oidc-provider: {node}")
    print("\n".join(lines))
    return lines


def chart(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in table(results) if r[-1] is not None]
    fig, ax = plt.subplots(figsize=(10, 0.32 * len(rows) + 1))
    ax.barh([r[0] for r in rows][::-1], [r[-1] for r in rows][::-1])
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlabel("figure / physical limit measured in the same run")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per row (default 4)")
    parser.add_argument("--users", type=int, default=1_000_000, help="the large user table")
    parser.add_argument("--quick", action="store_true", help="1 worker, 1,000 users, fewer codes")
    parser.add_argument(
        "--rows", default="", help="comma-separated words: only the rows naming one (A/B runs)"
    )
    args = parser.parse_args(argv)
    only = [word.strip() for word in args.rows.split(",") if word.strip()]
    sys.path.insert(0, str(ROOT))
    from idp.config import DEFAULTS
    from tests.e2e.edges import Mailbox  # the suite's SMTP sink (aiosmtpd)

    argon2 = {
        k: DEFAULTS["password"][k]
        for k in ("argon2_time_cost", "argon2_memory_kib", "argon2_parallelism")
    }
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = {cpus[0]} if len(cpus) > 1 else None
    client_cpu = {cpus[1]} if len(cpus) > 1 else None
    started = time.monotonic()
    results: dict = {"machine": machine(), "argon2": argon2, "runs": {}, "hello": {}}
    print(f"machine: {results['machine']}\nbare limits (one core) …", flush=True)
    results["limits"] = bare_limits(argon2, args.seconds, server_cpu or set(cpus))
    print("  " + ", ".join(f"{k} {v:.1f}/s" for k, v in results["limits"].items()), flush=True)

    mailbox = Mailbox()
    mailbox.start(free_port())
    root = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    try:
        worker_counts = (1,) if args.quick else (1, 2)
        for workers in worker_counts:
            with pinned(client_cpu if workers == 1 else None):
                results["hello"][str(workers)] = hello_rows(
                    args.seconds, workers, server_cpu if workers == 1 else None, root
                )
            hello = results["hello"][str(workers)]
            print(
                f"  Flask hello, {workers}w: {hello['rate']:.0f}/s, "
                f"server CPU {fmt(hello['cpu_ms'], '.2f')} ms/op"
            )
        bench = Bench(root, argon2, mailbox.port)
        bench.provision()
        users = bench.seed_users(1000)
        plan = [(f"{w}w", w, users) for w in worker_counts]
        if not args.quick:
            plan.append(("1w-large", 1, args.users))
        for key, workers, total in plan:
            users = bench.seed_users(total)
            bench.write_config(free_port())
            with gunicorn(
                "idp:create_app()",
                workers=workers,
                env=bench.env,
                cwd=root,
                cpus=server_cpu if workers == 1 else None,
                log=root / "gunicorn.log",
                port=bench.port,
            ) as (master, _port):
                print(f"{key}: {workers} worker(s), {users:,} users", flush=True)
                with pinned(client_cpu if workers == 1 else None):
                    rows = node_rows(
                        bench,
                        mailbox,
                        workers,
                        args.seconds,
                        args.quick,
                        only,
                        master,
                        argon2,
                        server_cpu if workers == 1 else None,
                    )
                run = {"workers": workers, "users": users, "rows": rows}
                if key == "1w-large":  # only what the user table could slow down
                    keep = ("password POST", "login (password only)", "refresh RS256")
                    run["rows"] = {k: v for k, v in rows.items() if k in keep}
                if key == "2w" and (not only or "isolation" in only):
                    print("isolation …", flush=True)
                    results["isolation"] = isolation(bench, args.seconds)
                run["rss_mib"] = worker_rss_mib(master)
                results["runs"][key] = run
        results["storage"] = bench.storage()
    finally:
        mailbox.stop()
        shutil.rmtree(root, ignore_errors=True)
    if not only or "refresh" in only or "node" in only:
        print("node-oidc-provider (1 process on the server's core) …", flush=True)
        results["node"] = node_reference(args.seconds, server_cpu, client_cpu)
    else:
        results["node"] = "skipped: not in --rows"
    results["seconds_total"] = time.monotonic() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    lines = print_report(results)
    results["table"] = lines
    for name in (f"{stamp}.json", "latest.json"):
        (RESULTS / name).write_text(json.dumps(results, indent=2) + "\n")
    if chart(results, RESULTS / "ratios.png"):
        print(f"chart: {RESULTS / 'ratios.png'}")
    else:
        print("chart: skipped (matplotlib not installed: pip install -e '.[bench]')")
    print(f"results: {RESULTS / (stamp + '.json')} ({results['seconds_total']:.0f} s)")


# Certified; installed only when package.json's copy (the PSC stand-in's) is absent.
NODE_PACKAGE = "oidc-provider@8.8.1"
NODE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "idp-bench"


def node_script() -> Path | str:
    """bench/oidc_reference.mjs where it can import oidc-provider: beside the
    repository's node_modules when the suite's package.json installed it, else
    copied into a cache where npm installs it once. A reason string when neither."""
    script = ROOT / "bench" / "oidc_reference.mjs"
    if shutil.which("node") is None:
        return "skipped: node not installed"
    if (ROOT / "node_modules" / "oidc-provider" / "package.json").exists():
        return script
    if not (NODE_CACHE / "node_modules" / "oidc-provider").exists():
        if shutil.which("npm") is None:
            return "skipped: npm not installed (oidc-provider)"
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        if not (NODE_CACHE / "package.json").exists():
            (NODE_CACHE / "package.json").write_text('{"private": true}\n')
        print(f"node-oidc-provider: npm install {NODE_PACKAGE} into {NODE_CACHE} …", flush=True)
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", NODE_PACKAGE],
            cwd=NODE_CACHE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            return f"skipped: npm install {NODE_PACKAGE} failed: {done.stderr.strip()[-200:]}"
    shutil.copy(script, NODE_CACHE / script.name)
    return NODE_CACHE / script.name


def node_reference(seconds: float, server_cpu, client_cpu) -> dict | str:
    """Refresh grants/s of node-oidc-provider (one process on the server's core), driven
    like our refresh row: 8 threads of rotating chains, keep-alive connections."""
    script = node_script()
    if isinstance(script, str):
        return script
    threads, port = 8, free_port()

    def child() -> None:
        if server_cpu is not None:
            os.sched_setaffinity(0, server_cpu)

    process = subprocess.Popen(
        ["node", str(script), str(port), str(threads)],
        cwd=script.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=child,
    )
    try:
        line = ""
        while not line.startswith("{"):
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                return f"skipped: {script.name} exited with {process.returncode}"
        chains: list[str] = json.loads(line)["tokens"]
        client = Client("bench", "bench-secret-bench-secret-bench-secret", "RS256")
        conns = [Conn(port) for _ in range(threads)]

        def refresh_grant(i: int) -> None:
            answer = token(
                conns[i], client, {"grant_type": "refresh_token", "refresh_token": chains[i]}
            )
            chains[i] = answer["refresh_token"]

        with pinned(client_cpu):
            stats = load(refresh_grant, threads=threads, seconds=seconds)
        version = json.loads(
            (script.parent / "node_modules" / "oidc-provider" / "package.json").read_text()
            if (script.parent / "node_modules").exists()
            else (ROOT / "node_modules" / "oidc-provider" / "package.json").read_text()
        )["version"]
        print(
            f"  node-oidc-provider {version} refresh RS256 {stats.rate:8.1f}/s  "
            f"p50 {stats.pct(0.5) or 0:7.1f} ms  p99 {stats.pct(0.99) or 0:7.1f} ms  "
            f"errors {len(stats.errors)}",
            flush=True,
        )
        return {
            "version": version,
            "refresh_rate": stats.rate,
            "p50_ms": stats.pct(0.5),
            "p99_ms": stats.pct(0.99),
            "errors": len(stats.errors),
        }
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
