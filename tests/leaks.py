"""The session-end secret scan: what every suite's secrets were and what the bot said.

Tests, simulators' fixtures and form submissions add secrets with `secret()`; the recording
conversation and the Slack and Discord fakes add every reply the bot sent with `reply()`.
`scan()` then looks for each registered secret, and for anything shaped like a key, in every
file left under pytest's basetemp (logs, DB files with their -wal/-shm, images) and in every
reply. The only key a reply may carry is a newly provisioned OpenClaw key (`sk-prov-…`),
shown once and privately when the user creates or rotates one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.core.key_shapes import KEY_PATTERN
from bot.sim.alltoken.server import DEMO_KEY as ALLTOKEN_DEMO_KEY
from bot.sim.openclaw_token.state import DEMO_MGMT_KEY, DEMO_PASSWORD
from bot.sim.openmarlin.server import DEMO_KEY as OPENMARLIN_DEMO_KEY

# Form fields whose values are secrets (the bot's private forms: keys and passwords).
SECRET_FIELDS = frozenset({"key", "password", "confirm", "secret", "token"})
_MIN_SECRET_CHARS = 10  # shorter ones ("different") match ordinary words by accident
_MAX_FILE_BYTES = 50_000_000

SECRETS: set[str] = {ALLTOKEN_DEMO_KEY, OPENMARLIN_DEMO_KEY, DEMO_MGMT_KEY, DEMO_PASSWORD}


@dataclass(frozen=True)
class Reply:
    """One thing the bot sent, where it was recorded, and whether only its user could see it."""

    source: str
    text: str
    private: bool


REPLIES: list[Reply] = []
# Files in which pytest-xdist workers hand their secrets and replies to the controller; the
# controller does not scan them (they hold the secrets on purpose) and deletes them.
DUMP_PREFIX = "leak-scan-"


def dump(path: Path) -> None:
    """Write this process's secrets and replies for the process that scans (xdist controller)."""
    data = {"secrets": sorted(SECRETS), "replies": [asdict(r) for r in REPLIES]}
    path.write_text(json.dumps(data))


def load(path: Path) -> None:
    """Add a worker's secrets and replies, then remove its file."""
    data = json.loads(path.read_text())
    SECRETS.update(data["secrets"])
    REPLIES.extend(Reply(**r) for r in data["replies"])
    path.unlink()


def secret(value: str) -> None:
    """Remember a secret value that must never appear in a file or a reply."""
    if len(value) >= _MIN_SECRET_CHARS:
        SECRETS.add(value)


def form_secrets(values: dict[str, str]) -> None:
    """Remember the secret fields of a submitted form."""
    for name, value in values.items():
        if name in SECRET_FIELDS:
            secret(value)


def reply(source: str, text: str, *, private: bool) -> None:
    """Remember one reply the bot sent (text or JSON of the call)."""
    if text:
        REPLIES.append(Reply(source, text, private))


def _shaped(text: str, *, allow_provisioned: bool) -> list[str]:
    found = [m.group(0) for m in KEY_PATTERN.finditer(text)]
    if allow_provisioned:
        found = [k for k in found if not k.lower().startswith("sk-prov-")]
    return found


def _tail(value: str) -> str:
    return f"…{value[-6:]}"


def scan(base: Path | None) -> list[str]:
    """Every leak found: files under `base`, then replies. Empty when clean."""
    leaks: list[str] = []
    # A secret shaped like a key is found by the shape scan below (everywhere but the one
    # private reply a new sk-prov key may appear in), so only the others are searched one by
    # one: thousands of fuzzed keys times every file would make this scan take minutes.
    needles = [
        (s, s.encode())
        for s in sorted(SECRETS)
        if not KEY_PATTERN.fullmatch(s) or s.lower().startswith("sk-prov-")
    ]
    if base is not None and base.exists():
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.stat().st_size > _MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
            leaks += [f"{path}: secret {_tail(s)}" for s, raw in needles if raw in data]
            text = data.decode("utf-8", errors="replace")
            leaks += [f"{path}: key {_tail(k)}" for k in _shaped(text, allow_provisioned=False)]
    for r in REPLIES:
        leaks += [f"reply via {r.source}: secret {_tail(s)}" for s, _ in needles if s in r.text]
        keys = _shaped(r.text, allow_provisioned=r.private)
        leaks += [f"reply via {r.source}: key {_tail(k)}" for k in keys]
    return leaks
