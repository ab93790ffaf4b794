"""The hosted pages' icon: no 404 in the browser's console or the access log."""

from __future__ import annotations

import struct


def test_favicon_is_a_small_cacheable_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.mimetype == "image/x-icon"
    body = response.data
    assert len(body) < 1024
    reserved, kind, count = struct.unpack("<HHH", body[:6])
    assert (reserved, kind, count) == (0, 1, 1)  # an ICO file holding one image
    assert body[22:30] == b"\x89PNG\r\n\x1a\n"  # that image is a PNG (ICO since Vista)
    cache = response.cache_control
    assert cache.public and cache.max_age == 7 * 86400
    assert "no-store" not in response.headers.get("Cache-Control", "")


def test_hosted_pages_name_the_icon(client):
    page = client.get("/login", follow_redirects=True)
    assert page.status_code == 200
    assert '<link rel="icon" href="/favicon.ico"' in page.text
    assert client.get("/favicon.ico").status_code == 200


def test_a_cached_favicon_is_revalidated_without_a_body(client):
    etag = client.get("/favicon.ico").headers["ETag"]
    again = client.get("/favicon.ico", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
