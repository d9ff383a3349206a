"""What every importer shares: clean ids, finding media beside the captions, and merging rows into the tables.

A published video becomes one clip whose flight is itself (flight id = clip id: we know nothing of the flight it was
cut from, so each is its own group when splitting). Its span is the whole video when the file is there (probed
with PyAV) and 0 s when it is not. The published id is kept verbatim in ``captions.source_id`` and in the
``imports`` table, which also keeps every order the published files had, so `export` can write them back exactly.
Re-importing a source replaces its earlier rows; nothing else in the dataset is touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

import dvtr_data.schemas.dataset_tables  # noqa: F401  (registers imports/moments)
from dvtr_data.dataset import Dataset
from dvtr_data.errors import InputError, UsageError
from dvtr_data.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, place_media
from dvtr_data.schemas.records import CaptionRow, ClipRow, SplitRow
from dvtr_data.text import has_control_chars, tokenize

MEDIA_MODES = ("copy", "link", "symlink", "none")
VIDEO_SUFFIXES = tuple(sorted(VIDEO_EXTENSIONS))
IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class PublishedItem:
    """One published video (or image) and its captions, in the published order."""

    source_id: str
    captions: list[str]
    tokens: list[list[str]] | None = None  # verbatim token lists when the source has them (CLIP4Clip pickles)
    split: str | None = None
    list_order: int | None = None
    media: Path | None = None
    clean_hint: str | None = None  # part of the clean id (defaults to the source id)


@dataclass
class Published:
    """A published set as read from disk, before anything is written: its items, in the published order."""

    format: str
    items: list[PublishedItem]
    media_kind: str  # video | image
    meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportResult:
    """What an import wrote: counts, the published splits, media found, and notes worth a line each."""

    source: str
    format: str
    videos: int
    captions: int
    splits: dict[str, int]
    media_found: int
    media_missing: int
    notes: list[str] = field(default_factory=list)


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(
            f"--name {name!r}: use lower-case letters, digits, '-' and '_' (it prefixes the clip ids)"
        )
    return name


def default_name(path: Path) -> str:
    stem = path.stem if path.is_file() else path.name
    return re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-_") or "imported"


def clean_ids(prefix: str, hints: list[str]) -> list[str]:
    """Clean clip ids ``<prefix>-<hint>``: whitespace trimmed, other odd characters as ``_``, clashes numbered.

    USRD has both ``"Party_042 "`` and ``"Party_042 1"``: they become ``usrd-Party_042`` and ``usrd-Party_042_1``.
    """
    out: list[str] = []
    seen: set[str] = set()
    for hint in hints:
        base = _UNSAFE.sub("_", hint.strip()).strip("_.") or "item"
        cid = f"{prefix}-{base}"
        k = 2
        while cid in seen:
            cid = f"{prefix}-{base}-{k}"
            k += 1
        seen.add(cid)
        out.append(cid)
    return out


class MediaIndex:
    """Files under a folder, by name, so that published ids find their videos or images in any sub-folder."""

    def __init__(self, root: Path | None, suffixes: tuple[str, ...]) -> None:
        self.root = root
        self.by_name: dict[str, list[Path]] = {}
        if root is None or not root.is_dir():
            return
        for dirpath, _dirs, files in os.walk(root):
            for f in files:
                if f.lower().endswith(suffixes):
                    self.by_name.setdefault(f, []).append(Path(dirpath) / f)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_name.values())

    def find(self, names: list[str], split: str | None = None) -> Path | None:
        """The file named like one of ``names``; with several, the one under a folder named like ``split``."""
        for name in names:
            hits = self.by_name.get(name, [])
            if len(hits) == 1:
                return hits[0]
            if hits and split and self.root is not None:  # (hits imply a root: nothing is indexed without one)
                inside = [
                    p
                    for p in hits
                    if split.lower() in (part.lower() for part in p.relative_to(self.root).parts[:-1])
                ]
                if len(inside) == 1:
                    return inside[0]
        return None


def _video_facts(path: Path) -> dict[str, Any] | None:
    from dvtr_data.ingest.probe import probe_video

    try:
        p = probe_video(path)
    except InputError:
        return None
    return {
        "n_frames": p.n_frames,
        "fps": p.fps,
        "duration_s": p.duration_s,
        "width": p.width,
        "height": p.height,
    }


def _keyframe(video: Path, out: Path) -> bool:
    """Save the middle frame of ``video`` as a JPEG (the clip's keyframe, used by AMFMN export and hashing)."""
    import av

    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            frames = stream.frames or 0
            target = max(0, frames // 2)
            for k, frame in enumerate(container.decode(stream)):
                if k >= target:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    frame.to_image().convert("RGB").save(out, quality=92)
                    return True
    except (av.FFmpegError, OSError, IndexError, ValueError):
        return False
    return False


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except OSError:
        return None


def write_import(
    ds: Dataset,
    *,
    source: str,
    fmt: str,
    items: list[PublishedItem],
    media_mode: str,
    media_kind: str,
    meta: dict[str, Any],
    notes: list[str],
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Turn published items into clips, captions, imports and splits rows, replacing rows of an earlier import."""
    if media_mode not in MEDIA_MODES:
        raise UsageError(f"--media must be one of {', '.join(MEDIA_MODES)}; got {media_mode!r}")
    if not items:
        raise InputError(f"{source}: the published files hold no videos")
    ds.create()
    ids = clean_ids(source, [it.clean_hint or it.source_id for it in items])
    # this import's own clips are the rows it wrote (a killed earlier run may have written clips but no imports rows)
    old_ids = set(ds.rows_of("clips", f"import:{source}").column("clip_id").to_pylist())
    new_ids = set(ids)
    clash = (_existing_ids(ds) - old_ids) & new_ids
    if clash:
        raise InputError(
            f"clip id {sorted(clash)[0]!r} already exists in {ds.root} and is not from import {source!r}",
            hint="choose another --name",
        )
    now = datetime.now(UTC)
    clip_rows: list[dict[str, Any]] = []
    cap_rows: list[dict[str, Any]] = []
    imp_rows: list[dict[str, Any]] = []
    split_rows: list[dict[str, Any]] = []
    found = missing = 0
    writer = f"import:{source}"
    for order, (cid, it) in enumerate(zip(ids, items, strict=True)):
        row = ClipRow(
            writer=writer,
            clip_id=cid,
            flight_id=cid,
            status="ok",
            shot_index=0,
            window_index=0,
            start_frame=0,
            end_frame=0,
            start_s=0.0,
            end_s=0.0,
            duration_s=0.0,
            split_reason="imported",
            qc_verdict="pass",
            qc_reasons=[],
            keyframe_paths=[],
            category=_category(it.source_id),
            category_source="source-id",
        ).as_dict()
        media_rel = None
        if it.media is not None and media_mode != "none":
            folder = Path("clips") / cid
            if media_kind == "video":
                facts = _video_facts(it.media)
                if facts is not None:
                    rel = folder / f"{cid}{it.media.suffix.lower() or '.mp4'}"
                    place_media(it.media, ds.root / rel, media_mode)
                    kf = folder / f"{cid}_k0.jpg"
                    row.update(
                        end_frame=facts["n_frames"],
                        end_s=facts["duration_s"],
                        duration_s=facts["duration_s"],
                        fps=facts["fps"],
                        width=facts["width"],
                        height=facts["height"],
                        n_frames=facts["n_frames"],
                        clip_path=rel.as_posix(),
                        keyframe_paths=[kf.as_posix()] if _keyframe(ds.root / rel, ds.root / kf) else [],
                    )
                    media_rel = str(it.media)
            else:
                size = _image_size(it.media)
                if size is not None:
                    rel = folder / f"{cid}_k0{it.media.suffix.lower()}"
                    place_media(it.media, ds.root / rel, media_mode)
                    row.update(
                        end_frame=1,
                        n_frames=1,
                        width=size[0],
                        height=size[1],
                        keyframe_paths=[rel.as_posix()],
                    )
                    media_rel = str(it.media)
        if media_rel:
            found += 1
        else:
            missing += 1
        clip_rows.append(row)
        for k, text in enumerate(it.captions):
            tokens = it.tokens[k] if it.tokens is not None else tokenize(text)
            cap = CaptionRow(
                writer=writer,
                caption_id=f"{cid}-c{k:02d}",
                clip_id=cid,
                text=text,
                tokens=tokens,
                origin="imported",
                status="submitted",
                annotator=None,
                source_id=it.source_id,
                qc_choices=[],
                # published bytes are kept as published; control characters are flagged so audits see them
                flags=([] if text.strip() else ["empty"]) + (["control_chars"] if has_control_chars(text) else []),
                category=row["category"],
                accepted=True,
                created_at=now,
            ).as_dict()
            cap_rows.append(cap)
        imp_rows.append(
            {
                "clip_id": cid,
                "source": source,
                "format": fmt,
                "source_id": it.source_id,
                "source_split": it.split,
                "source_order": order,
                "list_order": it.list_order,
                "n_captions": len(it.captions),
                "media_path": media_rel,
                "imported_at": now,
            }
        )
        if it.split:
            split_rows.append(
                SplitRow(clip_id=cid, split=it.split, group_id=cid, group_kind="published", writer=writer).as_dict()
            )
        if progress:
            progress(order + 1, len(items))

    if _existing_ids(ds) - old_ids and ds.has_table("splits"):
        notes.append(
            "the dataset's own clips were split before this import: run `dvtr-data split` again to "
            "deduplicate them against it"
        )
    # this import's rows replace its own earlier rows; no other command's row is touched (schemas/tables.py)
    ds.replace_rows("clips", writer, clip_rows)
    ds.replace_rows("captions", writer, cap_rows)
    ds.replace_rows("splits", writer, split_rows)
    _replace_import_rows(ds, source, imp_rows)
    cfg = ds.config()
    stage = cfg.setdefault("stages", {}).setdefault("import", {})
    stage[source] = {
        **meta,
        "format": fmt,
        "videos": len(items),
        "captions": len(cap_rows),
        "media": media_mode,
        "ran_at": now.isoformat(timespec="seconds"),
    }
    ds.save_config(cfg)
    splits: dict[str, int] = {}
    for it in items:
        splits[it.split or "none"] = splits.get(it.split or "none", 0) + 1
    return ImportResult(
        source=source,
        format=fmt,
        videos=len(items),
        captions=len(cap_rows),
        splits=splits,
        media_found=found,
        media_missing=missing,
        notes=notes,
    )


def _existing_ids(ds: Dataset) -> set[str]:
    t = ds.read_table("clips")
    return set(t.column("clip_id").to_pylist()) if t.num_rows else set()


def _replace_import_rows(ds: Dataset, source: str, rows: list[dict[str, Any]]) -> None:
    """The imports table belongs to `import`: one import's rows are replaced, every other import's rows kept."""
    old = ds.read_table("imports")
    others = old.filter(pc.not_equal(old.column("source"), source)).to_pylist() if old.num_rows else []
    ds.write_table("imports", others + rows)


_CATEGORY_RE = re.compile(r"^([A-Za-z][A-Za-z ]*?)_\d+")


def _category(source_id: str) -> str | None:
    """``Party_042 1`` -> ``Party``, ``road_385`` -> ``road``: published ids carry their class as a prefix."""
    m = _CATEGORY_RE.match(source_id.strip())
    return m.group(1) if m else None
