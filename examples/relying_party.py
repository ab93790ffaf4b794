"""A relying party (RP) for the idp provider that is safe to copy: sign in, step up, sign out.

This is the integration example for health-app developers. It uses Authlib's
Flask client with discovery, the authorization code flow with PKCE (S256), and
shows what an RP must do. The lines marked ``WHY`` are the ones to keep when
you copy it:

* **Server-side sessions.** The browser's cookie holds only a random, opaque
  session id; the ID token, the userinfo answer (personal data) and the
  authorization state stay on the server. Logging out deletes the server-side
  record, so a cookie copied before logout (by malware, from a shared
  computer, from a proxy log) is worth nothing afterwards. The cookie is
  ``HttpOnly`` (no script can read it), ``SameSite=Lax`` (not sent with
  cross-site POSTs) and ``Secure`` when the RP's URL is https.
* **Logout is a POST with a CSRF token.** A GET that logs out can be triggered
  by any page on the web (a link, an ``<img>``); since this RP sends a valid
  ``id_token_hint``, the provider would sign the user out without asking.
  ``GET /logout`` only shows a confirmation form.
* **The step-up is tied to the login it came from.** The wanted ``acr`` is
  kept with that authorization request (its ``state``), checked against the
  ID token that request produced (signature against the provider's JWKS,
  ``iss``, ``aud``, ``exp``, ``nonce``: Authlib checks them), and the result
  *replaces* the session's login. "Is this session allowed to see patient
  data?" is answered from that ID token's ``acr`` only.
* **Back-channel logout** (OpenID Connect Back-Channel Logout 1.0): the
  provider POSTs a signed Logout Token to ``/backchannel-logout`` when the user
  signs out elsewhere; every session of that provider session (``sid``) or
  user (``sub``) ends here too.
* **private_key_jwt** (RFC 7523): with ``--private-key FILE`` the RP proves
  itself at the token endpoint with a short-lived assertion signed by its own
  key instead of a shared secret; it publishes the public half at
  ``/jwks.json`` and prints it with ``--print-jwks``.

And on the way back from the provider: ``state`` (Authlib), ``iss`` (RFC 9207,
checked here), ``nonce`` and the ID token (Authlib), ``acr`` (here) and the
``sub`` of the userinfo answer (OpenID Connect Core 1.0 §5.3.4, here).

Run the provider first (``idp demo``, from the repository root), then::

    python examples/relying_party.py     # → http://127.0.0.1:5001

Settings come from the environment: ``RP_ISSUER`` (default
``http://127.0.0.1:5000``), ``RP_CLIENT_ID`` (``demo-rp``), ``RP_CLIENT_SECRET``
(else read from ``instance/demo-rp.secret``, written by ``idp demo``),
``RP_PRIVATE_KEY`` (a PEM file: use private_key_jwt instead of the secret),
``RP_URL`` (``http://127.0.0.1:5001``: where browsers reach this RP; https
makes the cookie ``Secure``), ``RP_METADATA_URL`` (default: the issuer's
``/.well-known/openid-configuration``). See examples/README.md.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from flask import Flask, jsonify, redirect, render_template_string, request, session, url_for
from flask.sessions import SessionInterface, SessionMixin
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey
from joserfc.jws import JWSRegistry
from markupsafe import Markup
from werkzeug.datastructures import CallbackDict

SCOPE = "openid profile email phone"
ACR_2FA = "urn:idp:acr:2fa"
SHOWN_CLAIMS = ("sub", "acr", "amr", "auth_time", "sid")
COOKIE_NAME = "rp_session"
SESSION_IDLE_SECONDS = 30 * 60  # a health app: an unattended screen signs out
SESSION_MAX_SECONDS = 8 * 3600  # and no session outlives a working day
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LEEWAY_SECONDS = 60  # clock skew tolerated between the provider and this RP
JWKS_REFRESH_SECONDS = 60  # at most one forced JWKS download a minute (see _provider_keys)


@dataclass(frozen=True)
class Settings:
    issuer: str = "http://127.0.0.1:5000"
    client_id: str = "demo-rp"
    rp_url: str = "http://127.0.0.1:5001"
    client_secret: str | None = None
    private_key: RSAKey | ECKey | None = None
    metadata_url: str | None = None

    @property
    def secure(self) -> bool:
        return urlsplit(self.rp_url).scheme == "https"

    @classmethod
    def from_env(cls, private_key_file: str | None = None) -> Settings:
        issuer = os.environ.get("RP_ISSUER", cls.issuer)
        key_file = private_key_file or os.environ.get("RP_PRIVATE_KEY")
        return cls(
            issuer=issuer,
            client_id=os.environ.get("RP_CLIENT_ID", cls.client_id),
            rp_url=os.environ.get("RP_URL", cls.rp_url).rstrip("/"),
            # private_key_jwt needs no secret: a key file replaces it.
            client_secret=None if key_file else client_secret(),
            private_key=load_private_key(key_file) if key_file else None,
            metadata_url=os.environ.get("RP_METADATA_URL"),
        )


def client_secret() -> str:
    """The secret from ``$RP_CLIENT_SECRET``, else the file ``idp demo`` wrote."""
    if secret := os.environ.get("RP_CLIENT_SECRET"):
        return secret
    path = Path("instance/demo-rp.secret")
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        sys.exit(f"no client secret: set RP_CLIENT_SECRET or run 'idp demo' first ({path})")


# -- private_key_jwt (RFC 7523) --------------------------------------------------


def load_private_key(path: str) -> RSAKey | ECKey:
    """An RSA or EC (P-256) private key in PEM, e.g. from
    ``openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out rp-key.pem``."""
    pem = Path(path).read_bytes()
    for key_class in (RSAKey, ECKey):
        try:
            key = key_class.import_key(pem)
        except (JoseError, ValueError, TypeError):
            continue
        if key.is_private:
            # WHY a kid: the provider picks the right key of our JWKS by it,
            # which lets us publish the next key before we switch to it.
            key.ensure_kid()
            return key
    sys.exit(f"{path}: not an RSA or EC private key in PEM")


def assertion_alg(key: RSAKey | ECKey) -> str:
    return "RS256" if isinstance(key, RSAKey) else "ES256"


def public_jwks(key: RSAKey | ECKey) -> dict:
    """What the operator registers (``idp client add … --jwks FILE``): public half only."""
    public = key.as_dict(private=False)
    return {"keys": [{**public, "use": "sig", "alg": assertion_alg(key)}]}


class ShortLivedPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's private_key_jwt with a short ``exp`` and our ``kid``.

    The assertion carries ``iss`` = ``sub`` = client_id, ``aud`` = the token
    endpoint, ``iat``, ``exp`` and a random ``jti`` (RFC 7523 §3; Authlib sets
    them). WHY a short life: an assertion that leaks (a log, a proxy) must not
    be replayable for an hour, Authlib's default; the provider also refuses a
    ``jti`` it has seen.
    """

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(
            auth.client_secret,  # the joserfc private key (see create_app)
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            alg=self.alg,
            header={"kid": auth.client_secret.kid},
            expires_in=60,
        )


# -- server-side sessions --------------------------------------------------------


class SessionStore:
    """Sessions kept in this process's memory, keyed by a random opaque id.

    WHY server-side: what the browser holds is only a key to a record here, so
    ending the record ends the session for every copy of the cookie. With
    several processes, put the same interface over a shared store (Redis, a
    database table); the example runs one process.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._records: dict[str, dict] = {}

    def load(self, sid: str) -> dict | None:
        now = time.time()
        with self._lock:
            record = self._records.get(sid)
            if record is None:
                return None
            if now - record["seen"] > SESSION_IDLE_SECONDS or now > record["expires"]:
                del self._records[sid]
                return None
            record["seen"] = now
            return json.loads(json.dumps(record["data"]))  # a copy: requests do not share it

    def create(self, data: dict) -> str:
        sid = secrets.token_urlsafe(32)  # 256 random bits: cannot be guessed
        now = time.time()
        with self._lock:
            self._purge(now)
            self._records[sid] = {"data": data, "seen": now, "expires": now + SESSION_MAX_SECONDS}
        return sid

    def update(self, sid: str, data: dict) -> bool:
        """Write back a session only if it still exists.

        WHY: a request that was in flight while the user logged out (or while
        a back-channel logout arrived) must not bring the session back.
        """
        with self._lock:
            record = self._records.get(sid)
            if record is None:
                return False
            record["data"] = data
            return True

    def delete(self, sid: str) -> None:
        with self._lock:
            self._records.pop(sid, None)

    def end_where(self, matches) -> int:
        """End every session whose data ``matches``; how many ended."""
        with self._lock:
            ended = [sid for sid, record in self._records.items() if matches(record["data"])]
            for sid in ended:
                del self._records[sid]
        return len(ended)

    def _purge(self, now: float) -> None:
        stale = [
            sid
            for sid, record in self._records.items()
            if now - record["seen"] > SESSION_IDLE_SECONDS or now > record["expires"]
        ]
        for sid in stale:
            del self._records[sid]


class ServerSession(CallbackDict, SessionMixin):
    """Flask's ``session`` backed by the store; ``rotate()`` gives it a new id."""

    def __init__(self, data: dict | None = None, sid: str | None = None):
        def on_update(_):
            self.modified = True

        super().__init__(data, on_update)
        self.sid = sid
        self.modified = False
        self.rotated = False
        self.stale_cookie = False  # the browser sent an id we do not know (or no longer)

    def rotate(self) -> None:
        """Drop the stored record now; what the session holds from here on is
        saved under a new id. WHY at every sign-in: an id planted in the
        browser before the login (session fixation) must not become signed in."""
        self.rotated = True
        self.modified = True


class ServerSessionInterface(SessionInterface):
    def __init__(self, store: SessionStore):
        self.store = store

    def open_session(self, app: Flask, request) -> ServerSession:
        sid = request.cookies.get(COOKIE_NAME)
        data = self.store.load(sid) if sid else None
        if data is None:
            session = ServerSession()
            session.stale_cookie = bool(sid)  # unknown or ended: clear it from the browser
            return session
        return ServerSession(data, sid)

    def save_session(self, app: Flask, session: ServerSession, response) -> None:
        if session.rotated and session.sid:
            self.store.delete(session.sid)
            session.sid = None
        if not session.modified:
            if session.stale_cookie:
                self._forget(app, response)
            return
        data = dict(session)
        if not data:  # nothing left: no record, no cookie
            if session.sid:
                self.store.delete(session.sid)
            self._forget(app, response)
            return
        if session.sid is None:
            session.sid = self.store.create(data)
            self._set_cookie(app, response, session.sid)
        elif not self.store.update(session.sid, data):
            self._forget(app, response)  # ended meanwhile: stays ended

    def _set_cookie(self, app: Flask, response, sid: str) -> None:
        settings: Settings = app.config["RP"]
        # WHY each flag: HttpOnly, no script (an XSS) can read the id;
        # SameSite=Lax, not sent with cross-site POSTs (a second CSRF defence,
        # and the provider's redirect back is a top-level GET, which Lax allows);
        # Secure, never sent over plain http when the RP is served over https.
        # No Max-Age: the cookie dies with the browser, the record on the server.
        response.set_cookie(
            COOKIE_NAME,
            sid,
            httponly=True,
            samesite="Lax",
            secure=settings.secure,
            path="/",
        )

    def _forget(self, app: Flask, response) -> None:
        settings: Settings = app.config["RP"]
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="Lax", secure=settings.secure
        )


# -- pages -----------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Demo relying party</title>
<style>body{font-family:sans-serif;max-width:50rem;margin:2rem auto}
th{text-align:left;padding-right:1rem}pre{background:#f4f4f4;padding:.5rem}
.error{color:#a00}form{display:inline}</style></head>
<body>
<h1>Demo relying party</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if message %}<p role="status">{{ message }}</p>{% endif %}
{% if confirm_logout %}
  <p>Log out of this application and of the provider?</p>
  {{ logout_form }} · <a href="{{ url_for('index') }}">Cancel</a>
{% elif login %}
  <p>Signed in as
  <strong id="name">{{ login.userinfo.get("name") or login.claims.sub }}</strong>.</p>
  <h2>ID token claims (this login)</h2>
  <table id="claims">
  {% for name in shown %}
    {% set value = login.claims.get(name) %}
    <tr><th>{{ name }}</th><td id="claim-{{ name }}">
      {{- value | join(" ") if value is iterable and value is not string else value -}}
    </td></tr>
  {% endfor %}
  </table>
  <h2>Userinfo response</h2>
  <pre id="userinfo">{{ login.userinfo | tojson(indent=2) }}</pre>
  <p>
    <a href="{{ url_for('patient_record') }}">Patient record (needs two factors)</a> ·
    <a href="{{ url_for('step_up') }}">Step up (two-factor, {{ acr_2fa }})</a> ·
    {{ logout_form }}
  </p>
{% else %}
  <p>Not signed in.</p>
  <p><a href="{{ url_for('login') }}">Log in</a> ·
     <a href="{{ url_for('step_up') }}">Log in with two factors</a></p>
{% endif %}
</body></html>
"""

LOGOUT_FORM = """<form method="post" action="{{ url_for('logout') }}">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<button type="submit">Log out</button></form>"""


def create_app(settings: Settings | None = None) -> Flask:
    """Build the RP: one OAuth client registered through discovery, a few routes."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["RP"] = settings
    app.session_interface = ServerSessionInterface(SessionStore())
    oauth = OAuth(app)
    client_kwargs = {"scope": SCOPE, "code_challenge_method": "S256", "timeout": 10}
    auth_methods = None
    if settings.private_key is not None:
        client_kwargs["token_endpoint_auth_method"] = "private_key_jwt"
        auth_methods = [ShortLivedPrivateKeyJWT(alg=assertion_alg(settings.private_key))]
    oauth.register(
        "idp",
        client_id=settings.client_id,
        # The secret (sent with HTTP Basic, client_secret_basic), or our private key.
        client_secret=settings.private_key or settings.client_secret,
        server_metadata_url=settings.metadata_url
        or f"{settings.issuer}/.well-known/openid-configuration",
        client_kwargs=client_kwargs,
        client_auth_methods=auth_methods,
    )
    app.extensions["rp.idp"] = oauth.idp
    _add_routes(app, oauth.idp, settings)
    return app


def check_metadata(idp, settings: Settings) -> dict:
    """OpenID Connect Discovery 1.0 §4.3: the document must name the issuer we
    configured, else it is another provider's (or an attacker's) document."""
    metadata = idp.load_server_metadata()
    if metadata.get("issuer") != settings.issuer:
        raise OAuthError(
            error="invalid_issuer", description=f"discovery names {metadata.get('issuer')!r}"
        )
    return metadata


def _add_routes(app: Flask, idp, settings: Settings) -> None:
    redirect_uri = f"{settings.rp_url}/callback"
    post_logout_redirect_uri = f"{settings.rp_url}/"
    replay = ReplayCache()

    def page(status: int = 200, **context):
        token = session.get("csrf_token")
        form = render_template_string(LOGOUT_FORM, csrf_token=token) if token else ""
        html = render_template_string(
            PAGE,
            shown=SHOWN_CLAIMS,
            acr_2fa=ACR_2FA,
            login=session.get("login"),
            logout_form=Markup(form),
            **context,
        )
        return html, status

    @app.after_request
    def headers(response):
        # WHY: pages show personal data (no caching by browsers or proxies), and
        # a framed page could trick a click on "Log out" (clickjacking).
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/")
    def index():
        """Home page; also the post-logout landing page (``?state=``)."""
        message = error = None
        if "state" in request.args:
            try:
                idp.validate_logout_response()  # the state we sent to /logout
                message = "You are signed out (here and at the provider)."
            except OAuthError as exc:
                error = f"Logout response refused: {exc.description}"
        return page(message=message, error=error)

    def start_login(wanted_acr: str | None):
        """Start the code flow; Authlib adds state, nonce and the PKCE challenge.

        WHY the wanted ``acr`` goes with this request's state: the answer is
        checked against what *this* request asked for. Kept in the session as a
        whole, another tab's login would overwrite or clear it.
        """
        extra = {"acr_values": wanted_acr} if wanted_acr else {}
        rv = idp.create_authorization_url(redirect_uri, **extra)
        idp.save_authorize_data(redirect_uri=redirect_uri, wanted_acr=wanted_acr, **rv)
        return redirect(rv["url"])

    @app.get("/login")
    def login():
        return start_login(None)

    @app.get("/step-up")
    def step_up():
        """A new login asking for two factors; its result replaces the session's login."""
        return start_login(ACR_2FA)

    @app.get("/callback")
    def callback():
        """Check the response, redeem the code, validate the ID token, fetch userinfo."""
        state_data = idp.framework.get_state_data(session, request.args.get("state")) or {}
        try:
            check_issuer(request.args.get("iss"), check_metadata(idp, settings))
            # Checks state (else MismatchingStateError), redeems the code with
            # the PKCE verifier, then validates the ID token: signature against
            # the provider's JWKS, iss, aud, exp, iat, nonce, at_hash.
            token = idp.authorize_access_token()
        except OAuthError as exc:
            detail = f"{exc.error}: {exc.description}" if exc.description else exc.error
            return page(400, error=f"Sign-in failed ({detail}).")
        except JoseError as exc:  # an ID token that fails a check: refused
            return page(400, error=f"Sign-in failed (ID token: {type(exc).__name__}).")
        except (AuthlibBaseError, requests.RequestException) as exc:
            return page(502, error=f"Sign-in failed ({type(exc).__name__}).")
        if "userinfo" not in token:  # no ID token: nothing tells us who signed in
            return page(502, error="Sign-in failed (no ID token).")
        claims = dict(token["userinfo"])  # the validated ID token claims
        wanted = state_data.get("wanted_acr")
        if wanted and claims.get("acr") != wanted:
            # acr_values is only a request (and the browser can strip it from
            # the URL): never assume the level was reached. The session keeps
            # its previous login, unchanged.
            return page(
                403, error=f"Step-up not done: asked for {wanted}, got {claims.get('acr')}."
            )
        try:
            userinfo = dict(idp.userinfo(token=token))
        except (OAuthError, requests.RequestException) as exc:
            return page(502, error=f"Userinfo failed ({type(exc).__name__}).")
        if not hmac.compare_digest(
            str(userinfo.get("sub", "")).encode(), str(claims["sub"]).encode()
        ):
            return page(400, error="Userinfo is about another subject; refused.")
        # A new login: drop whatever the session held, under a new id (session
        # fixation), with a fresh CSRF token. Everything below stays on the server.
        session.clear()
        session.rotate()
        session["csrf_token"] = secrets.token_urlsafe(32)
        session["login"] = {
            # The "current login": what /patient-record decides on. A step-up
            # replaces it as a whole; nothing is merged from an older login.
            "iss": claims["iss"],
            "claims": {name: claims.get(name) for name in SHOWN_CLAIMS},
            "userinfo": userinfo,
            # Kept only as id_token_hint for logout; never shown or logged.
            "id_token": token["id_token"],
        }
        return redirect(url_for("index"))

    @app.get("/patient-record")
    def patient_record():
        """A page that needs two factors *in the login this session holds*."""
        current = session.get("login")
        if current is None:
            return redirect(url_for("login"))
        if current["claims"].get("acr") != ACR_2FA:
            return page(403, error="The patient record needs a two-factor login: step up first.")
        return page(message=f"Patient record (two-factor login of {current['claims']['sub']}).")

    @app.get("/logout")
    def logout_form():
        """Only a confirmation form: a GET must never change state (any site can
        make the browser send one, with our SameSite=Lax cookie attached)."""
        if session.get("login") is None:
            return redirect(url_for("index"))
        return page(confirm_logout=True)

    @app.post("/logout")
    def logout():
        """Sign out here, then at the provider (OpenID Connect RP-Initiated Logout 1.0)."""
        current = session.get("login")
        if current is None:
            return redirect(url_for("index"), 303)
        expected = session.get("csrf_token", "")
        sent = request.form.get("csrf_token", "")
        # WHY constant time: the comparison must not tell, by its duration,
        # how much of a guessed token was right.
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            return page(403, error="Logout refused: the form has expired. Try again.")
        # Local logout first, so that it holds even if the provider cannot be
        # reached: the record goes; the new (anonymous) session keeps only the
        # logout state that Authlib checks when the provider sends the user back.
        session.clear()
        session.rotate()
        return idp.logout_redirect(
            post_logout_redirect_uri=post_logout_redirect_uri,
            id_token_hint=current["id_token"],
            # Names the client outright, so the provider need not infer it from
            # the ID token's ``aud`` (which may be a list) to allow the redirect.
            client_id=settings.client_id,
        )

    @app.post("/backchannel-logout")
    def backchannel_logout():
        """OpenID Connect Back-Channel Logout 1.0 §2.5–2.8: the provider, not a
        browser, calls this; the signed Logout Token is the only credential."""
        token = request.form.get("logout_token", "")
        try:
            claims = verify_logout_token(token, idp, settings, replay)
        except LogoutTokenError as exc:
            response = jsonify(error="invalid_request", error_description=str(exc))
            response.status_code = 400
            response.headers["Cache-Control"] = "no-store"
            return response

        def matches(data: dict) -> bool:
            current = data.get("login")
            if not current or current["iss"] != claims["iss"]:
                return False
            if "sid" in claims:  # that provider session only (and its user, if named)
                return current["claims"].get("sid") == claims["sid"] and (
                    "sub" not in claims or current["claims"].get("sub") == claims["sub"]
                )
            return current["claims"].get("sub") == claims["sub"]  # every session of the user

        app.session_interface.store.end_where(matches)
        response = app.response_class(status=200)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/jwks.json")
    def jwks():
        """Our public key(s) for private_key_jwt (``idp client add --jwks-uri``)."""
        if settings.private_key is None:
            return jsonify(error="not_found"), 404
        return jsonify(public_jwks(settings.private_key))


# -- back-channel logout ---------------------------------------------------------


class LogoutTokenError(Exception):
    """A Logout Token that must be refused (answered 400)."""


class ReplayCache:
    """The ``jti`` of Logout Tokens already used, until they expire.

    WHY: a Logout Token captured in transit (a log, a proxy) must not be
    usable twice; after its ``exp`` it is refused anyway.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}
        self.last_refresh = 0.0

    def first_use(self, iss: str, jti: str, exp: float) -> bool:
        now = time.time()
        with self._lock:  # check and record in one step: two posts cannot both pass
            for key in [k for k, until in self._seen.items() if until < now]:
                del self._seen[key]
            if (iss, jti) in self._seen:
                return False
            self._seen[(iss, jti)] = exp + LEEWAY_SECONDS
            return True


def _provider_keys(idp, replay: ReplayCache, force: bool) -> KeySet:
    """The provider's JWKS (cached by Authlib). A token whose ``kid`` we do not
    know forces one download (the provider rotated its keys), at most once a
    minute: anyone can post tokens with made-up ``kid``s to this endpoint."""
    if force:
        now = time.time()
        if now - replay.last_refresh < JWKS_REFRESH_SECONDS:
            raise LogoutTokenError("unknown signing key")
        replay.last_refresh = now
    return KeySet.import_key_set(idp.fetch_jwk_set(force=force))


def verify_logout_token(token: str, idp, settings: Settings, replay: ReplayCache) -> dict:
    """Back-Channel Logout 1.0 §2.6, every step, with joserfc."""
    if not token:
        raise LogoutTokenError("missing logout_token")
    try:
        metadata = check_metadata(idp, settings)
        algorithms = [
            alg
            for alg in metadata.get("id_token_signing_alg_values_supported", [])
            if alg != "none"
        ]
        registry = JWSRegistry(algorithms=algorithms)
        try:
            decoded = jwt.decode(token, _provider_keys(idp, replay, False), registry=registry)
        except InvalidKeyIdError:
            decoded = jwt.decode(token, _provider_keys(idp, replay, True), registry=registry)
    except (JoseError, ValueError) as exc:  # bad signature, unknown key, not a JWT…
        raise LogoutTokenError(f"invalid signature or format ({type(exc).__name__})") from None
    except (OAuthError, requests.RequestException):
        raise LogoutTokenError("provider metadata or keys unavailable") from None
    header, claims = decoded.header, decoded.claims
    # §2.4: typ SHOULD be "logout+jwt"; when present it must be, so that an ID
    # token (same issuer, same keys, same audience) is never taken for one.
    typ = header.get("typ")
    if typ is not None and str(typ).lower() not in ("logout+jwt", "application/logout+jwt"):
        raise LogoutTokenError("typ is not logout+jwt")
    try:
        jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.client_id},
            iat={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(claims)
    except JoseError as exc:
        raise LogoutTokenError(f"invalid claims ({exc.error}: {exc.description})") from None
    if claims["iat"] > time.time() + LEEWAY_SECONDS:
        raise LogoutTokenError("iat is in the future")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise LogoutTokenError("events has no back-channel logout event")
    if "nonce" in claims:  # an ID token, not a Logout Token
        raise LogoutTokenError("a Logout Token carries no nonce")
    if not isinstance(claims.get("sid"), str) and not isinstance(claims.get("sub"), str):
        raise LogoutTokenError("neither sid nor sub")
    if not isinstance(claims["jti"], str) or not replay.first_use(
        claims["iss"], claims["jti"], float(claims["exp"])
    ):
        raise LogoutTokenError("jti already used")
    return claims


def check_issuer(iss: str | None, metadata: dict) -> None:
    """RFC 9207 §2.4: the ``iss`` response parameter must name our provider.

    Mandatory when the provider advertises it; compared if present anyway.
    """
    expected = metadata["issuer"]
    required = metadata.get("authorization_response_iss_parameter_supported", False)
    if iss is None and not required:
        return
    if iss is None or not hmac.compare_digest(iss.encode(), expected.encode()):
        raise OAuthError(error="invalid_issuer", description=f"expected iss={expected!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--private-key",
        metavar="FILE",
        help="authenticate with private_key_jwt using this PEM key (else $RP_PRIVATE_KEY)",
    )
    parser.add_argument(
        "--print-jwks",
        action="store_true",
        help="print the public JWKS of the private key (for idp client add --jwks) and exit",
    )
    parser.add_argument(
        "--port", type=int, help="port to listen on, on 127.0.0.1 (default: RP_URL's, else 5001)"
    )
    args = parser.parse_args(argv)
    if args.print_jwks:
        key_file = args.private_key or os.environ.get("RP_PRIVATE_KEY")
        if not key_file:
            parser.error("--print-jwks needs --private-key FILE (or RP_PRIVATE_KEY)")
        print(json.dumps(public_jwks(load_private_key(key_file)), indent=2))
        return
    settings = Settings.from_env(args.private_key)
    app = create_app(settings)
    try:  # fail now, not at the first login
        check_metadata(app.extensions["rp.idp"], settings)
    except (OAuthError, requests.RequestException, ValueError) as exc:
        sys.exit(f"the provider's discovery document is unusable ({settings.issuer}): {exc}")
    port = args.port or urlsplit(settings.rp_url).port or 5001
    # The development server (threaded): fine for the example; behind a real
    # deployment use gunicorn with ONE process, or a shared session store.
    app.run(host="127.0.0.1", port=port, debug=False)


if __name__ == "__main__":
    main()
