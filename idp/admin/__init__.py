"""The operator console under ``/admin/`` (docs/OPERATING.md, "The operator console").

``accounts``, ``audit_log`` and ``idp.clients`` are the services (shared with the
``idp`` command); ``views`` and ``forms`` are the pages, reserved to the ``admin``
role in a session whose last code is recent (``access``).
"""
