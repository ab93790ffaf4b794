"""One login, one user, one code (SECURITY.md, "The second factor").

A login transaction binds its user once, at the password step, by a
compare-and-set; a code is bound to the user it was sent to; a remembered
second factor dies with the browser id another professional signed in under.
The racing requests are replayed deterministically here (a stale copy of the
transaction, as a request that read it before the winner wrote); the same
races run for real, under gunicorn, in ``tests/e2e/test_login_race.py``.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, update

from idp import clock
from idp.auth import flow
from idp.models import LoginTransaction, OtpChallenge, db
from idp.users import find_by_username
from tests.actions import LoginActions, code_in, csrf_of
from tests.factories import PASSWORD, make_client, make_user, query_of


@pytest.fixture
def login(smtp, app, client):
    with app.app_context():
        make_user("alice")
        make_user("raoul", roles=["patient_data"])  # the attacker, with an account of his own
        make_user("victor", roles=["patient_data"])  # the victim, whose password he knows
        make_user("dora", roles=["patient_data"])
        make_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return LoginActions(client)


def _tx_id(url: str) -> str:
    return query_of(url)["tx"]


def _stale_copy(app) -> LoginTransaction:
    """The transaction as a racing request read it, before the other one wrote."""
    with app.app_context():
        row = db.session.scalars(select(LoginTransaction)).one()
        db.session.expunge(row)
        return row


def _as_read_by(stale: LoginTransaction) -> LoginTransaction:
    """Put the stale copy in this request's session as it is (not refreshed, not dirty)."""
    db.session.add(stale)
    return stale


def _signed_in_user(login) -> str:
    page = login.client.get("/account/")
    assert page.status_code == 200, page.location
    return page.text


def test_a_racing_password_step_never_changes_the_user_of_the_login(login, app, smtp):
    login_url = login.client.get("/login").location  # "Connexion": ends in the console
    stale = _stale_copy(app)
    response = login.submit_password(login_url, "raoul")
    assert "/login/otp" in response.location
    codes_sent = len(smtp.messages)

    with app.test_request_context():
        victim = find_by_username("victor")
        late = flow.after_password(_as_read_by(stale), _tx_id(login_url), victim, clock.now())
        assert late.status_code == 303  # sent to where the winner left the login
        row = db.session.scalars(select(LoginTransaction)).one()
        assert row.user_id == find_by_username("raoul").id and row.step == "otp"
    assert len(smtp.messages) == codes_sent  # and nothing sent to anyone

    login.submit_code(response.location, code_in(smtp.last_text()))
    home = _signed_in_user(login)
    assert "raoul" in home and "victor" not in home


def test_a_code_sent_to_one_user_never_signs_in_another(login, app, smtp):
    """Even if something swapped the login's user, the attacker's code proves nothing."""
    otp_url = login.submit_password(login.client.get("/login").location, "raoul").location
    code = code_in(smtp.last_text())
    with app.app_context():
        victim = find_by_username("victor")
        db.session.execute(update(LoginTransaction).values(user_id=victim.id))
        db.session.commit()
    response = login.submit_code(otp_url, code)
    assert response.status_code == 303 and "/login/otp" in response.location
    assert login.client.get("/account/").status_code == 302  # nobody signed in
    with app.app_context():
        challenge = db.session.scalars(select(OtpChallenge)).one()
        assert challenge.user_id == find_by_username("raoul").id and not challenge.used


def test_the_code_hash_is_keyed_on_the_user(login, app, smtp):
    login.submit_password(login.client.get("/login").location, "raoul")
    code = code_in(smtp.last_text())
    with app.test_request_context():
        from idp.auth.otp import _hash

        tx = db.session.scalars(select(LoginTransaction)).one()
        challenge = db.session.scalars(select(OtpChallenge)).one()
        assert challenge.code_hash == _hash(tx, tx.user_id, code)
        assert challenge.code_hash != _hash(tx, find_by_username("victor").id, code)


def test_a_double_clicked_password_form_sends_one_code_and_never_fails(login, app, smtp):
    login_url = login.authorize().location
    token = csrf_of(login.client.get(login_url).text)
    cookies = {c.key: c.value for c in login.client._cookies.values()}
    form = {"csrf_token": token, "username": "dora", "password": PASSWORD}
    statuses, barrier = [], threading.Barrier(2)

    def click() -> None:
        browser = app.test_client()
        for key, value in cookies.items():
            browser.set_cookie(key, value)
        barrier.wait()
        statuses.append(browser.post(login_url, data=form).status_code)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [302, 303]
    assert len(smtp.messages) == 1
    otp_url = login_url.replace("/login?", "/login/otp?")
    assert "code=" in login.submit_code(otp_url, code_in(smtp.last_text())).location


def test_a_stale_channel_choice_sends_no_second_code(smtp, sms_gateway, app, client):
    with app.app_context():
        make_user("chloe", roles=["patient_data"], backup_phone="+33612345678")
        make_client()
    login = LoginActions(client)
    channel_url = login.submit_password(login.authorize().location, "chloe").location
    stale = _stale_copy(app)
    login.choose_channel(channel_url, "sms")
    with app.test_request_context():
        late = flow.send_first_code(
            _as_read_by(stale), _tx_id(channel_url), find_by_username("chloe"), "email"
        )
        assert late.status_code == 303
    assert len(sms_gateway.received) == 1 and smtp.messages == []


def test_an_old_browser_id_loses_the_remembered_factor_when_another_user_is_remembered(
    login, app, smtp
):
    """M7: A remembered on browser Z; B signs in on Z and ticks "remember"; A's record
    under Z's *old* id must be gone, not only under the new one."""
    otp_url = login.submit_password(login.authorize().location, "victor").location
    login.submit_code(otp_url, code_in(smtp.last_text()), remember=True)
    old_id = login.client.get_cookie("idp_browser").value

    otp_url = login.submit_password(login.authorize(prompt="login").location, "dora").location
    login.submit_code(otp_url, code_in(smtp.last_text()), remember=True)
    assert login.client.get_cookie("idp_browser").value != old_id

    copied = LoginActions(app.test_client())
    copied.client.set_cookie("idp_browser", old_id)
    response = copied.submit_password(copied.authorize().location, "victor")
    assert "/login/otp" in response.location  # the old id spares victor nothing
