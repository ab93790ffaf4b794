"""Hostile input gets a clean 4xx, never a 500 (issue "abuse resistance", item 4).

Each case here answered 500 before its fix; ``test_fuzz_endpoints`` looks for more.
"""

import base64
import html
import json
from urllib.parse import urlencode

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Response

from tests.actions import LoginActions, csrf_of
from tests.factories import PASSWORD, REDIRECT_URI, make_client, make_user, pkce_pair, query_of

ISSUER = "http://idp.test"


@pytest.fixture
def secret(app):
    with app.app_context():
        make_user()
        return make_client()[1]


def _authorize(client, method, **overrides):
    params = {
        "response_type": "code",
        "client_id": "rp",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "st-1",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
        **overrides,
    }
    if method == "GET":
        return client.get("/authorize?" + urlencode(params))
    return client.post("/authorize", data=params)


def _basic(raw: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "redirect_uri",
    [REDIRECT_URI + "\t", "https://rp.example/call\\back", 'https://rp.example/"cb"', "https://é/"],
)
def test_unregistered_redirect_uri_with_forbidden_characters_gets_an_error_page(
    client, secret, method, redirect_uri
):
    """Authlib quoted the URI in its error description, then refused the description."""
    response = _authorize(client, method, redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert response.location is None
    assert "invalid_request" in response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("response_type", ["tökén", 'to"ken', "code\\", "\x1f"])
def test_unsupported_response_type_with_forbidden_characters_is_redirected_unquoted(
    client, secret, method, response_type
):
    """The client and redirect URI are trusted: the error goes back to the RP, as for any
    unsupported response_type, with a description that does not quote the value."""
    response = _authorize(client, method, response_type=response_type)
    assert response.status_code == 302 and response.location.startswith(REDIRECT_URI)
    query = query_of(response.location)
    assert query["error"] == "unsupported_response_type"
    assert query["error_description"] == "Only response_type=code is supported."
    assert query["state"] == "st-1" and query["iss"] == ISSUER


@pytest.mark.parametrize("response_type", ["tökén", 'to"ken', "token"])
def test_unsupported_response_type_of_an_unknown_client_gets_an_unquoted_error_page(
    client, secret, response_type
):
    response = _authorize(client, "GET", response_type=response_type, client_id="nobody")
    assert response.status_code == 400 and response.location is None
    assert "unsupported_response_type" in response.text  # the code, as a small reference
    # The message does not quote the value (the language switch's links repeat the
    # request's query, URL-encoded: they are not the message).
    message = response.text.split('<main id="main">', 1)[1]
    assert f"response_type={html.escape(response_type)}" not in message


def test_error_description_for_a_plain_unsupported_response_type_is_not_the_value(client, secret):
    """Authlib passed the requested value as the description (``error_description=token``)."""
    query = query_of(_authorize(client, "GET", response_type="token").location)
    assert query["error_description"] == "Only response_type=code is supported."


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
@pytest.mark.parametrize("header", ["Basic ", " ", " x", "Basic  ", "x "])
def test_authorization_header_with_a_space_but_no_credentials_is_invalid_client(
    client, secret, path, header
):
    """Authlib split the header on its first space and unpacked two parts."""
    response = client.post(
        path,
        data={"token": "t", "grant_type": "authorization_code"},
        headers={"Authorization": header},
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize("path", ["/token", "/revoke", "/introspect"])
@pytest.mark.parametrize("raw", [b"rp%00:secret", b"rp\x00:secret"])
def test_basic_credentials_decoding_to_a_nul_are_invalid_client(client, secret, path, raw):
    """The client id reached the database, which refuses NUL (a 500 on PostgreSQL)."""
    response = client.post(
        path, data={"token": "t", "grant_type": "refresh_token"}, headers=_basic(raw)
    )
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_nul_in_a_header_never_reaches_the_session_record(client, secret):
    """The SSO session stores the User-Agent: PostgreSQL refused its NUL (a 500 at sign-in)."""
    login = LoginActions(client)
    url = login.authorize().location
    page = client.get(url)
    response = client.post(
        url,
        data={"csrf_token": csrf_of(page.text), "username": "alice", "password": PASSWORD},
        headers={"User-Agent": "Mozilla/5.0\x00"},
    )
    assert response.status_code == 400
    assert client.get_cookie("idp_sso") is None


def _jws(header: dict) -> str:
    def b64(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64({'iss': ISSUER})}.AAAA"


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "crit": None},  # joserfc iterated over it: TypeError
        {"alg": "RS256", "crit": [0]},
        {"alg": 'RS"256'},  # Authlib quoted joserfc's message quoting the alg
        {"alg": "RS256é"},
        {"alg": "RS256", "kid": "\\"},
    ],
)
def test_id_token_hint_with_a_hostile_header_gets_an_error_page(client, secret, method, header):
    params = {"id_token_hint": _jws(header), "post_logout_redirect_uri": "https://rp.example/bye"}
    if method == "GET":
        response = client.get("/logout", query_string=params)
    else:
        response = client.post("/logout", data=params)
    assert response.status_code == 400 and response.location is None
    assert "invalid_request" in response.text


HOST = "x" * 64 + ".example"  # a DNS label longer than 63 octets: Werkzeug refuses the host


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("GET", "/account/", None),
        ("GET", "/login", None),
        ("GET", "/authorize", None),
        ("GET", "/password/forgot?x=%00", None),  # NUL check, then the error page
        ("POST", "/password/forgot", {"identifier": "alice"}),  # CSRF error page
        ("GET", "/nowhere", None),
    ],
)
def test_unusable_host_header_gets_a_plain_400(client, secret, method, path, data):
    """The error page could not build its style sheet URL without a usable host."""
    response = client.open(path, method=method, data=data, environ_overrides={"HTTP_HOST": HOST})
    assert response.status_code == 400
    assert response.mimetype == "text/plain"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/authorize?response_type=code&client_id=rp"),
        ("POST", "/token"),
        ("GET", "/userinfo"),
        ("POST", "/revoke"),
        ("POST", "/introspect"),
        ("GET", "/logout"),
    ],
)
def test_host_with_undecodable_punycode_gets_a_400(app, secret, method, path):
    """Werkzeug raised UnicodeError building ``request.url``, which Authlib reads.

    Sent straight to the WSGI app: Flask's test client decodes the host itself, and fails.
    """
    environ = EnvironBuilder(path=path, method=method).get_environ()
    environ["HTTP_HOST"] = "xn--zz"
    with Response(*run_wsgi_app(app, environ, buffered=True)) as response:
        assert response.status_code == 400
