"""The API keys file: hashed keys with roles, written atomically, re-read when it changes.

    keys:
    - name: ci
      hash: sha256:9f86d081884c7d65...
      roles: [score]
      created_at: '2026-11-21T10:00:00Z'
      prefix: adp_Xb3k

Only the SHA-256 of each key is stored. A key is ``adp_`` plus 32 random bytes (``secrets.token_urlsafe``):
with 256 bits of entropy nobody can guess or brute-force it from its hash, so a slow password hash
(bcrypt, scrypt, argon2) would buy nothing and would add its cost (tens of milliseconds by design) to
every request. Lookup is a dict lookup by hash, which compares hashes, never the secret itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import secrets
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import yaml

from adpipe.core.errors import ConfigError

log = logging.getLogger("adpipe.service.keys")
ROLES = ("read", "score", "admin")  # each role includes the ones before it
KEY_PREFIX = "adp_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class KeysError(ConfigError):
    """The keys file is missing or malformed, or a keys command was given a bad name or role."""


class KeysFileError(KeysError):
    """The keys file does not exist or cannot be read."""


class DuplicateKeyError(KeysError):
    """A key of that name already exists."""


class UnknownKeyError(KeysError):
    """No key of that name."""


class UnknownRoleError(KeysError):
    """A role other than read, score or admin."""


def expand_roles(role: str) -> frozenset[str]:
    """A role and every role below it: ``score`` -> {read, score}."""
    if role not in ROLES:
        raise UnknownRoleError(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)} "
                               "(each includes the ones before it)")
    return frozenset(ROLES[: ROLES.index(role) + 1])


def hash_key(key: str) -> str:
    """``sha256:<hex>`` of a key (see the module docstring for why SHA-256)."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key: ``adp_`` + 43 URL-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyEntry:
    """One key as stored: never the key itself."""

    name: str
    hash: str
    roles: tuple[str, ...]
    created_at: str
    prefix: str

    def to_dict(self) -> dict:
        return {"name": self.name, "hash": self.hash, "roles": list(self.roles), "created_at": self.created_at,
                "prefix": self.prefix}

    def public(self) -> dict:
        """What ``adpipe keys list`` shows: no hash."""
        return {"name": self.name, "roles": list(self.roles), "created_at": self.created_at, "prefix": self.prefix}


def _check_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise KeysError(f"bad key name {name!r}", hint="use 1-64 letters, digits, '_', '.' or '-', starting with "
                        "a letter or digit (e.g. ci-scorer)")


def read_keys(path: str | Path) -> list[KeyEntry]:
    """The entries of a keys file; typed errors for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeysFileError(f"keys file {path} does not exist",
                            hint=f"create a key: adpipe keys create NAME --role score --keys-file {path}") from None
    except OSError as exc:
        raise KeysFileError(f"cannot read keys file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise KeysFileError(f"keys file {path} is not valid YAML: {exc}") from None
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(items, (list, type(None))):
        raise KeysFileError(f"keys file {path} must be a mapping with a list under 'keys'",
                            hint="let `adpipe keys create` write it")
    entries: list[KeyEntry] = []
    seen: set[str] = set()
    for i, item in enumerate(items or []):
        where = f"{path}: keys[{i}]"
        if not isinstance(item, dict):
            raise KeysFileError(f"{where} is not a mapping")
        name, digest, roles = item.get("name"), item.get("hash"), item.get("roles")
        try:
            _check_name(str(name) if name is not None else "")
        except KeysError as exc:
            raise KeysFileError(f"{where}: {exc.message}", hint=exc.hint) from None
        if name in seen:
            raise DuplicateKeyError(f"{where}: a second key named {name!r}", hint="key names must be unique")
        if not isinstance(digest, str) or not _HASH.match(digest):
            raise KeysFileError(f"{where} ({name}): 'hash' must be 'sha256:' and 64 hex digits",
                                hint="let `adpipe keys create` write it")
        if not isinstance(roles, list) or not roles:
            raise KeysFileError(f"{where} ({name}): 'roles' must be a non-empty list", hint=f"e.g. [{ROLES[1]}]")
        for role in roles:
            try:
                expand_roles(str(role))
            except UnknownRoleError as exc:
                raise UnknownRoleError(f"{where} ({name}): {exc.message}", hint=exc.hint) from None
        seen.add(name)
        entries.append(KeyEntry(name, digest, tuple(str(r) for r in roles), str(item.get("created_at", "")),
                                str(item.get("prefix", ""))))
    return entries


def write_keys(path: str | Path, entries: list[KeyEntry]) -> None:
    """Replace the keys file atomically (temp file in the same folder, fsync, rename), mode 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump({"keys": [e.to_dict() for e in entries]}, sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _editing(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the keys file between concurrent ``adpipe keys`` commands."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create_key(path: str | Path, name: str, role: str) -> tuple[str, KeyEntry]:
    """Add a key named ``name`` with ``role``; returns (the key, shown only now, and its entry)."""
    _check_name(name)
    expand_roles(role)
    path = Path(path)
    with _editing(path):
        entries = read_keys(path) if path.exists() else []
        if any(e.name == name for e in entries):
            raise DuplicateKeyError(f"a key named {name!r} already exists in {path}",
                                    hint=f"pick another name, or revoke it first: adpipe keys revoke {name} "
                                    f"--keys-file {path}")
        key = new_key()
        now = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        entry = KeyEntry(name, hash_key(key), (role,), now, key[: len(KEY_PREFIX) + 4])
        write_keys(path, [*entries, entry])
    return key, entry


def revoke_key(path: str | Path, name: str) -> KeyEntry:
    """Remove the key named ``name``; a running server stops accepting it on its next request."""
    path = Path(path)
    entries = read_keys(path)  # a missing file: KeysFileError, before any lock file is made
    with _editing(path):
        entries = read_keys(path)
        gone = [e for e in entries if e.name == name]
        if not gone:
            known = ", ".join(e.name for e in entries) or "none"
            raise UnknownKeyError(f"no key named {name!r} in {path}", hint=f"keys: {known}")
        write_keys(path, [e for e in entries if e.name != name])
    return gone[0]


class KeyStore:
    """The keys a server accepts, by hash; re-reads the file when its mtime, size or inode changes.

    A stat per lookup costs about a microsecond and makes ``adpipe keys revoke`` take effect on the next
    request. If the file disappears every key is refused (fail closed); if a reload finds it malformed the
    previous keys stay and the error is kept in ``last_error``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.last_error: KeysError | None = None
        self._stamp = self._stat()
        self._by_hash = self._index(read_keys(self.path))  # missing or bad file at start: raise

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    @staticmethod
    def _index(entries: list[KeyEntry]) -> dict[str, tuple[str, frozenset[str]]]:
        out = {}
        for e in entries:
            roles: frozenset[str] = frozenset()
            for role in e.roles:
                roles |= expand_roles(role)
            out[e.hash] = (e.name, roles)
        return out

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            if stamp is None:
                self._by_hash, self._stamp = {}, None
                self.last_error = KeysFileError(f"keys file {self.path} disappeared: refusing every key")
                log.error("%s", self.last_error)
                return
            try:
                self._by_hash = self._index(read_keys(self.path))
                self.last_error = None
            except KeysError as exc:
                self.last_error = exc
                log.error("keys file not reloaded, the previous keys stay: %s", exc)
            self._stamp = stamp

    def lookup(self, key: str) -> tuple[str, frozenset[str]] | None:
        """(name, roles) of a key, or None when no such key is in the file."""
        self._refresh()
        return self._by_hash.get(hash_key(key))
