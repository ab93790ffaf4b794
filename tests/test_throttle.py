"""Password throttling without a lock-out weapon (SECURITY.md, "Throttling").

NIST SP 800-63B §3.2.2 as the bar: failures count per (account, address) pair
with growing pauses; a per-account ceiling holds back only the addresses that
failed; per-address limits are sized for a hospital's NAT; every refusal says
how long to wait; the operator unlocks an account at once.
"""

from __future__ import annotations

import pytest

from idp.models import AuditEvent, db
from tests.actions import LoginActions, csrf_of
from tests.factories import PASSWORD, make_client, make_user

EN = {"Accept-Language": "en"}
ATTACKER, CLINIC, NAT = "203.0.113.66", "198.51.100.7", "192.0.2.10"


@pytest.fixture
def users(app):
    with app.app_context():
        make_user("alice")
        make_client()


def _attempt(client, address: str, username: str = "alice", password: str = "wrong-guess"):
    """One sign-in attempt from ``address``, from the "Connexion" link."""
    env = {"REMOTE_ADDR": address}
    url = client.get("/login", headers=EN, environ_base=env).location
    page = client.get(url, headers=EN, environ_base=env)
    data = {"csrf_token": csrf_of(page.text), "username": username, "password": password}
    return client.post(url, data=data, headers=EN, environ_base=env)


def _fresh(app):
    return app.test_client()


def test_failures_from_one_address_never_lock_the_account_out_elsewhere(app, users):
    attacker = _fresh(app)
    for _ in range(5):
        assert _attempt(attacker, ATTACKER).status_code == 200
    refused = _attempt(attacker, ATTACKER, password=PASSWORD)
    assert refused.status_code == 429
    assert "Try again in 1 minute." in refused.text
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    assert _attempt(_fresh(app), CLINIC, password=PASSWORD).status_code == 302


def test_the_pause_grows_with_each_further_failure(app, users, frozen_clock):
    attacker = _fresh(app)
    for _ in range(5):
        _attempt(attacker, ATTACKER)
    frozen_clock.advance(61)
    assert _attempt(attacker, ATTACKER).status_code == 200  # a 6th failure is counted...
    refused = _attempt(attacker, ATTACKER, password=PASSWORD)
    assert int(refused.headers["Retry-After"]) == 120  # ...and doubles the pause
    assert "Try again in 2 minutes." in refused.text
    frozen_clock.advance(121)
    assert _attempt(attacker, ATTACKER, password=PASSWORD).status_code == 302


def test_the_account_ceiling_holds_back_only_addresses_that_failed(settings, users_factory):
    settings["throttle"] = {"account_failures_per_hour": 6}
    app = users_factory()
    for n in range(6):  # one guess from each of six addresses: the ceiling
        _attempt(_fresh(app), f"203.0.113.{n + 1}")
    refused = _attempt(_fresh(app), "203.0.113.1", password=PASSWORD)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 3000
    assert _attempt(_fresh(app), CLINIC, password=PASSWORD).status_code == 302


def test_made_up_identifiers_behind_one_nat_do_not_lock_out_its_users(app, users):
    nat = _fresh(app)
    for n in range(25):
        _attempt(nat, NAT, username=f"nobody{n}")
    assert _attempt(nat, NAT, password=PASSWORD).status_code == 302


def test_an_address_spraying_identifiers_is_held_back_unless_allow_listed(settings, users_factory):
    settings["throttle"] = {"address_failures_per_hour": 5, "allow_networks": ["10.0.0.0/8"]}
    app = users_factory()
    for n in range(5):
        _attempt(_fresh(app), NAT, username=f"nobody{n}")
        _attempt(_fresh(app), "10.20.30.40", username=f"nobody{n}")
    assert _attempt(_fresh(app), NAT, password=PASSWORD).status_code == 429
    assert _attempt(_fresh(app), "10.20.30.40", password=PASSWORD).status_code == 302


def test_unknown_identifiers_are_throttled_alike(app, users):
    ghost = _fresh(app)
    answers = [_attempt(ghost, ATTACKER, username="ghost").status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]


def test_each_block_is_audited_once_not_at_every_refusal(app, users):
    attacker = _fresh(app)
    for _ in range(12):
        _attempt(attacker, ATTACKER)
    with app.app_context():
        events = db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "login.throttled")
        ).all()
    assert [e.detail["scope"] for e in events] == ["pair"]
    assert events[0].user_id is not None


def test_idp_user_unlock_clears_every_counter_of_the_account(app, users, idp):
    attacker = _fresh(app)
    for _ in range(5):
        _attempt(attacker, ATTACKER)
    assert _attempt(attacker, ATTACKER, password=PASSWORD).status_code == 429
    code, out, _ = idp("user", "unlock", "alice")
    assert code == 0 and "alice unlocked" in out
    assert _attempt(attacker, ATTACKER, password=PASSWORD).status_code == 302
    with app.app_context():
        assert db.session.scalars(
            db.select(AuditEvent).where(AuditEvent.event == "account.unlocked")
        ).one()
    assert idp("user", "unlock", "nobody")[0] == 1


def test_the_console_password_change_shares_the_counters_and_says_how_long(app, users):
    browser = _fresh(app)
    assert _attempt(browser, CLINIC, password=PASSWORD).status_code == 302
    for _ in range(5):
        _attempt(_fresh(app), CLINIC)  # someone else, same address: the pair is held back
    page = browser.get("/account/password", headers=EN, environ_base={"REMOTE_ADDR": CLINIC})
    answer = browser.post(
        "/account/password",
        headers=EN,
        environ_base={"REMOTE_ADDR": CLINIC},
        data={
            "csrf_token": csrf_of(page.text),
            "current_password": PASSWORD,
            "new_password": "Brand-New-Pass-2026!",
            "confirm_password": "Brand-New-Pass-2026!",
        },
    )
    assert answer.status_code == 400 and "Try again in 1 minute." in answer.text


@pytest.fixture
def users_factory(settings):
    """For tests that change ``settings`` first: the app, with alice and the RP."""
    from idp import create_app

    made = []

    def make():
        app = create_app(settings)
        app.config["TESTING"] = True
        with app.app_context():
            make_user("alice")
            make_client()
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_an_address_starts_a_bounded_number_of_logins_per_hour(
    settings, users_factory, frozen_clock
):
    """Each started login is a database row: an anonymous client cannot grow the table."""
    from idp.models import LoginTransaction

    settings["throttle"] = {"logins_started_per_hour": 5, "allow_networks": ["10.0.0.0/8"]}
    app = users_factory()
    visitor = _fresh(app)
    env = {"REMOTE_ADDR": ATTACKER}
    started = [visitor.get("/login", headers=EN, environ_base=env) for _ in range(5)]
    assert {r.status_code for r in started} == {302}
    refused = visitor.get("/login", headers=EN, environ_base=env)
    assert refused.status_code == 429 and "Try again in 60 minutes." in refused.text
    assert int(refused.headers["Retry-After"]) == 3600
    visitor.environ_base.update(env)
    authorize = LoginActions(visitor).authorize()  # an RP's request: no row either
    assert authorize.status_code == 429
    with app.app_context():
        assert db.session.query(LoginTransaction).count() == 5
    inside = {"REMOTE_ADDR": "10.1.2.3"}  # an allow-listed hospital network
    assert _fresh(app).get("/login", headers=EN, environ_base=inside).status_code == 302
    frozen_clock.advance(3601)
    assert visitor.get("/login", headers=EN, environ_base=env).status_code == 302


# -- what an anonymous authorization request may store ----------------------------


def test_an_authorization_request_stores_only_what_the_flow_needs(app, users, client):
    from idp.models import LoginTransaction

    response = LoginActions(client).authorize(extra="x" * 4000, other_thing="y")
    assert "/login?tx=" in response.location
    with app.app_context():
        stored = db.session.scalars(db.select(LoginTransaction)).one().request_args
    assert "extra" not in stored and "other_thing" not in stored
    assert stored["state"] == "st-123" and stored["client_id"] == "rp"


@pytest.mark.parametrize(
    "params",
    [{"state": "s" * 513}, {"nonce": "n" * 513}, {"login_hint": "h" * 17000}],
)
def test_oversized_authorization_requests_are_invalid_request(app, users, client, params):
    from idp.models import LoginTransaction
    from tests.factories import query_of

    response = LoginActions(client).authorize(**params)
    assert response.status_code == 302
    query = query_of(response.location)
    assert query["error"] == "invalid_request"
    assert len(query.get("state", "")) <= 512  # an oversized state is not echoed
    with app.app_context():
        assert db.session.query(LoginTransaction).count() == 0


def test_a_posted_authorization_request_has_a_small_body_limit(app, users, client):
    from tests.factories import REDIRECT_URI

    body = {"client_id": "rp", "response_type": "code", "redirect_uri": REDIRECT_URI}
    body["padding"] = "p" * 40000
    assert client.post("/authorize", data=body).status_code == 413


def test_forgot_password_behind_one_nat_says_how_long_to_wait(settings, users_factory):
    """Past the address's hourly budget the page says so, with the wait; it never
    silently drops a request, and says nothing about any account."""
    settings["throttle"] = {"reset_requests_per_hour": 3, "allow_networks": ["10.0.0.0/8"]}
    app = users_factory()
    nat, env = _fresh(app), {"REMOTE_ADDR": NAT}

    def forgot(client, environ, identifier):
        page = client.get("/password/forgot", headers=EN, environ_base=environ)
        data = {"csrf_token": csrf_of(page.text), "identifier": identifier}
        return client.post("/password/forgot", data=data, headers=EN, environ_base=environ)

    assert [forgot(nat, env, f"user{n}").status_code for n in range(3)] == [200] * 3
    refused = forgot(nat, env, "alice")
    assert refused.status_code == 429 and "Try again in 60 minutes." in refused.text
    other = forgot(nat, env, "nobody")  # the same answer for any identifier
    assert other.status_code == 429

    # The form's CSRF token is signed with a timestamp, so two pages a second
    # apart differ there; everything else must be identical.
    def shown(page, identifier):
        return page.text.replace(csrf_of(page.text), "").replace(identifier, "")

    assert shown(refused, "alice") == shown(other, "nobody")
    inside = {"REMOTE_ADDR": "10.9.8.7"}
    assert forgot(_fresh(app), inside, "alice").status_code == 200
