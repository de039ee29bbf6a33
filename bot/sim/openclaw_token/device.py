"""The simulator's GitHub-style device flow: codes, polls, and what tests can steer.

A poll answers like GitHub: `authorization_pending` until the code is approved, `slow_down`
(with a longer interval) when it comes before the interval has passed, `expired_token` after
`expires_in`, `access_denied` when the user declines. Tests approve, deny, expire, or queue
answers (e.g. pending then slow_down) for the next polls.
"""

from __future__ import annotations

import secrets
import string
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bot.sim.openclaw_token.state import DEMO_EMAIL, SimError

_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ" + string.digits  # no vowels: no accidental words


def _user_code() -> str:
    raw = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


@dataclass
class DeviceSession:
    """One pending sign-in."""

    device_code: str
    user_code: str
    created_at: float
    expires_at: float
    interval: float
    approved_email: str | None = None
    github_name: str | None = None
    denied: bool = False
    consumed: bool = False
    last_poll: float | None = None
    polls: list[tuple[float, str]] = field(default_factory=list)  # (time, answer)
    script: deque[str] = field(default_factory=deque)


@dataclass
class DeviceFlow:
    """All device sessions of the simulator."""

    interval_s: float
    expires_s: float
    slow_down_increment_s: float
    # Demo: approve a pending sign-in as this account after `auto_approve_s` seconds.
    auto_approve_s: float | None = None
    auto_approve_email: str = DEMO_EMAIL
    sessions: dict[str, DeviceSession] = field(default_factory=dict)

    def start(self, now: float) -> DeviceSession:
        """A new session (POST /oauth/device/code)."""
        session = DeviceSession(
            device_code=secrets.token_hex(20),
            user_code=_user_code(),
            created_at=now,
            expires_at=now + self.expires_s,
            interval=self.interval_s,
        )
        self.sessions[session.device_code] = session
        return session

    def find(self, user_code: str | None = None) -> DeviceSession:
        """A session by user code, or the latest one."""
        if user_code is None:
            if not self.sessions:
                raise KeyError("no device session yet")
            return list(self.sessions.values())[-1]
        wanted = user_code.strip().upper()
        for session in self.sessions.values():
            if session.user_code == wanted:
                return session
        raise KeyError(user_code)

    def poll(self, device_code: str, now: float) -> tuple[DeviceSession | None, str]:
        """The answer to one poll: "success" or a flat error code."""
        session = self.sessions.get(device_code)
        if session is None or session.consumed:
            return session, "bad_device_code"
        answer = self._answer(session, now)
        session.last_poll = now
        session.polls.append((now, answer))
        if answer == "slow_down":
            session.interval += self.slow_down_increment_s
        if answer == "success":
            session.consumed = True
        return session, answer

    def _answer(self, session: DeviceSession, now: float) -> str:
        if now >= session.expires_at:
            return "expired_token"
        # A poll before the interval has passed is what slow_down exists for.
        if session.last_poll is not None and now - session.last_poll < session.interval:
            return "slow_down"
        if session.script:
            return session.script.popleft()
        if session.denied:
            return "access_denied"
        if (
            session.approved_email is None
            and self.auto_approve_s is not None
            and now - session.created_at >= self.auto_approve_s
        ):
            session.approved_email = self.auto_approve_email
        if session.approved_email is not None:
            return "success"
        return "authorization_pending"


def flat_error(code: str, session: DeviceSession | None) -> dict[str, Any]:
    """The flat 400 body of a device-token poll."""
    descriptions = {
        "authorization_pending": "The user has not yet entered the code.",
        "slow_down": "Polling too fast; wait for the new interval.",
        "expired_token": "The device code has expired.",
        "access_denied": "The user declined the sign-in.",
        "bad_device_code": "The device code is not valid.",
    }
    body: dict[str, Any] = {"error": code, "error_description": descriptions.get(code, code)}
    if code == "slow_down" and session is not None:
        body["interval"] = session.interval
    return body


def require_device_code(body: dict[str, Any]) -> str:
    """The device_code of a poll body."""
    code = body.get("device_code")
    if not isinstance(code, str) or not code:
        raise SimError(400, "INVALID_INPUT", "device_code is required")
    return code
