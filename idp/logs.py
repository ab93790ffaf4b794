"""Logging with a request id on every line; client addresses only as keyed hashes."""

from __future__ import annotations

import logging
import secrets

from flask import Flask, g, has_request_context, request


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def request_id() -> str | None:
    return g.get("request_id") if has_request_context() else None


def request_id_for(incoming: str) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token (a proxy's), else a fresh one."""
    ok = incoming and len(incoming) <= 64 and incoming.replace("-", "").isalnum()
    return incoming if ok else secrets.token_hex(8)


def init_app(app: Flask) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    handler.addFilter(_RequestIdFilter())
    logger = logging.getLogger("idp")
    if not any(isinstance(f, _RequestIdFilter) for h in logger.handlers for f in h.filters):
        logger.addHandler(handler)
    logger.setLevel(app.config["IDP"]["log_level"])
    logger.propagate = False

    @app.before_request
    def _assign_request_id() -> None:
        g.request_id = request_id_for(request.headers.get("X-Request-Id", ""))

    @app.after_request
    def _echo_request_id(response):
        if rid := g.get("request_id"):
            response.headers["X-Request-Id"] = rid
        return response
