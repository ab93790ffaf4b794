"""Flask extensions, created unbound and initialised by ``create_app``."""

from __future__ import annotations

from flask_babel import Babel
from flask_mail import Mail
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

babel = Babel()
csrf = CSRFProtect()
mail = Mail()
migrate = Migrate()
