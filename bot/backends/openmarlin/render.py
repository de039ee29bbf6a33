"""What OpenMarlin replies look like: failures in plain language, balances, the 402, tables. Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bot.backends.openmarlin.service import (
    ROUTING_CODES,
    Amount,
    Balance,
    InsufficientBalance,
    LedgerEntry,
    MarlinModel,
    TaskStatus,
    UsageEvent,
)
from bot.backends.openmarlin.spec import SPECS, OMHelp
from bot.core.errors import BackendError
from bot.core.messages import Actions, Button, Failure, Fields, Link, Notice, Part, Text
from bot.core.text_split import one_line

TOPUP_ACTION = "openmarlin.topup"
# The metadata tokenbot sends with a task (the server echoes it back unchanged).
TASK_METADATA: dict[str, str] = {"client": "tokenbot"}
KEY_HELP = (
    "Run `/openmarlin register` to get a key (the sign-in link comes to you privately), "
    "or store an existing one privately with `/openmarlin key`."
)
TASK_HINT = (
    "Tasks take no model, provider or labels: check that it is a video request with a prompt "
    "(optionally --duration and --aspect-ratio 16:9, 9:16 or 1:1), then try again."
)

# The seed's plain-language meaning of each routing error.
ROUTING_MEANING: dict[str, str] = {
    "provider_unavailable": "the selected provider is not currently connected",
    "provider_label_mismatch": "the selected provider does not satisfy the requested routing labels",
    "provider_route_not_found": "no provider route serves the requested model",
    "execution_provider_not_found": "no eligible execution provider matched this request",
    "execution_provider_ambiguous": "more than one execution provider matched, so OpenMarlin "
    "needs narrower labels or an explicit provider",
    "execution_kind_not_available": "the selected provider does not support this kind of "
    "execution (agent_run)",
    "invalid_routing_labels": "the routing labels were malformed",
}


@dataclass(frozen=True)
class RoutingSent:
    """The routing hints tokenbot actually sent, to restate them when routing fails."""

    model: str | None = None
    provider_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """`provider node-a, labels region=eu, model x/y`, or automatic routing."""
        bits = [
            f"provider `{self.provider_id}`" if self.provider_id else "no provider",
            "labels `" + ",".join(f"{k}={v}" for k, v in self.labels.items()) + "`"
            if self.labels
            else "no labels",
        ]
        if self.model:
            bits.append(f"model `{self.model}`")
        return ", ".join(bits)


def amount_text(value: Decimal | Amount | None, unit: str | None = None) -> str:
    """`12.5 credits` (no exponent, no trailing zeros)."""
    if value is None:
        return "unknown"
    number = value.amount if isinstance(value, Amount) else value
    unit = unit or (value.unit if isinstance(value, Amount) else "credits")
    if unit == "credits" and abs(number) == 1:
        unit = "credit"
    return f"{number.normalize():f} {unit}"


def when(value: str | datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    """An ISO time as a short UTC string; unreadable values are shown as given."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(fmt)


_ROUTING_HINT = (
    "Retry with different labels, a different provider (`on provider ID`), or let "
    "OpenMarlin route automatically by leaving both out; `/openmarlin models` lists "
    "providers and their labels."
)
_LABELS_HINT = "Labels are key=value pairs, e.g. `with labels region=eu,gpu=a100`. "
_KEY_CODES = frozenset({"missing_api_key", "invalid_api_key"})
# Transport codes that read as rate limiting when the status is 429; other codes keep their own.
_RATE_LIMIT_FIRST = frozenset({"timeout", "connection_error", "bad_response"})


@dataclass(frozen=True)
class _Asked:
    """One failed request, and the bits of wording every message may use."""

    error: BackendError
    task: bool
    said: str  # ` (the server's message)`, or empty when it only repeats the code
    where: str  # ` at https://…`, or empty


_Wording = tuple[str, str | None]

# Code → (message, hint); messages may use {said}, {where} and {detail} (the server's message).
_CODE_TEXT: dict[str, tuple[str, str]] = {
    "skill_not_available": (
        "The requested agent or skill is not available in your workspace{said}.",
        "Run it without naming an agent, or ask your workspace admin to enable it.",
    ),
    "missing_api_key": ("OpenMarlin refused your key{said}.", KEY_HELP),
    "invalid_api_key": ("OpenMarlin refused your key{said}.", KEY_HELP),
    "api_key_inactive": ("Your OpenMarlin key is no longer active.", KEY_HELP),
    "workspace_missing": (
        "The OpenMarlin workspace behind your key no longer exists.",
        "Run `/openmarlin register` to set up a new one.",
    ),
    "account_missing": (
        "The OpenMarlin account behind your key no longer exists.",
        "Run `/openmarlin register` to set up a new one.",
    ),
    "execution_failed": (
        "The agent run failed{said}.",
        "Try again, or let OpenMarlin pick another provider.",
    ),
    "timeout": (
        "OpenMarlin{where} did not answer in time.",
        "Try again shortly; long work is better sent as a task (mention video or background).",
    ),
    "connection_error": (
        "tokenbot could not reach OpenMarlin{where}.",
        "Try again in a minute. If it keeps failing, the operator should check "
        "OPENMARLIN_SERVER_URL (a bare origin such as https://api.openmarlin.ai, no /v1).",
    ),
    "bad_response": (
        "OpenMarlin{where} sent an answer tokenbot could not read ({detail}).",
        "Try again; if it persists, check that OPENMARLIN_SERVER_URL points at an "
        "OpenMarlin server (a bare origin, no /v1).",
    ),
}


def _from_table(asked: _Asked) -> _Wording:
    message, hint = _CODE_TEXT[asked.error.code]
    return message.format(said=asked.said, where=asked.where, detail=asked.error.message), hint


def _key_refused(asked: _Asked) -> _Wording:
    return f"OpenMarlin refused your key{asked.said}.", KEY_HELP


def _insufficient_balance(asked: _Asked) -> _Wording:
    return (
        asked.error.message or "Your OpenMarlin balance is too low.",
        "Top up with `/openmarlin top up <amount>`, then run it again.",
    )


def _invalid_request(asked: _Asked) -> _Wording:
    hint = TASK_HINT if asked.task else "Check the request; `/openmarlin help` shows every form."
    return f"OpenMarlin rejected the request{asked.said}.", hint


def _rate_limited(asked: _Asked) -> _Wording:
    retry_after = asked.error.retry_after
    wait = f" in about {int(retry_after)} s" if retry_after else " in a minute"
    return "OpenMarlin is rate-limiting requests.", f"Try again{wait}."


_CODE_WORDING: dict[str, Callable[[_Asked], _Wording]] = {
    **dict.fromkeys(_CODE_TEXT, _from_table),
    "insufficient_balance": _insufficient_balance,
    "invalid_request": _invalid_request,
    "rate_limited": _rate_limited,
}


def _status_wording(asked: _Asked) -> _Wording:
    """Wording for a code tokenbot has no words for, from the HTTP status alone."""
    error, said = asked.error, asked.said
    if error.status == 429:
        return _rate_limited(asked)
    if error.status == 404:
        return f"OpenMarlin has no such thing{said}.", "Check the id and try again."
    if error.status >= 500:
        return (
            f"OpenMarlin had a server error{said}.",
            "Try again in a minute; quote the request id if you report it.",
        )
    return error.message or error.code, None


def _wording(asked: _Asked) -> _Wording:
    """Message and hint for anything but routing: a 401 or 429 status outranks most codes."""
    code, status = asked.error.code, asked.error.status
    if status == 401 and code != "skill_not_available":
        return _key_refused(asked)
    if status == 429 and code in _RATE_LIMIT_FIRST:
        return _rate_limited(asked)
    by_code = _CODE_WORDING.get(code)
    return by_code(asked) if by_code else _status_wording(asked)


def _routing_failure(error: BackendError, sent: RoutingSent | None) -> Failure:
    hint = _ROUTING_HINT
    if error.code == "invalid_routing_labels":
        hint = _LABELS_HINT + hint
    sent_text = (sent or RoutingSent()).describe()
    return Failure(
        code=error.code,
        message=f"OpenMarlin could not route this: {ROUTING_MEANING[error.code]}. "
        f"Sent: {sent_text}.",
        request_id=error.request_id,
        hint=hint,
    )


def failure(
    error: BackendError,
    *,
    sent: RoutingSent | None = None,
    task: bool = False,
    server_url: str | None = None,
) -> Failure:
    """A Failure naming the code and request id, with a plain next step."""
    code, rid = error.code, error.request_id
    said = f" ({error.message})" if error.message and error.message != code else ""
    if code in ROUTING_CODES and not task:
        return _routing_failure(error, sent)
    if code == "task_executor_not_found" or (task and code in ROUTING_CODES):
        return Failure(
            code=code,
            message=f"No configured task executor matched this long-running task{said}.",
            request_id=rid,
            hint=TASK_HINT,
        )
    where = f" at {server_url}" if server_url else ""
    message, hint = _wording(_Asked(error, task, said, where))
    return Failure(code=code, message=message, request_id=rid, hint=hint)


def insufficient_parts(info: InsufficientBalance, request_id: str | None) -> list[Part]:
    """The 402 as workflow input: current, required, shortfall, and a Top up button."""
    unit = info.required.unit or info.current.unit
    amount = info.shortfall if info.shortfall > 0 else info.required.amount
    parts: list[Part] = [
        Failure(
            code="insufficient_balance",
            message=f"{info.message} This is recoverable: add credits and run it again.",
            request_id=request_id,
            hint="Press Top up: the checkout link comes to you privately, and tokenbot "
            "watches the payment and shows the new balance.",
        ),
        Fields(
            title="OpenMarlin balance",
            rows=[
                ("current", amount_text(info.current.amount, info.current.unit)),
                ("required", amount_text(info.required.amount, unit)),
                ("shortfall", amount_text(info.shortfall, unit)),
            ],
        ),
    ]
    if amount > 0:
        parts.append(
            Actions(
                buttons=[
                    Button(
                        action_id=TOPUP_ACTION,
                        label=f"Top up {amount_text(amount, unit)}",
                        value=f"{amount.normalize():f}",
                        style="primary",
                    )
                ]
            )
        )
    return parts


def balance_fields(balance: Balance) -> Fields:
    """The authoritative balance."""
    rows = [("available", amount_text(balance.available_balance))]
    if balance.workspace_id:
        rows.append(("workspace", balance.workspace_id))
    rows.append(("updated", when(balance.updated_at)))
    return Fields(title="OpenMarlin balance", rows=rows)


def snapshot_fields(meta: dict[str, str]) -> Fields | None:
    """The last balance tokenbot saw, clearly labelled as such; None when there is none."""
    amount, at = meta.get("balance_amount"), meta.get("balance_at")
    if not amount or not at:
        return None
    try:
        value = Decimal(amount)
    except ArithmeticError:
        return None
    rows = [("available", amount_text(value, meta.get("balance_unit") or "credits"))]
    if meta.get("workspace_id"):
        rows.append(("workspace", meta["workspace_id"]))
    return Fields(title=f"OpenMarlin balance — last known at {when(at)}", rows=rows)


def models_text(models: list[MarlinModel], filter_: str = "") -> Text:
    """Exact refs, each with its providers and their labels."""
    shown = [m for m in models if filter_.lower() in m.id.lower()] if filter_ else models
    head = f"**OpenMarlin: {len(shown)} model(s)**" + (f" matching `{filter_}`" if filter_ else "")
    if not shown:
        return Text(markdown=head + "\nNo model matches.")
    lines = [head]
    for m in shown:
        providers = " · ".join(
            p.provider_id
            + (" (" + ", ".join(f"{k}={v}" for k, v in p.labels.items()) + ")" if p.labels else "")
            for p in m.providers
        )
        lines.append(f"• `{m.id}` — {providers or 'no provider connected'}")
    lines.append(
        "Use one as `with model <ref>`; add `on provider <id>` or `with labels k=v` to steer."
    )
    return Text(markdown="\n".join(lines))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def activity_text(events: list[UsageEvent], ledger: list[LedgerEntry]) -> Text:
    """Recent usage events and ledger entries as two compact tables."""
    out = ["**OpenMarlin activity**"]
    if events:
        rows = [
            (
                when(e.created_at, "%m-%d %H:%M"),
                e.capability or "—",
                e.status or "—",
                e.provider_id or "—",
                readable(e.measured_units),
                readable(e.settlement),
                e.request_id or "—",
            )
            for e in events
        ]
        header = ("when", "capability", "status", "provider", "units", "settled", "request")
        out.append("Usage\n```\n" + _table(header, rows) + "\n```")
    else:
        out.append("Usage: none yet.")
    if ledger:
        entries = [
            (
                when(e.created_at, "%m-%d %H:%M"),
                e.type or "—",
                e.status or "—",
                _signed(e.amount),
                e.reference_id or "—",
            )
            for e in ledger
        ]
        out.append(
            "Ledger\n```\n"
            + _table(("when", "type", "status", "amount", "reference"), entries)
            + "\n```"
        )
    else:
        out.append("Ledger: no entries yet.")
    return Text(markdown="\n".join(out))


def _signed(amount: Amount | None) -> str:
    if amount is None:
        return "—"
    text = amount_text(amount)
    return text if amount.amount < 0 else "+" + text


def referral_parts(data: dict[str, Any]) -> list[Part]:
    """Code, invite link and attribution, whatever extra fields the server adds."""
    rows: list[tuple[str, str]] = []
    link = data.get("invite_url") or data.get("invite_link") or data.get("referral_url")
    if data.get("referral_code"):
        rows.append(("code", str(data["referral_code"])))
    attribution = data.get("attribution")
    if isinstance(attribution, dict):
        for k, v in attribution.items():
            rows.append((k.replace("_", " "), readable(v)))
    parts: list[Part] = [Fields(title="Your OpenMarlin referral", rows=rows or [("code", "—")])]
    if isinstance(link, str) and link:
        parts.append(Link(url=link, label="Invite link"))
    return parts


def task_progress(task_id: str | None, status: str, prompt: str, note: str = "") -> list[Part]:
    """The task's one message while it runs."""
    ident = f"`{task_id}`" if task_id else "(submitting…)"
    parts: list[Part] = [
        Notice(
            level="progress",
            text=f"🎬 OpenMarlin task {ident} — {status} — _{one_line(prompt)}_",
        )
    ]
    if note:
        parts.append(Notice(level="info", text=note))
    return parts


def task_done(status: TaskStatus, prompt: str) -> list[Part]:
    """Output and metadata of a succeeded task, the artifact as a link."""
    parts: list[Part] = [
        Notice(
            level="success",
            text=f"🎬 OpenMarlin task `{status.task_id}` succeeded — _{one_line(prompt)}_",
        )
    ]
    url = status.artifact_url
    if url:
        parts.append(Link(url=url, label="Open the result"))
    out = status.output or {}
    if isinstance(out.get("thumbnail_url"), str):
        parts.append(Link(url=out["thumbnail_url"], label="Thumbnail"))
    rows: list[tuple[str, str]] = []
    if status.provider_id:
        rows.append(("provider", status.provider_id))
    for key, value in out.items():
        if key in ("video_url", "artifact_url", "url", "thumbnail_url"):
            continue
        rows.append((key.replace("_", " "), readable(value)))
    for key, value in (status.metadata or {}).items():
        # The server echoes the metadata tokenbot sent; only what it adds is worth a row.
        if key not in out and TASK_METADATA.get(key) != value:
            rows.append((key.replace("_", " "), readable(value)))
    if status.completed_at:
        rows.append(("completed", when(status.completed_at)))
    if rows:
        parts.append(Fields(title="Task details", rows=rows))
    return parts


# How deep readable() follows nested objects before it shows "…" (server data is untrusted).
_MAX_DEPTH = 4


def readable(value: Any, depth: int = 0) -> str:
    """A server value as words: `{"subtotal": {"amount": 0.4, "unit": "usd"}}` is
    `subtotal 0.4 usd`, a list its items; never a Python repr."""
    if isinstance(value, dict) and "amount" in value:
        amount = Amount.lenient(value)
        if amount is not None:
            return amount_text(amount)
    if depth >= _MAX_DEPTH and isinstance(value, dict | list):
        return "…"
    if isinstance(value, dict):
        shown = [f"{str(k).replace('_', ' ')} {readable(v, depth + 1)}" for k, v in value.items()]
        return ", ".join(shown) or "—"
    if isinstance(value, list):
        return ", ".join(readable(v, depth + 1) for v in value) or "—"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def task_failed(status: TaskStatus) -> Failure:
    """A failed task's error, with what to check (never a routing override)."""
    code, message = status.error_code_and_message()
    return Failure(code=code, message=message, request_id=status.task_id, hint=TASK_HINT)


# --- help (written from the command specs) ---------------------------------------------------

_PAID_RUNS = (
    "A paid run starts only with `to …` (or a first word that is not one of the commands "
    "above): `/openmarlin balance please` shows the balance, `/openmarlin models gpt extra` "
    "is a usage error, `/openmarlin to status report of Q3` is an instruction."
)


def help_text() -> Text:
    """Every OpenMarlin command's usage line and what it does, from `SPECS`."""
    lines = [f"• `{s.usage}` — {s.description}" for s in SPECS if s.model is not OMHelp]
    return Text(
        markdown="\n".join(
            [
                "**OpenMarlin** — agent runs and long tasks with your own OpenMarlin workspace.",
                "",
                *lines,
                "",
                _PAID_RUNS,
            ]
        )
    )
