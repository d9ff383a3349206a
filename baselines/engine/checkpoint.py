"""Reading checkpoint files (``best.pt``, ``last.pt``, CLIP weights) as tensors only, with one clear error.

Every checkpoint is loaded with ``torch.load(weights_only=True)``: a ``.pt`` file is a pickle, and a hostile one
runs its payload under a plain load. When that refuses a file, PyTorch's message advises re-running with
``weights_only=False``, which is exactly what would run the payload, so that message is never shown: a truncated,
random, empty or hostile file is one `ModelError` (exit 6) saying "checkpoint unreadable" and why, in one line.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

from dvtr_data.errors import ModelError

_ADVICE_WORDS = ("weights_only", "weightsunpickler", "unsafe", "arbitrary code", "add_safe_globals", "safe_globals")


def unreadable_reason(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words that never repeat PyTorch's advice to load unsafely."""
    text = " ".join(str(exc).split())
    lowered = text.casefold()
    if any(word in lowered for word in _ADVICE_WORDS):
        return "it holds objects other than tensors and plain data; it was not loaded, since loading it could run code"
    if isinstance(exc, EOFError) or "ran out of input" in lowered:
        return "the file is empty or cut short"
    if "central directory" in lowered or "zip archive" in lowered or isinstance(exc, zipfile.BadZipFile):
        return "the archive is truncated or damaged"
    if isinstance(exc, pickle.UnpicklingError) or "load key" in lowered:
        return "not a PyTorch checkpoint (unreadable content)"
    first = text[:160] + ("..." if len(text) > 160 else "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_checkpoint(path: Path, map_location: Any = "cpu", *, keys: tuple[str, ...] = ("model",)) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of a dict holding ``keys``; anything else is one `ModelError`.

    ``keys`` are the entries the caller reads (``model``; ``optimizer``, ``rng``, ``epoch`` for ``last.pt``), so a
    well-formed file of the wrong kind is refused here, not as a KeyError (exit 70) deep in a run.
    """
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise ModelError(f"checkpoint unreadable: {path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:
        raise ModelError(f"checkpoint unreadable: {path}: {unreadable_reason(exc)}",
                         hint="restore the file or re-run the baseline that wrote it") from None
    if not isinstance(state, dict):
        raise ModelError(f"checkpoint unreadable: {path}: holds a {type(state).__name__}, not a checkpoint dict",
                         hint="restore the file or re-run the baseline that wrote it")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ModelError(f"checkpoint unreadable: {path}: no {', '.join(missing)} entry",
                         hint="restore the file or re-run the baseline that wrote it")
    return state


def load_state_or_fail(path: Path, load: Any) -> None:
    """Run ``load()`` (a ``load_state_dict`` of a checkpoint's weights); a shape or key mismatch is a `ModelError`."""
    try:
        load()
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        text = " ".join(str(exc).split())
        raise ModelError(
            f"checkpoint unreadable: {path}: its weights do not fit the model "
            f"({type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''})",
            hint="restore the file or re-run the baseline that wrote it",
        ) from None
