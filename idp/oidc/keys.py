"""Signing keys: PEM files in ``[keys] dir``, kid = RFC 7638 thumbprint.

Layout: ``<kid>.pem`` (mode 0600) per key and ``keys.json`` naming the active
key per algorithm and when each retired key was retired. Keys are loaded once
and reloaded only when ``keys.json`` changes (``idp keys rotate`` from another
process): the hot path costs one ``stat`` of ``keys.json``, never a key parse.
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
            except (ValueError, KeyError, TypeError) as exc:
                raise KeyFileError(f"{index}: unreadable key index ({exc})") from exc
            keys = {}
            for kid in [*active.values(), *retired]:
                key = _load_pem(self.directory / f"{kid}.pem")
                if key.thumbprint() != kid:
                    raise KeyFileError(f"{kid}.pem: file does not hold the key it is named after")
                keys[kid] = key
            self.active, self.retired, self.keys = active, retired, keys
            self._public_jwks = None
            self._mtime = mtime

    # -- use ---------------------------------------------------------------
    def signing_key(self, algorithm: str) -> tuple[str, RSAKey | ECKey]:
        self.reload()
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
    return {"active": {}, "retired": {}}


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


def rotate_keys(directory: str | os.PathLike, keep_seconds: int) -> dict[str, str]:
    """New active key per algorithm; old ones stay published ``keep_seconds``.

    Retired keys older than that (no token they signed is still valid) are
    removed from the index and deleted.
    """
    path = Path(directory)
    ensure_keys(path)
    meta = _read_index(path)
    now = clock.now()
    for kid, retired_at in list(meta["retired"].items()):
        if now - retired_at > keep_seconds:
            del meta["retired"][kid]
            (path / f"{kid}.pem").unlink(missing_ok=True)
    new = {}
    for algorithm in ALGORITHMS:
        meta["retired"][meta["active"][algorithm]] = now
        meta["active"][algorithm] = new[algorithm] = _add_key(path, algorithm)
    _write_index(path, meta)
    return new


def list_keys(directory: str | os.PathLike) -> list[dict]:
    meta = _read_index(Path(directory))
    rows = [
        {"kid": kid, "algorithm": alg, "status": "active"} for alg, kid in meta["active"].items()
    ]
    rows += [
        {"kid": kid, "status": "retired", "retired_at": at} for kid, at in meta["retired"].items()
    ]
    return rows
