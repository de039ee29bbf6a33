"""Make user- or backend-provided text inert before an adapter shows it. Pure.

Text that came from a person or a backend must never steer the reader's terminal or client:
no escape sequences (colours, cursor moves, OSC 8 hyperlinks, window titles), no bells, no NUL,
and no invisible bidirectional overrides that make `exe.txt` read as `txt.exe`. Platform
escaping (Slack's `&<>`, Discord's mentions) is the adapters' job; this module holds what all
of them share.
"""

from __future__ import annotations

import re

__all__ = ["neutralise_controls", "scrub_surrogates"]

# ESC-introduced sequences: CSI (`ESC [ … final`), OSC (`ESC ] … BEL|ST`), and two-byte escapes.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, erase
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: hyperlinks, titles (BEL or ST ends it)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS / SOS / PM / APC strings
    r"|\x1b[@-Z\\-_]?"  # any other escape, and a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the 8-bit CSI
)
# C0 controls except tab and newline, DEL, and the C1 range.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidirectional embeddings, overrides and isolates: shown by name so a reader sees they are there.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def neutralise_controls(text: str) -> str:
    """`text` without terminal escapes or control characters; bidi overrides shown as `[U+202E]`.

    Newlines and tabs stay; a carriage return becomes a newline so it cannot overwrite a line.
    """
    if text.isprintable():
        # The common case: nothing to do (isprintable is False for \n, so multi-line text
        # takes the slow path, which is still linear).
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub("", text)
    text = _BIDI.sub(lambda m: f"[U+{ord(m.group(0)):04X}]", text)
    return scrub_surrogates(text)


def scrub_surrogates(text: str) -> str:
    """Replace lone surrogates (undecodable input) with U+FFFD, so the text can be encoded."""
    # Every message passes here: skip the regex for the common cases (ASCII, no surrogate).
    if text.isascii() or _SURROGATES.search(text) is None:
        return text
    return _SURROGATES.sub("\ufffd", text)
