"""Look-alike identifiers (SECURITY.md, "Identifiers"): one name, one account.

``alice``, ``Alice``, a fullwidth ``ａｌｉｃｅ`` and ``élise`` in NFC or NFD
compare equal (NFKC + case folding); invisible characters are refused; the
migration that adds the keys reports existing collisions, never merges them.
"""

from __future__ import annotations

import unicodedata

import pytest
from sqlalchemy import text

from idp.models import User, db
from idp.users import UserError, create_user, find_by_identifier
from tests.factories import PASSWORD, make_user

ELISE_NFC = unicodedata.normalize("NFC", "élise")
ELISE_NFD = unicodedata.normalize("NFD", "élise")


@pytest.mark.parametrize(
    "look_alike",
    ["Alice", "ALICE", "ａｌｉｃｅ", "Ａlice", "ＡＬＩＣＥ"],
)
def test_a_look_alike_identifier_is_refused(app, look_alike):
    with app.app_context():
        make_user("alice")
        with pytest.raises(UserError, match="already exists"):
            make_user(look_alike, email=f"other-{len(look_alike)}@exemple.fr")


@pytest.mark.parametrize(
    "invisible",
    ["alice\u200b", "al\u200dice", "\u202ealice", "ali\u00adce", "alice\x00", "ali\tce", "ali ce"],
)
def test_control_format_and_zero_width_characters_are_refused(app, invisible):
    with app.app_context(), pytest.raises(UserError, match="invisible"):
        create_user(invisible, "x@exemple.fr", PASSWORD)


def test_nfc_and_nfd_forms_are_one_identifier(app):
    with app.app_context():
        make_user(ELISE_NFC, email="elise@exemple.fr")
        with pytest.raises(UserError):
            make_user(ELISE_NFD, email="elise2@exemple.fr")
        assert find_by_identifier(ELISE_NFD).email == "elise@exemple.fr"


def test_look_alike_e_mails_are_refused_and_matched(app):
    with app.app_context():
        make_user("alice", email="alice@exemple.fr")
        with pytest.raises(UserError):
            make_user("alice2", email="ＡＬＩＣＥ@exemple.fr")
        assert find_by_identifier("ａｌｉｃｅ@ＥＸＥＭＰＬＥ.fr").username == "alice"
        with pytest.raises(UserError):  # a username may not be another account's e-mail
            make_user("alice＠exemple.fr", email="third@exemple.fr")


def test_sign_in_matches_identifiers_the_same_way(app, client):
    from tests.actions import LoginActions
    from tests.factories import make_client

    with app.app_context():
        make_user("alice")
        make_client()
    login = LoginActions(client)
    for typed in ("ａｌｉｃｅ", "ALICE", " alice "):
        response = login.submit_password(login.authorize(prompt="login").location, typed)
        assert "code=" in response.location, typed


def test_idp_user_add_refuses_a_look_alike(idp, app):
    assert idp("init")[0] == 0
    ok = idp("user", "add", "alice", "--email", "a@exemple.fr", "--password-stdin", input=PASSWORD)
    assert ok[0] == 0
    code, _, err = idp(
        "user", "add", "ａｌｉｃｅ", "--email", "b@exemple.fr", "--password-stdin", input=PASSWORD
    )
    assert code == 1 and "already exists" in err and len(err.strip().splitlines()) == 1


def test_the_migration_reports_collisions_and_merges_nothing(migrating_app, capfd):
    """Accounts created before the keys existed: both stay, the operator is told."""
    from flask_migrate import upgrade

    app, directory = migrating_app
    with app.app_context():
        upgrade(directory=directory, revision="0002")
        insert = text(
            "INSERT INTO users (subject, username, email, name, given_name, family_name,"
            " profession, roles, locale, password_hash, password_changed_at, disabled,"
            " created_at, updated_at) VALUES (:s, :u, :e, '', '', '', '', '[]', 'fr', '',"
            " 0, false, 0, 0)"
        )
        for n, (username, email) in enumerate(
            [("alice", "alice@exemple.fr"), ("Alice", "ALICE2@exemple.fr"), ("bob", "b@x.fr")]
        ):
            db.session.execute(insert, {"s": f"sub{n}", "u": username, "e": email})
        db.session.commit()
        upgrade(directory=directory)  # Alembic logs to standard error: what `idp init` shows
        rows = {u.username: u for u in db.session.scalars(db.select(User))}
        assert rows["alice"].username_key == "alice" and rows["Alice"].username_key is None
        assert rows["Alice"].email_key == "alice2@exemple.fr"  # its e-mail is its own
        assert rows["bob"].username_key == "bob"
        assert find_by_identifier("Alice").username == "Alice"  # exact name still signs in
        assert find_by_identifier("alice").username == "alice"
        db.session.remove()
        db.engine.dispose()
    report = capfd.readouterr().err
    assert "identity collision" in report and "'Alice'" in report
