"""A minimal relying party (RP) for the idp provider: sign in, step up, sign out.

This is the integration example for health-app developers. It uses Authlib's
Flask client with discovery, the authorization code flow with PKCE (S256), and
shows what an RP must check on the way back:

* ``state``  - binds the callback to the browser that started the login
  (Authlib checks it against the value kept in this app's session);
* ``iss``    - the authorization response names its issuer (RFC 9207), so a
  response from another provider cannot be injected (checked here);
* ``nonce``  - binds the ID token to this login (Authlib checks it, together
  with the signature, ``iss``, ``aud``, ``azp``, ``exp`` and ``at_hash``);
* ``acr``    - the provider treats ``acr_values`` as a wish; the RP decides
  whether the level it got is enough (checked here after a step-up);
* ``sub``    - the userinfo response must be about the ID token's subject
  (OpenID Connect Core 1.0 §5.3.4; checked here).

Run the provider first (``idp demo``, from the repository root), then::

    python examples/relying_party.py     # → http://127.0.0.1:5001

Settings come from the environment: ``RP_ISSUER`` (default
``http://127.0.0.1:5000``), ``RP_CLIENT_ID`` (``demo-rp``), ``RP_CLIENT_SECRET``
(else read from ``instance/demo-rp.secret``, written by ``idp demo``),
``RP_SECRET_KEY`` (else random per run, which signs everyone out on restart).
"""

from __future__ import annotations

import hmac
import os
import secrets
import sys
from pathlib import Path

from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, render_template_string, request, session, url_for

ISSUER = os.environ.get("RP_ISSUER", "http://127.0.0.1:5000")
CLIENT_ID = os.environ.get("RP_CLIENT_ID", "demo-rp")
RP_URL = "http://127.0.0.1:5001"
REDIRECT_URI = f"{RP_URL}/callback"
POST_LOGOUT_REDIRECT_URI = f"{RP_URL}/"
SCOPE = "openid profile email phone"
ACR_2FA = "urn:idp:acr:2fa"
SHOWN_CLAIMS = ("sub", "acr", "amr", "auth_time", "sid")

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Demo relying party</title>
<style>body{font-family:sans-serif;max-width:50rem;margin:2rem auto}
th{text-align:left;padding-right:1rem}pre{background:#f4f4f4;padding:.5rem}
.error{color:#a00}</style></head>
<body>
<h1>Demo relying party</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if message %}<p>{{ message }}</p>{% endif %}
{% if user %}
  <p>Signed in as <strong>{{ user.userinfo.get("name") or user.claims.sub }}</strong>.</p>
  <h2>ID token claims</h2>
  <table id="claims">
  {% for name in shown %}
    {% set value = user.claims.get(name) %}
    <tr><th>{{ name }}</th><td id="claim-{{ name }}">
      {{- value | join(" ") if value is iterable and value is not string else value -}}
    </td></tr>
  {% endfor %}
  </table>
  <h2>Userinfo response</h2>
  <pre id="userinfo">{{ user.userinfo | tojson(indent=2) }}</pre>
  <p>
    <a href="{{ url_for('step_up') }}">Step up (two-factor, {{ acr_2fa }})</a> ·
    <a href="{{ url_for('logout') }}">Log out</a>
  </p>
{% else %}
  <p>Not signed in.</p>
  <p><a href="{{ url_for('login') }}">Log in</a> ·
     <a href="{{ url_for('step_up') }}">Log in with two factors</a></p>
{% endif %}
</body></html>
"""


def client_secret() -> str:
    """The secret from ``$RP_CLIENT_SECRET``, else the file ``idp demo`` wrote."""
    if secret := os.environ.get("RP_CLIENT_SECRET"):
        return secret
    path = Path("instance/demo-rp.secret")
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        sys.exit(f"no client secret: set RP_CLIENT_SECRET or run 'idp demo' first ({path})")


def create_app() -> Flask:
    """Build the RP: one OAuth client registered through discovery, four routes."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("RP_SECRET_KEY") or secrets.token_hex(32),
        # Cookies are per host, not per port: the provider on 127.0.0.1:5000
        # uses ``idp_session`` and ``idp_sso``, so this app needs its own name.
        SESSION_COOKIE_NAME="rp_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # the callback is a top-level GET: Lax is enough
    )
    oauth = OAuth(app)
    oauth.register(
        "idp",
        client_id=CLIENT_ID,
        client_secret=client_secret(),  # sent with HTTP Basic (client_secret_basic)
        server_metadata_url=f"{ISSUER}/.well-known/openid-configuration",
        client_kwargs={"scope": SCOPE, "code_challenge_method": "S256"},
    )
    _add_routes(app, oauth.idp)
    return app


def _add_routes(app: Flask, idp) -> None:
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
        return _page(user=session.get("user"), message=message, error=error)

    @app.get("/login")
    def login():
        """Start the code flow; Authlib adds state, nonce and the PKCE challenge."""
        session.pop("wanted_acr", None)
        return idp.authorize_redirect(REDIRECT_URI)

    @app.get("/step-up")
    def step_up():
        """Ask for two factors; the provider answers with what it could do."""
        session["wanted_acr"] = ACR_2FA
        return idp.authorize_redirect(REDIRECT_URI, acr_values=ACR_2FA)

    @app.get("/callback")
    def callback():
        """Check the response, redeem the code, validate the ID token, fetch userinfo."""
        try:
            check_issuer(request.args.get("iss"), idp.load_server_metadata())
            # Checks state (else MismatchingStateError), redeems the code with
            # the PKCE verifier, then validates the ID token including nonce.
            token = idp.authorize_access_token()
        except OAuthError as exc:
            detail = f"{exc.error}: {exc.description}" if exc.description else exc.error
            return _page(error=f"Sign-in failed ({detail})."), 400
        claims = dict(token["userinfo"])  # the validated ID token claims
        wanted = session.pop("wanted_acr", None)
        if wanted and claims.get("acr") != wanted:
            # acr_values is only a request: never assume the level was reached.
            return _page(
                user=session.get("user"),
                error=f"Step-up not done: asked for {wanted}, got {claims.get('acr')}.",
            ), 403
        userinfo = dict(idp.userinfo(token=token))
        if not hmac.compare_digest(str(userinfo.get("sub", "")), str(claims["sub"])):
            return _page(error="Userinfo is about another subject; refused."), 400
        session.clear()  # a new sign-in: drop whatever the session held before
        # Flask's session is a signed, *readable* cookie: fine for this demo; a
        # real health app keeps tokens and personal data server-side instead.
        session["user"] = {
            "claims": {name: claims.get(name) for name in SHOWN_CLAIMS},
            "userinfo": userinfo,
            # Kept only as id_token_hint for logout; never shown or logged.
            "id_token": token["id_token"],
        }
        return redirect(url_for("index"))

    @app.get("/logout")
    def logout():
        """Sign out here, then at the provider (OpenID Connect RP-Initiated Logout 1.0)."""
        user = session.pop("user", None)
        session.clear()
        if user is None:
            return redirect(url_for("index"))
        return idp.logout_redirect(
            post_logout_redirect_uri=POST_LOGOUT_REDIRECT_URI,
            id_token_hint=user["id_token"],
            # Names the client outright, so the provider need not infer it from
            # the ID token's ``aud`` (which may be a list) to allow the redirect.
            client_id=CLIENT_ID,
        )


def check_issuer(iss: str | None, metadata: dict) -> None:
    """RFC 9207 §2.4: the ``iss`` response parameter must name our provider.

    Mandatory when the provider advertises it; compared if present anyway.
    """
    expected = metadata["issuer"]
    required = metadata.get("authorization_response_iss_parameter_supported", False)
    if iss is None and not required:
        return
    if iss is None or not hmac.compare_digest(iss, expected):
        raise OAuthError(error="invalid_issuer", description=f"expected iss={expected!r}")


def _page(**context):
    context.setdefault("user", None)
    return render_template_string(PAGE, shown=SHOWN_CLAIMS, acr_2fa=ACR_2FA, **context)


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=5001, debug=False)
