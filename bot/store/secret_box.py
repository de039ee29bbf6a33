"""Encryption at rest for user credentials: Fernet under one master key.

The master key comes from TOKENBOT_MASTER_KEY or, when that is unset, from a key file
`<data_dir>/master.key` that is generated on first start (mode 0600) and reused afterwards.

TOKENBOT_MASTER_KEY may be either
- a Fernet key (44 characters of urlsafe base64, as printed by `Fernet.generate_key()`),
  used as is; or
- any other text, treated as a passphrase and stretched with PBKDF2-HMAC-SHA256
  (600,000 iterations, OWASP's 2023 figure) under a fixed application salt. PBKDF2 rather
  than HKDF because a passphrase may be low-entropy and HKDF does nothing to slow guessing.
  The salt is fixed (not random) so the same passphrase gives the same key on every start
  and on every replica without storing anything next to the database.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Protocol

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

log = logging.getLogger(__name__)

KEY_FILE_NAME = "master.key"
# Changing either value changes every passphrase-derived key: existing secrets become
# unreadable. Bump the "/v1" only together with a re-encryption migration.
APP_SALT = b"tokenbot/master-key/v1"
PBKDF2_ITERATIONS = 600_000
# Below this length a passphrase is guessable despite the stretching; we warn but accept it.
MIN_PASSPHRASE_CHARS = 16

_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=")
# What the key fingerprint is an HMAC of; changing it changes every store's recorded fingerprint.
_FINGERPRINT_LABEL = b"tokenbot/master-key-fingerprint/v1"


class SecretBoxError(RuntimeError):
    """The master key is unusable, or a stored secret cannot be decrypted with it."""


class _SecretLike(Protocol):
    def get_secret_value(self) -> str: ...


class SecretBox:
    """Encrypts and decrypts short secrets (API keys) with the master key."""

    def __init__(
        self, fernet_key: bytes, *, source: str = "a Fernet key", generated: bool = False
    ) -> None:
        try:
            self._fernet = Fernet(fernet_key)
        except (ValueError, TypeError) as exc:
            raise SecretBoxError(
                f"the master key from {source} is not a valid Fernet key; set "
                "TOKENBOT_MASTER_KEY to the key (or passphrase) this store was created with"
            ) from exc
        # HMAC key of the fingerprint; kept instead of the text so repr/str can't show it.
        self._fingerprint_key = base64.urlsafe_b64decode(fernet_key)
        # Where the key came from, for error messages; never the key itself.
        self.source = source
        # True when this start wrote a brand-new master.key (the old one was missing).
        self.generated = generated

    def __repr__(self) -> str:
        return f"SecretBox(source={self.source!r})"

    @classmethod
    def from_settings(cls, master_key: str | _SecretLike | None, data_dir: Path) -> SecretBox:
        """Use TOKENBOT_MASTER_KEY if given (Fernet key or passphrase), else `<data_dir>/master.key`."""
        if master_key is not None and not isinstance(master_key, str):
            master_key = master_key.get_secret_value()
        # An empty or blank variable counts as unset (a common result of `KEY=` in env files).
        if master_key is not None and master_key.strip():
            value = master_key.strip()
            if _FERNET_KEY.fullmatch(value):
                return cls(value.encode("ascii"), source="TOKENBOT_MASTER_KEY")
            if len(value) < MIN_PASSPHRASE_CHARS:
                log.warning(
                    "TOKENBOT_MASTER_KEY is a short passphrase (under %d characters); "
                    "prefer a generated Fernet key",
                    MIN_PASSPHRASE_CHARS,
                )
            return cls(_derive_key(value), source="TOKENBOT_MASTER_KEY (passphrase)")
        path = Path(data_dir) / KEY_FILE_NAME
        key, generated = _load_or_create_key_file(path)
        return cls(key, source=str(path), generated=generated)

    @classmethod
    def generate(cls) -> SecretBox:
        """A box with a fresh random key (tests, throwaway demo stores)."""
        return cls(Fernet.generate_key(), source="a generated key")

    def fingerprint(self) -> str:
        """An HMAC of a constant under the key: tells keys apart, reveals nothing about them."""
        digest = hmac.new(self._fingerprint_key, _FINGERPRINT_LABEL, hashlib.sha256)
        return digest.hexdigest()[:32]

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypt `plaintext` (UTF-8) into an authenticated Fernet token."""
        return self._fernet.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, token: bytes) -> str:
        """Decrypt a token made by `encrypt`; SecretBoxError if the master key has changed."""
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken as exc:
            raise SecretBoxError(
                "a stored secret cannot be decrypted: the master key changed since it was "
                f"stored (current key from {self.source}). Restore the previous "
                "TOKENBOT_MASTER_KEY or master.key, or have users set their keys again."
            ) from exc


@functools.lru_cache(maxsize=4)
def _derive_key(passphrase: str) -> bytes:
    # Cached: PBKDF2 at 600k iterations costs ~0.3 s, and tests/CLI may build several boxes.
    kdf = PBKDF2HMAC(
        algorithm=hashes.SHA256(), length=32, salt=APP_SALT, iterations=PBKDF2_ITERATIONS
    )
    return base64.urlsafe_b64encode(kdf.derive(passphrase.encode("utf-8")))


def _load_or_create_key_file(path: Path) -> tuple[bytes, bool]:
    """The key in `path` (creating it when absent) and whether it was created just now."""
    try:
        return _create_or_read(path)
    except OSError as exc:
        # A read-only or full data dir: one clear line, not a traceback, at start-up.
        raise SecretBoxError(
            f"cannot read or create the master key file {path} ({exc.strerror or exc}); make "
            f"{path.parent} writable by this user, or set TOKENBOT_MASTER_KEY"
        ) from exc


def _create_or_read(path: Path) -> tuple[bytes, bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        # O_EXCL makes creation atomic: of two processes starting at once, one creates the
        # file and the other falls through to reading it. 0o600 from the first instant.
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return _read_key_file(path), False
    key = Fernet.generate_key()
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(path.parent)
    except BaseException:
        # A half-written key file would lock every later start out; remove it.
        path.unlink(missing_ok=True)
        raise
    log.warning(
        "generated a new master key at %s; back it up — without it stored keys are unreadable",
        path,
    )
    return key, True


def _read_key_file(path: Path) -> bytes:
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise SecretBoxError(f"master key file {path} is not a regular file")
    # Refuse (like ssh does) rather than warn: a readable key file exposes every stored key.
    if os.name == "posix" and st.st_mode & 0o077:
        raise SecretBoxError(
            f"master key file {path} is readable by other users "
            f"(mode {stat.S_IMODE(st.st_mode):o}); run `chmod 600 {path}` and start again"
        )
    # Another process may have created the file a moment ago and not written it yet.
    deadline = time.monotonic() + 2.0
    while True:
        data = path.read_bytes().strip()
        if data or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not _FERNET_KEY.fullmatch(data.decode("ascii", "replace")):
        raise SecretBoxError(
            f"master key file {path} is empty or corrupt; restore it from backup "
            "(or delete it only if no keys have been stored yet)"
        )
    return data


def _fsync_dir(directory: Path) -> None:
    # Make the new directory entry durable too; not possible on every platform.
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
