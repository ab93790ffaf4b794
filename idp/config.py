"""Settings: defaults, then a TOML file, then ``IDP_*`` environment, then a mapping.

Validated once at start-up: an unknown key or a value of the wrong type stops
the application with a message naming the key (docs/CONVENTIONS.md, convention 2).
"""

from __future__ import annotations

import copy
import ipaddress
import os
import secrets
import stat
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "issuer": "http://127.0.0.1:5000",
    "secret_key": "",
    "instance_dir": "instance",
    "trusted_proxies": 0,
    "database": {"url": "sqlite:///instance/idp.sqlite3", "timeout_seconds": 5.0},
    "keys": {"dir": "keys", "algorithm": "RS256"},
    "mail": {
        "backend": "console",
        "server": "localhost",
        "port": 25,
        "use_tls": False,
        "use_ssl": False,
        "username": "",
        "password": "",
        "sender": "Portail de santé <no-reply@example.org>",
        "timeout_seconds": 10.0,
    },
    "sms": {"backend": "console", "url": "", "token": "", "timeout_seconds": 5.0},
    "mfa": {
        "required_roles": ["admin", "patient_data"],
        "otp_ttl_seconds": 300,
        "otp_max_attempts": 5,
        "codes_per_hour": 10,
        "remember_browser_hours": 24,
    },
    "password": {
        "min_length": 12,
        "max_age_days": 0,
        "reset_link_hours": 24,
        "invite_link_hours": 72,
        "argon2_time_cost": 3,
        "argon2_memory_kib": 65536,
        "argon2_parallelism": 4,
        "max_failures": 5,
        "lockout_seconds": 900,
    },
    "tokens": {
        "access_token_seconds": 600,
        "id_token_seconds": 600,
        "refresh_token_days": 1,
        "refresh_reuse_seconds": 10,
        "code_seconds": 60,
    },
    "session": {"sso_hours": 10, "login_minutes": 30},
    "acr": {"pwd": "urn:idp:acr:pwd", "mfa": "urn:idp:acr:2fa"},
    "audit": {"retention_days": 365},
    "admin": {"max_session_minutes": 30},
    "throttle": {
        "account_failures_per_hour": 30,
        "address_failures_per_hour": 300,
        "allow_networks": [],
        "logins_started_per_hour": 1000,
        "reset_requests_per_hour": 100,
    },
    # Pro Santé Connect, the national sign-in of health professionals (docs/OPERATING.md,
    # "Pro Santé Connect"): endpoints are pinned; ``discovery_url`` only fills the gaps.
    "psc": {
        "enabled": False,
        "issuer": "",
        "discovery_url": "",
        "authorization_endpoint": "",
        "token_endpoint": "",
        "userinfo_endpoint": "",
        "jwks_uri": "",
        "end_session_endpoint": "",
        "client_id": "",
        "client_secret": "",
        "private_key_file": "",
        "scope": "openid scope_all",
        "acr_values": "eidas1",
        "timeout_seconds": 5.0,
    },
    "log_level": "INFO",
    # Role id → its name on the console, in French and English: any role id may be
    # added (``[roles.<id>]``), each with exactly ``fr`` and ``en``.
    "roles": {
        "admin": {"fr": "Administration du portail", "en": "Portal administration"},
        "patient_data": {
            "fr": "Accès aux données de santé des patients",
            "en": "Access to patients' health data",
        },
    },
}
# Tables whose keys are chosen by the operator (role ids), not fixed by DEFAULTS.
_OPEN_TABLES = {"roles"}


class ConfigError(ValueError):
    """A setting is unknown or has the wrong type; the message names it."""


def load_settings(config: str | os.PathLike | Mapping[str, Any] | None = None) -> dict:
    """Merge defaults, TOML, environment and mapping; validate; return settings."""
    settings = copy.deepcopy(DEFAULTS)
    path = None
    if config is None:
        path = os.environ.get("IDP_CONFIG") or None
    elif not isinstance(config, Mapping):
        path = os.fspath(config)
    if path:
        _merge(settings, _read_toml(path), "")
    _merge(settings, _from_environment(), "")
    if isinstance(config, Mapping):
        _merge(settings, config, "")
    _check_values(settings)
    return settings


def _read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def _from_environment() -> dict:
    """``IDP_SECRET_KEY``, ``IDP_ISSUER``, ``IDP_DATABASE_URL`` and the like."""
    found: dict[str, Any] = {}
    if value := os.environ.get("IDP_SECRET_KEY"):
        found["secret_key"] = value
    if value := os.environ.get("IDP_ISSUER"):
        found["issuer"] = value
    if value := os.environ.get("IDP_DATABASE_URL"):
        found["database"] = {"url": value}
    if value := os.environ.get("IDP_MAIL_PASSWORD"):
        found.setdefault("mail", {})["password"] = value
    if value := os.environ.get("IDP_SMS_TOKEN"):
        found.setdefault("sms", {})["token"] = value
    if value := os.environ.get("IDP_PSC_CLIENT_SECRET"):
        found.setdefault("psc", {})["client_secret"] = value
    return found


def _merge(target: dict, source: Mapping[str, Any], prefix: str) -> None:
    for key, value in source.items():
        name = f"{prefix}{key}"
        if prefix == "" and key in _OPEN_TABLES:
            target[key] = _open_table(name, target[key], value)
            continue
        if key not in target:
            raise ConfigError(f"unknown configuration key: {name}")
        current = target[key]
        if isinstance(current, dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{name}: expected a table")
            _merge(current, value, f"{name}.")
            continue
        target[key] = _coerce(name, current, value)


def _open_table(name: str, current: dict, value: Any) -> dict:
    """``[roles]``: any role id, each a table of exactly ``fr`` and ``en`` non-empty strings."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a table")
    merged = copy.deepcopy(current)
    for role, labels in value.items():
        where = f"{name}.{role}"
        if not isinstance(labels, Mapping):
            raise ConfigError(f"{where}: expected a table with fr and en")
        if set(labels) != {"fr", "en"}:
            raise ConfigError(f"{where}: expected exactly the keys fr and en")
        for language, label in labels.items():
            if not isinstance(label, str) or not label.strip():
                raise ConfigError(f"{where}.{language}: expected a non-empty string")
        merged[role] = {"fr": labels["fr"].strip(), "en": labels["en"].strip()}
    return merged


def _coerce(name: str, default: Any, value: Any) -> Any:
    """Accept the default's type (ints for floats too); reject anything else."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
        raise ConfigError(f"{name}: expected a list of strings")
    raise ConfigError(f"{name}: expected {type(default).__name__}, got {type(value).__name__}")


def _check_values(settings: dict) -> None:
    issuer = settings["issuer"]
    if not issuer.startswith(("http://", "https://")) or issuer.endswith("/"):
        raise ConfigError("issuer: must be an http(s) URL without a trailing slash")
    if "?" in issuer or "#" in issuer:
        raise ConfigError("issuer: must not contain a query or fragment")
    choices = {
        "keys.algorithm": (settings["keys"]["algorithm"], {"RS256", "ES256"}),
        "mail.backend": (settings["mail"]["backend"], {"smtp", "console"}),
        "sms.backend": (settings["sms"]["backend"], {"console", "http"}),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{name}: must be one of {', '.join(sorted(allowed))}")
    if settings["sms"]["backend"] == "http" and not settings["sms"]["url"]:
        raise ConfigError("sms.url: required when sms.backend is 'http'")
    positive = [
        ("mfa.otp_ttl_seconds", settings["mfa"]["otp_ttl_seconds"]),
        ("mfa.otp_max_attempts", settings["mfa"]["otp_max_attempts"]),
        ("mfa.codes_per_hour", settings["mfa"]["codes_per_hour"]),
        ("password.min_length", settings["password"]["min_length"]),
        ("password.reset_link_hours", settings["password"]["reset_link_hours"]),
        ("password.invite_link_hours", settings["password"]["invite_link_hours"]),
        ("admin.max_session_minutes", settings["admin"]["max_session_minutes"]),
        ("password.argon2_time_cost", settings["password"]["argon2_time_cost"]),
        ("password.argon2_memory_kib", settings["password"]["argon2_memory_kib"]),
        ("password.argon2_parallelism", settings["password"]["argon2_parallelism"]),
        ("tokens.access_token_seconds", settings["tokens"]["access_token_seconds"]),
        ("tokens.id_token_seconds", settings["tokens"]["id_token_seconds"]),
        ("tokens.code_seconds", settings["tokens"]["code_seconds"]),
        ("session.sso_hours", settings["session"]["sso_hours"]),
        ("mail.timeout_seconds", settings["mail"]["timeout_seconds"]),
        ("database.timeout_seconds", settings["database"]["timeout_seconds"]),
        ("sms.timeout_seconds", settings["sms"]["timeout_seconds"]),
        ("psc.timeout_seconds", settings["psc"]["timeout_seconds"]),
        ("password.max_failures", settings["password"]["max_failures"]),
        ("password.lockout_seconds", settings["password"]["lockout_seconds"]),
        ("throttle.account_failures_per_hour", settings["throttle"]["account_failures_per_hour"]),
        ("throttle.address_failures_per_hour", settings["throttle"]["address_failures_per_hour"]),
        ("throttle.logins_started_per_hour", settings["throttle"]["logins_started_per_hour"]),
        ("throttle.reset_requests_per_hour", settings["throttle"]["reset_requests_per_hour"]),
    ]
    for name, value in positive:
        if value <= 0:
            raise ConfigError(f"{name}: must be positive")
    for network in settings["throttle"]["allow_networks"]:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"throttle.allow_networks: not a network: {network!r}") from None
    if settings["audit"]["retention_days"] < 0:
        raise ConfigError("audit.retention_days: must not be negative")
    if settings["trusted_proxies"] < 0:
        raise ConfigError("trusted_proxies: must not be negative")
    if settings["tokens"]["refresh_reuse_seconds"] < 0:
        raise ConfigError("tokens.refresh_reuse_seconds: must not be negative (0: no grace)")
    if settings["password"]["max_age_days"] < 0 or settings["tokens"]["refresh_token_days"] < 0:
        raise ConfigError("password.max_age_days / tokens.refresh_token_days: must not be negative")
    if settings["psc"]["enabled"]:
        _check_psc(settings["psc"])
    if not settings["secret_key"] and not is_sqlite(settings["database"]["url"]):
        # A key generated per node would break codes, throttles and forms across nodes.
        raise ConfigError(
            "secret_key: required with a shared (non-SQLite) database, the same on every"
            " node: set secret_key or $IDP_SECRET_KEY"
        )


_PSC_ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "end_session_endpoint",
)


def _check_psc(psc: dict) -> None:
    """An enabled ``[psc]``: an issuer, a client, a way to authenticate it, and each
    endpoint pinned or left to ``discovery_url`` (fetched at the first PSC login)."""
    for name in ("issuer", "client_id", "scope", "acr_values"):
        if not psc[name].strip():
            raise ConfigError(f"psc.{name}: required when psc.enabled is true")
    for name in ("issuer", "discovery_url", *_PSC_ENDPOINTS):
        value = psc[name]
        if value and not value.startswith(("https://", "http://")):
            raise ConfigError(f"psc.{name}: must be an http(s) URL")
    missing = [name for name in _PSC_ENDPOINTS if not psc[name]]
    if missing and not psc["discovery_url"]:
        raise ConfigError(f"psc.{missing[0]}: required (or set psc.discovery_url)")
    if "openid" not in psc["scope"].split():
        raise ConfigError("psc.scope: must contain openid")
    if not psc["client_secret"] and not psc["private_key_file"]:
        raise ConfigError(
            "psc.client_secret: required (or $IDP_PSC_CLIENT_SECRET, or psc.private_key_file)"
        )
    if psc["private_key_file"] and not os.path.isfile(psc["private_key_file"]):
        raise ConfigError(f"psc.private_key_file: not found: {psc['private_key_file']}")


def is_sqlite(url: str) -> bool:
    """``sqlite://…`` or ``sqlite+driver://…``: one node, whose local files are its state."""
    return url.partition(":")[0].partition("+")[0].strip().lower() == "sqlite"


def resolve_secret_key(settings: dict) -> str:
    """Use the configured secret, else one kept in ``instance/secret_key`` (0600).

    The file lets every gunicorn worker and every restart share one key without
    a secret in code. Only a SQLite (single node) set-up gets there: with a
    shared database ``_check_values`` requires ``secret_key`` or ``$IDP_SECRET_KEY``.
    """
    if settings["secret_key"]:
        return settings["secret_key"]
    directory = private_directory(settings["instance_dir"])
    path = directory / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        make_private(path)
        for _ in range(50):  # another worker may be writing it right now
            if key := path.read_text().strip():
                return key
            time.sleep(0.02)
        raise ConfigError(f"secret_key: {path} is empty") from None
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, 0o600)
        handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def private_directory(path: str | os.PathLike) -> Path:
    """Create ``path`` with mode 0700, or take group and other access away from it.

    ``mkdir``'s mode is filtered by the umask; ``chmod`` is not, so the result
    does not depend on the umask of whoever started the process.
    """
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        make_private(path)
    else:
        os.chmod(path, 0o700)
    return path


def make_private(path: str | os.PathLike) -> None:
    """Take group and other permissions away from an existing file or directory."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
