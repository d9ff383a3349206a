"""Imports of published caption sets (CLIP4Clip/MSVD pickles, CapERA JSON, AMFMN precomp) into our tables.

Users import USRD, UMCRD or CapERA to compare against them and to deduplicate new footage against them (`split`
links near-duplicates across sources). One reader per format, registered in `READERS`; a reader only reads and
checks, so a refused input leaves the dataset untouched, and `write_import` then writes every table.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dvtr_data.dataset import Dataset
from dvtr_data.errors import InputError, UsageError
from dvtr_data.importers.amfmn import read_amfmn
from dvtr_data.importers.capera import read_capera
from dvtr_data.importers.clip4clip import read_clip4clip
from dvtr_data.importers.common import (
    MEDIA_MODES,
    ImportResult,
    Published,
    PublishedItem,
    check_name,
    clean_ids,
    default_name,
    write_import,
)

READERS: dict[str, Callable[[Path, Path | None], Published]] = {
    "clip4clip": read_clip4clip,
    "capera": read_capera,
    "amfmn": read_amfmn,
}


def import_published(
    fmt: str,
    path: str | Path,
    dataset: Dataset | str | Path,
    *,
    name: str | None = None,
    media: str = "copy",
    media_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import the published set at ``path`` (format ``fmt``) into ``dataset`` under the prefix ``name``.

    ``media`` says how videos or images found beside the captions (or under ``media_dir``) enter the dataset:
    copy, link (hard link, copy across file systems), symlink, or none. The dataset is created when missing.
    """
    if fmt not in READERS:
        raise UsageError(f"unknown import format {fmt!r}; choose from {', '.join(READERS)}")
    if media not in MEDIA_MODES:
        raise UsageError(f"--media must be one of {', '.join(MEDIA_MODES)}; got {media!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if ds.root.exists() and not ds.root.is_dir():
        raise UsageError(f"{ds.root} exists and is not a folder")
    if ds.root.is_dir() and any(ds.root.iterdir()) and not ds.exists():
        raise UsageError(f"{ds.root} exists, is not empty and is not a dvtr-data dataset")
    if ds.exists():
        ds.require()
    source = check_name(name or default_name(path))
    md = Path(media_dir).expanduser() if media_dir else None
    if md is not None and not md.is_dir():
        raise InputError(f"{md}: no such folder (--media-dir)")
    published = READERS[fmt](path, md)
    ds.create()
    with ds.lock("import"):
        return write_import(
            ds,
            source=source,
            fmt=published.format,
            items=published.items,
            media_mode=media,
            media_kind=published.media_kind,
            meta=published.meta,
            notes=published.notes,
            progress=progress,
        )


__all__ = [
    "MEDIA_MODES",
    "READERS",
    "ImportResult",
    "Published",
    "PublishedItem",
    "clean_ids",
    "import_published",
    "read_amfmn",
    "read_capera",
    "read_clip4clip",
]
