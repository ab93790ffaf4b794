"""The systems at the provider's edge, for real: an SMTP server and an SMS gateway.

``Mailbox`` is an aiosmtpd server on loopback; ``SmsGateway`` an HTTP server in
a thread that takes ``POST {"to", "text"}`` the way DESIGN.md describes the
gateway. Tests read codes and links from what they received, as a user reads
an e-mail or an SMS. Some e-mails leave the provider from a background thread
(the lost-password link, so that the answer's timing says nothing), hence the
waiting look-ups.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WAIT = 10.0  # seconds a look-up waits for a message before failing the test
SMS_TOKEN = "gw-e2e-token"  # the gateway's API key, ``[sms] token`` in the provider's config


def code_in(text: str) -> str:
    """The 6-digit code in a message, read like a user would."""
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


def _wait_for(find, what: str):
    deadline = time.monotonic() + WAIT
    while (found := find()) is None:
        assert time.monotonic() < deadline, f"nothing received: {what}"
        time.sleep(0.02)
    return found


class Mailbox:
    """aiosmtpd handler: every accepted message, parsed."""

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self._controller = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"

    def start(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.port = port
        self._controller = Controller(self, hostname="127.0.0.1", port=port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, seen: int = 0) -> EmailMessage:
        """The first message to ``address`` beyond the ``seen`` ones already there."""

        def find():
            received = self.to(address)
            return received[seen] if len(received) > seen else None

        return _wait_for(find, f"e-mail #{seen + 1} to {address}")

    @staticmethod
    def text(message: EmailMessage) -> str:
        return message.get_body(preferencelist=("plain",)).get_content()

    def code_for(self, address: str) -> str:
        """The code in the latest e-mail to ``address`` (sent before the page was shown)."""
        received = self.to(address)
        assert received, f"no e-mail to {address}"
        return code_in(self.text(received[-1]))


@dataclass
class Delivery:
    """One request as the gateway saw it, and the status it answered."""

    path: str
    headers: dict[str, str]
    body: dict
    status: int


class SmsGateway:
    """A fake SMS provider; ``status`` and ``delay`` set how it answers next."""

    def __init__(self, token: str):
        self.token = token
        self.requests: list[Delivery] = []
        self.status = 200
        self.delay = 0.0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1/messages"

    def reset(self) -> None:
        self.status, self.delay = 200, 0.0

    def start(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, delay = gateway.status, gateway.delay
                if self.headers.get("Authorization") != f"Bearer {gateway.token}":
                    status = 401  # like a real gateway without the right API key
                gateway.requests.append(
                    Delivery(self.path, dict(self.headers), json.loads(body), status)
                )
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the provider hung up on a slow answer: that is the point of the delay

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def delivered_to(self, phone: str) -> list[Delivery]:
        return [r for r in self.requests if r.body.get("to") == phone and r.status < 300]

    def code_for(self, phone: str) -> str:
        """The code of the latest SMS the gateway accepted for ``phone``."""
        received = self.delivered_to(phone)
        assert received, f"no SMS delivered to {phone}"
        return code_in(received[-1].body["text"])
