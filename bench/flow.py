"""Throughput of the provider's hot paths, against a real gunicorn (a benchmark, not a test).

Starts its own provider in a temporary directory (SQLite, console mail),
provisions it through the ``idp`` command, serves it with
``gunicorn 'idp:create_app()'`` on a free loopback port, drives it from
``--threads`` client threads and prints requests/s with p50/p95 latency:

* discovery and JWKS GETs;
* the full login: /authorize → /login page → password POST → code → /token;
* /authorize answered from an SSO session (this mints the codes for the next row);
* the authorization_code exchange alone (single use, hence the pre-minted codes);
* the refresh_token grant (rotating: each answer's refresh token is used next).

Passwords are hashed with the real default argon2id parameters, since that is
what production pays; ``--cheap-hash`` uses minimal ones to isolate the rest.
Every scenario stops after ``--seconds`` (or ``--iterations`` per thread).

    .venv/bin/python bench/flow.py [--threads 4] [--seconds 10] [--workers 2] [--cheap-hash]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

CLIENT_ID = "bench-rp"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never contacted: the code is read from Location
USERNAME = "bench.user"
SCOPE = "openid profile email"
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "argon2_parallelism": 1}
MAX_ERRORS = 20  # per scenario: past this the scenario stops (something is broken)


class BenchError(RuntimeError):
    """An answer other than the one the protocol step expects."""


# --- the provider under test ------------------------------------------------------------


@dataclass
class Provider:
    """A provisioned provider served by gunicorn from a temporary directory."""

    workers: int
    argon2: dict
    root: Path = field(init=False)
    url: str = field(init=False)
    password: str = field(init=False)
    client_secret: str = field(init=False)
    _server: subprocess.Popen | None = field(init=False, default=None)
    _tmp: tempfile.TemporaryDirectory | None = field(init=False, default=None)

    def __enter__(self) -> Provider:
        self._tmp = tempfile.TemporaryDirectory(prefix="idp-bench-")
        self.root = Path(self._tmp.name)
        self.url = f"http://127.0.0.1:{free_port()}"
        try:
            self._write_config()
            self._provision()
            self._serve()
        except BaseException:
            self.__exit__(None, None, None)  # never leave a server or a directory behind
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        if self._server is not None:
            self._server.terminate()  # gunicorn: graceful stop of the workers
            try:
                self._server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def config(self) -> Path:
        return self.root / "idp.toml"

    def _write_config(self) -> None:
        q = json.dumps  # a JSON string is a valid TOML basic string
        password = "".join(f"{key} = {value}\n" for key, value in self.argon2.items())
        self.config.write_text(
            f"issuer = {q(self.url)}\n"
            f"secret_key = {q(secrets.token_urlsafe(48))}\n"
            f"instance_dir = {q(str(self.root / 'instance'))}\n"
            f"[database]\nurl = {q('sqlite:///' + str(self.root / 'idp.sqlite3'))}\n"
            f"[keys]\ndir = {q(str(self.root / 'keys'))}\n"
            '[mail]\nbackend = "console"\n'
            f"[password]\n{password}"
            # Codes live long enough to be pre-minted; their lifetime costs nothing per request.
            "[tokens]\ncode_seconds = 600\n"
        )

    def _idp(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [idp_command(), "--config", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise SystemExit(f"idp {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def _provision(self) -> None:
        self._idp("init")
        self.password = f"Bench-{secrets.token_urlsafe(12)}#9a"
        self._idp(
            "user", "add", USERNAME, "--email", "bench@example.org", "--password-stdin",
            stdin=self.password + "\n",
        )  # fmt: skip
        added = self._idp("client", "add", CLIENT_ID, "--redirect-uri", REDIRECT_URI, "--json")
        self.client_secret = json.loads(added.strip().splitlines()[-1])["client_secret"]

    def _serve(self) -> None:
        log = open(self.root / "gunicorn.log", "w")  # noqa: SIM115 - lives as long as the server
        port = urlsplit(self.url).port
        self._server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(self.workers),
                "--bind",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
                "idp:create_app()",
            ],  # fmt: skip
            cwd=self.root,
            env={**os.environ, "IDP_CONFIG": str(self.config)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                break
            try:  # the socket accepts before the workers have loaded the app
                if requests.get(f"{self.url}/healthz", timeout=5).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        tail = (self.root / "gunicorn.log").read_text()[-2000:]
        raise SystemExit(f"gunicorn did not become healthy:\n{tail}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def idp_command() -> str:
    """The ``idp`` console script installed next to this interpreter."""
    script = Path(sys.executable).with_name("idp")
    if not script.exists():
        raise SystemExit(f"no idp command next to {sys.executable}: pip install -e .")
    return str(script)


# --- protocol steps, as a relying party and a browser perform them ----------------------


def new_http() -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # loopback only: never through a configured proxy
    return http


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def expect(response: requests.Response, status: int) -> requests.Response:
    if response.status_code != status:
        body = response.text[:200].replace("\n", " ")
        raise BenchError(f"{response.request.method} {response.url}: {response.status_code} {body}")
    return response


def authorize(http: requests.Session, p: Provider) -> tuple[requests.Response, str, str]:
    """GET /authorize; returns the 302 answer, our state and our PKCE verifier."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": state,
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    answer = http.get(f"{p.url}/authorize", params=params, allow_redirects=False)
    return expect(answer, 302), state, verifier


def code_from(answer: requests.Response, state: str, p: Provider) -> str:
    """The code from a redirect to the RP, after the checks an RP makes (state, RFC 9207 iss)."""
    location = answer.headers.get("Location", "")
    if not location.startswith(REDIRECT_URI):
        raise BenchError(f"expected a redirect to the RP, got {location[:120]!r}")
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    if query.get("state") != state or query.get("iss") != p.url or "code" not in query:
        raise BenchError(f"bad authorization response: {sorted(query)}")
    return query["code"]


def password_login(http: requests.Session, p: Provider) -> tuple[str, str, dict[str, float]]:
    """A fresh browser signs in; returns (code, verifier, seconds per step)."""
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    answer, state, verifier = authorize(http, p)
    t1 = time.perf_counter()
    page = expect(http.get(urljoin(p.url, answer.headers["Location"])), 200)
    t2 = time.perf_counter()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text)
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    if not token or not action:
        raise BenchError("login page without form or csrf_token")
    form = {"csrf_token": token.group(1), "username": USERNAME, "password": p.password}
    answer = expect(
        http.post(urljoin(page.url, unescape(action.group(1))), data=form, allow_redirects=False),
        302,
    )
    t3 = time.perf_counter()
    steps.update({"GET /authorize": t1 - t0, "GET /login": t2 - t1, "POST /login": t3 - t2})
    return code_from(answer, state, p), verifier, steps


def token_request(http: requests.Session, p: Provider, form: dict) -> dict:
    answer = http.post(f"{p.url}/token", data=form, auth=(CLIENT_ID, p.client_secret))
    tokens = expect(answer, 200).json()
    if "access_token" not in tokens:
        raise BenchError(f"token answer without access_token: {sorted(tokens)}")
    return tokens


def exchange(http: requests.Session, p: Provider, code: str, verifier: str) -> dict:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    tokens = token_request(http, p, form)
    if "id_token" not in tokens or "refresh_token" not in tokens:
        raise BenchError(f"code exchange without id_token/refresh_token: {sorted(tokens)}")
    return tokens


# --- scenarios -----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    requests_per_op: int
    latencies: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0


def run(
    name: str,
    op: Callable[[int], dict[str, float] | None],
    *,
    threads: int,
    seconds: float,
    iterations: int,
    requests_per_op: int = 1,
    setup: Callable[[int], None] | None = None,
) -> Result:
    """Call ``op(thread_index)`` from each thread until the time or iteration bound.

    ``setup(thread_index)`` runs first in every thread, before the clock starts.
    """
    result = Result(name, requests_per_op)
    lock = threading.Lock()
    stop = threading.Event()
    clock: dict[str, float] = {}

    def start_clock() -> None:  # runs once, after every setup, before any thread goes on
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + seconds

    ready = threading.Barrier(threads + 1, action=start_clock)

    def worker(index: int) -> None:
        try:
            if setup is not None:
                setup(index)
        except Exception as exc:  # noqa: BLE001 - reported; the barrier must still be reached
            with lock:
                result.errors.append(f"setup: {exc!r}")
            stop.set()
        ready.wait()
        done = 0
        while not stop.is_set() and time.perf_counter() < clock["deadline"]:
            if iterations and done >= iterations:
                return
            t0 = time.perf_counter()
            try:
                steps = op(index)
            except StopIteration:  # this thread has no more work (codes used up)
                return
            except Exception as exc:  # noqa: BLE001 - counted and shown, never fatal
                with lock:
                    result.errors.append(str(exc) if isinstance(exc, BenchError) else repr(exc))
                    if len(result.errors) >= MAX_ERRORS:
                        stop.set()
                continue
            elapsed = time.perf_counter() - t0
            done += 1
            with lock:
                result.latencies.append(elapsed)
                for step, value in (steps or {}).items():
                    result.steps.setdefault(step, []).append(value)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    ready.wait()
    for thread in pool:
        thread.join()
    result.elapsed = time.perf_counter() - clock["start"]
    return result


@dataclass
class Scenario:
    name: str
    op: Callable[[int], dict[str, float] | None]
    requests_per_op: int = 1
    setup: Callable[[int], None] | None = None


def scenarios(p: Provider, threads: int) -> list[Scenario]:
    """What to measure, in the order it runs (later rows use what earlier rows minted)."""
    https = [new_http() for _ in range(threads)]
    minted: list[list[tuple[str, str]]] = [[] for _ in range(threads)]
    refresh: list[str | None] = [None] * threads

    def get(path: str) -> Callable[[int], None]:
        def op(i: int) -> None:
            expect(https[i].get(p.url + path), 200).json()

        return op

    def full_login(i: int) -> dict[str, float]:
        https[i].cookies.clear()  # a fresh browser each time: no SSO session
        code, verifier, steps = password_login(https[i], p)
        t0 = time.perf_counter()
        exchange(https[i], p, code, verifier)
        steps["POST /token"] = time.perf_counter() - t0
        return steps

    def sign_in(i: int) -> None:
        https[i].cookies.clear()
        password_login(https[i], p)

    def sso_authorize(i: int) -> None:
        answer, state, verifier = authorize(https[i], p)
        minted[i].append((code_from(answer, state, p), verifier))

    def code_exchange(i: int) -> None:
        if not minted[i]:
            raise StopIteration
        tokens = exchange(https[i], p, *minted[i].pop())
        refresh[i] = refresh[i] or tokens["refresh_token"]

    def refresh_grant(i: int) -> None:
        if refresh[i] is None:
            raise BenchError("no refresh token for this thread (code exchange failed)")
        tokens = token_request(
            https[i], p, {"grant_type": "refresh_token", "refresh_token": refresh[i]}
        )
        refresh[i] = tokens["refresh_token"]  # rotated: the old one is now dead

    return [
        Scenario("GET discovery", get("/.well-known/openid-configuration")),
        Scenario("GET jwks.json", get("/jwks.json")),
        Scenario("full login + code exchange", full_login, requests_per_op=4),
        Scenario("authorize from SSO session", sso_authorize, setup=sign_in),
        Scenario("token: authorization_code", code_exchange),
        Scenario("token: refresh_token", refresh_grant),
    ]


# --- report --------------------------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000:.1f}"


def print_table(results: list[Result]) -> None:
    header = f"{'scenario':<30} {'ops':>6} {'ops/s':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}"
    print(header + "  errors")
    print("-" * (len(header) + 8))
    for r in results:
        rate = len(r.latencies) / r.elapsed if r.elapsed else 0.0
        print(
            f"{r.name:<30} {len(r.latencies):>6} {rate:>8.1f} {rate * r.requests_per_op:>8.1f} "
            f"{ms(r.latencies, 0.5):>8} {ms(r.latencies, 0.95):>8}  {len(r.errors)}"
        )
        for step, values in r.steps.items():
            print(f"  {step:<28} {'':>24} {ms(values, 0.5):>8} {ms(values, 0.95):>8}")
    for r in results:
        if r.errors:
            print(f"\n{r.name}: first error: {r.errors[0]}")


def machine() -> str:
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, requests {requests.__version__}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--seconds", type=float, default=10, help="per scenario (default 10)")
    parser.add_argument("--iterations", type=int, default=0, help="per thread cap (0: none)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--cheap-hash", action="store_true", help="minimal argon2 cost, to isolate the rest"
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.seconds <= 0 or args.workers < 1 or args.iterations < 0:
        parser.error("threads and workers must be ≥ 1, seconds > 0, iterations ≥ 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from idp.config import DEFAULTS  # the parameters production pays unless configured

    defaults = {key: DEFAULTS["password"][key] for key in CHEAP_ARGON2}
    argon2 = CHEAP_ARGON2 if args.cheap_hash else defaults
    print(f"machine: {machine()}")
    load_before = os.getloadavg()[0]  # other work on the machine skews every number
    print(
        f"argon2id: time_cost={argon2['argon2_time_cost']} "
        f"memory={argon2['argon2_memory_kib']} KiB parallelism={argon2['argon2_parallelism']}"
        + (" (--cheap-hash)" if args.cheap_hash else " (idp defaults)")
    )
    with Provider(args.workers, argon2) as provider:
        print(
            f"server: gunicorn --workers {args.workers} at {provider.url}; "
            f"client threads: {args.threads}, {args.seconds:g} s per scenario\n"
        )
        results = [
            run(
                s.name,
                s.op,
                threads=args.threads,
                seconds=args.seconds,
                iterations=args.iterations,
                requests_per_op=s.requests_per_op,
                setup=s.setup,
            )
            for s in scenarios(provider, args.threads)
        ]
    print_table(results)
    print(f"\nload average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")
    if any(r.errors for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
