"""The ``sub`` a client sees: public or pairwise (OpenID Connect Core 1.0 §8).

A *public* client sees ``users.subject``, the same for every public client. A
*pairwise* client (``idp client add … --subject-type pairwise``) sees a value
of its own: base64url(HMAC-SHA256(K, sector ‖ 0x00 ‖ users.subject)), where the
sector is the host of the client's redirect URIs (``client.sector_identifier``,
set at registration). Clients on two hosts therefore cannot join their users by
``sub``, and nobody can go back from it to the account without the key; the
same client, or two clients of one host, always see the same value (docs/RELYING_PARTIES.md).

K is derived from the provider's secret key for this purpose alone, so no
other keyed hash (throttles, codes, audit addresses) shares it. Changing the
secret key changes every pairwise ``sub``: a pairwise RP would see strangers.

Every place that states a ``sub`` calls ``subject_for``: the ID token and
``/userinfo`` (``idp.oidc.claims``), ``/introspect`` and the ``id_token_hint``
check at logout (``idp.oidc.endpoints``, ``idp.oidc.views``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app

from .models import Client, User

_PURPOSE = b"idp pairwise subject v1"


def _pairwise_key() -> bytes:
    secret = current_app.config["SECRET_KEY"]
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def pairwise_subject(sector: str, subject: str) -> str:
    """43 URL-safe characters: the subject of one user within one sector."""
    message = sector.encode() + b"\x00" + subject.encode()
    digest = hmac.new(_pairwise_key(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def subject_for(user: User, client: Client | None) -> str:
    """The ``sub`` that ``client`` knows ``user`` by.

    ``None`` (no client could be named, e.g. an ``id_token_hint`` with several
    audiences) gets the public subject, which a pairwise ``sub`` never equals:
    a comparison with it fails safe.
    """
    if client is None or client.subject_type != "pairwise":
        return user.subject
    # The sector is stored at registration; a row without one (written by hand) is
    # still kept apart from every other client by its own identifier.
    sector = client.sector_identifier or f"client:{client.client_id}"
    return pairwise_subject(sector, user.subject)
