"""E-mail transport: SMTP through Flask-Mail, or the log for ``backend = "console"``."""

from __future__ import annotations

import logging
import smtplib

from flask import current_app
from flask_mail import Message

from ..extensions import mail
from . import DeliveryError

log = logging.getLogger("idp.delivery")


def send_mail(to: str, subject: str, text: str, html: str | None = None) -> None:
    """Hand one message to the configured transport; raise ``DeliveryError`` on failure."""
    if current_app.config["IDP"]["mail"]["backend"] == "console":
        log.warning("mail to %s — %s\n%s", to, subject, text)
        return
    message = Message(subject=subject, recipients=[to], body=text, html=html)
    try:
        mail.send(message)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        log.error("mail delivery failed: %s", type(exc).__name__)
        raise DeliveryError("mail") from exc
