"""Signing keys: PEM files in ``[keys] dir``, kid = RFC 7638 thumbprint.

Layout: ``<kid>.pem`` (mode 0600) per key and ``keys.json`` naming the active
key per algorithm, the key staged to replace it and when it starts signing, and
when each retired key was retired. Keys are loaded once and reloaded only when
``keys.json`` changes (``idp keys rotate`` from another process): the hot path
costs one ``stat`` of ``keys.json``, never a key parse.

A rotation *stages* the new key: it is published in ``/jwks.json`` at once and
signs only after ``STAGE_SECONDS``, longer than the JWKS cache lifetime, so an
RP holding a cached JWKS never meets a ``kid`` it does not know (RFC 7517 §5,
OpenID Connect Core §10.1.1).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from .. import clock

ALGORITHMS = ("RS256", "ES256")
_INDEX = "keys.json"
JWKS_MAX_AGE = 300  # seconds RPs may cache /jwks.json (its Cache-Control)
STAGE_SECONDS = JWKS_MAX_AGE + 60  # a staged key signs once every cache has seen it


class KeyFileError(RuntimeError):
    """A key file is missing or unreadable: start-up stops with this message."""


def _generate(algorithm: str) -> RSAKey | ECKey:
    if algorithm == "RS256":
        return RSAKey.generate_key(2048, private=True)
    return ECKey.generate_key("P-256", private=True)


def _load_pem(path: Path) -> RSAKey | ECKey:
    data = path.read_bytes()
    for cls in (RSAKey, ECKey):
        try:
            key = cls.import_key(data)
        except (JoseError, ValueError, TypeError):
            continue
        if not key.is_private:
            raise KeyFileError(f"{path}: not a private key")
        return key
    raise KeyFileError(f"{path}: not an RSA or EC private key in PEM form")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@dataclass
class KeyRing:
    """Active and retired keys of one ``keys`` directory."""

    directory: Path
    active: dict[str, str] = field(default_factory=dict)  # algorithm -> kid
    staged: dict[str, dict] = field(default_factory=dict)  # algorithm -> {kid, active_at}
    retired: dict[str, int] = field(default_factory=dict)  # kid -> retired at
    keys: dict[str, RSAKey | ECKey] = field(default_factory=dict)
    _mtime: float = -1.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _public_jwks: dict | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike) -> KeyRing:
        ring = cls(Path(directory))
        ring.reload()
        return ring

    # -- loading -----------------------------------------------------------
    def reload(self, force: bool = False) -> None:
        index = self.directory / _INDEX
        try:
            mtime = index.stat().st_mtime
        except FileNotFoundError:
            raise KeyFileError(
                f"no signing keys in {self.directory}: run 'idp init' first"
            ) from None
        if not force and mtime == self._mtime:
            return
        with self._lock:
            try:
                meta = json.loads(index.read_text())
                active, retired = dict(meta["active"]), dict(meta.get("retired", {}))
                staged = {alg: dict(entry) for alg, entry in meta.get("staged", {}).items()}
                staged_kids = [entry["kid"] for entry in staged.values()]
            except (ValueError, KeyError, TypeError) as exc:
                raise KeyFileError(f"{index}: unreadable key index ({exc})") from exc
            keys = {}
            for kid in [*active.values(), *staged_kids, *retired]:
                key = _load_pem(self.directory / f"{kid}.pem")
                if key.thumbprint() != kid:
                    raise KeyFileError(f"{kid}.pem: file does not hold the key it is named after")
                keys[kid] = key
            self.active, self.staged, self.retired, self.keys = active, staged, retired, keys
            self._public_jwks = None
            self._mtime = mtime

    # -- use ---------------------------------------------------------------
    def signing_key(self, algorithm: str) -> tuple[str, RSAKey | ECKey]:
        """The key that signs now: the staged one once its time has come, else the active one."""
        self.reload()
        staged = self.staged.get(algorithm)
        if staged and clock.now() >= staged["active_at"]:
            return staged["kid"], self.keys[staged["kid"]]
        try:
            kid = self.active[algorithm]
        except KeyError:
            raise KeyFileError(f"no active key for {algorithm}") from None
        return kid, self.keys[kid]

    def public_jwks(self) -> dict:
        """JWKS of active and retired keys, public members only; cached."""
        self.reload()
        if self._public_jwks is None:
            algorithm_of = {kid: alg for alg, kid in self.active.items()}
            algorithm_of.update({entry["kid"]: alg for alg, entry in self.staged.items()})
            entries = []
            for kid, key in self.keys.items():
                data = key.as_dict(private=False)
                data.update(kid=kid, use="sig")
                alg = algorithm_of.get(kid) or ("RS256" if data["kty"] == "RSA" else "ES256")
                data["alg"] = alg
                entries.append(data)
            self._public_jwks = {"keys": entries}
        return self._public_jwks

    def verification_keys(self) -> KeySet:
        return KeySet.import_key_set(self.public_jwks())


def _read_index(directory: Path) -> dict:
    index = directory / _INDEX
    if index.exists():
        return json.loads(index.read_text())
    return {"active": {}, "staged": {}, "retired": {}}


def _write_index(directory: Path, meta: dict) -> None:
    tmp = directory / f".{_INDEX}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
    os.replace(tmp, directory / _INDEX)


def _add_key(directory: Path, algorithm: str) -> str:
    key = _generate(algorithm)
    kid = key.thumbprint()
    _write_private(directory / f"{kid}.pem", key.as_pem(private=True))
    return kid


def ensure_keys(directory: str | os.PathLike) -> list[str]:
    """Create the directory and an active key per algorithm where missing."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    meta = _read_index(path)
    created = []
    for algorithm in ALGORITHMS:
        if algorithm not in meta["active"]:
            meta["active"][algorithm] = _add_key(path, algorithm)
            created.append(meta["active"][algorithm])
    if created:
        _write_index(path, meta)
    return created


def rotate_keys(
    directory: str | os.PathLike, keep_seconds: int, *, stage_seconds: int = STAGE_SECONDS
) -> dict[str, dict]:
    """Stage a new key per algorithm, published now and signing after ``stage_seconds``
    (0: at once, for a compromised key); returns ``{alg: {"kid", "active_at"}}``.

    A staged key whose time has come becomes the active one first; an earlier
    staged key still waiting is replaced by this one (it never signed). Retired
    keys older than ``keep_seconds`` (no token they signed is still valid) are
    removed from the index and deleted.
    """
    path = Path(directory)
    ensure_keys(path)
    meta = _read_index(path)
    meta.setdefault("staged", {})
    now = clock.now()
    _promote_due(meta, now)
    for kid, retired_at in list(meta["retired"].items()):
        if now - retired_at > keep_seconds:
            del meta["retired"][kid]
            (path / f"{kid}.pem").unlink(missing_ok=True)
    for algorithm in ALGORITHMS:
        if waiting := meta["staged"].pop(algorithm, None):
            (path / f"{waiting['kid']}.pem").unlink(missing_ok=True)
        meta["staged"][algorithm] = {
            "kid": _add_key(path, algorithm),
            "active_at": now + stage_seconds,
        }
    _promote_due(meta, now)
    _write_index(path, meta)
    return {alg: dict(entry) for alg, entry in meta["staged"].items()} or {
        alg: {"kid": kid, "active_at": now} for alg, kid in meta["active"].items()
    }


def _promote_due(meta: dict, now: int) -> None:
    """A staged key whose time has come is the active one; the one it replaces retires."""
    for algorithm, entry in list(meta["staged"].items()):
        if now >= entry["active_at"]:
            meta["retired"][meta["active"][algorithm]] = entry["active_at"]
            meta["active"][algorithm] = entry["kid"]
            del meta["staged"][algorithm]


def list_keys(directory: str | os.PathLike) -> list[dict]:
    meta = _read_index(Path(directory))
    rows = [
        {"kid": kid, "algorithm": alg, "status": "active"} for alg, kid in meta["active"].items()
    ]
    rows += [
        {"kid": entry["kid"], "algorithm": alg, "status": "staged", "active_at": entry["active_at"]}
        for alg, entry in meta.get("staged", {}).items()
    ]
    rows += [
        {"kid": kid, "status": "retired", "retired_at": at} for kid, at in meta["retired"].items()
    ]
    return rows
