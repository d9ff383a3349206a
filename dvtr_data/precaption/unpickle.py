"""A pickle loader for caption files made by strangers (CLIP4Clip's ``raw-captions.pkl``).

A pickle can import and call anything, so a plain `pickle.load` of a downloaded caption file runs whatever its
author wanted. Caption pickles hold only dicts, lists and strings, which the pickle opcodes build without importing
anything; this unpickler refuses every import instead, except the few builtin container types that old protocols
can only spell as an import (``__builtin__.set``). Persistent ids are refused too.
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


class RefusedPickle(pickle.UnpicklingError):
    """The pickle tried to import something (a class or function): it is not plain data."""


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only builtin data (dict, list, tuple, set, str, bytes, numbers, bool, None)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return getattr(__import__("builtins"), name)
        raise RefusedPickle(
            f"the pickle tries to import {module}.{name}; only plain data (dict, list, str, numbers) is accepted"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("the pickle refers to a persistent object; only plain data is accepted")


def loads_restricted(data: bytes) -> Any:
    """Unpickle ``data`` without importing anything; raise `RefusedPickle` on any import."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def load_restricted(path: Path) -> Any:
    """Unpickle a file with `RestrictedUnpickler`; every failure is an `InputError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return loads_restricted(data)
    except RefusedPickle as exc:
        raise InputError(f"{path}: refused: {exc}", hint="caption pickles must hold only dicts, lists and strings") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable pickle ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from exc
