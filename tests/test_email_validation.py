"""E-mail addresses: one validator (``idp.users.validate_email_address``), and
``email_verified`` only once the mailbox was proven.

The address is where codes and reset links go: an address the SMTP transport
reads differently from our duplicate check (a display name, CR/LF, a second
``@``) sent codes to another mailbox or lost them, and let a second account sit
on an existing mailbox (SECURITY.md, "Identifiers").
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, text

from idp.models import User, db
from idp.users import UserError, find_by_identifier
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import PASSWORD, make_client, make_user, query_of

NEW_PASSWORD = "Another-Long-Pass-42"


def _add(idp, username, email):
    return idp(
        "user", "add", username, "--email", email, "--password-stdin", "--json", input=PASSWORD
    )


def _emails(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(User.email)))


# -- what `idp user add` accepts ----------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "mallory@exemple.fr\r\n",  # before: stripped silently and stored
        "mallory@exemple.fr\n",
        "mallory@exemple.fr\r",
        "mallory@exemple.fr\r\nBcc: other@exemple.fr",
        "\r\nmallory@exemple.fr",
    ],
)
def test_an_address_with_cr_or_lf_is_refused(idp, app, hostile):
    code, _, err = _add(idp, "mallory", hostile)
    assert code == 1 and "e-mail address" in err and len(err.strip().splitlines()) == 1
    assert _emails(app) == []


@pytest.mark.parametrize(
    "display_form",
    [
        '"Alice"<alice@exemple.fr>',  # before: stored as is; mail went to alice@exemple.fr
        '"x" <alice@exemple.fr>',
        "Alice <alice@exemple.fr>",
        "<alice@exemple.fr>",
        '"x"<other@exemple.fr>',
    ],
)
def test_an_address_in_display_name_form_is_refused(idp, app, display_form):
    with app.app_context():
        make_user("alice", email="alice@exemple.fr")
    code, _, err = _add(idp, "mallory", display_form)
    assert code == 1 and "e-mail address" in err
    assert _emails(app) == ["alice@exemple.fr"]  # no second account on alice's mailbox


@pytest.mark.parametrize(
    "malformed",
    [
        "a@b@exemple.fr",  # before: stored
        "alice@exemple.fr.",  # before: stored (trailing dot)
        "alice@exemple",
        "alice@",
        "@exemple.fr",
        '"a b"@exemple.fr',
        "alice@[192.0.2.1]",
        "élise@exemple.fr",  # a non-ASCII mailbox name needs SMTPUTF8 from every relay
        "x" * 65 + "@exemple.fr",
        "",
    ],
)
def test_a_malformed_address_is_refused(idp, app, malformed):
    code, _, err = _add(idp, "mallory", malformed)
    assert code != 0 and err
    assert _emails(app) == []


def test_an_internationalised_domain_is_accepted_and_normalised(smtp, app, idp):
    code, out, err = _add(idp, "amelie", "Amelie@ÉCOLE.fr")
    assert code == 0, err
    assert json.loads(out)["email"] == "amelie@école.fr"
    with app.app_context():
        assert find_by_identifier("amelie@xn--cole-9oa.fr").username == "amelie"
        assert find_by_identifier("AMELIE@école.FR").username == "amelie"
    # The same mailbox written in ASCII (IDNA) is the same address: no second account.
    code, _, err = _add(idp, "amelie2", "amelie@xn--cole-9oa.fr")
    assert code == 1 and "already exists" in err
    # Mail to it leaves with the domain in IDNA, which every relay understands.
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    page = client.get("/password/forgot")
    client.post("/password/forgot", data={"csrf_token": csrf_of(page.text), "identifier": "amelie"})
    assert [m["To"] for m in smtp.messages] == ["amelie@xn--cole-9oa.fr"]


@pytest.mark.parametrize(
    "duplicate",
    [
        "ALICE@exemple.fr",
        "Alice@Exemple.FR",
        "alice@EXEMPLE.FR",
        " alice@exemple.fr ",
        '"Alice" <alice@exemple.fr>',
        '"Alice"<ALICE@exemple.fr>',  # before: a second account on alice's mailbox
        "ａｌｉｃｅ@exemple.fr",
    ],
)
def test_a_duplicate_differing_by_case_or_form_is_refused(idp, app, duplicate):
    code, _, err = _add(idp, "alice", "alice@exemple.fr")
    assert code == 0, err
    code, _, err = _add(idp, "alice2", duplicate)
    assert code == 1 and err
    assert _emails(app) == ["alice@exemple.fr"]


def test_the_validator_returns_the_stored_form(app):
    from idp.users import validate_email_address

    with app.app_context():
        assert validate_email_address("J.Dupont@EXEMPLE.fr") == "j.dupont@exemple.fr"
        assert validate_email_address(" j@exemple.fr ") == "j@exemple.fr"  # spaces only
        assert validate_email_address("j@xn--cole-9oa.fr") == "j@école.fr"
        with pytest.raises(UserError):
            validate_email_address("j@exemple.fr\t")


# -- email_verified: true only once the mailbox was proven ---------------------


@pytest.fixture
def rp(smtp, sms_gateway, app):
    with app.app_context():
        make_user("alice")
        make_user("bruno", roles=["patient_data"])
        make_user("chloe", roles=["patient_data"], backup_phone="+33612345678")
        return make_client()[1]


def _verified(app, username) -> bool:
    with app.app_context():
        return db.session.scalars(select(User).filter_by(username=username)).one().email_verified


def _userinfo(app, secret, username, channel="email", read_code=None) -> dict:
    """Sign in through an RP (choosing ``channel`` when asked), return /userinfo."""
    login = LoginActions(app.test_client())
    response = login.submit_password(login.authorize().location, username)
    if "/login/channel" in response.location:
        response = login.choose_channel(response.location, channel)
    if "/login/otp" in response.location:
        response = login.submit_code(response.location, code_in(read_code()))
    tokens = login.exchange(query_of(response.location)["code"], secret=secret).json
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    return login.client.get("/userinfo", headers=auth).json


def test_an_address_set_by_the_operator_is_not_verified(rp, app):
    claims = _userinfo(app, rp, "alice")
    assert claims["email"] == "alice@exemple.fr" and claims["email_verified"] is False


def test_an_e_mailed_code_typed_at_sign_in_verifies_the_address(rp, app, smtp):
    assert _verified(app, "bruno") is False
    claims = _userinfo(app, rp, "bruno", read_code=smtp.last_text)
    assert claims["email_verified"] is True and _verified(app, "bruno") is True


def test_a_code_sent_by_sms_does_not_verify_the_address(rp, app, smtp, sms_gateway):
    claims = _userinfo(app, rp, "chloe", "sms", lambda: sms_gateway.received[-1]["text"])
    assert claims["email_verified"] is False and _verified(app, "chloe") is False
    claims = _userinfo(app, rp, "chloe", "email", smtp.last_text)
    assert claims["email_verified"] is True


def test_a_used_reset_link_verifies_the_address(rp, app, smtp):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    page = client.get("/password/forgot")
    client.post("/password/forgot", data={"csrf_token": csrf_of(page.text), "identifier": "alice"})
    assert _verified(app, "alice") is False  # asking for a link proves nothing
    link = smtp.last_text().split("http://idp.test", 1)[1].split()[0]
    form = client.get(client.get(link).location)
    done = client.post(
        link,
        data={
            "csrf_token": csrf_of(form.text),
            "new_password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD,
        },
    )
    assert done.status_code == 200 and _verified(app, "alice") is True


def test_the_migration_keeps_what_the_audit_trail_proves(migrating_app):
    """Existing accounts: verified only where a code by e-mail or a reset link was used."""
    from flask_migrate import upgrade

    app, directory = migrating_app
    with app.app_context():
        upgrade(directory=directory, revision="0004")
        insert = text(
            "INSERT INTO users (id, subject, username, email, name, given_name, family_name,"
            " profession, roles, locale, password_hash, password_changed_at, disabled,"
            " created_at, updated_at, credential_id) VALUES (:id, :s, :u, :e, '', '', '', '',"
            " '[]', 'fr', '', 0, false, 0, 0, 'c')"
        )
        audit = text("INSERT INTO audit_events (at, event, user_id, detail) VALUES (0, :e, :u, :d)")
        for n, name in enumerate(["coded", "texted", "reset", "never"], start=1):
            db.session.execute(insert, {"id": n, "s": f"s{n}", "u": name, "e": f"{name}@x.fr"})
        for event, user_id, detail in [
            ("otp.verified", 1, {"channel": "email"}),
            ("otp.verified", 2, {"channel": "sms"}),
            ("password.reset", 3, {}),
            ("otp.sent", 4, {"channel": "email"}),
        ]:
            db.session.execute(audit, {"e": event, "u": user_id, "d": json.dumps(detail)})
        db.session.commit()
        upgrade(directory=directory)
        rows = {u.username: u.email_verified for u in db.session.scalars(select(User))}
        assert rows == {"coded": True, "texted": False, "reset": True, "never": False}
        db.session.remove()
        db.engine.dispose()
