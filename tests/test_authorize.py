"""The authorization endpoint: validation, errors, SSO, prompt, max_age, login_hint."""

import pytest

from tests.actions import LoginActions
from tests.factories import REDIRECT_URI, make_client, make_user, query_of

ISSUER = "http://idp.test"


@pytest.fixture
def rp(app):
    with app.app_context():
        make_user()
        return make_client()


@pytest.fixture
def login(client, rp):
    return LoginActions(client)


def test_unknown_client_gets_an_error_page_not_a_redirect(login):
    response = login.authorize(client_id="nobody")
    assert response.status_code == 400
    assert response.location is None
    assert "invalid_client" in response.text


def test_unregistered_redirect_uri_gets_an_error_page(login):
    response = login.authorize(redirect_uri="https://evil.example/cb")
    assert response.status_code == 400
    assert response.location is None


def test_unsupported_response_type_redirects_with_error_state_and_iss(login):
    response = login.authorize(response_type="token")
    assert response.status_code == 302
    query = query_of(response.location)
    assert query["error"] == "unsupported_response_type"
    assert query["state"] == "st-123"
    assert query["iss"] == ISSUER


def test_prompt_none_without_session_returns_login_required(login):
    response = login.authorize(prompt="none")
    query = query_of(response.location)
    assert response.location.startswith(REDIRECT_URI)
    assert query == {"error": "login_required", "state": "st-123", "iss": ISSUER} | {
        k: v for k, v in query.items() if k == "error_description"
    }


def test_prompt_none_combined_with_login_is_invalid(login):
    query = query_of(login.authorize(prompt="none login").location)
    assert query["error"] == "invalid_request"


def test_request_objects_are_refused_clearly(login):
    query = query_of(login.authorize(request="eyJhbGciOiJub25lIn0.e30.").location)
    assert query["error"] == "request_not_supported"


def test_bad_max_age_is_invalid_request(login):
    query = query_of(login.authorize(max_age="soon").location)
    assert query["error"] == "invalid_request"


def test_public_client_must_use_pkce(app, client):
    with app.app_context():
        make_client("mobile", public=True)
    login = LoginActions(client)
    response = login.authorize("mobile", code_challenge=None, code_challenge_method=None)
    assert query_of(response.location)["error"] == "invalid_request"


def test_plain_pkce_is_refused(login):
    response = login.authorize(code_challenge="a" * 43, code_challenge_method="plain")
    assert query_of(response.location)["error"] == "invalid_request"


def test_unauthenticated_request_goes_to_login_with_hint(login):
    response = login.authorize(login_hint="alice@exemple.fr")
    assert response.status_code == 302 and "/login?tx=" in response.location
    page = login.client.get(response.location)
    assert 'value="alice@exemple.fr"' in page.text
    assert 'autocomplete="username"' in page.text
    assert 'autocomplete="current-password"' in page.text


def test_sso_session_serves_a_second_client_without_login(app, login):
    with app.app_context():
        make_client("second")
    first = login.login_through()
    response = login.authorize("second")
    assert response.status_code == 302
    query = query_of(response.location)
    assert query["code"] and query["code"] != first["code"]


def test_prompt_login_forces_the_password_again(login):
    login.login_through()
    response = login.authorize(prompt="login")
    assert "/login?tx=" in response.location


def test_prompt_none_with_session_issues_a_code(login):
    login.login_through()
    query = query_of(login.authorize(prompt="none").location)
    assert "code" in query and query["iss"] == ISSUER


def test_max_age_exceeded_asks_for_the_password(login, frozen_clock):
    login.login_through()
    frozen_clock.advance(120)
    assert "/login?tx=" in login.authorize(max_age="60").location
    assert "code" in query_of(login.authorize(max_age="600").location)
    assert query_of(login.authorize(max_age="60", prompt="none").location)["error"] == (
        "login_required"
    )


def test_unknown_parameters_and_scopes_are_ignored(login):
    query = login.login_through(scope="openid profile unknown_scope", foo="bar")
    assert "code" in query


def test_post_authorization_request_is_accepted(login, client):
    from tests.factories import pkce_pair

    login.login_through()
    _, challenge = pkce_pair()
    response = client.post(
        "/authorize",
        data={
            "response_type": "code",
            "client_id": "rp",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert "code" in query_of(response.location)
