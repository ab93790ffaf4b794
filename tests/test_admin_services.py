"""The operator console's services, without HTTP (docs/OPERATING.md, "The operator console").

Each action is checked for what it changes, what it audits (with the acting admin)
and what it refuses; the same functions serve the ``idp`` command.
"""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from idp import clock, throttle
from idp.admin import accounts, audit_log, overview
from idp.auth.password import account_prefix
from idp.clients import ClientError, find_client, remove_client, rotate_secret, update_uris
from idp.models import (
    AuditEvent,
    OutboxMessage,
    PasswordResetToken,
    RememberedBrowser,
    SsoSession,
    Token,
    User,
    db,
)
from idp.models.clients import hash_client_secret

from .factories import make_client, make_user


@pytest.fixture
def ctx(smtp, app):
    """The app, its context, and a real SMTP server for the notices."""
    with app.app_context():
        yield app


@pytest.fixture
def boss(ctx):
    return make_user("boss", roles=["admin"])


def _events(name: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)))


def _session_for(user: User, sid: str = "sid-1") -> SsoSession:
    now = clock.now()
    row = SsoSession(
        cookie_hash=f"h-{sid}", sid=sid, user_id=user.id, auth_time=now, acr="x",
        amr=["pwd"], expires_at=now + 3600,
    )  # fmt: skip
    db.session.add(row)
    db.session.commit()
    return row


def _remember(user: User) -> None:
    row = RememberedBrowser(
        browser_hash="b", user_id=user.id, credential_tag="t", expires_at=clock.now() + 60
    )
    db.session.add(row)
    db.session.commit()


def test_invite_creates_a_passwordless_account_and_mails_a_72_hour_link(ctx, boss, smtp):
    invitation = accounts.invite_user(
        "dr.invite", "Invite@Hopital.fr", name="Inès Vite", profession="Infirmière",
        roles=["patient_data"], actor=boss,
    )  # fmt: skip
    user = invitation.user
    assert invitation.sent and user.password_hash == "" and user.email == "invite@hopital.fr"
    assert user.roles == ["patient_data"] and user.name_key == "inès vite"
    token = db.session.scalars(select(PasswordResetToken)).one()
    assert token.expires_at - clock.now() == pytest.approx(72 * 3600, abs=5)
    body = smtp.last_text()
    assert "dr.invite" in body and "/password/reset/" in body
    (event,) = _events("user.invited")
    assert event.actor_id == boss.id and event.user_id == user.id


def test_invite_refuses_a_look_alike_identifier_and_writes_nothing(ctx, boss, smtp):
    make_user("alice")
    with pytest.raises(accounts.UserError):
        accounts.invite_user("ALICE", "other@hopital.fr", actor=boss)
    assert db.session.scalars(select(PasswordResetToken)).first() is None
    assert not _events("user.invited") and not smtp.messages


def test_search_by_prefix_of_identifier_email_or_name_pages(ctx):
    for n in range(7):
        make_user(f"user{n}", email=f"u{n}@exemple.fr", name=f"Zoé Nom{n}")
    make_user("martin", email="m@autre.fr", name="Élise Durand")
    assert [u.username for u in accounts.search_users("USER").users][:2] == ["user0", "user1"]
    assert [u.username for u in accounts.search_users("m@aut").users] == ["martin"]
    assert [u.username for u in accounts.search_users("élise d").users] == ["martin"]
    assert accounts.search_users("zzz").users == []
    first = accounts.search_users("user", page=1, per_page=3)
    third = accounts.search_users("user", page=3, per_page=3)
    assert first.has_next and [u.username for u in third.users] == ["user6"]
    assert not third.has_next
    assert accounts.search_users("50%_").users == []  # no LIKE wildcards
    assert accounts.search_users("\U0010ffff").users == []  # the last code point: no 500


def test_disable_ends_everything_and_is_audited_with_the_actor(ctx, boss):
    alice = make_user("alice")
    _session_for(alice)
    _remember(alice)
    assert accounts.disable(alice, actor=boss) == 1
    assert alice.disabled
    assert db.session.scalars(select(SsoSession)).first() is None
    assert db.session.scalars(select(RememberedBrowser)).first() is None
    (event,) = _events("account.disabled")
    assert event.actor_id == boss.id and event.user_id == alice.id


def test_an_admin_cannot_disable_themselves_nor_the_last_admin(ctx, boss):
    with pytest.raises(accounts.AccountActionRefused) as refused:
        accounts.disable(boss, actor=boss)
    assert refused.value.reason == "self"
    with pytest.raises(accounts.AccountActionRefused) as refused:
        accounts.disable(boss)  # the idp command: no actor, still the last admin
    assert refused.value.reason == "last_admin"
    other = make_user("other", roles=["admin"])
    accounts.disable(other, actor=boss)
    assert other.disabled and not boss.disabled


def test_enable_and_unlock_clear_state_with_the_actor(ctx, boss):
    alice = make_user("alice")
    alice.disabled = True
    db.session.commit()
    accounts.enable(alice, actor=boss)
    assert not alice.disabled and _events("account.enabled")[0].actor_id == boss.id
    for key in (f"{account_prefix(alice.id)}:x", f"otp-fail:{alice.id}"):
        throttle.register_failure(key, 1, 3600)
    assert overview.overview(alice).locked
    assert accounts.unlock(alice, actor=boss) == 2
    assert not overview.overview(alice).locked
    assert _events("account.unlocked")[0].actor_id == boss.id


def test_reset_second_factor_removes_phone_and_browsers_and_notifies(ctx, boss, smtp):
    alice = make_user("alice", backup_phone="+33612345678")
    _remember(alice)
    accounts.reset_second_factor(alice, actor=boss)
    assert alice.backup_phone is None
    assert db.session.scalars(select(RememberedBrowser)).first() is None
    assert (
        "second factor" in smtp.messages[-1]["Subject"] or "facteur" in smtp.messages[-1]["Subject"]
    )
    assert _events("second_factor.reset")[0].actor_id == boss.id


def test_roles_change_is_audited_and_an_admin_keeps_their_own_admin_role(ctx, boss):
    alice = make_user("alice")
    assert accounts.set_roles(alice, ["patient_data", "bogus"], actor=boss) == (
        ["patient_data"],
        [],
    )
    assert alice.roles == ["patient_data"]
    event = _events("roles.changed")[0]
    assert event.actor_id == boss.id and event.detail["added"] == "patient_data"
    with pytest.raises(accounts.AccountActionRefused):
        accounts.set_roles(boss, [], actor=boss)
    assert boss.roles == ["admin"]


def test_editing_the_email_tells_the_old_address_and_voids_links(ctx, boss, smtp):
    alice = make_user("alice", email="old@exemple.fr")
    alice.email_verified = True
    accounts.send_link(alice, actor=boss)
    assert accounts.edit_record(
        alice, email="new@exemple.fr", name="Alice M", profession="", actor=boss
    )
    assert alice.email == "new@exemple.fr" and not alice.email_verified
    assert db.session.scalars(select(PasswordResetToken)).first() is None
    notice = smtp.messages[-1]
    assert notice["To"] == "old@exemple.fr" and "new@exemple.fr" in smtp.last_text()
    make_user("bob", email="bob@exemple.fr")
    with pytest.raises(accounts.UserError):
        accounts.edit_record(alice, email="BOB@exemple.fr", name="", profession="", actor=boss)


def test_send_link_is_an_invitation_until_a_password_is_chosen(ctx, boss, smtp):
    invited = accounts.invite_user("newbie", "newbie@exemple.fr", actor=boss).user
    assert accounts.send_link(invited, actor=boss)
    assert "/password/reset/" in smtp.last_text()
    assert len(db.session.scalars(select(PasswordResetToken)).all()) == 1  # the older one died
    assert _events("password.reset_requested")[0].detail["invitation"] is True


def test_end_sessions_revokes_tokens_and_keeps_remembered_browsers(ctx, boss):
    alice = make_user("alice")
    _session_for(alice)
    _remember(alice)
    assert accounts.end_sessions(alice, actor=boss) == 1
    assert db.session.scalars(select(SsoSession)).first() is None
    assert db.session.scalars(select(RememberedBrowser)).first() is not None
    assert _events("sessions.ended_by_operator")[0].actor_id == boss.id


def test_client_uris_rotation_and_removal_share_the_registration_rules(ctx, boss):
    make_client("rp", backchannel_logout_uri="https://rp.example/bc")
    with pytest.raises(ClientError):
        update_uris("rp", ["http://evil.example/cb"], [], None, actor_id=boss.id)
    with pytest.raises(ClientError):
        update_uris("rp", [], [], None)
    row = update_uris("rp", ["https://rp.example/new"], ["https://rp.example/bye"], None)
    assert row.client_metadata["redirect_uris"] == ["https://rp.example/new"]
    assert "backchannel_logout_uri" not in row.client_metadata
    secret = rotate_secret("rp", actor_id=boss.id)
    assert find_client("rp").client_secret_hash == hash_client_secret(secret)
    assert _events("client.secret_rotated")[0].actor_id == boss.id
    make_client("spa", public=True)
    with pytest.raises(ClientError):
        rotate_secret("spa")
    remove_client("rp", actor_id=boss.id)
    assert find_client("rp") is None and _events("client.removed")[0].actor_id == boss.id


def test_audit_filters_and_csv_stream(ctx, boss, frozen_clock):
    alice = make_user("alice")
    from idp import audit

    audit.record("login.failed", user_id=alice.id)
    frozen_clock.advance(86400 * 3)
    audit.record("login.succeeded", user_id=alice.id)
    audit.record("account.disabled", user_id=alice.id, actor_id=boss.id)
    audit.record("login.failed", user_id=boss.id)
    rows, more = audit_log.page(audit_log.Filters(user="alice", event="login."))
    assert [r.event for r in rows] == ["login.succeeded", "login.failed"] and more is None
    assert [r.outcome for r in rows] == ["success", "failure"]
    day = __import__("datetime").datetime.fromtimestamp(clock.now(), __import__("datetime").UTC)
    rows, _ = audit_log.page(audit_log.Filters(since=day.strftime("%Y-%m-%d")))
    assert {r.event for r in rows} == {"login.succeeded", "account.disabled", "login.failed"}
    rows, more = audit_log.page(audit_log.Filters(), per_page=2)
    assert more is not None and len(audit_log.page(audit_log.Filters(), before=more)[0]) == 2
    with pytest.raises(audit_log.FilterError):
        audit_log.page(audit_log.Filters(until="yesterday"))
    lines = audit_log.csv_lines(audit_log.Filters(event="account.disabled"))
    assert not isinstance(lines, list)  # a generator: streamed
    table = list(csv.reader(io.StringIO("".join(lines))))
    assert table[0] == list(audit_log.COLUMNS)
    assert table[1][1:5] == ["account.disabled", "success", "alice", "boss"]
    assert len(table) == 2


def test_csv_cells_cannot_become_formulas(ctx):
    assert audit_log._cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert audit_log._cell("alice") == "alice"


def test_overview_shows_counts_and_times_never_secrets(ctx, boss):
    alice = make_user("alice")
    view = overview.overview(alice)
    assert not view.locked and not view.invited and view.browsers == []
    assert db.session.scalars(select(OutboxMessage)).first() is None
    assert db.session.scalars(select(Token)).first() is None


def test_the_cli_uses_the_same_services(idp, smtp, settings):
    assert idp("user", "invite", "cli.user", "--email", "cli@exemple.fr", "--role", "admin")[0] == 0
    assert "/password/reset/" in smtp.last_text()
    code, _, err = idp("user", "disable", "cli.user")
    assert code != 0 and "last enabled admin" in err
    assert idp("user", "reset-second-factor", "cli.user")[0] == 0
    assert idp("user", "invite", "x", "--email", "bad")[0] != 0
    assert idp("user", "invite", "plain", "--email", "plain@exemple.fr")[0] == 0
    assert idp("user", "disable", "plain")[0] == 0
    assert idp("user", "enable", "plain") == (0, "user plain enabled\n", "")


def test_the_migration_gives_existing_names_their_search_key(migrating_app):
    from flask_migrate import upgrade
    from sqlalchemy import text

    app, directory = migrating_app
    with app.app_context():
        upgrade(directory=directory, revision="0009")
        db.session.execute(
            text(
                "INSERT INTO users (id, subject, username, email, name, given_name, family_name,"
                " profession, roles, locale, password_hash, password_changed_at, disabled,"
                " created_at, updated_at, credential_id, email_verified) VALUES (1, 's', 'u',"
                " 'u@x.fr', ' Élise DURAND', '', '', '', '[]', 'fr', '', 0, false, 0, 0, 'c',"
                " false)"
            )
        )
        db.session.commit()
        upgrade(directory=directory)
        assert db.session.get(User, 1).name_key == "élise durand"
        assert [u.username for u in accounts.search_users("élise d").users] == ["u"]
        db.session.remove()
        db.engine.dispose()
