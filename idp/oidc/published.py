"""Discovery and JWKS answered from precomputed bytes, in front of Flask.

RPs and their libraries fetch these two documents far more often than anything
else (on every start, every cache expiry, every unknown ``kid``), and they are the
same bytes for every caller. Through Flask each GET would run every request hook
(CSRF, sessions, language, request id, input checks) to copy a dict into JSON.
This WSGI layer answers ``GET``/``HEAD`` of the two exact paths (no query string)
with the bytes built once — discovery once per process, JWKS again only when the
key ring reloads after a rotation — with a strong ``ETag`` (``304`` to
``If-None-Match``), ``Cache-Control`` and the same security and CORS headers as
every other answer (``idp.web``). Anything else goes to Flask, where the two routes
of ``idp.oidc.views`` answer the same documents (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from ..logs import request_id_for
from .discovery import provider_metadata
from .keys import JWKS_MAX_AGE

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks.json"
DISCOVERY_MAX_AGE = 3600


class Document:
    """One JSON document's bytes and ETag, rebuilt when its source changes."""

    def __init__(self, source: Callable[[], dict], max_age: int) -> None:
        self._source = source
        self.cache_control = f"public, max-age={max_age}"
        self._built: tuple[dict | None, bytes, str] = (None, b"", "")

    def current(self) -> tuple[bytes, str]:
        """The body and its ETag, swapped together (one tuple) for concurrent threads."""
        data = self._source()  # the same object until the source changes (KeyRing caches it)
        built_from, body, etag = self._built
        if data is not built_from:
            body = json.dumps(data, separators=(",", ":")).encode()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self._built = (data, body, etag)
        return body, etag


class PublishedDocuments:
    """The WSGI middleware; ``headers``: the security and CORS headers ``idp.web`` sets."""

    def __init__(self, wsgi_app, documents: dict[str, Document], headers: dict):
        self.wsgi_app = wsgi_app
        self.documents = documents
        self.headers = list(headers.items())

    def __call__(self, environ, start_response):
        document = self.documents.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD")
        if document is None or method not in ("GET", "HEAD") or environ.get("QUERY_STRING"):
            return self.wsgi_app(environ, start_response)
        body, etag = document.current()
        headers = [
            ("ETag", etag),
            ("Cache-Control", document.cache_control),
            ("X-Request-Id", request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))),
            *self.headers,
        ]
        if environ.get("wsgi.url_scheme") == "https":
            headers.append(("Strict-Transport-Security", "max-age=31536000"))
        if _matches(environ.get("HTTP_IF_NONE_MATCH", ""), etag):
            start_response("304 Not Modified", headers)
            return [b""]
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [b"" if method == "HEAD" else body]


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: weak comparison, any of a comma-separated list, or ``*``."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


def install(app, keyring, headers: dict) -> None:
    """Wrap ``app.wsgi_app`` (inside ``ProxyFix``: set up before it, it sees the
    client's scheme)."""
    metadata = provider_metadata(app.config["IDP"])
    app.extensions["idp_metadata"] = metadata
    documents = {
        DISCOVERY_PATH: Document(lambda: metadata, DISCOVERY_MAX_AGE),
        JWKS_PATH: Document(keyring.public_jwks, JWKS_MAX_AGE),
    }
    app.wsgi_app = PublishedDocuments(app.wsgi_app, documents, headers)
