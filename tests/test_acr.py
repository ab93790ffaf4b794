"""acr and amr requests handled exactly (OpenID Connect Core 1.0 §3.1.2.1, §5.5.1.1).

Malformed requests are ``invalid_request``; an essential level is met or
refused, never lowered; a stronger level meets a weaker demand; ``max_age=0``
with the second-factor level, or an essential ``amr`` asking for ``otp``, makes
a remembered browser ask for the code too, while ``prompt=login`` alone keeps
the remembered browser's 24-hour promise (docs/RELYING_PARTIES.md).
"""

from __future__ import annotations

import json

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.actions import LoginActions, code_in
from tests.factories import make_client, make_user, query_of

PWD, MFA = "urn:idp:acr:pwd", "urn:idp:acr:2fa"


@pytest.fixture
def rp(smtp, app):
    with app.app_context():
        make_user("alice")
        make_user("bruno", roles=["patient_data"])
        return make_client()[1]


@pytest.fixture
def login(rp, client):
    return LoginActions(client)


def _id_claims(login, location, secret) -> dict:
    body = login.exchange(query_of(location)["code"], secret=secret).json
    keys = KeySet.import_key_set(login.client.get("/jwks.json").json)
    return jwt.decode(body["id_token"], keys).claims


def _claims(**id_token) -> str:
    return json.dumps({"id_token": id_token})


@pytest.mark.parametrize(
    "spec",
    [
        {"essential": True, "values": MFA},  # a string, not an array
        {"essential": True, "value": 2},
        {"essential": True, "value": [MFA]},
        {"essential": True, "values": [MFA, 7]},
        {"essential": "yes", "values": [MFA]},
    ],
)
def test_a_malformed_acr_request_is_invalid_request_not_ignored(login, spec):
    query = query_of(login.authorize(claims=_claims(acr=spec)).location)
    assert query["error"] == "invalid_request", query
    assert query["state"] == "st-123"


def test_an_essential_acr_given_as_value_is_honoured(login):
    location = login.authorize(claims=_claims(acr={"essential": True, "value": MFA})).location
    response = login.submit_password(location, "alice")
    assert "/login/otp" in response.location


def test_a_stronger_level_meets_an_essential_weaker_one(login, smtp, rp):
    location = login.authorize(claims=_claims(acr={"essential": True, "values": [PWD]})).location
    otp_url = login.submit_password(location, "bruno").location  # his role needs the code
    claims = _id_claims(login, login.submit_code(otp_url, code_in(smtp.last_text())).location, rp)
    assert claims["acr"] == MFA


def _remembered(login, smtp, rp) -> None:
    otp_url = login.submit_password(login.authorize().location, "bruno").location
    login.submit_code(otp_url, code_in(smtp.last_text()), remember=True)


def test_prompt_login_keeps_sparing_the_code_on_a_remembered_browser(login, smtp, rp):
    _remembered(login, smtp, rp)
    response = login.submit_password(login.authorize(prompt="login").location, "bruno")
    assert _id_claims(login, response.location, rp)["amr"] == ["pwd", "mfa"]


def test_max_age_zero_with_the_2fa_level_asks_a_fresh_code_on_a_remembered_browser(login, smtp, rp):
    _remembered(login, smtp, rp)
    location = login.authorize(max_age="0", acr_values=MFA).location
    otp_url = login.submit_password(location, "bruno").location
    assert "/login/otp" in otp_url
    response = login.submit_code(otp_url, code_in(smtp.last_text()))
    claims = _id_claims(login, response.location, rp)
    assert claims["acr"] == MFA and "otp" in claims["amr"]


def test_an_essential_amr_otp_steps_up_a_remembered_session_with_a_code(login, smtp, rp):
    _remembered(login, smtp, rp)
    response = login.submit_password(login.authorize(prompt="login").location, "bruno")
    assert "code=" in response.location  # remembered: ["pwd", "mfa"]
    wanted = _claims(amr={"essential": True, "values": ["otp"]})
    response = login.authorize(claims=wanted)
    assert "/login/otp" in response.location  # the code only, no password page
    response = login.submit_code(response.location, code_in(smtp.last_text()))
    assert "otp" in _id_claims(login, response.location, rp)["amr"]


def test_an_essential_amr_otp_asks_a_new_code_even_after_one_was_typed(login, smtp, rp):
    """ "Code typed now" (before signing a prescription): an earlier code does not count."""
    otp_url = login.submit_password(login.authorize().location, "bruno").location
    login.submit_code(otp_url, code_in(smtp.last_text()))
    sent = len(smtp.messages)
    response = login.authorize(claims=_claims(amr={"essential": True, "values": ["otp"]}))
    assert "/login/otp" in response.location and len(smtp.messages) == sent + 1
    response = login.submit_code(response.location, code_in(smtp.last_text()))
    assert "otp" in _id_claims(login, response.location, rp)["amr"]


def test_a_clients_registered_level_is_a_floor_the_request_cannot_lower(smtp, app, client):
    with app.app_context():
        make_user("carla")
        make_client("strict", acr=MFA)
    login = LoginActions(client)
    for lowered in ({"acr_values": PWD}, {"claims": _claims(acr={"values": [PWD]})}):
        response = login.submit_password(login.authorize("strict", **lowered).location, "carla")
        assert "/login/otp" in response.location, lowered


@pytest.mark.parametrize("values", [["hwk"], ["sms"]])
def test_an_essential_amr_that_cannot_be_promised_is_refused(login, values):
    wanted = _claims(amr={"essential": True, "values": values})
    query = query_of(login.authorize(claims=wanted).location)
    assert query["error"] == "unmet_authentication_requirements"


def test_an_essential_2fa_acr_is_never_lowered_silently(login):
    login.login_through(username="alice")
    wanted = _claims(acr={"essential": True, "values": [MFA]})
    query = query_of(login.authorize(claims=wanted, prompt="none").location)
    assert query["error"] == "interaction_required"


def test_a_refresh_never_raises_the_level_of_its_grant(login, smtp, rp):
    """A step-up in the browser afterwards does not lift tokens refreshed from a
    password-only grant (keeps holding: the review confirmed it)."""
    query = login.login_through(username="alice")
    first = login.exchange(query["code"], secret=rp).json
    response = login.authorize(acr_values=MFA)  # step-up of the same browser
    login.submit_code(response.location, code_in(smtp.last_text()))
    refreshed = login.client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=("rp", rp),
    ).json
    intro = login.client.post(
        "/introspect", data={"token": refreshed["access_token"]}, auth=("rp", rp)
    ).json
    assert intro["active"] is True and intro["acr"] == PWD and intro["amr"] == ["pwd"]
