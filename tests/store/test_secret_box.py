"""SecretBox: the master key (env value, passphrase or generated key file) and Fernet tokens."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from bot.store import SecretBox, SecretBoxError
from bot.store.secret_box import KEY_FILE_NAME

SECRET = "sk-at-Zq7PlaintextNeverOnDisk9xW4"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def test_box_round_trip(box: SecretBox) -> None:
    token = box.encrypt("hello ✓")
    assert isinstance(token, bytes)
    assert b"hello" not in token
    assert box.decrypt(token) == "hello ✓"
    assert repr(box) == "SecretBox(source='a generated key')"


@posix_only
def test_master_key_file_created_0600_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = SecretBox.from_settings(None, data_dir)
    key_file = data_dir / KEY_FILE_NAME
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_bytes()

    second = SecretBox.from_settings(None, data_dir)
    assert key_file.read_bytes() == content  # reused, not regenerated
    assert second.decrypt(first.encrypt("same key")) == "same key"


def test_blank_master_key_means_key_file(tmp_path: Path) -> None:
    SecretBox.from_settings("  ", tmp_path)
    assert (tmp_path / KEY_FILE_NAME).exists()


@posix_only
def test_readable_master_key_file_is_refused(tmp_path: Path) -> None:
    SecretBox.from_settings(None, tmp_path)
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(SecretBoxError, match="chmod 600"):
        SecretBox.from_settings(None, tmp_path)


def test_corrupt_master_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_bytes(b"not a key\n")
    key_file.chmod(0o600)
    with pytest.raises(SecretBoxError, match="corrupt"):
        SecretBox.from_settings(None, tmp_path)


def test_env_fernet_key_is_used_as_is(tmp_path: Path) -> None:
    raw = Fernet.generate_key()
    box = SecretBox.from_settings(raw.decode(), tmp_path)
    assert Fernet(raw).decrypt(box.encrypt("x")) == b"x"
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_env_passphrase_is_derived_deterministically(tmp_path: Path) -> None:
    a = SecretBox.from_settings("correct horse battery staple", tmp_path)
    b = SecretBox.from_settings("correct horse battery staple", tmp_path / "elsewhere")
    assert b.decrypt(a.encrypt("shared")) == "shared"
    other = SecretBox.from_settings("a different passphrase entirely", tmp_path)
    with pytest.raises(SecretBoxError):
        other.decrypt(a.encrypt("shared"))
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_secretstr_master_key_accepted(tmp_path: Path) -> None:
    from pydantic import SecretStr

    raw = Fernet.generate_key().decode()
    box = SecretBox.from_settings(SecretStr(raw), tmp_path)
    assert SecretBox(raw.encode()).decrypt(box.encrypt("y")) == "y"


def test_wrong_master_key_is_a_clear_error(box: SecretBox) -> None:
    token = box.encrypt(SECRET)
    with pytest.raises(SecretBoxError, match="master key changed") as info:
        SecretBox.generate().decrypt(token)
    assert not isinstance(info.value, InvalidToken)
    assert SECRET not in str(info.value)
