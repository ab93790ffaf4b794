"""Message delivery: wording in templates, transport in backends.

See docs/CONVENTIONS.md, convention 10.
"""

from __future__ import annotations


class DeliveryError(RuntimeError):
    """A message could not be handed over (SMTP refused, gateway error or time-out)."""


class DeliverySlow(DeliveryError):
    """No answer within the time-out: the message may still arrive, or may not."""
