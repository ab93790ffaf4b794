"""E-mail transport: SMTP through Flask-Mail, or the log for ``backend = "console"``.

A stalled mail server must not hold the request (SECURITY.md, "Resilience"):
each socket operation has ``[mail] timeout_seconds``, and the whole hand-over
runs in a helper thread the request waits for at most that long.
"""

from __future__ import annotations

import email.policy
import logging
import smtplib
import threading

from flask import Flask, current_app
from flask_mail import Connection, Message

from . import DeliveryError, DeliverySlow

log = logging.getLogger("idp.delivery")


class _TimedConnection(Connection):
    """Flask-Mail's connection, with a socket time-out (Flask-Mail sets none)."""

    def __init__(self, mail, timeout: float):
        super().__init__(mail)
        self.timeout = timeout

    def __exit__(self, exc_type, exc_value, tb) -> None:
        """QUIT, and close the socket even when QUIT fails (a server gone mid-session)."""
        try:
            super().__exit__(exc_type, exc_value, tb)
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            if self.host is not None:
                self.host.close()

    def configure_host(self) -> smtplib.SMTP:
        smtp_class = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = smtp_class(self.mail.server, self.mail.port, timeout=self.timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


class _Message(Message):
    """Flask-Mail's message, serialised without folding its headers.

    Python's header folding (``email.policy.SMTP``, which Flask-Mail sets) can put
    the space between two encoded words at the fold, where decoders drop it (RFC 2047
    §6.2): "rattaché à Pro Santé Connect" reached mailboxes as "rattachéà". Our
    headers are short: one line each (RFC 5322 allows 998 characters) keeps every
    space. ``_message`` is where Flask-Mail 0.10 sets the policy."""

    def _message(self):
        message = super()._message()
        message.policy = _UNFOLDED
        return message


_UNFOLDED = email.policy.SMTP.clone(max_line_length=998)


def send_mail(to: str, subject: str, text: str, html: str | None = None) -> None:
    """Hand one message to the configured transport within ``[mail] timeout_seconds``.

    Raises ``DeliveryError`` when the server refused or failed, ``DeliverySlow``
    when it did not answer in time (the message may still leave).
    """
    conf = current_app.config["IDP"]["mail"]
    if conf["backend"] == "console":
        log.warning("mail to %s — %s\n%s", to, subject, text)
        return
    message = _Message(subject=subject, recipients=[to], body=text, html=html)
    outcome: dict[str, BaseException | bool] = {}
    app = current_app._get_current_object()
    worker = threading.Thread(
        target=_hand_over, args=(app, message, conf["timeout_seconds"], outcome), daemon=True
    )
    worker.start()
    worker.join(conf["timeout_seconds"])
    if outcome.get("sent"):
        return
    error = outcome.get("error")
    if error is None or isinstance(error, TimeoutError):
        log.error("mail delivery timed out after %s s", conf["timeout_seconds"])
        raise DeliverySlow("mail")
    log.error("mail delivery failed: %s", type(error).__name__)
    raise DeliveryError("mail") from error


def _hand_over(app: Flask, message: Message, timeout: float, outcome: dict) -> None:
    with app.app_context():
        try:
            with _TimedConnection(app.extensions["mail"], timeout) as connection:
                connection.send(message)
        except (smtplib.SMTPException, OSError) as exc:  # TimeoutError is an OSError
            outcome["error"] = exc
        else:
            outcome["sent"] = True
