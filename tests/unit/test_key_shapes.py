"""bot.core.key_shapes: finding, redacting and classifying secret-shaped strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import key_shapes
from bot.core.key_shapes import (
    KEY_PATTERN,
    contains_key,
    find_keys,
    fingerprint,
    key_service,
    redact,
)

AT = "sk-at-Abc123def456ghi789"
MARLIN = "claw_wsk_Zz9_yy8-xx7ww6"
MGMT = "sk-mgmt-de000000-0000-0000-0000-000000000000"
PROV = "sk-prov-0123456789abcdef0123456789ABCDEF"


@pytest.mark.parametrize(
    ("key", "service"),
    [
        (AT, "alltoken"),
        (MARLIN, "openmarlin"),
        (MGMT, "openclaw_token"),
        (PROV, "openclaw_proxy"),
    ],
)
def test_each_service_is_found_redacted_and_classified(key: str, service: str) -> None:
    text = f"here is my key {key}, please keep it safe"
    assert find_keys(text) == [key]
    assert contains_key(text)
    assert key_service(key) == service
    assert key_service(f"  {key}\n") == service
    redacted = redact(text)
    assert key not in redacted
    prefix = {
        "alltoken": "sk-at-",
        "openmarlin": "claw_wsk_",
        "openclaw_token": "sk-mgmt-",
        "openclaw_proxy": "sk-prov-",
    }[service]
    assert redacted == f"here is my key {prefix}…{key[-4:]}, please keep it safe"


def test_redact_example_from_the_docs() -> None:
    assert redact("sk-at-0000000000000000abcd") == "sk-at-…abcd"
    assert fingerprint("sk-at-0000000000000000abcd") == "…abcd"


@pytest.mark.parametrize(
    "text",
    [
        "sk-at-",
        "sk-at-short",
        "sk-at-12345678901",  # 11 characters after the prefix: one short
        "ask-at-home",
        "ask-at-homeandstayedtherealldaylong",  # a letter glued before "sk-"
        "task-at-hand-is-very-important-indeed",
        "claw_wsk_placeholder",  # the seed's placeholder is 11 characters
        "xclaw_wsk_abcdefghijklmnop",
        "sk-mgmt-not-a-uuid-at-all-just-words",
        "sk-mgmt-de000000-0000-0000-0000-00000000000",  # last UUID group one short
        "sk-prov-0123456789abcdef0123456789abcde",  # 31 hex
        "sk-prov-0123456789abcdef0123456789abcdeg",  # not hex
        "I asked for sk at the desk",
        "",
    ],
)
def test_prose_and_near_misses_are_not_keys(text: str) -> None:
    assert find_keys(text) == []
    assert not contains_key(text)
    assert redact(text) == text
    assert key_service(text) is None


def test_minimum_length_boundary_for_free_form_keys() -> None:
    assert key_service("sk-at-" + "a" * 12) == "alltoken"
    assert key_service("sk-at-" + "a" * 11) is None
    assert key_service("claw_wsk_" + "b" * 12) == "openmarlin"
    assert key_service("claw_wsk_" + "b" * 11) is None


def test_key_service_is_strict_but_redaction_is_generous() -> None:
    # 33 hex characters is not a provisioned key, but it is still hidden from the channel.
    mangled = "sk-prov-" + "a" * 33
    assert key_service(mangled) is None
    assert find_keys(f"oops {mangled}") == [mangled]
    assert redact(mangled) == "sk-prov-…aaaa"
    assert key_service(MGMT + "x") is None
    assert redact(MGMT + "x") == "sk-mgmt-…000x"


def test_prefix_case_insensitive_for_autocapitalised_pastes() -> None:
    key = "Sk-at-abcdefghijklmnop"
    assert find_keys(f"{key} is mine") == [key]
    assert redact(key) == "Sk-at-…mnop"
    assert key_service(key) == "alltoken"


def test_several_keys_in_order_and_in_markup() -> None:
    text = f"`{AT}` and <{MARLIN}> then key={PROV}; also ({MGMT})."
    assert find_keys(text) == [AT, MARLIN, PROV, MGMT]
    redacted = redact(text)
    assert not contains_key(redacted)
    assert redacted == (
        f"`sk-at-…{AT[-4:]}` and <claw_wsk_…{MARLIN[-4:]}> then key=sk-prov-…CDEF; "
        "also (sk-mgmt-…0000)."
    )


def test_key_service_rejects_surrounding_text() -> None:
    assert key_service(f"key {AT}") is None
    assert key_service(f"{AT} thanks") is None
    assert key_service("") is None


def test_fingerprint_never_reveals_short_strings() -> None:
    assert fingerprint("abc") == "…"
    assert fingerprint("") == "…"
    assert fingerprint(AT) == "…i789"
    assert fingerprint(f"  {AT}  ") == "…i789"


def test_key_pattern_is_a_compiled_pattern() -> None:
    assert KEY_PATTERN.search(f"x {AT} y") is not None
    assert KEY_PATTERN.search("nothing here") is None


# ---------------------------------------------------------------------------------------------
# Properties

_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
_HEX = "0123456789abcdef"


def _hex(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=_HEX, min_size=n, max_size=n)


keys = st.one_of(
    st.builds(
        lambda head, tail: f"sk-at-{head}{tail}",
        st.sampled_from("abcXYZ019"),
        st.text(alphabet=_TOKEN_ALPHABET, min_size=11, max_size=40),
    ),
    st.builds(
        lambda head, tail: f"claw_wsk_{head}{tail}",
        st.sampled_from("abcXYZ019"),
        st.text(alphabet=_TOKEN_ALPHABET, min_size=11, max_size=40),
    ),
    st.builds(
        lambda a, b, c, d, e: f"sk-mgmt-{a}-{b}-{c}-{d}-{e}",
        _hex(8),
        _hex(4),
        _hex(4),
        _hex(4),
        _hex(12),
    ),
    st.builds(lambda h: f"sk-prov-{h}", _hex(32)),
)
separators = st.sampled_from([" ", "\n", ", ", " `", "` ", "(", ")", "=", ": ", "…", '"'])
texts_with_keys = st.lists(
    st.one_of(keys, separators, st.text(max_size=12)), min_size=1, max_size=12
).map("".join)


@given(keys)
def test_generated_keys_are_classified(key: str) -> None:
    assert key_service(key) is not None
    assert find_keys(f"my key: {key} ok") == [key]


@given(st.text())
def test_redact_never_leaves_a_key_in_arbitrary_text(text: str) -> None:
    assert not contains_key(redact(text))


@given(texts_with_keys)
def test_redact_never_leaves_a_key_in_texts_with_keys(text: str) -> None:
    redacted = redact(text)
    assert not contains_key(redacted)
    # Each key becomes prefix + "…" + its last 4 characters.
    assert redacted.count("…") == text.count("…") + len(find_keys(text))


@given(keys, separators, separators)
def test_a_key_between_separators_is_hidden(key: str, left: str, right: str) -> None:
    text = f"a{left}{key}{right}b"
    assert key not in redact(text)
    assert key_shapes.fingerprint(key) in redact(text)
