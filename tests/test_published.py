"""Discovery and JWKS from precomputed bytes (idp/oidc/published.py): the same
documents and headers as through Flask, validators that change when the keys do."""

from __future__ import annotations

import json
import shutil

import pytest

from idp import create_app
from idp.models import db
from idp.oidc.keys import ensure_keys, rotate_keys
from idp.web import SECURITY_HEADERS

PATHS = ("/.well-known/openid-configuration", "/jwks.json")


@pytest.mark.parametrize("path", PATHS)
def test_the_fast_answer_is_the_document_flask_gives(client, path):
    fast = client.get(path)
    through_flask = client.get(path + "?via=flask")  # a query string goes to the Flask route
    assert fast.status_code == through_flask.status_code == 200
    assert fast.mimetype == "application/json"
    assert json.loads(fast.data) == through_flask.json
    assert fast.headers["Cache-Control"] == through_flask.headers["Cache-Control"]
    for name in (*SECURITY_HEADERS, "Access-Control-Allow-Origin", "X-Request-Id"):
        assert fast.headers[name] == through_flask.headers[name] or name == "X-Request-Id"


@pytest.mark.parametrize("path", PATHS)
def test_a_cached_copy_is_revalidated_with_304(client, path):
    first = client.get(path)
    etag = first.headers["ETag"]
    again = client.get(path, headers={"If-None-Match": f'W/"other", {etag}'})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag and "Cache-Control" in again.headers
    assert client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_head_has_the_headers_without_the_body(client):
    response = client.head("/jwks.json")
    assert response.status_code == 200 and response.data == b""
    assert int(response.headers["Content-Length"]) == len(client.get("/jwks.json").data)


def test_a_plain_request_id_is_echoed_and_any_other_replaced(client):
    path = PATHS[0]
    assert (
        client.get(path, headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    )
    replaced = client.get(path, headers={"X-Request-Id": "<script>"}).headers["X-Request-Id"]
    assert replaced != "<script>" and replaced.isalnum()


def test_other_methods_still_reach_flask(client):
    assert client.post("/jwks.json").status_code == 405
    assert client.options("/jwks.json").status_code == 200


def test_a_rotation_changes_the_published_keys_and_their_etag(settings, tmp_path):
    keys = tmp_path / "keys"
    shutil.copytree(settings["keys"]["dir"], keys)
    ensure_keys(keys)
    settings["keys"]["dir"] = str(keys)
    app = create_app(settings)
    try:
        client = app.test_client()
        before = client.get("/jwks.json")
        staged = rotate_keys(keys, keep_seconds=3600)
        after = client.get("/jwks.json")
        assert after.headers["ETag"] != before.headers["ETag"]
        kids = {key["kid"] for key in after.json["keys"]}
        assert {entry["kid"] for entry in staged.values()} <= kids
        stale = client.get("/jwks.json", headers={"If-None-Match": before.headers["ETag"]})
        assert stale.status_code == 200
    finally:
        with app.app_context():
            db.engine.dispose()


def test_behind_a_trusted_https_proxy_the_answer_carries_hsts(settings):
    settings["trusted_proxies"] = 1
    app = create_app(settings)
    try:
        response = app.test_client().get(PATHS[0], headers={"X-Forwarded-Proto": "https"})
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert "Strict-Transport-Security" not in app.test_client().get(PATHS[0]).headers
    finally:
        with app.app_context():
            db.engine.dispose()
