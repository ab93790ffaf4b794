"""Debian's Chromium through Playwright, never a downloaded browser.

Never ``playwright install``: the browser tests use ``/usr/bin/chromium`` and
are skipped without it, unless ``IDP_REQUIRE_BROWSER=1`` (CI), where that fails.
Screenshots go to ``test-artifacts/screenshots/`` (git-ignored) for people to
look at; a failing test leaves ``failure-<test>.png`` there.

The RPs' redirect URIs (``https://rp.example/callback``…) are answered by
``RelyingPartyPages``, a real HTTPS server on loopback: Chromium resolves every
``*.example`` name to it (``--host-resolver-rules``) and accepts its
self-signed certificate. ``page.route`` cannot stand in for it: Playwright does
not route the request a redirect leads to, so the provider's 302 to the RP
would fail name resolution (Chromium then retries a second later, by itself).
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .server import REPO_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = REPO_DIR / "test-artifacts" / "screenshots"
FRENCH_CATALOG = REPO_DIR / "idp" / "translations" / "fr" / "LC_MESSAGES" / "messages.mo"
RP_PAGE = (
    "<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>RP</title>"
    "<link rel='icon' href='data:,'></head><p>retour à l'application</p></html>"
).encode()


class RelyingPartyPages:
    """``https://*.example/…`` for Chromium: answers every GET with a plain page and
    keeps the full URLs it was asked for in ``arrived``."""

    def __init__(self):
        self.arrived: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self._server.server_port

    def start(self, workdir: Path) -> None:
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                pages.arrived.append(f"https://{self.headers['Host']}{self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(RP_PAGE)))
                self.end_headers()
                self.wfile.write(RP_PAGE)

            def log_message(self, *args):
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*_self_signed(workdir, "rp.example"))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _self_signed(workdir: Path, name: str) -> tuple[str, str]:
    """A throw-away certificate for ``*.example`` (files for ``load_cert_chain``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("*.example")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "rp.crt", workdir / "rp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@contextlib.contextmanager
def launch_chromium(rp_pages: RelyingPartyPages) -> Iterator:
    from playwright.sync_api import sync_playwright

    resolve = f"--host-resolver-rules=MAP *.example 127.0.0.1:{rp_pages.port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, resolve]
        )
        try:
            yield browser
        finally:
            browser.close()


class BrowserSession:
    """One browser profile (context) in French with one tab; ``arrived`` lists the
    RP pages this session reached (``https://rp.example/callback?code=…``)."""

    def __init__(self, chromium, rp_pages: RelyingPartyPages, locale: str = "fr-FR"):
        self.context = chromium.new_context(locale=locale, ignore_https_errors=True)
        self.page = self.context.new_page()
        self._rp_pages, self._seen = rp_pages, len(rp_pages.arrived)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    @property
    def arrived(self) -> list[str]:
        return self._rp_pages.arrived[self._seen :]

    @staticmethod
    def at_rp(url: str) -> bool:
        """For ``page.wait_for_url``: any RP page."""
        return (urlsplit(url).hostname or "").endswith(".example")

    def screenshot(self, name: str) -> Path:
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def close(self, failed_as: str | None = None) -> None:
        try:
            if failed_as:
                self.screenshot(f"failure-{failed_as}.png")
        finally:
            self.context.close()
