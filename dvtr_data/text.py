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
