"""SMS transport: the log (``console``) or an HTTP gateway (``http``).

The gateway gets ``POST url`` with JSON ``{"to": "+33…", "text": "…"}`` and an
optional bearer token; any 2xx is success, anything else a ``DeliveryError``.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from flask import current_app

from . import DeliveryError, DeliverySlow

log = logging.getLogger("idp.delivery")


def send_sms(to: str, text: str) -> None:
    conf = current_app.config["IDP"]["sms"]
    if conf["backend"] == "console":
        log.warning("sms to %s: %s", to, text)
        return
    headers = {"Content-Type": "application/json"}
    if conf["token"]:
        headers["Authorization"] = f"Bearer {conf['token']}"
    body = json.dumps({"to": to, "text": text}).encode()
    request = urllib.request.Request(conf["url"], data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=conf["timeout_seconds"]) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError) as exc:  # TimeoutError is an OSError
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError):
            # The gateway may still deliver it: the caller keeps the code valid.
            log.error("sms gateway did not answer within %s s", conf["timeout_seconds"])
            raise DeliverySlow("sms") from exc
        log.error("sms gateway unreachable: %s", type(exc).__name__)
        raise DeliveryError("sms") from exc
    if not 200 <= status < 300:
        log.error("sms gateway answered %s", status)
        raise DeliveryError("sms")
