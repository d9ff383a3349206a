"""Caption text: the one normalisation every stage shares (tokens stored with captions, duplicate checks, exports).

Captions are untrusted text: this module only reads them, and everything that renders one escapes it.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """The normalised token list stored with each caption: lower-cased words, punctuation dropped."""
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    """The form two captions are compared in: their tokens joined by single spaces."""
    return " ".join(tokenize(text))


def strip_form_newline(text: str) -> str:
    """Text typed in a web form loses the line break(s) the form appends; every other character is kept."""
    return text.rstrip("\r\n")


# Bidirectional embeddings, overrides and isolates: text that displays in another order than it reads (the
# "Trojan source" trick); the marks LRM/RLM alone reorder nothing and are left alone.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ALLOWED_CONTROLS = frozenset("\t\n\r")


def has_control_chars(text: str) -> bool:
    """Whether ``text`` holds NUL, an ANSI escape or another C0/C1 control (tab and line breaks aside), or a
    bidirectional override: bytes that rewrite a terminal or reorder what a reviewer sees, never part of a caption."""
    return any(
        (ch in _BIDI_CONTROLS) or ((ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0) and ch not in _ALLOWED_CONTROLS)
        for ch in text
    )


_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")


def redact_url_passwords(text: str) -> str:
    """``https://user:secret@host`` -> ``https://user:***@host`` wherever a URL with a password appears in ``text``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


MAX_ERROR_CHARS = 2000
"""An error stored in a table row or a run log: as long as the CLI's one error line, never megabytes."""


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut (a 5,000,000-character id stays a few KB)."""
    if len(text) <= limit:
        return text
    kept = max(limit - len(f"... ({len(text)} more characters)"), 0)  # the note's longest form fits
    return text[:kept] + f"... ({len(text) - kept} more characters)"
