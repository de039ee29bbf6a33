"""Recognise, redact and fingerprint strings shaped like the backends' secret keys.

Used to keep keys out of channels and logs: the router refuses malformed keys, handlers
delete messages that contain one, and everything that echoes user text redacts it first.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from typing import Literal

KeyService = Literal["alltoken", "openmarlin", "openclaw_token", "openclaw_proxy"]

# Characters a key token may consist of; also what must not touch a key on either side, so
# prose such as "ask-at-home" (a letter before "sk-") never matches.
_TOKEN_CHARS = "A-Za-z0-9_-"
_HEX = "[0-9A-Fa-f]"
_UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"

# One body per service, in the order key_service() tries them. The free-form keys need at
# least 12 characters after the prefix; the documented fixed shapes must match exactly.
_BODIES: dict[KeyService, tuple[str, str]] = {
    "alltoken": ("sk-at-", f"[A-Za-z0-9][{_TOKEN_CHARS}]{{11,}}"),
    "openmarlin": ("claw_wsk_", f"[A-Za-z0-9][{_TOKEN_CHARS}]{{11,}}"),
    "openclaw_token": ("sk-mgmt-", _UUID),
    "openclaw_proxy": ("sk-prov-", f"{_HEX}{{32}}"),
}

# Prefixes are matched case-insensitively: an auto-capitalised "Sk-at-…" pasted at the start
# of a sentence is still a secret and must still be redacted. Any token characters trailing a
# fixed shape are swallowed so redaction hides the whole token, not just its first part.
_ALTERNATIVES = "|".join(
    f"(?P<{service}>(?i:{re.escape(prefix)}){body}[{_TOKEN_CHARS}]*)"
    for service, (prefix, body) in _BODIES.items()
)
KEY_PATTERN: re.Pattern[str] = re.compile(
    f"(?<![{_TOKEN_CHARS}])(?:{_ALTERNATIVES})(?![{_TOKEN_CHARS}])"
)
_PREFIX_OF: dict[str, str] = {service: prefix for service, (prefix, _) in _BODIES.items()}
# Classification is strict: no trailing extras, so a mangled key is not taken for a real one.
_EXACT: dict[KeyService, re.Pattern[str]] = {
    service: re.compile(f"(?i:{re.escape(prefix)}){body}")
    for service, (prefix, body) in _BODIES.items()
}

# Cheap substring check that lets the common case (no key at all) skip the regex.
_PREFIX_HINTS = ("sk-", "claw_wsk_")


def _may_contain_key(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in _PREFIX_HINTS)


def find_keys(text: str) -> list[str]:
    """Every key-shaped token in `text`, in order of appearance."""
    if not _may_contain_key(text):
        return []
    return [m.group(0) for m in KEY_PATTERN.finditer(text)]


def contains_key(text: str) -> bool:
    """Whether `text` contains anything shaped like a secret key."""
    return _may_contain_key(text) and KEY_PATTERN.search(text) is not None


def fingerprint(key: str) -> str:
    """A safe short name for a key: an ellipsis and its last 4 characters ("…abcd")."""
    key = key.strip()
    # Revealing 4 characters of a very short string would reveal most of it.
    if len(key) < 12:
        return "…"
    return f"…{key[-4:]}"


def _redacted(m: re.Match[str]) -> str:
    service = m.lastgroup or ""
    prefix = m.group(0)[: len(_PREFIX_OF.get(service, ""))]
    return f"{prefix}{fingerprint(m.group(0))}"


def redact(text: str) -> str:
    """`text` with every key replaced by its prefix and fingerprint, e.g. "sk-at-…abcd"."""
    if not _may_contain_key(text):
        return text
    return KEY_PATTERN.sub(_redacted, text)


def key_service(key: str) -> KeyService | None:
    """Which backend a key belongs to, judged by its exact documented shape; None if none."""
    key = key.strip()
    for service, pattern in _EXACT.items():
        if pattern.fullmatch(key):
            return service
    return None
