"""Pro Santé Connect (PSC): the national sign-in of health professionals, beside the
password on the login page.

``upstream`` talks to PSC (Authlib, joserfc), ``service`` binds a PSC login to
our login transaction and to an account (by national identifier only),
``national_id`` checks RPPS and ADELI numbers, ``views`` holds ``/login/psc*``.
Operating it: docs/OPERATING.md, "Pro Santé Connect"; what RPs see:
docs/RELYING_PARTIES.md, "Pro Santé Connect".
"""
