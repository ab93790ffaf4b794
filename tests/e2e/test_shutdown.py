"""SIGTERM under load (finding "Shutdown drops requests").

gunicorn started as docs/OPERATING.md says (``-c python:idp.gunicorn_conf``), one
worker, a 2-second drain. Four clients keep sending requests, each on a new
connection, from before the SIGTERM until half a second before the drain ends
(a load balancer slow to notice); a health checker polls ``/healthz``; one slow
request starts during the drain and is still sending its body when the
listeners close. Every one of them must get a whole answer, ``/healthz`` must
say "draining" at once, and gunicorn must be gone within drain + graceful time-out.

Plain ``gunicorn --workers 1 --bind … 'idp:create_app()'`` fails this test: it
stops accepting at the SIGTERM, so the requests that follow are refused or
reset, ``/healthz`` never says "draining", and the slow request is refused.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import requests

from idp import gunicorn_conf

from .server import Provider, _bin, _die_with_parent, _stop, _wait_healthy, free_port

DRAIN = 2.0
CLIENTS = 4
# Each client sends at most one request per PACE: a steady stream, yet far fewer than
# ``max_requests``, so the lone worker does not restart during the test (a lone worker
# restarting accepts nothing until its successor has booted: another story).
PACE = 0.02
LOAD_STOPS_BEFORE_DRAIN_ENDS = 0.5
DISCOVERY = "/.well-known/openid-configuration"


@dataclass
class Sent:
    """One request: when it started (seconds after the SIGTERM, negative before) and
    what came of it: ``"ok"`` or what went wrong."""

    at: float
    outcome: str = "pending"


def command(port: int) -> list[str]:
    """The production command (docs/OPERATING.md): address and sizes come from the environment,
    not from ``port`` (a plain gunicorn command line would need it)."""
    return [_bin("gunicorn"), "-c", "python:idp.gunicorn_conf", "idp:create_app()"]


def test_sigterm_drains_then_stops_without_dropping_requests(provider):
    port = free_port()
    node = provider.node("shutdown", port)
    env = {
        **node.env,
        "IDP_BIND": f"127.0.0.1:{port}",
        "IDP_WORKERS": "1",
        "IDP_DRAIN_SECONDS": str(DRAIN),
    }
    with open(node.log_path, "wb") as log:
        process = subprocess.Popen(
            command(port),
            env=env,
            cwd=node.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            _wait_healthy(node, process)
            _secrets_in_urls(node)
            run = _stop_under_load(node, process)
        finally:
            _stop(process)
    print(run.summary())  # the numbers, with ``pytest -s``

    assert run.health_before == "200 ok", run.summary()
    draining_after = run.draining_after
    assert draining_after is not None and draining_after < 0.5, run.summary()
    during_drain = [sent for sent in run.load if sent.at > 0]
    assert len(during_drain) >= 20, run.summary()
    failed = [sent for sent in run.load if sent.outcome != "ok"]
    assert not failed, f"{run.summary()}\nfirst failures: {failed[:5]}"
    assert run.slow.outcome == "ok", run.summary()
    assert run.exit_code == 0, run.summary()
    # The listeners stayed open for the whole drain (the slow request got in at
    # DRAIN - 0.5 s and was served), then gunicorn stopped within its graceful time-out.
    assert DRAIN <= run.exited_after < DRAIN + gunicorn_conf.graceful_timeout, run.summary()
    logged = node.log_path.read_text(errors="replace")
    assert "GET /password/reset/*** HTTP/1.1" in logged
    assert "query-secret" not in logged and "path-secret-token" not in logged
    # Nothing listens any more.
    try:
        requests.get(node.url("/healthz"), timeout=2)
    except requests.ConnectionError:
        pass
    else:
        raise AssertionError("still answering after exit")


def _secrets_in_urls(node: Provider) -> None:
    """The shipped access log writes paths without query strings, reset tokens masked."""
    with requests.get(node.url(DISCOVERY + "?login_hint=query-secret"), timeout=10) as answer:
        assert answer.status_code == 200
    with requests.get(node.url("/password/reset/path-secret-token"), timeout=10) as answer:
        assert answer.status_code == 410


@dataclass
class Run:
    health_before: str
    load: list[Sent]
    health: list[tuple[float, str]]
    slow: Sent
    exited_after: float
    exit_code: int | None

    @property
    def draining_after(self) -> float | None:
        return next((at for at, seen in self.health if at > 0 and seen == "503 draining"), None)

    def summary(self) -> str:
        during = [sent for sent in self.load if sent.at > 0]
        failures: dict[str, int] = {}
        for sent in self.load:
            if sent.outcome != "ok":
                failures[sent.outcome] = failures.get(sent.outcome, 0) + 1
        seen: list[str] = []
        for at, answer in self.health:
            if at > 0 and (not seen or not seen[-1].startswith(answer)):
                seen.append(f"{answer} from {at:.2f} s")
        return (
            f"requests: {len(self.load)} ({len(during)} after the SIGTERM), "
            f"failed: {sum(failures.values())} {failures or ''}; "
            f"/healthz before: {self.health_before}, after the SIGTERM: {seen}; "
            f"slow request from {self.slow.at:.2f} s: {self.slow.outcome}; "
            f"exit {self.exit_code} after {self.exited_after:.2f} s"
        )


def _stop_under_load(node: Provider, process: subprocess.Popen) -> Run:
    issuer = node.issuer
    done = threading.Event()
    load: list[Sent] = []
    health: list[tuple[float, str]] = []
    slow = Sent(at=DRAIN - LOAD_STOPS_BEFORE_DRAIN_ENDS)
    term_at = time.monotonic() + 0.5  # half a second of steady load first
    stop_load_at = term_at + DRAIN - LOAD_STOPS_BEFORE_DRAIN_ENDS

    def client() -> None:
        while (started := time.monotonic()) < stop_load_at:
            sent = Sent(at=started - term_at)
            load.append(sent)
            try:  # a new connection each time: through the accept queue, as most proxies do
                with requests.get(node.url(DISCOVERY), timeout=10) as answer:
                    complete = answer.status_code == 200 and answer.json()["issuer"] == issuer
                    sent.outcome = "ok" if complete else f"HTTP {answer.status_code}"
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                sent.outcome = _failure(exc)
            time.sleep(max(0.0, started + PACE - time.monotonic()))

    def checker() -> None:
        while not done.is_set():
            at = time.monotonic() - term_at
            try:
                with requests.get(node.url("/healthz"), timeout=1) as answer:
                    seen = f"{answer.status_code} {answer.json().get('status')}"
            except Exception as exc:  # noqa: BLE001
                seen = _failure(exc)
            health.append((at, seen))
            time.sleep(0.1)

    def slow_request() -> None:
        """Sent during the drain, its body trickling in until 1 s after the listeners close."""
        time.sleep(max(0.0, term_at + slow.at - time.monotonic()))
        body = b"grant_type=authorization_code&code=nothing&redirect_uri=https%3A%2F%2Fx"
        connection = http.client.HTTPConnection("127.0.0.1", int(node.base_url.split(":")[-1]))
        connection.timeout = 15
        try:
            connection.putrequest("POST", "/token")
            connection.putheader("Content-Type", "application/x-www-form-urlencoded")
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            pieces = 6
            for index in range(pieces):
                connection.send(
                    body[index * len(body) // pieces : (index + 1) * len(body) // pieces]
                )
                time.sleep(1.5 / pieces)
            answer = connection.getresponse()
            error = json.loads(answer.read()).get("error")
            slow.outcome = (
                "ok" if answer.status in (400, 401) and error else f"HTTP {answer.status}"
            )
        except Exception as exc:  # noqa: BLE001
            slow.outcome = _failure(exc)
        finally:
            connection.close()

    with requests.get(node.url("/healthz"), timeout=5) as answer:
        health_before = f"{answer.status_code} {answer.json().get('status')}"
    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    threads += [threading.Thread(target=checker), threading.Thread(target=slow_request)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, term_at - time.monotonic()))
    os.kill(process.pid, signal.SIGTERM)  # to the master only, as docker stop or Kubernetes do
    try:
        exit_code = process.wait(timeout=DRAIN + gunicorn_conf.graceful_timeout + 5)
    except subprocess.TimeoutExpired:
        exit_code = None
    exited_after = time.monotonic() - term_at
    done.set()
    for thread in threads:
        thread.join(timeout=20)
    return Run(health_before, load, health, slow, exited_after, exit_code)


def _failure(exc: Exception) -> str:
    """What a proxy would have seen: refused, reset, closed without an answer, timed out."""
    text = repr(exc)
    for needle, label in (
        ("refused", "refused"),
        ("reset", "reset"),
        ("RemoteDisconnected", "closed without answer"),
        ("BadStatusLine", "closed without answer"),
        ("Timeout", "timed out"),
    ):
        if needle in text:
            return label
    return type(exc).__name__
