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
        answer = browser.post(login_url, data=form)
        statuses.append((answer.status_code, answer.location or ""))

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The winner goes to the code page; the other click either lost the compare-and-set
    # (303) or came after the winner had finished (the step guard's 302): same page.
    assert all(status in (302, 303) for status, _ in statuses), statuses
    assert sum(status == 302 and "/login/otp" in where for status, where in statuses) >= 1
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


def test_a_move_leaves_nothing_for_an_autoflush_to_write_back(login, app):
    """A racing request's move must never be overwritten by this one's stale object."""
    from idp.auth import transaction

    login.submit_password(login.client.get("/login").location, "raoul")
    with app.test_request_context():
        tx = db.session.scalars(select(LoginTransaction)).one()
        assert transaction.advance(tx, "otp", channel="sms")
        assert tx.channel == "sms" and tx not in db.session.dirty


# -- what a password replaced by the operator or a reset link ends ----------------


def _operator_resets(app, username: str) -> None:
    from idp.account.passwords import operator_set_password

    with app.app_context():
        operator_set_password(find_by_username(username), "Operator-Chosen-Pass-9")


def test_a_login_waiting_at_the_renewal_step_dies_with_an_operator_reset(smtp, settings):
    from idp import create_app

    settings["password"]["max_age_days"] = 90
    app = create_app(settings)
    app.config["TESTING"] = True
    with app.app_context():
        make_user("alice")
        make_client()
    intruder = LoginActions(app.test_client())
    clock.set_source(lambda: __import__("time").time() + 91 * 86400)
    try:
        renew_url = intruder.submit_password(intruder.authorize().location, "alice").location
        assert "/account/password?tx=" in renew_url
        page = intruder.client.get(renew_url)  # the form is on the intruder's screen
        _operator_resets(app, "alice")
        new = "Intruder-Chosen-Pass-1"
        data = {"new_password": new, "confirm_password": new}
        answer = intruder.client.post(renew_url, data={"csrf_token": csrf_of(page.text), **data})
        assert answer.status_code == 400 and "code=" not in (answer.location or "")
        with app.app_context():
            from idp.passwords import verify_password

            assert verify_password(
                find_by_username("alice").password_hash, "Operator-Chosen-Pass-9"
            )
    finally:
        clock.set_source(None)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_login_waiting_for_its_code_dies_with_an_operator_reset(login, app, smtp):
    otp_url = login.submit_password(login.authorize().location, "victor").location
    code = code_in(smtp.last_text())
    page = login.client.get(otp_url)
    _operator_resets(app, "victor")
    answer = login.client.post(otp_url, data={"csrf_token": csrf_of(page.text), "code": code})
    assert answer.status_code == 400 and "code=" not in (answer.location or "")


def test_an_authorization_code_not_yet_redeemed_dies_with_an_operator_reset(login, app):
    with app.app_context():
        secret = make_client("second")[1]
    query = login.login_through("second", username="alice")
    _operator_resets(app, "alice")
    assert login.exchange(query["code"], "second", secret).status_code == 400


# -- code budgets: taken before sending --------------------------------------------


def test_the_hourly_code_budget_holds_under_parallel_sends(login, app):
    from idp.auth import otp

    with app.app_context():
        user_id = find_by_username("dora").id
    taken, barrier = [], threading.Barrier(8)

    def send_many() -> None:
        with app.app_context():
            barrier.wait()
            for _ in range(3):
                taken.append(otp.take_send(user_id))

    threads = [threading.Thread(target=send_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with app.app_context():
        assert taken.count(True) == otp.codes_per_hour() == 10 and len(taken) == 24


def test_failed_sends_count_in_the_logins_budget(smtp, sms_gateway, app, client):
    with app.app_context():
        make_user("chloe", roles=["patient_data"], backup_phone="+33612345678")
        make_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    login = LoginActions(client)
    sms_gateway.status = 502
    channel_url = login.submit_password(login.authorize().location, "chloe").location
    for _ in range(5):  # a failed send may be retried at once, but it counts
        otp_url = login.choose_channel(channel_url, "sms").location
        assert "could not be sent" in login.client.get(otp_url).text
    login.choose_channel(channel_url, "sms")
    page = login.client.get(otp_url).text
    assert "No more codes can be sent for this sign-in." in page and "Resend" not in page


def test_a_rehash_at_sign_in_is_not_a_password_change(smtp, settings):
    """New argon2 parameters rehash the same password at sign-in: the login in progress,
    the remembered browser and a pending reset link must all survive it."""
    from idp import create_app
    from idp.account.recovery import issue_token

    first = create_app(settings)
    with first.app_context():
        make_user("dora", roles=["patient_data"])
        make_client()
        before = find_by_username("dora").credential_tag
        link = issue_token(find_by_username("dora"))
        db.engine.dispose()
    settings["password"]["argon2_time_cost"] = 2  # the operator raised the cost
    app = create_app(settings)
    app.config["TESTING"] = True
    try:
        login = LoginActions(app.test_client())
        otp_url = login.submit_password(login.authorize().location, "dora").location
        answer = login.submit_code(otp_url, code_in(smtp.last_text()), remember=True)
        assert "code=" in answer.location
        with app.app_context():
            user = find_by_username("dora")
            assert "t=2" in user.password_hash and user.credential_tag == before
        opened = login.client.get(f"/password/reset/{link}", follow_redirects=True)
        assert opened.status_code == 200
        response = login.submit_password(login.authorize(prompt="login").location, "dora")
        assert "code=" in response.location  # still remembered
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
