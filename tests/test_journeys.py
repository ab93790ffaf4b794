"""Nobody loses the application (issue 10, items 6–9) and the newcomer's ``idp demo``
(item 17), with the Flask client; the same journeys in Chromium are in
``tests/e2e/test_journeys.py``."""

from __future__ import annotations

import html
import re
import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from idp.models import db

from .actions import LoginActions, csrf_of
from .conftest import ISSUER
from .factories import PASSWORD, REDIRECT_URI, make_client, make_user, query_of

NEW = "Quiet-Meadow-58-Lantern"


@pytest.fixture
def rp(app):
    with app.app_context():
        make_user("alice")
        return make_client(name="Dossier patient")[1]


@pytest.fixture
def login(rp, client):
    return LoginActions(client)


def _login_url(login) -> str:
    response = login.authorize()
    assert response.status_code == 302 and "/login?tx=" in response.location, response.text
    return response.location


def _post(client, url, data):
    page = client.get(url)
    return client.post(url, data={"csrf_token": csrf_of(page.text), **data})


def _href(page_html: str, text: str) -> str:
    """The target of the link whose text is ``text``."""
    for href, inner in re.findall(r'<a href="([^"]*)"[^>]*>([^<]*)</a>', page_html):
        if html.unescape(inner).strip() == text:
            return html.unescape(href)
    raise AssertionError(f"no link {text!r} in {page_html}")


def _button_target(page_html: str) -> tuple[str, dict[str, str]]:
    """The GET form of the expired page: its action and hidden fields."""
    form = re.search(r'<form method="get" action="([^"]*)">(.*?)</form>', page_html, re.S)
    assert form, page_html
    fields = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form.group(2))
    return html.unescape(form.group(1)), {k: html.unescape(v) for k, v in fields}


# -- 9. the login page names the application -------------------------------------


def test_login_page_names_the_application_that_started_it(login, client):
    page = client.get(_login_url(login))
    assert page.status_code == 200
    assert '<p id="login-application">Connexion à Dossier patient</p>' in page.text
    assert "<title>Connexion à Dossier patient" in page.text


def test_console_sign_in_names_no_application(login, client):
    page = client.get("/login", follow_redirects=True)
    assert page.status_code == 200
    assert "login-application" not in page.text and "Connexion à" not in page.text


# -- 6. the lost password keeps the application ---------------------------------


def test_forgot_password_leads_back_to_the_same_login(login, client):
    login_url = _login_url(login)
    page = client.get(login_url)
    forgot = _href(page.text, "Mot de passe oublié\u00a0?")
    tx = query_of(login_url)["tx"]
    assert forgot == f"/password/forgot?tx={tx}"
    assert _href(client.get(forgot).text, "Retour à la connexion") == login_url
    sent = _post(client, forgot, {"identifier": "nobody@exemple.fr"})
    assert sent.status_code == 200
    assert _href(sent.text, "Retour à la connexion") == login_url


def test_after_a_reset_sign_in_resumes_the_application(smtp, login, client):
    login_url = _login_url(login)
    tx = query_of(login_url)["tx"]
    client.get(login_url)
    assert _post(client, f"/password/forgot?tx={tx}", {"identifier": "alice"}).status_code == 200
    mail = smtp.last_text()
    link = re.search(r"http://idp\.test(/password/reset/\S+)", mail).group(1)
    assert tx not in mail  # the e-mailed link carries no login: it may open elsewhere
    assert client.get(link).status_code == 303
    done = _post(client, "/password/reset", {"new_password": NEW, "confirm_password": NEW})
    assert done.status_code == 200
    sign_in = _href(done.text, "Se connecter")
    assert sign_in.startswith("/authorize?")  # the same request again, not "Mon compte"
    asked = {k: v[0] for k, v in parse_qs(urlsplit(sign_in).query).items()}
    assert asked["client_id"] == "rp" and asked["state"] == "st-123"
    again = client.get(sign_in)
    assert again.status_code == 302 and "/login?tx=" in again.location
    back = login.submit_password(again.location, "alice", NEW)
    assert back.status_code == 302 and back.location.startswith(REDIRECT_URI)
    assert query_of(back.location)["state"] == "st-123"


def test_a_reset_opened_in_another_browser_offers_the_sign_in_page(smtp, login, client, app):
    login_url = _login_url(login)
    tx = query_of(login_url)["tx"]
    client.get(login_url)
    _post(client, f"/password/forgot?tx={tx}", {"identifier": "alice"})
    link = re.search(r"http://idp\.test(/password/reset/\S+)", smtp.last_text()).group(1)
    elsewhere = app.test_client()
    assert elsewhere.get(link).status_code == 303
    done = _post(elsewhere, "/password/reset", {"new_password": NEW, "confirm_password": NEW})
    assert done.status_code == 200
    assert _href(done.text, "Se connecter") == "/login"
    # The first browser's tab still leads back to its login, which goes on with the new one.
    back = login.submit_password(login_url, "alice", NEW)
    assert back.status_code == 302 and back.location.startswith(REDIRECT_URI)


# -- 7. Back after the sign-in ---------------------------------------------------


def test_back_after_signing_in_goes_on_to_the_application(login, client):
    login_url = _login_url(login)
    assert login.submit_password(login_url).location.startswith(REDIRECT_URI)
    back = client.get(login_url)  # the Back button: the finished login's page
    assert back.status_code == 302, back.text
    assert back.location.startswith("/authorize?")
    issued = client.get(back.location)
    assert issued.status_code == 302 and issued.location.startswith(REDIRECT_URI)
    assert "code" in query_of(issued.location)


def test_signed_in_browser_at_an_unknown_login_goes_to_the_console(login, client):
    assert login.submit_password(_login_url(login)).status_code == 302
    for step in ("/login", "/login/otp", "/login/channel"):
        response = client.get(f"{step}?tx=never-issued")
        assert response.status_code == 302 and response.location == "/account/", step


# -- 8. expired forms ------------------------------------------------------------


def test_login_form_sent_after_the_browser_restarted_offers_a_fresh_sign_in(login, client, app):
    login_url = _login_url(login)
    token = csrf_of(client.get(login_url).text)
    restarted = app.test_client()  # no cookie survived: the session and its CSRF secret
    page = restarted.post(
        login_url, data={"csrf_token": token, "username": "alice", "password": PASSWORD}
    )
    assert page.status_code == 400
    assert "envoyé deux fois" not in page.text
    assert "<h1>Page expirée</h1>" in page.text
    assert "Le navigateur a été fermé, ou ses cookies effacés" in page.text
    # Only the URL of the login is left: it must not hand out the RP's request.
    assert _button_target(page.text) == ("/login", {})
    assert "st-123" not in page.text


def test_another_browser_holding_a_logins_url_learns_nothing_of_its_request(login, client, app):
    """Whoever holds only the login's URL gets neither the RP's state and nonce nor the
    user it hinted: a transaction id seen elsewhere is useless (SECURITY.md)."""
    response = login.authorize(login_hint="alice@exemple.fr")
    login_url = response.location
    token = csrf_of(client.get(login_url).text)
    page = app.test_client().post(login_url, data={"csrf_token": token, "username": "alice"})
    assert _button_target(page.text) == ("/login", {})
    assert "alice@exemple.fr" not in page.text and "st-123" not in page.text
    assert "n-456" not in page.text


def test_login_form_left_open_past_its_lifetime_offers_the_same_request(login, client, app):
    login_url = _login_url(login)
    token = csrf_of(client.get(login_url).text)
    lifetime = app.config["IDP"]["session"]["login_minutes"] * 60
    real = time.time
    with pytest.MonkeyPatch.context() as later:
        later.setattr(time, "time", lambda: real() + lifetime + 60)
        page = client.post(
            login_url, data={"csrf_token": token, "username": "alice", "password": PASSWORD}
        )
    assert page.status_code == 400
    assert "Cette page est restée ouverte plus de 30\u00a0minutes." in page.text
    action, fields = _button_target(page.text)
    assert action == "/authorize" and fields["state"] == "st-123"


def test_expired_login_page_offers_the_same_request(login, client, frozen_clock, app):
    login_url = _login_url(login)
    client.get(login_url)
    frozen_clock.advance(app.config["IDP"]["session"]["login_minutes"] * 60 + 1)
    page = client.get(login_url)
    assert page.status_code == 400 and "Connexion expirée" in page.text
    action, fields = _button_target(page.text)
    assert action == "/authorize" and fields["client_id"] == "rp"


def test_unknown_login_offers_the_sign_in_page(client):
    page = client.get("/login?tx=never-issued")
    assert page.status_code == 400
    assert _button_target(page.text) == ("/login", {})
    assert ">Se connecter</button>" in page.text


def test_console_form_sent_after_the_browser_restarted_says_nothing_changed(app):
    page = app.test_client().post("/password/forgot", data={"identifier": "alice"})
    assert page.status_code == 400
    assert "Rien n’a été modifié\u00a0: rechargez la page et recommencez." in page.text
    assert _button_target(page.text) == ("/password/forgot", {})
    assert ">Recharger la page</button>" in page.text


# -- 17. ``idp demo`` ------------------------------------------------------------


def test_demo_prints_what_a_newcomer_needs(app):
    from idp.demo import seed

    with app.app_context():
        printed = seed(app)
    assert "make rp" in printed and "python examples/relying_party.py" not in printed
    for email in ("alice@exemple.fr", "bruno@exemple.fr", "chloe@exemple.fr"):
        assert email in printed
    assert f"{ISSUER}/" in printed  # the console
    assert f"{ISSUER}/admin/" in printed  # the operator console, for chloe
    assert "127.0.0.1, not localhost" in printed


def test_default_issuer_is_the_console_url_the_readme_gives():
    from idp.config import DEFAULTS

    assert DEFAULTS["issuer"] + "/" == "http://127.0.0.1:5000/"


def _password_of(app, username: str) -> str:
    from idp.users import find_by_username

    with app.app_context():
        return find_by_username(username).password_hash


def test_second_demo_on_a_busy_port_changes_no_password(app, idp):
    with app.app_context():
        make_user("alice")
    before = _password_of(app, "alice")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = idp("demo", "--port", str(busy.getsockname()[1]))
    assert _password_of(app, "alice") == before
    assert code == 1
    assert "already in use" in err and "Nothing was changed" in err
    with app.app_context():
        db.session.remove()


def test_second_demo_on_the_same_instance_changes_no_password(app, idp):
    from idp.demo import claim, release

    with app.app_context():
        make_user("alice")
    before = _password_of(app, "alice")
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    held = claim(app, "127.0.0.1", port)  # the first ``make run``
    try:
        code, _, err = idp("demo", "--port", str(port))
    finally:
        release(held)
    assert code == 1 and "already running" in err
    assert _password_of(app, "alice") == before
