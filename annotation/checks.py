"""Validation flags of a caption: what makes it unusable for training, decided without a human.

Flags (stored in ``captions.flags``): ``empty``, ``too_short`` (fewer than ``min_words`` words), ``duplicate``
(the same words as an earlier caption of the same clip), ``unchanged_draft`` (the pre-caption submitted as is:
over-reliance on drafts is the known failure of assisted captioning), ``non_language`` (keyboard mashing, numbers,
one letter repeated). All five block ``accepted``, and so does ``deleted_in_labelstudio`` (set by `pull` on a row
whose task or annotation was deleted in Label Studio: deleted means out of splits and exports, though the row is kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from rapidfuzz.distance import Levenshtein

from dvtr_data.text import has_control_chars, tokenize

DELETED_FLAG = "deleted_in_labelstudio"
CONTROL_FLAG = "control_chars"  # NUL, ANSI escapes, bidi overrides: see `dvtr_data.text.has_control_chars`
BLOCKING = frozenset({"empty", "too_short", "duplicate", "unchanged_draft", "non_language", DELETED_FLAG, CONTROL_FLAG})
MIN_WORDS = 5

# Words nearly every English sentence about a scene uses; a caption of several words with none of them is
# rarely English. Kept small on purpose: this is a net for mashing, not a language detector.
_COMMON = frozenset(
    """a an the of in on at over above below under near along across through into onto from to by with without and
    or but while as is are was were be being been has have had it its this that these those there here two three four
    five six several many some few one no not very small large big long wide green white red black grey gray blue
    brown dark light top view aerial drone camera road roads street car cars truck trucks vehicle vehicles house houses
    building buildings tree trees field fields water river lake sea boat boats people person man woman walk walks
    walking drive drives driving move moves moving park parked parking flies flying fly seen shows showing next left
    right side middle centre center front behind between around down up straight slowly fast""".split()
)
_VOWEL = re.compile(r"[aeiouy]")


def normalised(text: str) -> tuple[str, ...]:
    """The words of a caption, for comparing captions (case, punctuation and spacing ignored)."""
    return tuple(tokenize(text))


def is_non_language(text: str, tokens: list[str] | None = None) -> bool:
    """Heuristic: mostly non-letters, vowel-less words, one character repeated, or no common English word."""
    stripped = "".join(text.split())
    if not stripped:
        return False
    letters = sum(ch.isalpha() for ch in stripped)
    if letters / len(stripped) < 0.6:
        return True
    tokens = tokens if tokens is not None else tokenize(text)
    words = [t for t in tokens if t.isalpha()]
    if not words:
        return True
    if len(set(stripped.lower())) <= 2 and len(stripped) >= 4:
        return True
    vowelless = sum(1 for w in words if len(w) > 1 and not _VOWEL.search(w))
    if vowelless / len(words) > 0.4:
        return True
    return len(words) >= 4 and not any(w in _COMMON for w in words)


def edit_distance(draft: str | None, text: str) -> int | None:
    """Characters changed from the draft shown to the submitted text (Levenshtein), None when no draft was shown."""
    return None if draft is None else int(Levenshtein.distance(draft, text))


def caption_flags(text: str, tokens: list[str], draft: str | None, *, min_words: int = MIN_WORDS) -> list[str]:
    """Flags of one caption on its own (``duplicate`` needs the clip's other captions: see `mark_duplicates`)."""
    if not text.strip():
        return ["empty"]
    flags: list[str] = []
    if len(tokens) < min_words:
        flags.append("too_short")
    if draft is not None and normalised(draft) == tuple(tokens):
        flags.append("unchanged_draft")
    if is_non_language(text, tokens):
        flags.append("non_language")
    if has_control_chars(text):
        flags.append(CONTROL_FLAG)
    return flags


def mark_duplicates(rows: Iterable[dict[str, Any]], mine: Callable[[dict[str, Any]], bool] = lambda r: True) -> None:
    """Flag ``duplicate`` on every submitted caption whose words equal an earlier one of the same clip (in place).

    Earlier = created first (ties by caption id), so the first writer keeps an accepted caption. Only rows for
    which ``mine`` holds are changed: rows another stage wrote (imports) count as earlier captions but keep their
    flags.
    """
    seen: set[tuple[str, tuple[str, ...]]] = set()
    ordered = sorted(
        (r for r in rows if r["status"] == "submitted" and r["text"].strip()),
        key=lambda r: (r["created_at"] is None, r["created_at"] or 0, r["caption_id"]),
    )
    for row in ordered:
        key = (row["clip_id"], tuple(row["tokens"] or ()))
        if mine(row):
            flags = [f for f in (row["flags"] or []) if f != "duplicate"]
            if key in seen:
                flags.append("duplicate")
            row["flags"] = flags
        seen.add(key)


def accepted(row: dict[str, Any]) -> bool:
    return row["status"] == "submitted" and not (set(row["flags"] or ()) & BLOCKING)
