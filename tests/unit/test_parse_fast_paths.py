"""The parsers' fast paths (hot-path work from the burst profile) answer exactly what the general
paths answer: the AllToken router's string pre-check never hides a trigger, and the ASCII
shortcuts of the flag reader agree with the full Unicode path."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.backends.alltoken import grammar as router
from bot.backends.alltoken.grammar import RouterContext
from bot.backends.alltoken.spec import UsageError
from bot.core import grammar as core
from bot.core.grammar import normalise_flag_token, split_flag_text

# Words that make triggers (and near misses) likely, mixed with arbitrary ASCII.
WORDS = [
    *("alltoken", "ALLTOKEN", "/alltoken-chat", "alltoken_image", "alltoken-video", "myalltoken"),
    *("chat", "image", "video", "search", "models", "cost", "key", "help", "web", "an", "of"),
    *("via", "with", "on", "using", "through", "in", "from", "at", "ask", "use", "what"),
    *("which", "does", "how", "much", "did", "that", "this", "it", "last", "call", "generate"),
    *("make", "draw", "list", "show", "--size=1024x1024", "--type=image", "-type", "—duration"),
    *("?", ".", ",", "\n", "  ", "https://x.test/alltoken-chat"),
]
ascii_text = st.lists(
    st.one_of(st.sampled_from(WORDS), st.text(st.characters(max_codepoint=127), max_size=6)),
    max_size=12,
).map(" ".join)
# Sentences shaped like the natural-language triggers ("generate an image via alltoken of …",
# "what models does alltoken have", "how much did that cost") and their near misses.
shaped_text = st.tuples(
    st.sampled_from(["", "generate", "make", "draw", "ask", "use", "what", "which", "search"]),
    st.sampled_from(["", "an image", "a video", "the web", "models", "me", "much did that"]),
    st.sampled_from(["", "via", "with", "on", "using", "through", "in", "from", "at", "does"]),
    st.sampled_from(["alltoken", "AllToken", "alltoken chat", "alltoken image", "cost", "x"]),
    st.sampled_from(["", "of a fox", "what is 2+2", "have", "--size=auto", "cost?", "web q"]),
).map(lambda parts: " ".join(p for p in parts if p))
contexts = st.builds(RouterContext, last_call_was_alltoken=st.booleans())


def _general(text: str, ctx: RouterContext) -> object:
    """parse() without its pre-checks: every trigger the regex finds, dispatched in order."""
    text = router.scrub_surrogates(text)
    for m in router._TRIGGER.finditer(text):
        command = router._dispatch(m, text, ctx)
        if command is not None:
            return command
    return None


def _outcome(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except UsageError as error:
        return ("usage", str(error))


@settings(max_examples=500, deadline=None)
@given(st.one_of(ascii_text, shaped_text), contexts)
def test_the_router_pre_check_never_hides_a_trigger(text: str, ctx: RouterContext) -> None:
    fast = _outcome(lambda: router.parse(text, ctx))
    assert fast == _outcome(lambda: _general(text, ctx))


def _normalise_general(token: str, known: frozenset[str] | None) -> str:
    """normalise_flag_token's Unicode path, for any token (the reference for its ASCII path)."""
    if token.lstrip(core._ZERO_WIDTH_CHARS)[:1] not in core._FLAG_STARTS:
        return token
    sep = core._FLAG_EQUALS.search(token)
    head = token[: sep.start()] if sep else token
    m = core._FLAG_HEAD.fullmatch(unicodedata.normalize("NFKC", core._ZERO_WIDTH.sub("", head)))
    if m is None:
        return token
    name = m.group("name")
    if m.group("dash") != "--" and known is not None and name.lower() not in known:
        return token
    if sep is None:
        return "--" + name
    return f"--{name}={token[sep.end() :].strip(core._ZERO_WIDTH_CHARS)}"


ascii_token = st.one_of(
    st.sampled_from(["--size", "--size=auto", "--", "--=x", "-type=image", "--9", "--a=b=c"]),
    st.text(st.sampled_from("-=abz09_. "), min_size=1, max_size=8).filter(lambda t: " " not in t),
)


@given(ascii_token, st.sampled_from([None, frozenset({"size", "type"})]))
def test_the_ascii_flag_shortcut_agrees_with_the_unicode_path(
    token: str, known: frozenset[str] | None
) -> None:
    assert normalise_flag_token(token, known) == _normalise_general(token, known)


@given(st.lists(st.sampled_from(["a", "cat", "42", "x.y", "ok?"]), max_size=8).map(" ".join))
def test_text_without_a_dash_keeps_every_word(text: str) -> None:
    options = {"size": True, "quality": True}
    kept, flags = split_flag_text("image", " " + text + " ", options, "usage")
    assert kept == text.strip()
    assert not flags


def _split_general(text: str, options: dict[str, bool]) -> object:
    """split_flag_text's general path for ASCII text (the reference for its shortcut)."""
    words = text.split()
    try:
        scan = core.scan_flags("image", words, options, "usage")
    except UsageError as error:
        return ("usage", str(error))
    if len(scan.positionals) == len(words):
        return text.strip(), scan.flags
    return core._without_words(text, words, set(scan.positionals)), scan.flags


OPTIONS = {"size": True, "quality": True, "watch": False}
option_text = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(["a", "cat", "a-b", "-", "--", "---x", "-size=1", "-5", "x-", "--9"]),
            st.sampled_from(["--size=1x1", "--Size=A", "--size=", "--size", "--size=a=b"]),
            st.sampled_from(["--watch", "--WATCH", "--watch=1", "--watch.", "--sizes=1"]),
            st.sampled_from(["--quality=high", "--other=1", "--quality", "-quality=x"]),
            st.text(st.sampled_from("-=sizeaw.1"), min_size=1, max_size=6),
        ),
        st.sampled_from([" ", "  ", "\n", "\t", "\x1f", ""]),
    ),
    max_size=8,
).map(lambda pairs: "".join(w + s for w, s in pairs))


@settings(max_examples=400)
@given(option_text)
def test_the_plain_option_shortcut_agrees_with_the_general_path(text: str) -> None:
    quick = core._plain_options(text, OPTIONS)
    if quick is not None:
        assert quick == _split_general(text, OPTIONS)
    assert _outcome(lambda: split_flag_text("image", text, OPTIONS, "usage")) == _split_general(
        text, OPTIONS
    )


@pytest.mark.parametrize(
    "text",
    [
        "a lighthouse at dusk --size=1536x1024 --quality=high",
        "--watch a state-of-the-art cat --size=auto",
        "a cat --QUALITY=low\n--watch",
    ],
)
def test_the_usual_options_take_the_shortcut(text: str) -> None:
    # Plain "--name=value" and "--switch" words are what commands carry; the shortcut must
    # answer for them, or it is only overhead.
    assert core._plain_options(text, OPTIONS) is not None


@given(ascii_token, st.sampled_from([None, frozenset({"size", "type"})]))
def test_an_ascii_token_is_already_normal(token: str, known: frozenset[str] | None) -> None:
    # split_flag_text skips normalising ASCII text on the strength of this.
    assert normalise_flag_token(token, known) == token


def _without_words_reference(text: str, kept: set[int]) -> str:
    """The words not in `kept` cut out by their regex positions (the shortcut's reference)."""
    parts: list[str] = []
    pos = 0
    for index, word in enumerate(core._NON_SPACE.finditer(text)):
        if index in kept:
            continue
        parts.append(text[pos : word.start()])
        space = core._SPACE.match(text, word.end())
        pos = space.end() if space else word.end()
    parts.append(text[pos:])
    return "".join(parts).strip()


spaced_words = st.lists(
    st.tuples(
        st.sampled_from(["a", "aa", "a-a", "--x", "--x=a a", "é", "a\u200b"]),
        st.sampled_from([" ", "  ", "\n", "\t ", "\u3000"]),
    ),
    max_size=8,
).map(lambda pairs: "".join(w + s for w, s in pairs))


@given(spaced_words, st.data())
def test_cutting_words_by_find_agrees_with_the_regex_positions(
    text: str, data: st.DataObject
) -> None:
    n = len(text.split())
    kept = data.draw(st.sets(st.integers(0, max(n - 1, 0))) if n else st.just(set()))
    assert core._without_words(text, text.split(), kept) == _without_words_reference(text, kept)


flag_token = st.one_of(
    st.sampled_from(["--size", "--Size=A", "--size=", "--size.", "--size=x=y", "--sizes", "--"]),
    st.sampled_from(["--\u212aey=v", "--key=v", "--quality=high", "--s\u0131ze", "--type=image"]),
    st.text(st.sampled_from("-=sizeKk.\u212a"), min_size=2, max_size=8).map(lambda t: "--" + t),
)


@given(flag_token)
def test_reading_a_known_option_by_string_methods_agrees_with_read_flag(token: str) -> None:
    options = {"size": True, "key": True, "quality": True, "type": True}
    fast = core._known_flag(token, options)
    # The shortcut answers only for options; whatever it answers, read_flag answers too.
    if fast is not None:
        assert fast == core.read_flag(token)
    else:
        flag = core.read_flag(token)
        assert flag is None or flag.name not in options or token.rstrip(".,;:!?…") != token


def test_every_option_name_has_the_shape_read_flag_reads() -> None:

    from bot.backends.alltoken.spec import SPECS as ALLTOKEN
    from bot.backends.openclaw_token.spec import SPECS as OPENCLAW
    from bot.backends.openmarlin.spec import SPECS as OPENMARLIN
    from bot.teams.spec import SPECS as TEAMS

    names = {n for s in (*ALLTOKEN, *OPENCLAW, *OPENMARLIN, *TEAMS) for n in s.flags}
    assert names and all(re.fullmatch(r"[a-z][a-z0-9_-]*", n) for n in names)


spaced_text = st.text(
    st.sampled_from(["a", "b", " ", "\n", "\u3000", "\x1f", ":", ",", ";", "—", "–"])
)


def _split_first_reference(text: str) -> tuple[str, str]:
    m = re.search(r"\s+", text)
    return (text, "") if m is None else (text[: m.start()], text[m.end() :])


@given(spaced_text)
def test_the_text_helpers_agree_with_their_regex_definitions(text: str) -> None:
    assert router._clean(text) == router._drop(router._LEADING, text).rstrip()
    assert router._split_first(text) == _split_first_reference(text)
