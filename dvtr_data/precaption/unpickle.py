"""Moved to `dvtr_data.unpickle` (the importers use it too); kept so existing imports keep working."""

from __future__ import annotations

from dvtr_data.unpickle import (
    MAX_CAPTION_CHARS,
    RefusedPickle,
    RestrictedUnpickler,
    caption_pickle,
    load_restricted,
    loads_restricted,
)

__all__ = ["MAX_CAPTION_CHARS", "RefusedPickle", "RestrictedUnpickler", "caption_pickle", "load_restricted",
           "loads_restricted"]
