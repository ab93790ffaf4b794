"""The Pro Santé Connect stand-in: node-oidc-provider (tests/e2e/psc_standin.mjs) on
two loopback ports (issuer, and the "wallet" host serving authorization and
end-session), and the ``[psc]`` settings that point a provider node at it.

Skipped when Node.js or the npm packages are absent, unless
``IDP_REQUIRE_BROWSER=1`` (CI), where that fails (README, "Tests").
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from .server import REPO_DIR, free_port

SCRIPT = Path(__file__).with_name("psc_standin.mjs")
CLIENT_ID = "portail-e2e"
CLIENT_SECRET = "standin-secret-0123456789-abcdefghij"
DISCOVERY = "/.well-known/wallet-openid-configuration"


@dataclass
class Standin:
    issuer: str
    wallet: str
    process: subprocess.Popen

    def fail_next_token(self) -> None:
        """The next code exchange at the stand-in answers 503 (PSC down mid-login)."""
        requests.post(self.issuer + "/__standin/fail-next-token", timeout=5).raise_for_status()

    def settings(self, idp_base: str) -> dict:
        """``[psc]`` for a node at ``idp_base``: discovery for the issuer-side endpoints,
        the wallet host's pinned (PSC's authorization host is not its issuer's)."""
        return {
            "enabled": True,
            "issuer": self.issuer,
            "discovery_url": self.issuer + DISCOVERY,
            "authorization_endpoint": self.wallet + "/auth",
            "end_session_endpoint": self.wallet + "/session/end",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "timeout_seconds": 2.0,
        }


def _unavailable(reason: str) -> None:
    if os.environ.get("IDP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"IDP_REQUIRE_BROWSER=1 but {reason}: install nodejs and run `npm ci`")
    pytest.skip(f"{reason} (run `npm ci`; IDP_REQUIRE_BROWSER=1 makes this fail)")


def start(idp_port: int, log_path: Path) -> Standin:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed")
    if not (REPO_DIR / "node_modules" / "oidc-provider").is_dir():
        _unavailable("the npm package oidc-provider is not installed")
    issuer_port, wallet_port = free_port(), free_port()
    idp = f"http://127.0.0.1:{idp_port}"
    env = {
        **os.environ,
        "PSC_ISSUER_PORT": str(issuer_port),
        "PSC_WALLET_PORT": str(wallet_port),
        "PSC_CLIENT_ID": CLIENT_ID,
        "PSC_CLIENT_SECRET": CLIENT_SECRET,
        "PSC_REDIRECT_URI": idp + "/login/psc/callback",
        "PSC_POST_LOGOUT_URI": idp + "/login/psc/logged-out",
    }
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the process's life
    process = subprocess.Popen(
        [node, str(SCRIPT)],
        cwd=REPO_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    line = process.stdout.readline().decode()  # blocks until READY (or the process ends)
    if not line.startswith("READY "):
        process.kill()
        process.wait()
        pytest.fail(f"the PSC stand-in did not start: {line!r}\n{log_path.read_text()[-2000:]}")
    _, issuer, wallet, _ = line.split()
    return Standin(issuer, wallet, process)


def stop(standin: Standin) -> None:
    if standin.process.poll() is None:
        os.killpg(standin.process.pid, signal.SIGTERM)
        try:
            standin.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(standin.process.pid, signal.SIGKILL)
            standin.process.wait()
    standin.process.stdout.close()
