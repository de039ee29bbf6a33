"""Private forms as Slack modals: FormRequest -> view, view_submission -> values. Pure.

The view carries where to answer (channel, thread, response_url) in `private_metadata`, never
a secret; submitted values are read from the view state and handed to the core unlogged.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.slack.inert import inert_plain
from adapters.slack.mrkdwn import to_mrkdwn
from bot.core.messages import Destination, FormRequest

FORM_CALLBACK = "tokenbot.form"
VALUE_ACTION = "value"
_TITLE = 24
_LABEL = 2000
_PLACEHOLDER = 150
_METADATA = 3000


def _plain(text: str, limit: int) -> dict[str, str]:
    return {"type": "plain_text", "text": inert_plain(text)[:limit]}


def form_view(request: FormRequest, destination: Destination) -> dict[str, Any]:
    """The modal for `request`; its metadata says where the answer goes."""
    blocks: list[dict[str, Any]] = []
    intro = request.intro or ""
    if any(f.secret for f in request.fields):
        # Slack has no masked input: say who can see what is typed.
        intro = (intro + "\n" if intro else "") + (
            "Only you see what you type here; tokenbot never posts it."
        )
    if intro:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": to_mrkdwn(intro)}})
    for form_field in request.fields:
        element: dict[str, Any] = {
            "type": "plain_text_input",
            "action_id": VALUE_ACTION,
            "multiline": form_field.multiline,
        }
        if form_field.placeholder:
            element["placeholder"] = _plain(form_field.placeholder, _PLACEHOLDER)
        blocks.append(
            {
                "type": "input",
                "block_id": form_field.name,
                "label": _plain(form_field.label, _LABEL),
                "element": element,
            }
        )
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "title": _plain(request.title or "tokenbot", _TITLE),
        "submit": _plain(request.submit_label or "Save", _TITLE),
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": encode_metadata(request.form_id, destination),
        "blocks": blocks,
    }


def encode_metadata(form_id: str, destination: Destination) -> str:
    """Form id and reply route as JSON (dropping the response_url if it would not fit)."""
    extras = {
        k: v
        for k, v in destination.extras.items()
        if k in ("team", "response_url", "response_url_expires", "command")
    }
    meta = {
        "form": form_id,
        "channel": destination.channel,
        "thread": destination.thread,
        "direct": destination.is_direct,
        "extras": extras,
    }
    raw = json.dumps(meta, separators=(",", ":"))
    if len(raw) > _METADATA:
        extras.pop("response_url", None)
        extras.pop("response_url_expires", None)
        raw = json.dumps(meta, separators=(",", ":"))
    return raw


def decode_metadata(raw: str) -> dict[str, Any]:
    """The metadata written by `encode_metadata` ({} when it is not ours)."""
    try:
        meta = json.loads(raw or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) and "form" in meta else {}


def submitted_values(view: dict[str, Any]) -> dict[str, str]:
    """{field name: typed value} from a view_submission's state."""
    values: dict[str, str] = {}
    state = (view.get("state") or {}).get("values") or {}
    for block_id, actions in state.items():
        entry = (actions or {}).get(VALUE_ACTION) or {}
        value = entry.get("value")
        values[block_id] = value if isinstance(value, str) else ""
    return values


def closed_notice(title: str) -> str:
    """What to say when no modal can be opened (no trigger, or it expired)."""
    return (
        f"This needs the private “{title}” form, which Slack can open only right after "
        "a slash command or a button click. Run the slash command (e.g. `/alltoken-key`) again."
    )
