"""A pickle loader for caption files made by strangers (CLIP4Clip's ``raw-captions.pkl``), with bounds.

A pickle can import and call anything, so a plain `pickle.load` of a downloaded caption file runs whatever its
author wanted. Caption pickles hold only dicts, lists and strings, which the pickle opcodes build without importing
anything; this unpickler refuses every import instead, except the few builtin container types that old protocols
can only spell as an import (``__builtin__.set``). Persistent ids are refused too.

Refusing imports is not enough: a pickle's memo lets one 100 KB string be referenced 20,000 times from a 140 KB
file, and joining those tokens into a caption makes 2 GB (issue 11, item 6). Unpickling itself stays linear in the
file (each reference costs at least two bytes of opcodes), so the bound is applied to what the data *expands to*
before anything is joined: `caption_pickle` counts the characters each caption would have, and refuses a caption
longer than `MAX_CAPTION_CHARS` or a total over `EXPANSION_FACTOR` times the file size, in time and memory linear in
the file. The CLIP4Clip shape check lives here once, for the importer and the caption banks alike.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from dvtr_data.errors import InputError

# Builtin containers only: constructing them runs no user code. Everything else, classes and functions alike
# (including builtins.eval, getattr, object, copyreg._reconstructor), is refused.
_SAFE_GLOBALS = {
    (module, name)
    for module in ("builtins", "__builtin__")
    for name in ("set", "frozenset", "list", "dict", "tuple", "str", "bytes", "int", "float", "bool", "complex")
}

MAX_PICKLE_BYTES = 1 << 30
"""A caption pickle of more than 1 GiB is not a caption set (USRD's is 2 MB, MSR-VTT's 20 MB)."""
MAX_CAPTION_CHARS = 5000
"""A caption, its tokens joined by spaces, of more characters is a bomb or garbage, not a description."""
EXPANSION_FACTOR = 16
"""Captions may total at most this many characters per byte of the file (plus `EXPANSION_SLACK`).

A memo reference costs 2 bytes (BINGET) and a shared token rarely exceeds 15 characters, so honest pickles stay
well under 8 characters per byte; a bomb needs thousands."""
EXPANSION_SLACK = 1 << 20


class RefusedPickle(pickle.UnpicklingError):
    """The pickle tried to import something (a class or function): it is not plain data."""


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only builtin data (dict, list, tuple, set, str, bytes, numbers, bool, None)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return getattr(__import__("builtins"), name)
        raise RefusedPickle(
            f"the pickle tries to import {module[:100]}.{name[:100]}; only plain data (dict, list, str, numbers) "
            "is accepted"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("the pickle refers to a persistent object; only plain data is accepted")


def loads_restricted(data: bytes) -> Any:
    """Unpickle ``data`` without importing anything; raise `RefusedPickle` on any import."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise InputError(f"{path}: {size} bytes is too large for a caption pickle (limit {MAX_PICKLE_BYTES})")
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def load_restricted(path: Path) -> Any:
    """Unpickle a file with `RestrictedUnpickler`; every failure is an `InputError` naming the file."""
    path = Path(path)
    data = _read(path)
    try:
        return loads_restricted(data)
    except RefusedPickle as exc:
        raise InputError(f"{path}: refused: {exc}", hint="caption pickles must hold only dicts, lists and strings") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, UnicodeDecodeError, RecursionError, OverflowError) as exc:
        raise InputError(f"{path}: not a readable pickle ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc


def _short(value: Any) -> str:
    """An id for a message: repr, at most 80 characters (an id can be megabytes long)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def caption_pickle(
    path: Path,
    *,
    allow_text: bool = False,
    max_caption_chars: int = MAX_CAPTION_CHARS,
    expansion_factor: int = EXPANSION_FACTOR,
) -> dict[str, list[list[str] | str]]:
    """CLIP4Clip's ``raw-captions.pkl`` as a dict of video id -> captions, checked and bounded before any join.

    A caption is a token list (``allow_text`` also accepts a plain string, as caption banks do). Every failure,
    including a caption that would expand past ``max_caption_chars`` or captions totalling more than
    ``expansion_factor`` characters per byte of the file, is one `InputError` (exit 3), raised after work linear
    in the file's size: lengths are summed, nothing is joined.
    """
    path = Path(path)
    data = load_restricted(path)
    budget = expansion_factor * path.stat().st_size + EXPANSION_SLACK
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict of video id -> captions (CLIP4Clip layout), found {type(data).__name__}")
    total = 0
    for vid, caps in data.items():
        if not isinstance(vid, str):
            raise InputError(f"{path}: video id {_short(vid)} is not a string")
        if not isinstance(caps, list):
            raise InputError(f"{path}: captions of {_short(vid)} are not a list of token lists (lists of strings)")
        total += len(vid)
        for cap in caps:
            if isinstance(cap, list):
                chars = max(len(cap) - 1, 0)
                for token in cap:
                    if not isinstance(token, str):
                        raise InputError(f"{path}: captions of {_short(vid)} are not a list of token lists "
                                         "(a token is not a string)")
                    chars += len(token)
                    if chars > max_caption_chars:
                        break
            elif allow_text and isinstance(cap, str):
                chars = len(cap)
            else:
                raise InputError(f"{path}: captions of {_short(vid)} are not a list of token lists (lists of strings)")
            if chars > max_caption_chars:
                raise InputError(
                    f"{path}: a caption of {_short(vid)} expands to over {max_caption_chars} characters",
                    hint="a pickle whose tokens repeat one long string is a bomb, not a caption set",
                )
            total += chars
            if total > budget:
                raise InputError(
                    f"{path}: captions expand to over {budget} characters from a {path.stat().st_size}-byte file",
                    hint=f"more than {expansion_factor} characters per byte: repeated references, not captions",
                )
    return data
