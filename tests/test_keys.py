import json
import stat

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import clock
from idp.oidc.keys import (
    JWKS_MAX_AGE,
    STAGE_SECONDS,
    KeyFileError,
    KeyRing,
    ensure_keys,
    list_keys,
    rotate_keys,
)


def test_init_creates_private_files_named_by_thumbprint(tmp_path):
    created = ensure_keys(tmp_path / "k")
    assert len(created) == 2
    ring = KeyRing.open(tmp_path / "k")
    for kid in created:
        path = tmp_path / "k" / f"{kid}.pem"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert ring.keys[kid].thumbprint() == kid
    assert ensure_keys(tmp_path / "k") == []  # idempotent


def test_jwks_publishes_public_members_only(tmp_path):
    ensure_keys(tmp_path)
    jwks = KeyRing.open(tmp_path).public_jwks()
    assert {k["alg"] for k in jwks["keys"]} == {"RS256", "ES256"}
    for entry in jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & entry.keys()
        assert entry["use"] == "sig" and entry["kid"]


def test_rotation_keeps_old_key_published_and_verifying(tmp_path):
    ensure_keys(tmp_path)
    ring = KeyRing.open(tmp_path)
    old_kid, old_key = ring.signing_key("RS256")
    token = jwt.encode({"alg": "RS256", "kid": old_kid}, {"sub": "x"}, old_key)

    new = rotate_keys(tmp_path, keep_seconds=3600, stage_seconds=0)["RS256"]["kid"]
    ring.reload(force=True)
    assert ring.signing_key("RS256")[0] == new != old_kid
    published = {k["kid"] for k in ring.public_jwks()["keys"]}
    assert {old_kid, new} <= published
    decoded = jwt.decode(token, KeySet.import_key_set(ring.public_jwks()))
    assert decoded.claims["sub"] == "x"
    assert {"kid": old_kid, "status": "retired"}.items() <= list_keys(tmp_path)[-1].items() or any(
        row["kid"] == old_kid and row["status"] == "retired" for row in list_keys(tmp_path)
    )


def test_retired_keys_are_dropped_once_expired(tmp_path, frozen_clock):
    ensure_keys(tmp_path)
    first = KeyRing.open(tmp_path).active["RS256"]
    rotate_keys(tmp_path, keep_seconds=100, stage_seconds=0)
    frozen_clock.advance(101)
    rotate_keys(tmp_path, keep_seconds=100, stage_seconds=0)
    assert not (tmp_path / f"{first}.pem").exists()
    assert first not in json.loads((tmp_path / "keys.json").read_text())["retired"]


def test_other_process_rotation_is_picked_up(tmp_path):
    ensure_keys(tmp_path)
    ring = KeyRing.open(tmp_path)
    before = ring.signing_key("ES256")[0]
    index = tmp_path / "keys.json"
    rotate_keys(tmp_path, keep_seconds=60, stage_seconds=0)
    # make sure the mtime differs even on coarse file systems
    import os

    os.utime(index, (clock.now() + 5, clock.now() + 5))
    assert ring.signing_key("ES256")[0] != before


def test_bad_key_file_fails_fast(tmp_path):
    created = ensure_keys(tmp_path)
    (tmp_path / f"{created[0]}.pem").write_text("not a key")
    with pytest.raises(KeyFileError, match="not an RSA or EC private key"):
        KeyRing.open(tmp_path)


def test_missing_keys_say_to_run_init(tmp_path):
    with pytest.raises(KeyFileError, match="idp init"):
        KeyRing.open(tmp_path)


def test_a_rotated_key_is_published_before_it_signs(tmp_path, frozen_clock):
    """An RP with a JWKS cached just before the rotation never meets an unknown kid."""
    ensure_keys(tmp_path)
    ring = KeyRing.open(tmp_path)
    old_kid = ring.signing_key("RS256")[0]
    staged = rotate_keys(tmp_path, keep_seconds=3600)["RS256"]
    ring.reload(force=True)
    assert staged["active_at"] - clock.now() == STAGE_SECONDS > JWKS_MAX_AGE
    assert ring.signing_key("RS256")[0] == old_kid  # still signing with the old key...
    assert staged["kid"] in {k["kid"] for k in ring.public_jwks()["keys"]}  # ...new one published
    assert [r["status"] for r in list_keys(tmp_path) if r["kid"] == staged["kid"]] == ["staged"]
    frozen_clock.advance(STAGE_SECONDS)
    assert ring.signing_key("RS256")[0] == staged["kid"]
    rotate_keys(tmp_path, keep_seconds=3600)  # the next rotation records the promotion
    rows = {r["kid"]: r for r in list_keys(tmp_path)}
    assert rows[staged["kid"]]["status"] == "active"
    assert rows[old_kid]["status"] == "retired"
    assert rows[old_kid]["retired_at"] == staged["active_at"]


def test_a_second_rotation_replaces_a_key_that_never_signed(tmp_path, frozen_clock):
    ensure_keys(tmp_path)
    first = rotate_keys(tmp_path, keep_seconds=3600)["ES256"]["kid"]
    second = rotate_keys(tmp_path, keep_seconds=3600)["ES256"]["kid"]
    assert first != second and not (tmp_path / f"{first}.pem").exists()
    assert first not in {r["kid"] for r in list_keys(tmp_path)}


def test_jwks_is_cached_for_less_than_the_staging_delay(client):
    response = client.get("/jwks.json")
    max_age = int(response.headers["Cache-Control"].split("max-age=")[1])
    assert max_age == JWKS_MAX_AGE < STAGE_SECONDS
