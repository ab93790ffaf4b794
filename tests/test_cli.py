"""The ``idp`` command: provisioning, JSON output, one-line failures."""

import json

import pytest
from click.testing import CliRunner

from idp.cli import cli


def test_init_is_idempotent(idp):
    assert idp("init")[0] == 0
    assert idp("init")[0] == 0


def test_user_add_list_and_disable(idp):
    code, out, _ = idp(
        "user",
        "add",
        "dr.house",
        "--email",
        "House@Exemple.fr",
        "--name",
        "Greg House",
        "--role",
        "patient_data",
        "--phone",
        "06 12 34 56 78",
        "--password-stdin",
        "--json",
        input="Vicodin-4-Ever!\n",
    )
    assert code == 0, out
    created = json.loads(out)
    assert created["email"] == "house@exemple.fr" and created["roles"] == ["patient_data"]
    listed = json.loads(idp("user", "list", "--json")[1])["users"]
    assert listed[0]["backup_phone"] == "+33612345678"
    assert idp("user", "disable", "dr.house")[0] == 0
    assert json.loads(idp("user", "list", "--json")[1])["users"][0]["disabled"] is True


@pytest.mark.parametrize(
    ("args", "stdin", "reason"),
    [
        (["user", "add", "weak", "--email", "w@x.fr", "--password-stdin"], "short\n", "password"),
        (
            ["user", "add", "p", "--email", "p@x.fr", "--phone", "0142000000", "--password-stdin"],
            "Correct-Horse-9-Battery\n",
            "mobile",
        ),
        (
            ["user", "add", "n", "--email", "not-an-email", "--password-stdin"],
            "Correct-Horse-9-Battery\n",
            "e-mail",
        ),
        (["user", "set-password", "ghost", "--password-stdin"], "x\n", "no user"),
        (["user", "disable", "ghost"], None, "no user"),
        (["client", "remove", "ghost"], None, "no client"),
        (["client", "add", "c", "--redirect-uri", "javascript:alert(1)"], None, "scheme"),
        (["client", "add", "c", "--redirect-uri", "https://a/cb", "--acr", "gold"], None, "acr"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(idp, args, stdin, reason):
    code, out, err = idp(*args, input=stdin)
    assert code != 0
    assert reason in err and len(err.strip().splitlines()) == 1


def test_duplicate_user_is_refused(idp):
    args = ["user", "add", "a", "--email", "a@x.fr", "--password-stdin"]
    assert idp(*args, input="Correct-Horse-9-Battery\n")[0] == 0
    code, _, err = idp(*args, input="Correct-Horse-9-Battery\n")
    assert code == 1 and "already exists" in err


def test_client_add_prints_the_secret_once_and_stores_a_hash(app, idp):
    code, out, _ = idp(
        "client",
        "add",
        "portal",
        "--redirect-uri",
        "https://portal.example/cb",
        "--post-logout-redirect-uri",
        "https://portal.example/",
        "--acr",
        "urn:idp:acr:2fa",
        "--json",
    )
    assert code == 0
    printed = json.loads(out)
    assert printed["client_id"] == "portal" and len(printed["client_secret"]) >= 40
    listed = json.loads(idp("client", "list", "--json")[1])["clients"][0]
    assert printed["client_secret"] not in json.dumps(listed)
    assert listed["grant_types"] == ["authorization_code", "refresh_token"]
    assert listed["default_acr_values"] == ["urn:idp:acr:2fa"]
    assert idp("client", "remove", "portal")[0] == 0


def test_public_client_has_no_secret(idp):
    out = idp(
        "client",
        "add",
        "app",
        "--public",
        "--redirect-uri",
        "com.example.app:/cb",
        "--no-refresh",
        "--json",
    )[1]
    assert json.loads(out)["client_secret"] is None
    listed = json.loads(idp("client", "list", "--json")[1])["clients"][0]
    assert listed["public"] and listed["grant_types"] == ["authorization_code"]


@pytest.fixture
def own_keys(settings, tmp_path):
    """A private copy of the key folder, so rotating does not touch the shared one."""
    import shutil

    keys = tmp_path / "own-keys"
    shutil.copytree(settings["keys"]["dir"], keys)
    settings["keys"]["dir"] = str(keys)
    return keys


def test_keys_list_and_rotate(own_keys, idp):
    rows = json.loads(idp("keys", "list", "--json")[1])["keys"]
    assert {r["status"] for r in rows} == {"active"}
    code, out, _ = idp("keys", "rotate")
    assert code == 0 and "published now, signs from" in out
    rows = json.loads(idp("keys", "list", "--json")[1])["keys"]
    assert sum(r["status"] == "staged" for r in rows) == 2
    assert sum(r["status"] == "active" for r in rows) == 2
    assert idp("keys", "rotate", "--now")[0] == 0  # a compromised key: replaced at once
    rows = json.loads(idp("keys", "list", "--json")[1])["keys"]
    assert sum(r["status"] == "retired" for r in rows) == 2
    assert not any(r["status"] == "staged" for r in rows)


def test_missing_config_file_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "none.toml"), "init"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: configuration file not found: {tmp_path}/none.toml"


def test_purge_deletes_only_what_expired_more_than_a_day_ago(app, idp, frozen_clock):
    from idp.models import AuthorizationCode, SsoSession, Token, db
    from tests.actions import LoginActions
    from tests.factories import make_client, make_user

    with app.app_context():
        make_user()
        _, secret = make_client()
    login = LoginActions(app.test_client())
    login.exchange(login.login_through()["code"], secret=secret)
    assert idp("purge")[1].startswith("authorization_codes: 0, tokens: 0")
    frozen_clock.advance(3 * 86400)  # past the refresh lifetime (1 day) and the SSO session
    code, out, _ = idp("purge")
    assert code == 0 and "authorization_codes: 1, tokens: 1, sso_sessions: 1" in out
    with app.app_context():
        assert db.session.scalars(db.select(Token)).all() == []
        assert db.session.scalars(db.select(AuthorizationCode)).all() == []
        assert db.session.scalars(db.select(SsoSession)).all() == []


def test_purge_deletes_audit_rows_past_their_retention_in_batches(
    app, idp, frozen_clock, monkeypatch
):
    from idp import maintenance
    from idp.audit import record
    from idp.models import AuditEvent, db

    monkeypatch.setattr(maintenance, "AUDIT_BATCH", 3)
    with app.app_context():
        for _ in range(7):
            record("login.failed")
    frozen_clock.advance(364 * 86400)
    with app.app_context():
        record("login.failed")  # a recent one
    assert "audit_events: 0" in idp("purge")[1]
    frozen_clock.advance(2 * 86400)  # the first seven are now past 365 days
    assert "audit_events: 7" in idp("purge")[1]
    with app.app_context():
        assert len(db.session.scalars(db.select(AuditEvent)).all()) == 1


def test_purge_with_zero_retention_deletes_every_past_audit_row(settings, app, idp, frozen_clock):
    from idp.audit import record
    from idp.models import AuditEvent, db

    settings["audit"] = {"retention_days": 0}
    with app.app_context():
        record("login.failed")
    frozen_clock.advance(1)
    assert "audit_events: 1" in idp("purge")[1]
    with app.app_context():
        assert db.session.scalars(db.select(AuditEvent)).all() == []


# -- idp user set-password: the operator replaces a (maybe stolen) password --------

NEW = "Another-Long-Pass-42"


@pytest.fixture
def signed_in(smtp, app):
    """bruno (second factor) signed in at the RP, this browser remembered, tokens issued."""
    from tests.actions import LoginActions, code_in
    from tests.factories import make_client, make_user, query_of

    with app.app_context():
        make_user("bruno", roles=["patient_data"])
        _, secret = make_client()
    browser = LoginActions(app.test_client())
    otp_url = browser.submit_password(browser.authorize().location, "bruno").location
    done = browser.submit_code(otp_url, code_in(smtp.last_text()), remember=True)
    tokens = browser.exchange(query_of(done.location)["code"], secret=secret).json
    return browser, secret, tokens


def _refresh(browser, secret, tokens):
    data = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    return browser.client.post("/token", auth=("rp", secret), data=data)


def _userinfo(browser, tokens):
    return browser.client.get(
        "/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )


def _silent(browser) -> dict:
    from tests.factories import query_of

    return query_of(browser.authorize(prompt="none").location)


def _audit(app) -> list[tuple[str, dict]]:
    from idp.models import AuditEvent, db

    with app.app_context():
        return [(e.event, e.detail) for e in db.session.scalars(db.select(AuditEvent))]


def _notices_to(smtp, address: str, seen: int) -> list[str]:
    return [
        m.get_body(preferencelist=("plain",)).get_content()
        for m in smtp.messages[seen:]
        if m["To"] == address
    ]


def test_set_password_signs_the_user_out_everywhere_and_notifies(signed_in, smtp, app, idp):
    from idp.models import RememberedBrowser, SsoSession, db
    from tests.actions import LoginActions
    from tests.factories import PASSWORD

    browser, secret, tokens = signed_in
    seen = len(smtp.messages)
    code, out, err = idp("user", "set-password", "bruno", "--password-stdin", input=NEW + "\n")
    assert code == 0, err
    assert "bruno" in out and len(out.strip().splitlines()) == 1
    assert _silent(browser).get("error") == "login_required"
    assert _refresh(browser, secret, tokens).json.get("error") == "invalid_grant"
    assert _userinfo(browser, tokens).status_code == 401
    with app.app_context():
        assert db.session.scalars(db.select(SsoSession)).all() == []
        assert db.session.scalars(db.select(RememberedBrowser)).all() == []
    notices = _notices_to(smtp, "bruno@exemple.fr", seen)
    assert len(notices) == 1 and "vient d’être modifié" in notices[0]
    events = _audit(app)
    assert ("password.changed", {"reason": "operator", "keep_sessions": False}) in events
    assert any(e == "sessions.revoked" and d["count"] == 1 for e, d in events)
    stranger = LoginActions(app.test_client())
    refused = stranger.submit_password(stranger.authorize().location, "bruno", PASSWORD)
    assert refused.status_code == 200
    again = browser.submit_password(browser.authorize().location, "bruno", NEW)
    assert "/login/otp" in again.location  # the remembered second factor went too


def test_set_password_keep_sessions_only_replaces_the_password(signed_in, smtp, app, idp):
    browser, secret, tokens = signed_in
    seen = len(smtp.messages)
    code, out, err = idp(
        "user", "set-password", "bruno", "--keep-sessions", "--password-stdin", input=NEW + "\n"
    )
    assert code == 0, err
    assert "code" in _silent(browser)
    assert _userinfo(browser, tokens).status_code == 200
    assert "access_token" in _refresh(browser, secret, tokens).json
    assert len(_notices_to(smtp, "bruno@exemple.fr", seen)) == 1
    events = _audit(app)
    assert ("password.changed", {"reason": "operator", "keep_sessions": True}) in events
    assert "sessions.revoked" not in [e for e, _ in events]


def test_set_password_stands_when_the_notice_cannot_be_sent(signed_in, smtp, app, idp):
    browser, secret, tokens = signed_in
    smtp.refuse = True
    code, out, err = idp("user", "set-password", "bruno", "--password-stdin", input=NEW + "\n")
    smtp.refuse = False
    assert code == 0, err
    assert "bruno" in out
    assert "e-mail" in err and len(err.strip().splitlines()) == 1  # the operator is told
    assert _silent(browser).get("error") == "login_required"
    assert _userinfo(browser, tokens).status_code == 401
    events = _audit(app)
    assert ("mail.failed", {"kind": "password_changed", "attempt": 1}) in events
    assert ("password.changed", {"reason": "operator", "keep_sessions": False}) in events


def test_set_password_applies_the_whole_policy_with_the_account(app, idp):
    from idp.models import User, db
    from tests.factories import make_user

    with app.app_context():
        before = make_user("zoe", email="zoe.2024@exemple.fr").password_hash
    args = ["user", "set-password", "zoe", "--password-stdin"]
    code, _, err = idp(*args, input="Zoe.2024@exemple.fr\n")
    assert code == 1 and "password refused" in err and len(err.strip().splitlines()) == 1
    with app.app_context():
        assert (
            db.session.scalars(db.select(User).filter_by(username="zoe")).one().password_hash
            == before
        )
