"""Pro Santé Connect answers checked without HTTP: the ID token (signature by ``kid``
with a JWKS refresh on an unknown one, HS256 with the client secret, ``none``
refused; ``iss``, ``aud``, ``exp``, ``nonce``; a level below ``eidas1`` refused),
national identifiers, and the ``[psc]`` settings (SECURITY.md, "Pro Santé Connect")."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey

from idp.config import ConfigError, load_settings
from idp.psc.national_id import InvalidNationalId, from_subject_name_id, normalize
from idp.psc.upstream import PscRefused, Upstream

ISSUER = "https://auth.psc.test/auth/realms/esante-wallet"
SECRET = "a-client-secret-of-thirty-two-bytes!"
RPPS = "10000000009"


def psc_settings(**overrides) -> dict:
    """Enabled ``[psc]`` settings; an override of None leaves the key out."""
    psc = {
        "enabled": True,
        "issuer": ISSUER,
        "authorization_endpoint": "https://wallet.psc.test/auth",
        "token_endpoint": ISSUER + "/protocol/openid-connect/token",
        "userinfo_endpoint": ISSUER + "/protocol/openid-connect/userinfo",
        "jwks_uri": ISSUER + "/protocol/openid-connect/certs",
        "end_session_endpoint": ISSUER + "/protocol/openid-connect/logout",
        "client_id": "portail",
        "client_secret": SECRET,
        **overrides,
    }
    return load_settings({"psc": {k: v for k, v in psc.items() if v is not None}})["psc"]


@pytest.fixture
def key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "psc-1"})


@pytest.fixture
def upstream(key) -> Upstream:
    found = Upstream(psc_settings())
    found._keys, found._keys_at = KeySet([key]), time.monotonic()
    return found


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": "portail",
        "sub": "f:psc:123",
        "exp": now + 300,
        "iat": now,
        "nonce": "n-1",
        "acr": "eidas1",
        "auth_time": now - 5,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(key, **overrides) -> str:
    return jwt.encode({"alg": "ES256", "kid": key.kid}, claims(**overrides), key)


def test_a_good_id_token_is_accepted(upstream, key):
    assert upstream.check_id_token(signed(key), "n-1")["sub"] == "f:psc:123"


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "https://evil.test"},
        {"aud": "another-client"},
        {"exp": int(time.time()) - 3600},
        {"nonce": "n-other"},
        {"nonce": None},
        {"acr": "eidas0"},
        {"acr": None},
        {"acr": "urn:idp:acr:2fa"},
    ],
)
def test_a_wrong_claim_or_a_lower_level_is_refused(upstream, key, overrides):
    with pytest.raises(PscRefused):
        upstream.check_id_token(signed(key, **overrides), "n-1")


def test_a_stronger_level_is_accepted(upstream, key):
    assert upstream.check_id_token(signed(key, acr="eidas3"), "n-1")["acr"] == "eidas3"


def test_a_token_signed_by_another_key_is_refused(upstream):
    other = ECKey.generate_key("P-256", parameters={"kid": "psc-1"})
    with pytest.raises(PscRefused):
        upstream.check_id_token(signed(other), "n-1")


def _unsigned(payload: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


def test_alg_none_is_refused(upstream):
    with pytest.raises(PscRefused, match="alg"):
        upstream.check_id_token(_unsigned(claims()), "n-1")


def test_hs256_with_the_client_secret_is_accepted_and_any_other_secret_refused(upstream):
    good = jwt.encode({"alg": "HS256"}, claims(), OctKey.import_key(SECRET))
    assert upstream.check_id_token(good, "n-1")["sub"] == "f:psc:123"
    forged = jwt.encode({"alg": "HS256"}, claims(), OctKey.import_key("x" * 40))
    with pytest.raises(PscRefused):
        upstream.check_id_token(forged, "n-1")


def test_an_unknown_kid_fetches_the_jwks_again(upstream, monkeypatch):
    rotated = ECKey.generate_key("P-256", parameters={"kid": "psc-2"})
    fetched = []

    def fetch():
        fetched.append(1)
        upstream._keys, upstream._keys_at = KeySet([rotated]), time.monotonic()
        return upstream._keys

    monkeypatch.setattr(upstream, "_fetch_keys", fetch)
    upstream._keys_at = 0  # the last fetch is old enough
    assert upstream.check_id_token(signed(rotated), "n-1")["sub"] == "f:psc:123"
    assert fetched == [1]


def test_garbage_is_refused_not_raised(upstream):
    for raw in ("", "a.b", "not a token", "e30.e30.e30"):
        with pytest.raises(PscRefused):
            upstream.check_id_token(raw, "n-1")


def test_psc_amr_and_auth_time_are_kept_else_mfa(upstream, key):
    with_amr = Upstream._identity("t", claims(amr=["pop", "mfa"]), {"SubjectNameID": "8" + RPPS})
    assert with_amr.amr == ("pop", "mfa") and with_amr.subject_name_id == "8" + RPPS
    without = Upstream._identity("t", claims(), {})
    assert without.amr == ("mfa",) and without.auth_time == claims()["auth_time"]


def test_national_identifiers():
    assert normalize(" 10000000009 ") == RPPS
    assert normalize("2a1234567") == "2A1234567"  # ADELI, Corsica
    for bad in ("10000000008", "1234", "abcdefghijk", ""):
        with pytest.raises(InvalidNationalId):
            normalize(bad)
    assert from_subject_name_id("8" + RPPS) == RPPS  # PSC's type prefix 8: RPPS
    assert from_subject_name_id("0751234567") == "751234567"  # prefix 0: ADELI
    assert from_subject_name_id(RPPS) == RPPS
    assert from_subject_name_id("810000000008") is None  # wrong key


@pytest.mark.parametrize(
    ("overrides", "key_named"),
    [
        ({"issuer": ""}, "psc.issuer"),
        ({"client_id": ""}, "psc.client_id"),
        ({"jwks_uri": ""}, "psc.jwks_uri"),
        ({"client_secret": ""}, "psc.client_secret"),
        ({"scope": "scope_all"}, "psc.scope"),
        ({"token_endpoint": "ftp://x"}, "psc.token_endpoint"),
        ({"private_key_file": "/nonexistent.pem"}, "psc.private_key_file"),
    ],
)
def test_psc_settings_are_checked(overrides, key_named):
    with pytest.raises(ConfigError, match=key_named):
        psc_settings(**overrides)


def test_discovery_url_fills_missing_endpoints_and_secret_comes_from_environment(monkeypatch):
    monkeypatch.setenv("IDP_PSC_CLIENT_SECRET", "from-env")
    found = psc_settings(
        jwks_uri="", client_secret=None, discovery_url=ISSUER + "/.well-known/wallet-configuration"
    )
    assert found["client_secret"] == "from-env"
    upstream = Upstream(found)
    document = {"issuer": ISSUER, "jwks_uri": "https://other.test/certs"}
    monkeypatch.setattr(upstream, "_get_json", lambda url: document)
    endpoints = upstream.endpoints()
    assert endpoints["jwks_uri"] == "https://other.test/certs"
    assert endpoints["authorization_endpoint"] == "https://wallet.psc.test/auth"  # pinned wins


def test_user_add_takes_a_national_id_checked_and_unique(idp):
    def add(name: str, national_id: str):
        return idp(
            "user",
            "add",
            name,
            "--email",
            f"{name}@exemple.fr",
            "--national-id",
            national_id,
            "--password-stdin",
            "--json",
            input="Vicodin-4-Ever!\n",
        )

    code, out, _ = add("carla", f" {RPPS} ")
    assert code == 0 and json.loads(out)["national_id"] == RPPS
    code, _, err = add("denis", RPPS)
    assert code != 0 and "national identifier" in err
    code, _, err = add("emile", "10000000008")  # wrong Luhn key
    assert code != 0 and "RPPS" in err
    listed = json.loads(idp("user", "list", "--json")[1])["users"]
    assert [u["national_id"] for u in listed] == [RPPS]


@pytest.mark.parametrize("auth_time", [int(time.time()) + 3600, 10**12, 12, "1700000000", True])
def test_an_implausible_auth_time_is_refused(upstream, key, auth_time):
    """It becomes the session's auth_time, which RPs compare with max_age."""
    with pytest.raises(PscRefused, match="auth_time"):
        upstream.check_id_token(signed(key, auth_time=auth_time), "n-1")


def test_without_auth_time_the_id_token_issue_time_is_used(upstream, key):
    issued = int(time.time()) - 30
    raw = signed(key, auth_time=None, iat=issued)
    checked = upstream.check_id_token(raw, "n-1")
    assert Upstream._identity(raw, checked, {"sub": checked["sub"]}).auth_time == issued


def test_hs256_is_refused_when_we_authenticate_with_a_private_key(tmp_path, key):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "psc.key"
    path.write_bytes(pem)
    found = Upstream(psc_settings(private_key_file=str(path)))
    found._keys, found._keys_at = KeySet([key]), time.monotonic()
    hs = jwt.encode({"alg": "HS256"}, claims(), OctKey.import_key(SECRET))
    with pytest.raises(PscRefused):
        found.check_id_token(hs, "n-1")
    assert found.check_id_token(signed(key), "n-1")["sub"] == "f:psc:123"
