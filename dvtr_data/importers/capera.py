"""Import CapERA: ``CapERA_DATASET_{train,test}.json``, five English captions per ERA video.

The two files reuse the same video ids (``Baseball_001.mp4`` is one video in ERA's train folder and another in its
test folder), so a video is keyed by (split, id): the split comes from the file name, and a clean clip id carries
it (``capera-train-Baseball_001``). The same id twice in one file, or in two files of the same split, cannot be told
apart and is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dvtr_data.errors import InputError
from dvtr_data.importers.common import VIDEO_SUFFIXES, MediaIndex, Published, PublishedItem

_SPLIT_RE = re.compile(r"(?:^|[_\-. ])(train|val|valid|validation|dev|test)(?:[_\-. ]|$)", re.IGNORECASE)
_SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
}


def split_of_file(path: Path) -> str | None:
    m = _SPLIT_RE.search(path.stem)
    return _SPLIT_NAMES[m.group(1).lower()] if m else None


def read_capera_file(path: Path) -> list[tuple[str, list[str]]]:
    """(video id, captions) in file order, after checking the CapERA structure."""
    try:
        data: Any = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({' '.join(str(exc).split())[:160]})") from exc
    entries = data.get("ERA_caption") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError(f'{path}: expected {{"ERA_caption": [...]}} (a CapERA file)')
    out: list[tuple[str, list[str]]] = []
    seen: dict[str, int] = {}
    for k, e in enumerate(entries):
        vid = e.get("video_id") if isinstance(e, dict) else None
        ann = e.get("annotation") if isinstance(e, dict) else None
        caps = ann.get("English_caption") if isinstance(ann, dict) else None
        if (
            not isinstance(vid, str)
            or not isinstance(caps, list)
            or not all(isinstance(c, str) for c in caps)
        ):
            raise InputError(
                f"{path}: entry {k} lacks a video_id string and annotation.English_caption strings"
            )
        if vid in seen:
            raise InputError(
                f"{path}: video id {vid!r} appears twice (entries {seen[vid]} and {k})",
                hint="ids must be unique within a file",
            )
        seen[vid] = k
        out.append((vid, caps))
    return out


def read_capera(path: Path, media_dir: Path | None = None) -> Published:
    """Read and check one CapERA JSON file or a folder of them; refuse ids that cannot be told apart."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if not files:
        raise InputError(
            f"{path}: no CapERA JSON files (CapERA_DATASET_train.json, CapERA_DATASET_test.json)"
        )
    folder = path.parent if path.is_file() else path
    notes: list[str] = []
    by_split: dict[str | None, tuple[Path, dict[str, int]]] = {}
    per_file: list[tuple[Path, str | None, list[tuple[str, list[str]]]]] = []
    for f in files:
        split = split_of_file(f)
        entries = read_capera_file(f)
        if split in by_split:
            other, ids = by_split[split]
            repeated = [v for v, _ in entries if v in ids]
            if repeated:
                raise InputError(
                    f"{f} and {other} both hold video id {repeated[0]!r} ({len(repeated)} repeated), and their names do "
                    f"not tell their splits apart ({split or 'no split in the name'})",
                    hint="name the files ..._train.json / ..._test.json, or import them one at a time with different --name",
                )
            ids.update({v: 0 for v, _ in entries})
        else:
            by_split[split] = (f, {v: 0 for v, _ in entries})
        per_file.append((f, split, entries))
    splits_seen = [s for s in by_split if s]
    if len(splits_seen) > 1:
        sets = [set(by_split[s][1]) for s in splits_seen]
        shared = set.intersection(*sets) if len(sets) > 1 else set()
        if shared:
            notes.append(
                f"{len(shared)} video id(s) occur in several files; kept apart by split ({', '.join(splits_seen)})"
            )
    index = MediaIndex(media_dir or folder, VIDEO_SUFFIXES)
    items: list[PublishedItem] = []
    for _f, split, entries in per_file:
        for pos, (vid, caps) in enumerate(entries):
            stem = Path(vid).stem if Path(vid).suffix.lower() in VIDEO_SUFFIXES else vid
            names = [vid] + [stem + s for s in VIDEO_SUFFIXES]
            items.append(
                PublishedItem(
                    source_id=vid,
                    captions=list(caps),
                    split=split,
                    list_order=pos if split else None,
                    media=index.find(names, split),
                    clean_hint=f"{split}-{stem}" if split else stem,
                )
            )
    meta = {"path": str(folder), "files": [f.name for f in files]}
    return Published("capera", items, "video", meta, notes)
