"""gunicorn settings for production: ``gunicorn -c python:idp.gunicorn_conf 'idp:create_app()'``.

Environment: ``IDP_BIND`` (``127.0.0.1:8000``; several: comma-separated),
``IDP_WORKERS`` (the CPUs this process may use, at least 2), ``IDP_DRAIN_SECONDS`` (10).
Options given on the command line override this file.

**Stopping without dropping requests.** gunicorn's own answer to SIGTERM is to
stop accepting at once: connections already waiting in the listen backlog, and
those the load balancer keeps sending until it notices, are reset (a 502 at the
proxy). Here SIGTERM to the master first *drains* for ``IDP_DRAIN_SECONDS``:
the workers keep accepting and serving while ``/healthz`` answers 503
``{"status": "draining"}``, so that the load balancer's health check takes the
node out of rotation; only then does gunicorn's graceful stop begin (listeners
closed, requests in flight finished within ``graceful_timeout``). A second
SIGTERM ends the drain at once (the graceful stop still finishes the requests in
flight); SIGINT or SIGQUIT stop at once, as always. Point the load balancer's
health check at ``/healthz`` and make the drain longer than the time it needs
to see a node as down (interval × unhealthy threshold).

Send SIGTERM to the master only: a worker that gets it stops accepting at once.
That is what ``docker stop`` and Kubernetes do; under systemd set
``KillMode=mixed``. The supervisor's stop time-out (``docker stop -t``,
``terminationGracePeriodSeconds``, ``TimeoutStopSec``) must exceed
``IDP_DRAIN_SECONDS`` + ``graceful_timeout`` (10 + 15 s by default).

How the workers know: ``on_starting`` (in the master, before any worker is
forked) makes a private directory and names a flag file in it through
``$IDP_DRAIN_FILE``, which every worker inherits; the master creates the file
when the drain begins and ``/healthz`` (``idp.web``) checks whether it exists.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time

from gunicorn.glogging import Logger

DRAIN_FILE_VARIABLE = "IDP_DRAIN_FILE"  # read by idp.web.healthz


def _number(name: str, default: float, *, minimum: float, kind: type = int):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"${name} must be a number >= {minimum}, not {raw!r}")
    return value


def _usable_cpus() -> int:
    """CPUs this process may run on (a container's cpuset, ``taskset``), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


# -- listening ---------------------------------------------------------------------

# Loopback by default: the provider belongs behind a TLS-terminating proxy. Several
# addresses are separated by commas.
bind = [address.strip() for address in os.environ.get("IDP_BIND", "127.0.0.1:8000").split(",")]

# ``forwarded_allow_ips`` is not set here: the client's address and scheme are
# taken from X-Forwarded-* by the application itself, only when ``trusted_proxies``
# says so (werkzeug's ProxyFix). gunicorn keeps its default (loopback, or
# ``$FORWARDED_ALLOW_IPS``) for X-Forwarded-Proto.

# -- workers -----------------------------------------------------------------------

# One worker per usable CPU, not gunicorn's usual 2 × CPUs + 1: checking a password
# (argon2id with the default ``[password]`` costs) holds 64 MiB and the cores for a
# noticeable time, so more workers than cores only queue the checks while they
# multiply the memory. At least two: a lone worker that restarts (``max_requests``
# below) leaves nobody accepting for a few seconds, until its successor has booted.
workers = _number("IDP_WORKERS", max(2, _usable_cpus()), minimum=1)

# Threads, so that a request waiting on the mail server (``[mail] timeout_seconds``,
# 10 s), the SMS gateway (5 s), the database or a password check holds one thread,
# not a whole worker and every request queued behind it.
worker_class = "gthread"
threads = 8

# Password checks run in a pool of ``IDP_HASH_THREADS`` threads per worker (1),
# ``IDP_HASH_NICE`` steps (10, 0–19) below the request threads (idp/passwords.py).
# A login waiting for the pool holds its request thread asleep; the quick requests
# (token, discovery, pages) keep the other threads and, under a burst of logins,
# the cores: the scheduler gives them the CPU before the hashes. Memory for
# hashing: workers × IDP_HASH_THREADS × 64 MiB (2 workers: 128 MiB). Logins per
# second stay bound by the hash (one check with parallelism 4 uses every core of
# a small node); raise the pool only on nodes with more cores than workers × 4.
# IDP_HASH_THREADS=0 hashes in the request threads, at their priority.
hash_threads = _number("IDP_HASH_THREADS", 1, minimum=0)
hash_nice = _number("IDP_HASH_NICE", 10, minimum=0)
if hash_nice > 19:
    raise ValueError(f"$IDP_HASH_NICE must be between 0 and 19, not {hash_nice}")


def post_worker_init(worker) -> None:
    if hash_threads:
        from idp import passwords

        passwords.start_hash_pool(hash_threads, hash_nice)


# The gthread worker tells the master it is alive from its main loop, not from
# the request threads: this kills a worker whose loop is stuck, not a slow request.
timeout = 30

# After the drain: how long requests in flight may take to finish once the
# listeners are closed. The slowest request waits at most for the mail server
# (10 s) plus a password check; then the worker is killed.
graceful_timeout = 15

# Longer than the idle time-out of the proxy's upstream connections (nginx and
# AWS ALB: 60 s), so that the proxy, never gunicorn, closes an idle connection:
# otherwise gunicorn may close one just as the proxy sends a request on it (a
# 502). An idle connection costs a gthread worker no thread, only a socket.
keepalive = 75

# Recycle each worker now and then, against any slow leak. Not often: a
# recycling worker stops answering until its successor has booted (seconds), and
# at token rates a thousand requests go by in a second or two. The 64 MiB of a
# hash are mapped and unmapped whole (glibc's mmap threshold), so hashing does
# not fragment the heap. The jitter keeps workers from restarting together.
max_requests = 50000
max_requests_jitter = 5000


# -- access log --------------------------------------------------------------------

# Secrets travel in URLs: password reset links carry their token in the path
# (``/password/reset/<token>``), query strings carry ``login_hint``,
# ``id_token_hint`` and the like. The access log therefore writes the path only
# (``%(U)s``, never the request line ``%(r)s`` nor ``%(q)s``), with reset tokens
# masked; no Referer (a whole URL of another page), and no client address: the
# application logs it only as a keyed hash (``idp.audit``), and ``rid=`` (the
# X-Request-Id also on the application's log lines) links both logs.
_SECRET_PATH = re.compile(r"^(/password/reset/)[^/]+")


class AccessLogWithoutSecrets(Logger):
    """gunicorn's logger whose request atoms carry no query string nor reset token,
    whatever ``access_log_format`` says."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        path = _SECRET_PATH.sub(r"\1***", atoms.get("U") or "")
        atoms["U"] = path
        atoms["r"] = f"{atoms.get('m')} {path} {atoms.get('H')}"
        atoms["q"] = "-"
        return atoms


logger_class = AccessLogWithoutSecrets
accesslog = "-"
access_log_format = (
    '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms %(p)s rid=%({x-request-id}o)s "%(a)s"'
)


# -- draining on SIGTERM -----------------------------------------------------------

DRAIN_SECONDS = _number("IDP_DRAIN_SECONDS", 10.0, minimum=0, kind=float)


class _Drain:
    """Wraps the arbiter's ``handle_term``. The master's loop calls it on SIGTERM;
    it returns at once, so that loop keeps reaping, replacing and watching the
    workers during the drain, and a timer sends the second SIGTERM that ends it."""

    def __init__(self, server, flag: str, seconds: float):
        self.server = server
        self.flag = flag
        self.seconds = seconds
        self.graceful_stop = server.handle_term  # gunicorn's: StopIteration → halt()
        self.started: float | None = None
        self.timer: threading.Timer | None = None

    def handle_term(self) -> None:
        if self.started is None and self.seconds > 0:
            self.started = time.monotonic()
            self.raise_flag()
            self.timer = threading.Timer(self.seconds, os.kill, (self.server.pid, signal.SIGTERM))
            self.timer.daemon = True
            self.timer.start()
            self.server.log.info(
                "Draining for %g s: /healthz answers 503, workers keep serving "
                "(SIGTERM again to stop now)",
                self.seconds,
            )
            return
        self.cancel()
        if self.started is not None:
            self.server.log.info(
                "Drained for %.1f s: closing the listeners", time.monotonic() - self.started
            )
        self.graceful_stop()

    def raise_flag(self) -> None:
        """Create the flag file; an error is logged, never raised (the master's loop
        would stop at once, dropping requests: what the drain is there to avoid)."""
        try:
            # A /tmp cleaner may have removed the directory of a server up for weeks.
            _private_directory(os.path.dirname(self.flag), self.server)
            with open(self.flag, "w"):
                pass
        except OSError as exc:
            self.server.log.error("/healthz cannot say draining: %s", exc)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()


def _private_directory(directory: str, server) -> None:
    """``directory`` exists, is not a link, and only we (or the workers' ``user``) may
    use it: nobody else on the host can then make /healthz say "draining"."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid not in (os.geteuid(), server.cfg.uid)
        or info.st_mode & 0o077
    ):
        raise PermissionError(f"{directory} is not a private directory of ours")
    if os.geteuid() == 0 and info.st_uid != server.cfg.uid:
        os.chown(directory, server.cfg.uid, server.cfg.gid)  # workers run as ``user``


_drain: _Drain | None = None


def on_starting(server) -> None:
    """Master, before the first worker is forked: the drain flag's private place."""
    global _drain
    directory = tempfile.mkdtemp(prefix="idp-drain-")  # 0700
    _private_directory(directory, server)
    flag = os.path.join(directory, "draining")
    os.environ[DRAIN_FILE_VARIABLE] = flag
    # Workers are long-lived servers: notices leave from a background thread, after
    # the answer, and are retried there (idp.delivery.outbox).
    os.environ["IDP_BACKGROUND_DELIVERY"] = "1"
    _drain = _Drain(server, flag, DRAIN_SECONDS)
    server.handle_term = _drain.handle_term
    server.log.info(
        "SIGTERM drains for %g s ($IDP_DRAIN_SECONDS) before the graceful stop", DRAIN_SECONDS
    )


def on_exit(server) -> None:
    if _drain is not None:
        _drain.cancel()
        shutil.rmtree(os.path.dirname(_drain.flag), ignore_errors=True)
