"""``LoginActions``: drive the hosted pages with the Flask test client."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from .factories import PASSWORD, REDIRECT_URI, pkce_pair, query_of


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token in page"
    return match.group(1)


class LoginActions:
    def __init__(self, client):
        self.client = client
        self.verifier = None

    def authorize(self, client_id="rp", **params):
        self.verifier, challenge = pkce_pair()
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": "st-123",
            "nonce": "n-456",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        query.update({k: v for k, v in params.items() if v is not None})
        for key in [k for k, v in params.items() if v is None]:
            query.pop(key, None)
        return self.client.get("/authorize?" + urlencode(query))

    def submit_password(self, login_url, username="alice", password=PASSWORD):
        page = self.client.get(login_url)
        return self.client.post(
            login_url,
            data={"csrf_token": csrf_of(page.text), "username": username, "password": password},
        )

    def login_through(self, client_id="rp", username="alice", password=PASSWORD, **params):
        """Authorization request → password → back at the RP; returns the RP's query."""
        response = self.authorize(client_id, **params)
        assert response.status_code == 302, response.text
        if "/login" in response.location:
            response = self.submit_password(response.location, username, password)
        assert response.status_code == 302, response.text
        assert response.location.startswith(REDIRECT_URI), response.location
        return query_of(response.location)

    def exchange(self, code, client_id="rp", secret=None, **extra):
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": self.verifier,
            **extra,
        }
        auth = (client_id, secret) if secret else None
        if auth is None:
            data["client_id"] = client_id
        return self.client.post("/token", data=data, auth=auth)

    # -- second factor ---------------------------------------------------
    def choose_channel(self, channel_url, channel="email"):
        page = self.client.get(channel_url)
        return self.client.post(
            channel_url, data={"csrf_token": csrf_of(page.text), "channel": channel}
        )

    def submit_code(self, otp_url, code, remember=False):
        page = self.client.get(otp_url)
        data = {"csrf_token": csrf_of(page.text), "code": code}
        if remember:
            data["remember"] = "y"
        return self.client.post(otp_url, data=data)

    def resend(self, otp_url):
        page = self.client.get(otp_url)
        data = {"csrf_token": csrf_of(page.text), "action": "resend"}
        return self.client.post(otp_url, data=data)


def code_in(text: str) -> str:
    """The 6-digit code in a message, read like a user would."""
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)
