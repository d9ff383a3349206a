"""Import an AMFMN "precomp" layout (RSICD, RSITMD, UCM): ``<split>_caps.txt`` and ``<split>_filename.txt``.

Caption line ``i`` belongs to an image. Two layouts exist, even inside one published set (PE-RSITR's RSITMD has both):
one filename line per caption (test files), or one per image with the captions in runs of ``len(caps) /
len(filenames)`` (train files; AMFMN's loader calls this ``im_div``). Both are read; an image's captions keep their
order of appearance.
"""

from __future__ import annotations

from pathlib import Path

from dvtr_data.errors import InputError
from dvtr_data.importers.clip4clip import read_list
from dvtr_data.importers.common import IMAGE_SUFFIXES, MediaIndex, Published, PublishedItem

SPLITS = ("train", "val", "test")


def read_precomp_split(folder: Path, split: str) -> tuple[list[tuple[str, list[str]]], int] | None:
    """(image file name, captions) in order of first appearance, and captions per filename line; None if absent."""
    caps_path, names_path = folder / f"{split}_caps.txt", folder / f"{split}_filename.txt"
    if not caps_path.is_file() and not names_path.is_file():
        return None
    for p in (caps_path, names_path):
        if not p.is_file():
            raise InputError(
                f"{p}: missing (an AMFMN split needs both {split}_caps.txt and {split}_filename.txt)"
            )
    caps, names = read_list(caps_path), read_list(names_path)
    if not names:
        raise InputError(f"{names_path}: empty")
    if len(caps) % len(names):
        raise InputError(
            f"{caps_path}: {len(caps)} caption lines do not match {len(names)} filename lines "
            "(expected one filename per caption, or the same number of captions for every filename)"
        )
    per = len(caps) // len(names)
    order: list[str] = []
    by_name: dict[str, list[str]] = {}
    for i, text in enumerate(caps):
        name = names[i // per]
        if name not in by_name:
            by_name[name] = []
            order.append(name)
        by_name[name].append(text)
    return [(n, by_name[n]) for n in order], per


def read_amfmn(path: Path, media_dir: Path | None = None) -> Published:
    """Read and check an AMFMN precomp folder, in either filename layout."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(
            f"{folder}: not a folder (an AMFMN precomp folder holds <split>_caps.txt and <split>_filename.txt)"
        )
    items: list[PublishedItem] = []
    layouts: dict[str, int] = {}
    index = MediaIndex(media_dir or folder, IMAGE_SUFFIXES)
    seen: dict[str, str] = {}
    notes: list[str] = []
    for split in SPLITS:
        got = read_precomp_split(folder, split)
        if got is None:
            continue
        images, per = got
        layouts[split] = per
        for pos, (fname, caps) in enumerate(images):
            if fname in seen:
                notes.append(f"image {fname!r} is in both {seen[fname]} and {split}; kept apart by split")
            seen.setdefault(fname, split)
            items.append(
                PublishedItem(
                    source_id=fname,
                    captions=caps,
                    split=split,
                    list_order=pos,
                    media=index.find([fname], split),
                    clean_hint=Path(fname).stem,
                )
            )
    if not layouts:
        raise InputError(f"{folder}: no <split>_caps.txt / <split>_filename.txt pairs (train, val, test)")
    meta = {"path": str(folder), "captions_per_filename_line": layouts}
    return Published("amfmn", items, "image", meta, notes[:5])
