"""Option values -> OpenMarlin command: the checks the text grammar and typed options share.

`grammar.py` finds a command and its hints in text; a platform's typed options arrive as values.
Both end here, so a value is checked the same way however it came, and a typed value is never
split into words (an instruction may mention "--model=x").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Literal

from pydantic import SecretStr

from bot.backends.openmarlin.spec import (
    OMActivity,
    OMBalance,
    OMExecute,
    OMHelp,
    OMKey,
    OMModels,
    OMReferral,
    OMRegister,
    OMStatus,
    OMTask,
    OMTaskStatus,
    OMTopUp,
    OpenMarlinCommand,
    usage_error,
)
from bot.core import key_shapes
from bot.core.command_spec import OptionValue
from bot.core.grammar import show_input

Values = Mapping[str, OptionValue]

MAX_INSTRUCTION_CHARS = 8000
MAX_LABELS = 20
MAX_TOPUP = Decimal(100_000)
TOPUP_DECIMALS = 6

_LEADING = re.compile(r"^(?:\s|[:,;]|[—–-](?=\s))*(?:(?:to|and|please)\s+)*", re.IGNORECASE)
_AMOUNT = re.compile(
    r"(?:(?:my\s+)?(?:account|balance|workspace)\s+)?(?:(?:with|by)\s+)?"
    r"\$?\s*(?P<n>\S+?)(?:\s*credits?)?",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<decimals>[0-9]+))?")
_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
_MODEL_REF = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-:]+")
_PROVIDER_ID = re.compile(r"[A-Za-z0-9][\w.\-:]{0,99}")
_LABEL_PAIR = re.compile(r"(?P<k>[^\s,=]+)=(?P<v>[^\s,]*)")
_DURATION = re.compile(r"(?P<n>[0-9]{1,6}(?:\.[0-9]{1,3})?)\s*(?P<u>ms|s|sec|secs|seconds?)?", re.I)
_ASPECT = re.compile(r"[0-9]{1,2}:[0-9]{1,2}")

# Long or artifact-oriented work goes to /v1/tasks (the seed's routing rules).
_TASK_WORDING = re.compile(
    r"\b(?:videos?|clips?|movies?|animations?|animated|render(?:s|ed|ing)?|"
    r"long[\s-]running|background|async|asynchronous(?:ly)?)\b",
    re.IGNORECASE,
)
_SYNC_WORDING = re.compile(
    r"\b(?:synchronous(?:ly)?|sync|right\s+away\s+and\s+wait|as\s+an?\s+execution)\b",
    re.IGNORECASE,
)


_show = show_input


def _strip_token(value: str) -> str:
    return value.strip("`'\"<>()[]").rstrip(".,;:!?")


def _tidy(text: str) -> str:
    """Collapse the whitespace left where phrases were cut out, drop a leading "to"."""
    text = re.sub(r"[ \t]{2,}", " ", text).strip()
    return _LEADING.sub("", text).strip()


def _labels(raw: str) -> dict[str, str]:
    pairs = [p.strip() for p in raw.split(",") if p.strip()]
    out: dict[str, str] = {}
    for pair in pairs:
        m = _LABEL_PAIR.fullmatch(pair.rstrip(".;:!?"))
        if m is None:
            raise usage_error(
                "openmarlin.execute",
                f"labels are key=value pairs separated by commas, e.g. region=eu,gpu=a100 "
                f"(got {_show(pair)})",
            )
        out[m.group("k")] = m.group("v")
    if len(out) > MAX_LABELS:
        raise usage_error("openmarlin.execute", f"at most {MAX_LABELS} labels")
    return out


def _duration_ms(raw: str) -> int:
    m = _DURATION.fullmatch(raw.strip())
    if m is None:
        raise usage_error(
            "openmarlin.task",
            f"--duration takes seconds such as 5s, from 1 s to 600 s (got {_show(raw)})",
        )
    n = Decimal(m.group("n"))
    ms = n if (m.group("u") or "").lower() == "ms" else n * 1000
    if not 1000 <= ms <= 600_000:
        raise usage_error(
            "openmarlin.task", f"--duration must be 1 s to 10 min (600 s) (got {_show(raw)})"
        )
    return int(ms)


Mode = Literal["auto", "execute", "task"]


def _check_instruction(text: str) -> str:
    instruction = _tidy(text)
    if not instruction:
        raise usage_error("openmarlin.execute", "say what OpenMarlin should do")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise usage_error(
            "openmarlin.execute", f"the request is longer than {MAX_INSTRUCTION_CHARS} characters"
        )
    if key_shapes.contains_key(instruction):
        raise usage_error(
            "openmarlin.execute",
            "the request contains something shaped like an API key; tokenbot will not send it",
        )
    return instruction


def _model_ref(raw: str) -> str:
    model = _strip_token(raw)
    if "/" not in model:
        raise usage_error(
            "openmarlin.execute",
            f"{_show(model)} is not a full model ref: OpenMarlin needs the exact "
            "vendor/model form such as openai-codex/gpt-5.4 (see `/openmarlin models`)",
        )
    if not _MODEL_REF.fullmatch(model):
        raise usage_error(
            "openmarlin.execute", f"{_show(model)} is not a model ref like vendor/model"
        )
    return model


def _provider(raw: str) -> str:
    provider = _strip_token(raw)
    if not _PROVIDER_ID.fullmatch(provider):
        raise usage_error("openmarlin.execute", f"{_show(provider)} is not a provider id")
    return provider


def _aspect(raw: str) -> str:
    aspect = _strip_token(raw)
    sides = aspect.split(":")
    if not _ASPECT.fullmatch(aspect) or "0" in (sides[0], sides[1]):
        raise usage_error(
            "openmarlin.task",
            f"--aspect-ratio looks like 16:9, each side 1-99 (got {_show(aspect)})",
        )
    return aspect


def _text_hint(hints: Mapping[str, str | bool], name: str) -> str | None:
    value = hints.get(name)
    return value if isinstance(value, str) else None


def _wants_task(instruction: str, hints: Mapping[str, str | bool], mode: Mode) -> bool:
    task_options = "duration" in hints or "aspect-ratio" in hints
    if mode != "auto":
        return mode == "task"
    if hints.get("sync"):
        if task_options:
            raise usage_error(
                "openmarlin.task", "--duration and --aspect-ratio only apply to tasks, not --sync"
            )
        return False
    return bool(
        hints.get("task")
        or task_options
        or (
            _TASK_WORDING.search(instruction) is not None
            and _SYNC_WORDING.search(instruction) is None
        )
    )


def free_form_of(
    text: str, hints: Mapping[str, str | bool], mode: Mode = "auto"
) -> OMExecute | OMTask:
    """An instruction with its routing hints: an execution or a task (`mode` may force one)."""
    instruction = _check_instruction(text)
    raw_model, raw_provider = _text_hint(hints, "model"), _text_hint(hints, "provider")
    raw_labels = _text_hint(hints, "labels")
    model = _model_ref(raw_model) if raw_model is not None else None
    provider = _provider(raw_provider) if raw_provider is not None else None
    labels = _labels(raw_labels) if raw_labels is not None else {}
    if not _wants_task(instruction, hints, mode):
        return OMExecute(instruction=instruction, model=model, provider_id=provider, labels=labels)
    duration, aspect = _text_hint(hints, "duration"), _text_hint(hints, "aspect-ratio")
    aspect_ratio = _aspect(aspect) if aspect is not None else None
    shown_labels = ",".join(f"{k}={v}" for k, v in labels.items()) if labels else None
    ignored = tuple(
        f"{name} {value}"
        for name, value in (("model", model), ("provider", provider), ("labels", shown_labels))
        if value
    )
    return OMTask(
        prompt=instruction,
        duration_ms=_duration_ms(duration) if duration is not None else None,
        aspect_ratio=aspect_ratio,
        ignored=ignored,
    )


def topup(rest: str) -> OMTopUp:
    """`top up <amount>` from the text after "top up"."""
    m = _AMOUNT.fullmatch(rest.strip())
    if m is None:
        raise usage_error(
            "openmarlin.topup",
            "give the amount of credits, e.g. top up 10"
            + (f" (got {_show(rest.strip())})" if rest.strip() else ""),
        )
    raw = m.group("n").replace(",", "")
    accepted = f"above 0 and at most {MAX_TOPUP}"
    if raw.startswith("-"):
        raise usage_error("openmarlin.topup", f"the amount must be {accepted} (got {_show(raw)})")
    number = _NUMBER.fullmatch(raw)
    if number is None:
        raise usage_error(
            "openmarlin.topup",
            f"the amount must be a number of credits such as 10 or 2.5 (got {_show(raw)})",
        )
    if len(number.group("decimals") or "") > TOPUP_DECIMALS:
        raise usage_error(
            "openmarlin.topup",
            f"the amount has at most {TOPUP_DECIMALS} decimals (got {_show(raw)})",
        )
    # The length check keeps Decimal away from absurd digit strings.
    amount = Decimal(raw) if len(number.group("units").lstrip("0")) <= 6 else MAX_TOPUP + 1
    if not 0 < amount <= MAX_TOPUP:
        raise usage_error("openmarlin.topup", f"the amount must be {accepted} (got {_show(raw)})")
    return OMTopUp(amount=amount)


def task_status(rest: str) -> OMTaskStatus:
    """`task status <id>` from the text after it."""
    task_id = _strip_token(rest.strip())
    if not task_id:
        raise usage_error("openmarlin.task_status", "which task? give its id")
    if not _TASK_ID.fullmatch(task_id):
        raise usage_error("openmarlin.task_status", f"{_show(task_id)} is not a task id")
    return OMTaskStatus(task_id=task_id)


def key_command(action: str | None, rest: str) -> OMKey:
    """`/openmarlin key [set <key> | remove | status]`; no action asks privately."""
    if action is None:
        return OMKey(action="prompt")
    verb = action.lower()
    if verb in ("remove", "delete", "forget"):
        if rest.strip(" ?!.,"):
            raise usage_error("openmarlin.key", f"{verb} takes no arguments")
        return OMKey(action="remove")
    if verb in ("status", "show", "check"):
        if rest.strip(" ?!.,"):
            raise usage_error("openmarlin.key", f"{verb} takes no arguments")
        return OMKey(action="status")
    words = rest.split()
    if not words:
        return OMKey(action="prompt")
    if len(words) > 1:
        # Never echo this text: it may be a key split by a stray space.
        raise usage_error("openmarlin.key", "give exactly one key after 'set'")
    value = words[0].strip("`'\"<>")
    if key_shapes.key_service(value) != "openmarlin":
        raise usage_error(
            "openmarlin.key",
            "that is not an OpenMarlin key (they start with claw_wsk_); "
            "or run `/openmarlin register` to get one",
        )
    return OMKey(action="set", key=SecretStr(value))


def _text_value(values: Values, name: str) -> str | None:
    value = values.get(name)
    return None if value is None or value == "" else str(value)


def _key_of(values: Values) -> OMKey:
    action, key = _text_value(values, "action"), _text_value(values, "key")
    if key is None:
        # A key never travels as a visible option: "set" alone opens the private form.
        return key_command(None if action == "set" else action, "")
    return key_command(action or "set", key)


def _routing_hints(values: Values) -> dict[str, str | bool]:
    names = ("model", "provider", "labels", "duration", "aspect-ratio")
    return {n: v for n in names if (v := _text_value(values, n)) is not None}


FROM_VALUES: dict[str, Callable[[Values], OpenMarlinCommand]] = {
    "openmarlin.execute": lambda v: free_form_of(
        _text_value(v, "instruction") or "", _routing_hints(v), "execute"
    ),
    "openmarlin.task": lambda v: free_form_of(
        _text_value(v, "prompt") or "", _routing_hints(v), "task"
    ),
    "openmarlin.register": lambda v: OMRegister(
        auth_flow="workos_callback" if v.get("browser") is True else "device"
    ),
    "openmarlin.status": lambda v: OMStatus(),
    "openmarlin.key": _key_of,
    "openmarlin.models": lambda v: OMModels(filter=(_text_value(v, "filter") or "").strip("`'\"")),
    "openmarlin.balance": lambda v: OMBalance(),
    "openmarlin.activity": lambda v: OMActivity(),
    "openmarlin.topup": lambda v: topup(_text_value(v, "amount") or ""),
    "openmarlin.referral": lambda v: OMReferral(),
    "openmarlin.task_status": lambda v: task_status(_text_value(v, "task_id") or ""),
    "openmarlin.help": lambda v: OMHelp(),
}
