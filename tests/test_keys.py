import json
import stat

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from idp import clock
from idp.oidc.keys import KeyFileError, KeyRing, ensure_keys, list_keys, rotate_keys


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

    new = rotate_keys(tmp_path, keep_seconds=3600)
    ring.reload(force=True)
    assert ring.signing_key("RS256")[0] == new["RS256"] != old_kid
    published = {k["kid"] for k in ring.public_jwks()["keys"]}
    assert {old_kid, new["RS256"]} <= published
    decoded = jwt.decode(token, KeySet.import_key_set(ring.public_jwks()))
    assert decoded.claims["sub"] == "x"
    assert {"kid": old_kid, "status": "retired"}.items() <= list_keys(tmp_path)[-1].items() or any(
        row["kid"] == old_kid and row["status"] == "retired" for row in list_keys(tmp_path)
    )


def test_retired_keys_are_dropped_once_expired(tmp_path, frozen_clock):
    ensure_keys(tmp_path)
    first = KeyRing.open(tmp_path).active["RS256"]
    rotate_keys(tmp_path, keep_seconds=100)
    frozen_clock.advance(101)
    rotate_keys(tmp_path, keep_seconds=100)
    assert not (tmp_path / f"{first}.pem").exists()
    assert first not in json.loads((tmp_path / "keys.json").read_text())["retired"]


def test_other_process_rotation_is_picked_up(tmp_path):
    ensure_keys(tmp_path)
    ring = KeyRing.open(tmp_path)
    before = ring.signing_key("ES256")[0]
    index = tmp_path / "keys.json"
    rotate_keys(tmp_path, keep_seconds=60)
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
