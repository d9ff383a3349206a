"""The `precaption` stage: CLIP embeddings of clips, draft captions from a caption bank, zero-shot scene tags.

Modules: `encoder` (open_clip loading, model identity, offline fail-fast), `sampling` (frame sampling in guarded
decode workers), `embed` (batched, overlapped embedding and the resumable store), `bank` (caption banks and their
embedding cache), `unpickle` (restricted unpickler), `retrieval` (chunked exact top-k, near-duplicate collapse),
`tags` (zero-shot tags), `taxonomy` (ERA events and scene classes), `stage` (the library entry points).

Exports are loaded lazily: decode worker processes import `sampling` through this package and must not pay for
torch.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "precaption": "stage",
    "show": "stage",
    "PrecaptionConfig": "stage",
    "PrecaptionReport": "stage",
    "ClipDrafts": "stage",
    "ModelSpec": "encoder",
    "ModelIdentity": "encoder",
    "load_encoder": "encoder",
    "CaptionBank": "bank",
    "load_bank": "bank",
    "load_banks": "bank",
    "builtin_bank": "bank",
    "load_class_list": "tags",
    "top_k": "retrieval",
    "distinct_top_k": "retrieval",
    "load_restricted": "unpickle",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
