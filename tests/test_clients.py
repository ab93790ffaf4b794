"""What ``idp client add`` registers: exact, absolute URIs and coherent options.

Tested on the service (``idp.clients``) that the CLI and the operator console
share; one CLI test shows the options reach it. See SECURITY.md, "Clients".
"""

from __future__ import annotations

import json

import pytest
from joserfc.jwk import ECKey, RSAKey

from idp.clients import ClientError, check_uri, register_client, sector_identifier

GOOD_REDIRECTS = [
    "https://rp.example/callback",
    "https://rp.example:8443/cb?tenant=chu",
    "http://localhost:8080/cb",
    "http://127.0.0.1/cb",
    "http://[::1]:9000/cb",
    "https://xn--hpital-gva.example/cb",
]


@pytest.mark.parametrize("uri", GOOD_REDIRECTS)
def test_https_and_loopback_redirects_are_accepted(uri):
    assert check_uri(uri, "redirect URI", native=True) == uri


@pytest.mark.parametrize(
    "uri",
    [
        "http://rp.example/cb",  # http on a real host: codes in clear
        "http://localhost.evil.example/cb",
        "https://user:pw@rp.example/cb",  # userinfo: shown as rp.example, goes elsewhere
        "https://rp.example@evil.example/cb",
        "vbscript:msgbox(1)",
        "blob:https://rp.example/uuid",
        "about:blank",
        "javascript:alert(1)",
        "data:text/html,x",
        "file:///etc/passwd",
        "https://rp.example\\@evil.example/cb",  # backslash
        "https://*.rp.example/cb",  # wildcard
        "https://rp.example/cb#",  # empty fragment
        "https://rp.example/cb#frag",
        "https://rp.example/cb\r\nLocation: https://evil.example/",
        "https://rp.example/cb\n",
        "https://rp.example/cb\t",
        "https://rp.example/c b",
        "https://rp.example/cb\u200b",
        "https:///cb",
        "https://rp.example:99999/cb",
        "/relative/cb",
        "rp.example/cb",
        "",
    ],
)
def test_anything_else_is_refused(uri):
    with pytest.raises(ClientError):
        check_uri(uri, "redirect URI", native=True)


def test_private_use_schemes_only_for_native_redirects():
    assert check_uri("com.example.app:/oauth2redirect", "redirect URI", native=True)
    with pytest.raises(ClientError):
        check_uri("myapp:/cb", "redirect URI", native=True)  # not a reverse domain
    with pytest.raises(ClientError):
        check_uri("com.example.app:/logout", "back-channel logout URI")


def test_registration_stores_the_new_options(app):
    with app.app_context():
        row, secret = register_client(
            "portal",
            ["https://portal.example/cb", "https://portal.example/other"],
            rotate_refresh=False,
            subject_type="pairwise",
            backchannel_logout_uri="https://portal.example/cb?logout=backchannel",
            backchannel_logout_session_required=True,
        )
        assert secret and not row.rotate_refresh_token
        assert row.subject_type == "pairwise" and row.sector_identifier == "portal.example"
        assert row.backchannel_logout_uri == "https://portal.example/cb?logout=backchannel"
        assert row.backchannel_logout_session_required


def test_private_key_jwt_clients_have_keys_and_no_secret(app):
    public = ECKey.generate_key("P-256").as_dict(private=False)
    with app.app_context():
        row, secret = register_client(
            "signed",
            ["https://rp.example/cb"],
            auth_method="private_key_jwt",
            jwks={"keys": [public]},
        )
        assert secret is None and row.client_secret_hash is None
        assert (
            row.jwks == {"keys": [public]} and row.token_endpoint_auth_method == "private_key_jwt"
        )
        by_uri, _ = register_client(
            "signed2",
            ["https://rp.example/cb"],
            auth_method="private_key_jwt",
            jwks_uri="https://rp.example/jwks.json",
        )
        assert by_uri.jwks_uri == "https://rp.example/jwks.json"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"auth_method": "private_key_jwt"}, "exactly one"),
        ({"auth_method": "private_key_jwt", "jwks": {"keys": []}}, "at least one key"),
        (
            {"auth_method": "private_key_jwt", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}},
            "public keys only",
        ),
        ({"auth_method": "private_key_jwt", "jwks_uri": "http://rp.example/jwks"}, "https"),
        ({"jwks_uri": "https://rp.example/jwks"}, "private_key_jwt"),
        ({"public": True, "rotate_refresh": False}, "confidential"),
        ({"public": True, "auth_method": "private_key_jwt"}, "public client"),
        ({"subject_type": "random"}, "subject type"),
        ({"backchannel_logout_session_required": True}, "needs --backchannel-logout-uri"),
        ({"backchannel_logout_uri": "http://rp.example/bc"}, "https"),
    ],
)
def test_incoherent_options_are_refused(app, options, reason):
    with app.app_context(), pytest.raises(ClientError, match=reason):
        register_client("c", ["https://rp.example/cb"], **options)


def test_a_pairwise_client_needs_one_host():
    with pytest.raises(ClientError, match="one host"):
        sector_identifier(["https://a.example/cb", "https://b.example/cb"])


def test_cli_passes_the_new_options(idp, tmp_path):
    key = RSAKey.generate_key(2048)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    code, out, err = idp(
        "client", "add", "signed", "--redirect-uri", "https://rp.example/cb",
        "--auth-method", "private_key_jwt", "--jwks", str(jwks),
        "--backchannel-logout-uri", "https://rp.example/bc", "--subject-type", "pairwise",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["client_secret"] is None
    listed = json.loads(idp("client", "list", "--json")[1])["clients"][0]
    assert listed["token_endpoint_auth_method"] == "private_key_jwt"
    assert listed["subject_type"] == "pairwise"
    assert listed["backchannel_logout_uri"] == "https://rp.example/bc"
    code, _, err = idp(
        "client", "add", "x", "--redirect-uri", "https://rp.example/cb\r\nX: y", "--no-rotate"
    )
    assert code != 0 and len(err.strip().splitlines()) == 1
