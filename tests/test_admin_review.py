"""The operator console under attack: what a security review found and what held.

Each test here failed before its fix (docs/CONVENTIONS.md: "each bug you fix has a
test that fails without the fix"); the gate, CSRF and the confirmations are in
``test_admin_console.py``, the services in ``test_admin_services.py``.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from idp import audit
from idp.account.passwords import enabled_admin_ids
from idp.admin import accounts
from idp.delivery import outbox
from idp.models import RememberedBrowser, SsoSession, User, db

from .actions import LoginActions, csrf_of
from .factories import make_client, make_user
from .test_admin_console import _sign_in
from .test_step_atomicity import each_failure_then_success


@pytest.fixture
def people(smtp, app):
    with app.app_context():
        make_user("boss", roles=["admin"])
        make_user("alice")
        make_client("rp")
    return smtp


@pytest.fixture
def login(people, client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "fr"
    return LoginActions(client)


@pytest.mark.parametrize(
    "path",
    [
        "/admin/users?page=%C2%B2",  # "²".isdigit() is true, int("²") raises
        "/admin/users?page=" + "9" * 5000,  # int() refuses more than 4,300 digits
        "/admin/audit?before=%C2%B2",
        "/admin/audit?before=" + "9" * 5000,
        "/admin/audit?before=" + "9" * 30,  # beyond a 64-bit integer: SQLite refuses it
        "/admin/users?q=%ED%9F%BF",  # U+D7FF: the prefix's upper bound was a surrogate
        "/admin/users?q=dr%ED%9F%BF",
    ],
)
def test_odd_numbers_and_search_texts_get_a_page_not_a_500(login, people, path):
    _sign_in(login, people)
    response = login.client.get(path)
    assert response.status_code == 200


def test_search_by_a_prefix_ending_before_the_surrogates(app, people):
    with app.app_context():
        make_user("dr\ud7fb", email="hangul@exemple.fr")  # an assigned Hangul jamo
        assert [u.username for u in accounts.search_users("dr\ud7fb").users] == ["dr\ud7fb"]
        assert accounts.search_users("dr\ud7ff").users == []


@pytest.mark.parametrize(
    "planted",
    [
        "/admin/users/..%2F..%2Flogout",  # the browser resolves the dot segments
        "/admin/users/%252e%252e/%252e%252e/logout",  # decoded once: %2e%2e, a dot segment too
        "/admin/users/.%2F..%2F..%2Faccount%2F",
        "/admin/users/%0Aa",  # a newline cannot go in Location: every sign-in failed
        "/admin/users/%09%2F..%2F..",
    ],
)
def test_a_planted_console_page_cannot_lead_out_of_the_console(login, people, planted):
    """Anyone can make an admin's browser ask for a console page before it signs in
    (a link): where the sign-in then leads must be a console page, and work."""
    assert login.client.get(planted).status_code == 403
    response = _sign_in(login, people)
    assert response.status_code == 302 and response.location == "/account/"
    assert login.client.get("/admin/users").status_code == 200


def test_a_console_page_with_a_name_comes_back_after_the_sign_in(login, people):
    assert login.client.get("/admin/users/%C3%A9lise?x=..").status_code == 403
    response = _sign_in(login, people)
    assert response.location == "/admin/users/%C3%A9lise?x=.."


def _at_the_same_moment(monkeypatch, app, event: str, other) -> list:
    """When this step records ``event`` (its change written, not committed), another
    operator's step runs in its own thread and database session; this one waits for it
    a second (it may be waiting on this one's lock), then goes on and commits."""
    original, outcome, threads = audit.record, [], []

    def work():
        with app.app_context():
            try:
                outcome.append(other())
            except accounts.AccountActionRefused as refused:
                outcome.append(refused.reason)
            finally:
                db.session.remove()

    def record(name, **kw):
        if name == event and not threads:
            threads.append(threading.Thread(target=work))
            threads[0].start()
            threads[0].join(1.0)
        return original(name, **kw)

    monkeypatch.setattr(audit, "record", record)
    return outcome, threads


def _by_name(name: str) -> User:
    return db.session.scalars(select(User).where(User.username == name)).one()


def _disable(target, actor):
    return accounts.disable(_by_name(target), actor=_by_name(actor))


def _no_role(target, actor):
    return accounts.set_roles(_by_name(target), [], actor=_by_name(actor))


@pytest.mark.parametrize(
    ("first", "second", "event"),
    [
        (_disable, _disable, "account.disabled"),
        (_no_role, _no_role, "roles.changed"),
        (_no_role, _disable, "roles.changed"),
        (_disable, _no_role, "account.disabled"),
    ],
)
def test_two_admins_acting_on_each_other_at_once_leave_an_enabled_admin(
    smtp, app, monkeypatch, first, second, event
):
    """Ann acts on Bob while Bob acts on Ann (disable, or remove the admin role): one of
    them wins, the other is refused, and the portal keeps an enabled admin. Before, each
    read "two admins" then wrote: both disabled (SQLite), or no admin role left at all."""
    with app.app_context():
        make_user("ann", roles=["admin"])
        make_user("bob", roles=["admin"])
        outcome, threads = _at_the_same_moment(
            monkeypatch, app, event, lambda: second("ann", "bob")
        )
        first("bob", "ann")
        threads[0].join(10)
        assert not threads[0].is_alive()
        assert outcome and outcome[0] in ("last_admin", "last_admin_role")
        db.session.expire_all()
        assert enabled_admin_ids() == [_by_name("ann").id]


def test_the_last_enabled_admin_keeps_the_role_a_disabled_admin_loses_it(smtp, app):
    with app.app_context():
        boss = make_user("boss", roles=["admin"])
        gone = make_user("gone", roles=["admin"], email="gone@exemple.fr")
        accounts.disable(gone, actor=boss)
        with pytest.raises(accounts.AccountActionRefused) as refused:
            accounts.set_roles(boss, [])  # the ``idp`` command has no acting admin
        assert refused.value.reason == "last_admin_role"
        assert accounts.set_roles(gone, [], actor=boss) == ([], ["admin"])
        db.session.expire_all()
        assert _by_name("boss").roles == ["admin"] and _by_name("gone").roles == []


def test_a_new_user_gets_only_roles_the_form_offers(login, people, app):
    """The checkboxes accept any posted value; a role outside ``[roles]`` such as
    'x", "admin' counted as an enabled admin for the last-admin rule (a LIKE on the
    JSON text) without being one."""
    _sign_in(login, people)
    page = login.client.get("/admin/users")
    response = login.client.post(
        "/admin/users",
        data={
            "csrf_token": csrf_of(page.text),
            "username": "dr.forged",
            "email": "forged@hopital.fr",
            "roles": ['x", "admin', "patient_data", "root"],
        },
    )
    assert response.status_code == 302
    with app.app_context():
        assert _by_name("dr.forged").roles == ["patient_data"]
        assert _by_name("dr.forged").id not in enabled_admin_ids()


@pytest.mark.parametrize("action", ["disable", "reset_second_factor"])
def test_an_action_lands_whole_or_not_at_all(login, people, app, monkeypatch, action):
    """The database fails at each write of the step in turn, then at its commit: nothing
    is half done (a disabled account with live sessions, a phone gone but browsers still
    remembered); the last attempt succeeds (docs/CONVENTIONS.md, convention 17)."""
    with app.app_context():
        _by_name("alice").roles = ["patient_data"]  # the code, so the browser can be remembered
        db.session.commit()
    alice_browser = LoginActions(app.test_client())
    _sign_in(alice_browser, people, "alice", remember=True)  # a session, a remembered browser
    with app.app_context():
        alice = _by_name("alice")
        alice.backup_phone = "+33612345678"
        db.session.commit()
        assert db.session.scalars(select(RememberedBrowser)).all()
        assert db.session.scalars(select(SsoSession).where(SsoSession.user_id == alice.id)).all()
    _sign_in(login, people)
    monkeypatch.setattr(outbox, "send_soon", lambda: True)  # notices leave after the step
    token = csrf_of(login.client.get("/admin/users/alice").text)

    def attempt():
        data = {"csrf_token": token, "action": action, "confirm": "yes"}
        return login.client.post("/admin/users/alice", data=data)

    response, writes = each_failure_then_success(app, attempt)
    assert response.status_code == 303 and writes >= 3
    with app.app_context():
        alice = _by_name("alice")
        assert not db.session.scalars(select(RememberedBrowser)).all()
        if action == "disable":
            assert (
                alice.disabled
                and not db.session.scalars(
                    select(SsoSession).where(SsoSession.user_id == alice.id)
                ).all()
            )
        else:
            assert alice.backup_phone is None and not alice.disabled


def test_a_disabled_admin_or_one_whose_role_went_is_refused_at_the_next_request(login, people, app):
    _sign_in(login, people)
    assert login.client.get("/admin/users").status_code == 200
    with app.app_context():
        make_user("other", roles=["admin"])
        accounts.set_roles(_by_name("boss"), [], actor=_by_name("other"))
    assert login.client.get("/admin/users").status_code == 403
    with app.app_context():
        accounts.set_roles(_by_name("boss"), ["admin"], actor=_by_name("other"))
    assert login.client.get("/admin/users").status_code == 200
    with app.app_context():
        accounts.disable(_by_name("boss"), actor=_by_name("other"))
    page = login.client.get("/admin/users")
    assert page.status_code == 403


@pytest.mark.parametrize("username", ["..", ".", "dr/..", "../clients/rp", "a/./b"])
def test_an_identifier_a_browser_would_resolve_is_refused(smtp, app, username):
    """The console links to ``/admin/users/<identifier>``: with a dot segment the browser
    resolved the link elsewhere, and the account could not be opened nor disabled."""
    with app.app_context(), pytest.raises(accounts.UserError):
        accounts.invite_user(username, "dots@exemple.fr")


def test_identifiers_with_dots_and_slashes_stay_usable(smtp, app):
    with app.app_context():
        for number, name in enumerate(("dr.martin", "...", "a/b", ".hidden")):
            accounts.invite_user(name, f"dots{number}@exemple.fr")
        assert accounts.find("a/b") is not None


def test_a_pro_sante_connect_time_in_the_future_does_not_keep_the_console_open(app, frozen_clock):
    """PSC's ``auth_time`` is the session's: one a day ahead made it "fresh" for a day."""
    from idp.admin.access import code_is_fresh

    now = int(frozen_clock.now)
    with app.app_context():
        psc = SsoSession(acr="eidas1", psc_id_token="psc.id.token", auth_time=now + 86400)
        assert not code_is_fresh(psc)
        psc.auth_time = now + 30  # PSC's clock a little ahead
        assert code_is_fresh(psc)


def test_a_role_that_could_pass_for_admin_in_sql_is_refused_by_the_cli_too(idp):
    """``idp user add --role`` stores what it is given: a role holding a quote would
    match the SQL that counts enabled admins (the last-admin rule) without being one."""
    code, _, err = idp(
        "user", "add", "phantom", "--email", "phantom@exemple.fr", "--role", 'x", "admin',
        "--password-stdin", input="Vicodin-4-Ever!\n",
    )  # fmt: skip
    assert code != 0 and "role" in err
    code, _, _ = idp(
        "user", "add", "fine", "--email", "fine@exemple.fr", "--role", "patient_data",
        "--role", "org:cardio-2", "--password-stdin", input="Vicodin-4-Ever!\n",
    )  # fmt: skip
    assert code == 0
