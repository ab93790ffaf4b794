"""Back-channel logout (OpenID Connect Back-Channel Logout 1.0).

See docs/RELYING_PARTIES.md ("Back-channel logout") and SECURITY.md ("Logout").

Every way a session ends tells each RP that was given a code under it, and only
those, with a Logout Token signed like its ID tokens; delivery goes through the
outbox: written with the session's end, retried while the RP is down (also by
another process after a restart), abandoned after a bound, never holding a page.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import create_app
from idp.models import AuditEvent, OutboxMessage, SessionClient, db
from idp.oidc import backchannel
from tests.actions import LoginActions, csrf_of
from tests.factories import PASSWORD, make_client, make_user

ISSUER = "http://idp.test"
NEW = "Another-Long-Pass-42"
EVENT = "http://schemas.openid.net/event/backchannel-logout"


@dataclass
class Received:
    path: str
    content_type: str
    logout_token: str


class LogoutReceiver:
    """RPs' back-channel logout endpoints: records each POST; ``status[path]`` (200 by
    default) and ``delay`` set the next answers; ``stop``/``start`` take it down and
    bring it back on the same port (the provider then meets a refused connection)."""

    def __init__(self):
        self.received: list[Received] = []
        self.status: dict[str, int] = {}
        self.delay = 0.0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                time.sleep(receiver.delay)
                status = receiver.status.get(self.path, 200)
                if status in (200, 204):
                    token = parse_qs(body).get("logout_token", [""])[0]
                    receiver.received.append(
                        Received(self.path, self.headers.get("Content-Type", ""), token)
                    )
                self.send_response(status)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the provider hung up on a slow answer: that is the point of ``delay``

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

    def to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


def claims_of(token: str, jwks: dict) -> tuple[dict, dict]:
    """Verify a Logout Token the way an RP must (Back-Channel Logout §2.6)."""
    decoded = jwt.decode(token, KeySet.import_key_set(jwks), algorithms=["RS256", "ES256"])
    return decoded.header, decoded.claims


@pytest.fixture
def receiver():
    found = LogoutReceiver()
    found.start()
    yield found
    found.stop()


@pytest.fixture
def secrets_(smtp, receiver, app):
    """Clients: ``rp`` (session required, RS256), ``agenda`` (ES256), ``idle`` (has a
    URI, never used by alice), ``quiet`` (no back-channel URI)."""
    with app.app_context():
        make_user("alice")
        make_user("bob")
        made = {
            "rp": make_client(
                "rp",
                backchannel_logout_uri=receiver.url("/rp"),
                backchannel_logout_session_required=True,
            ),
            "agenda": make_client(
                "agenda", backchannel_logout_uri=receiver.url("/agenda"), id_token_alg="ES256"
            ),
            "idle": make_client("idle", backchannel_logout_uri=receiver.url("/idle")),
            "quiet": make_client("quiet"),
        }
    return {name: secret for name, (_, secret) in made.items()}


def sign_in(app, secrets_, username="alice", clients=("rp", "agenda"), client=None):
    """A browser signed in at each of ``clients``; returns (actions, {client: ID token})."""
    login = LoginActions(client or app.test_client())
    login.client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    tokens = {}
    for client_id in clients:
        code = login.login_through(client_id, username=username)["code"]
        tokens[client_id] = login.exchange(
            code, client_id=client_id, secret=secrets_[client_id]
        ).json["id_token"]
    return login, tokens


def _jwks(app) -> dict:
    return app.test_client().get("/jwks.json").json


def _events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(db.select(AuditEvent).filter_by(event=name)))


def _rows(app) -> list[OutboxMessage]:
    with app.app_context():
        return list(db.session.scalars(db.select(OutboxMessage).filter_by(kind=backchannel.KIND)))


def _post_form(client, url, data):
    page = client.get(url, follow_redirects=True)
    return client.post(url, data={"csrf_token": csrf_of(page.text), **data})


def _sid_and_sub(id_token: str, jwks: dict) -> tuple[str, str]:
    claims = claims_of(id_token, jwks)[1]
    return claims["sid"], claims["sub"]


# -- the Logout Token ------------------------------------------------------------


def test_discovery_advertises_back_channel_logout(client):
    meta = client.get("/.well-known/openid-configuration").json
    assert meta["backchannel_logout_supported"] is True
    assert meta["backchannel_logout_session_supported"] is True
    assert meta["frontchannel_logout_supported"] is False


def test_the_logout_token_is_signed_typed_and_names_the_session(app, secrets_, receiver):
    login, tokens = sign_in(app, secrets_)
    jwks = _jwks(app)
    before = int(time.time())
    response = login.client.get("/logout", query_string={"id_token_hint": tokens["rp"]})
    assert response.status_code == 200
    assert sorted(r.path for r in receiver.received) == ["/agenda", "/rp"]
    jtis = set()
    for name, expected_alg in (("rp", "RS256"), ("agenda", "ES256")):
        [got] = receiver.to(f"/{name}")
        assert got.content_type == "application/x-www-form-urlencoded"
        header, claims = claims_of(got.logout_token, jwks)  # verified with the public JWKS
        assert header["typ"] == "logout+jwt" and header["alg"] == expected_alg
        assert header["kid"] in {key["kid"] for key in jwks["keys"]}
        sid, sub = _sid_and_sub(tokens[name], jwks)
        assert claims["iss"] == ISSUER and claims["aud"] == name
        assert claims["sid"] == sid and claims["sub"] == sub
        assert claims["events"] == {EVENT: {}}
        assert "nonce" not in claims
        assert before - 5 <= claims["iat"] <= time.time() + 5
        assert claims["exp"] - claims["iat"] == backchannel.TOKEN_SECONDS
        jtis.add(claims["jti"])
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": ISSUER},
            aud={"essential": True, "value": name},
            iat={"essential": True},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(claims)
    assert len(jtis) == 2
    delivered = _events(app, "logout.backchannel_delivered")
    assert sorted(e.client_id for e in delivered) == ["agenda", "rp"]
    assert all(row.sent_at for row in _rows(app))


def test_a_client_is_recorded_once_per_session(app, secrets_):
    login, _ = sign_in(app, secrets_, clients=("rp", "rp", "agenda"))
    with app.app_context():
        rows = db.session.scalars(db.select(SessionClient)).all()
        assert sorted(r.client_id for r in rows) == ["agenda", "rp"]
        assert len({r.sid for r in rows}) == 1


# -- every way a session ends -----------------------------------------------------


def _end_by_rp_logout(app, here, tokens, other):
    assert here.client.get("/logout", query_string={"id_token_hint": tokens["rp"]}).status_code
    return "here"


def _end_by_console_sign_out(app, here, tokens, other):
    page = here.client.get("/account/")
    response = here.client.post(
        "/logout", data={"csrf_token": csrf_of(page.text), "confirm": "yes"}
    )
    assert response.status_code == 200, response.text[:300]
    return "here"


def _end_others_by_password_change(app, here, tokens, other):
    response = _post_form(
        here.client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": NEW,
            "confirm_password": NEW,
            "logout_others": "y",
        },
    )
    assert response.status_code == 302, response.text[:300]
    return "other"


def _end_other_from_device_list(app, here, tokens, other):
    page = here.client.get("/account/").text
    cookie = other.client.get_cookie("idp_sso").value
    from idp.crypto import sha256_hex
    from idp.models import SsoSession

    with app.app_context():
        sid = db.session.scalars(
            db.select(SsoSession.sid).filter_by(cookie_hash=sha256_hex(cookie))
        ).one()
    assert f"/account/sessions/{sid}/end" in page
    response = here.client.post(f"/account/sessions/{sid}/end", data={"csrf_token": csrf_of(page)})
    assert response.status_code == 302
    return "other"


def _end_all_by_password_reset(app, here, tokens, other, smtp=None):
    stranger = app.test_client()
    _post_form(stranger, "/password/forgot", {"identifier": "alice"})
    link = re.search(r"http://idp\.test(/password/reset/\S+)", smtp.last_text())[1]
    stranger.get(link)
    response = _post_form(
        stranger, "/password/reset", {"new_password": NEW, "confirm_password": NEW}
    )
    assert response.status_code == 200, response.text[:300]
    return "both"


def _end_all_by_operator_password(app, here, tokens, other, idp=None):
    code, _, err = idp("user", "set-password", "alice", "--password-stdin", input=NEW + "\n")
    assert code == 0, err
    return "both"


def _end_all_by_operator_disable(app, here, tokens, other, idp=None):
    code, _, err = idp("user", "disable", "alice")
    assert code == 0, err
    return "both"


def _end_by_another_user_signing_in(app, here, tokens, other, secrets_=None):
    here.login_through("quiet", username="bob", prompt="login")
    return "here"


TRIGGERS = {
    "rp_logout": _end_by_rp_logout,
    "console_sign_out": _end_by_console_sign_out,
    "password_change_logout_others": _end_others_by_password_change,
    "device_list": _end_other_from_device_list,
    "password_reset": _end_all_by_password_reset,
    "operator_set_password": _end_all_by_operator_password,
    "operator_disable": _end_all_by_operator_disable,
    "another_user_signs_in": _end_by_another_user_signing_in,
}


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_each_session_end_tells_each_rp_of_that_session_once(
    trigger, smtp, receiver, idp, secrets_, app
):
    """Alice on two workstations: ``here`` used rp and agenda, ``other`` used rp only;
    Bob used rp and agenda; nobody used ``idle``. Each way of ending sessions sends one
    Logout Token per (ended session, its RP with a URI), and nothing else."""
    here, here_tokens = sign_in(app, secrets_)
    other, other_tokens = sign_in(app, secrets_, clients=("rp", "quiet"))
    _, bob_tokens = sign_in(app, secrets_, "bob")
    jwks = _jwks(app)
    receiver.received.clear()
    extra = {"smtp": smtp, "idp": idp, "secrets_": secrets_}
    function = TRIGGERS[trigger]
    wanted = {k: v for k, v in extra.items() if k in function.__code__.co_varnames}
    ended = function(app, here, here_tokens, other, **wanted)
    expected = []
    if ended in ("here", "both"):
        expected += [("/" + c, _sid_and_sub(here_tokens[c], jwks)) for c in ("rp", "agenda")]
    if ended in ("other", "both"):
        expected += [("/rp", _sid_and_sub(other_tokens["rp"], jwks))]
    got = []
    for item in receiver.received:
        claims = claims_of(item.logout_token, jwks)[1]
        got.append((item.path, (claims["sid"], claims["sub"])))
    assert sorted(got) == sorted(expected)
    bob_sid = _sid_and_sub(bob_tokens["rp"], jwks)[0]
    assert bob_sid not in {sid for _, (sid, _) in got}


# -- delivery: retries, restarts, bounds ------------------------------------------


def test_an_rp_that_is_down_gets_it_later_even_from_another_process(
    app, settings, secrets_, receiver, frozen_clock
):
    login, tokens = sign_in(app, secrets_, clients=("rp",))
    receiver.status["/rp"] = 503
    started = time.monotonic()
    response = login.client.get("/logout", query_string={"id_token_hint": tokens["rp"]})
    assert response.status_code == 200 and time.monotonic() - started < 2
    [row] = _rows(app)
    assert row.sent_at is None and row.attempts == 1 and row.last_error == "HTTP 503"
    [failed] = _events(app, "logout.backchannel_failed")
    assert failed.client_id == "rp" and failed.detail["error"] == "HTTP 503"
    receiver.status["/rp"] = 200
    # A restart: another app instance (another process) finds the message in the database.
    restarted = create_app(settings)
    restarted.config["TESTING"] = True
    with restarted.app_context():
        try:
            assert backchannel_due() == 0  # not before its retry time
            frozen_clock.advance(backchannel.RETRY_DELAYS[0] + 1)
            assert backchannel_due() == 1
        finally:
            db.session.remove()
            db.engine.dispose()
    [got] = receiver.to("/rp")
    jwks = _jwks(app)
    claims = claims_of(got.logout_token, jwks)[1]
    assert claims["sid"] == _sid_and_sub(tokens["rp"], jwks)[0]
    # Signed when sent: a token queued minutes ago is still fresh when it arrives.
    assert abs(claims["iat"] - frozen_clock.now) < 2
    [row] = _rows(app)
    assert row.sent_at is not None and row.attempts == 2
    assert [e.client_id for e in _events(app, "logout.backchannel_delivered")] == ["rp"]


def backchannel_due() -> int:
    """What a process's poller does: deliver what is due (in an app context)."""
    from idp.delivery import outbox

    return outbox.deliver_pending()


def test_an_rp_that_never_answers_is_abandoned_after_the_bound(
    app, secrets_, receiver, frozen_clock
):
    login, tokens = sign_in(app, secrets_, clients=("rp",))
    receiver.stop()  # connection refused from now on
    login.client.get("/logout", query_string={"id_token_hint": tokens["rp"]})
    with app.app_context():
        for _ in range(backchannel.MAX_ATTEMPTS + 3):
            frozen_clock.advance(3601)
            backchannel_due()
    [row] = _rows(app)
    assert row.gave_up and row.sent_at is None and row.attempts == backchannel.MAX_ATTEMPTS
    assert row.last_error == "ConnectionRefusedError"
    assert len(_events(app, "logout.backchannel_failed")) == backchannel.MAX_ATTEMPTS
    [abandoned] = _events(app, "logout.backchannel_abandoned")
    assert abandoned.client_id == "rp"


def test_the_back_off_grows(app, secrets_, receiver, frozen_clock):
    login, tokens = sign_in(app, secrets_, clients=("rp",))
    receiver.status["/rp"] = 500
    login.client.get("/logout", query_string={"id_token_hint": tokens["rp"]})
    waits = []
    with app.app_context():
        for _ in range(4):
            row = db.session.scalars(db.select(OutboxMessage)).one()
            waits.append(row.next_attempt_at - frozen_clock.now)
            frozen_clock.advance(row.next_attempt_at - frozen_clock.now)
            backchannel_due()
            db.session.expire_all()
    assert waits == [pytest.approx(w, abs=1) for w in backchannel.RETRY_DELAYS[:4]]
    assert waits == sorted(waits) and waits[0] < waits[-1]


def test_a_stalled_rp_holds_the_page_only_for_the_time_out(app, secrets_, receiver, monkeypatch):
    """In-line delivery (tests, the ``idp`` command) is bounded by the POST's time-out;
    under gunicorn the page does not wait at all (tests/e2e/test_backchannel_logout.py)."""
    monkeypatch.setattr(backchannel, "TIMEOUT_SECONDS", 0.5)
    login, tokens = sign_in(app, secrets_, clients=("rp",))
    receiver.delay = 2.0
    started = time.monotonic()
    response = login.client.get("/logout", query_string={"id_token_hint": tokens["rp"]})
    waited = time.monotonic() - started
    assert response.status_code == 200 and waited < 1.5, waited
    [row] = _rows(app)
    assert row.sent_at is None and row.last_error == "TimeoutError"
    assert _events(app, "session.ended")  # the session ended all the same


def test_a_redirect_is_not_followed(app, secrets_, receiver):
    login, tokens = sign_in(app, secrets_, clients=("rp",))
    receiver.status["/rp"] = 307
    login.client.get("/logout", query_string={"id_token_hint": tokens["rp"]})
    [row] = _rows(app)
    assert row.sent_at is None and row.last_error == "HTTP 307"


def test_a_client_removed_meanwhile_is_not_called(app, secrets_, receiver, frozen_clock):
    from idp.clients import remove_client

    login, tokens = sign_in(app, secrets_, clients=("agenda",))
    receiver.status["/agenda"] = 503
    login.client.get("/logout", query_string={"id_token_hint": tokens["agenda"]})
    with app.app_context():
        remove_client("agenda")
        receiver.status["/agenda"] = 200
        frozen_clock.advance(60)
        backchannel_due()
    assert receiver.to("/agenda") == []
    [row] = _rows(app)
    assert row.sent_at is not None  # nothing left to do
    assert _events(app, "logout.backchannel_delivered") == []
