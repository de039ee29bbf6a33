"""What a failed Slack Web API call means for the adapter."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

# The bot can't post where the message came from: reply through response_url or a DM.
CHANNEL_ERRORS = frozenset({"not_in_channel", "channel_not_found"})
# postEphemeral also refuses when the person isn't (or is no longer) in the channel.
EPHEMERAL_ERRORS = CHANNEL_ERRORS | {"user_not_in_channel"}


class SlackCallFailed(Exception):
    """A Slack call failed; `retry_after` (seconds) is set when Slack asked us to slow down.

    ThrottledStream reads `retry_after` to hold back further edits.
    """

    def __init__(self, method: str, code: str, retry_after: float | None = None) -> None:
        self.method = method
        self.code = code
        self.retry_after = retry_after
        super().__init__(f"{method}: {code}")


def error_code(exc: BaseException) -> str:
    """Slack's error string (`not_in_channel`, `ratelimited`, …), or the exception's type."""
    if isinstance(exc, SlackApiError):
        try:
            return str(exc.response.get("error") or f"http_{exc.response.status_code}")
        except Exception:
            return "slack_api_error"
    if isinstance(exc, SlackCallFailed):
        return exc.code
    return type(exc).__name__


def retry_after(exc: BaseException) -> float | None:
    """The Retry-After of a 429, in seconds."""
    if not isinstance(exc, SlackApiError):
        return getattr(exc, "retry_after", None)
    try:
        if exc.response.status_code != 429:
            return None
        headers = exc.response.headers or {}
        for name, value in headers.items():
            if name.lower() == "retry-after":
                raw = value[0] if isinstance(value, list) else value
                return float(raw)
    except (TypeError, ValueError, AttributeError):
        return 1.0
    return 1.0


def is_channel_error(exc: BaseException, codes: frozenset[str] = CHANNEL_ERRORS) -> bool:
    """The call failed because the bot (or the person) can't use that channel."""
    return error_code(exc) in codes


def wrap(method: str, exc: BaseException) -> SlackCallFailed:
    """A SlackCallFailed carrying the code and Retry-After of `exc`."""
    return SlackCallFailed(method, error_code(exc), retry_after(exc))
