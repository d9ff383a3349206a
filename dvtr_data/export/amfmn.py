"""AMFMN "precomp" layout (remote-sensing image-text retrieval): five caption lines per image, a filename
list, and the keyframes.

What AMFMN's released code reads (xiaoyuan1996/AMFMN), and so what is written:

- ``<split>_caps.txt``: one caption per line, an image's five captions on consecutive lines.
- ``<split>_filename.txt``: **one line per image** for ``train`` and ``val`` (``train.py`` asserts
  ``len(caps) // 5 == len(fnames)`` and cuts its own train/val folds from the train files), **one line per
  caption** (the image's name five times) for ``test``, the layout of the published RSITMD and RSICD test
  files; the loader accepts both (``im_div`` is 5 when the two files differ in length, else 1).
- ``images/<name>``: each clip's first keyframe (``clips.keyframe_paths``), unless ``--media none`` (a
  captions-only export: names are still written, the images are brought by the user).

Captions are written exactly as stored (as imported, for imported sets: double spaces, trailing spaces and
empty captions included), so importing a published precomp folder and exporting it gives its files back byte
for byte. The one change is that a line break inside a caption (``\\n``, ``\\r``) becomes a space: it would
shift every later caption onto the wrong image. Clips with fewer than ``captions_per_image`` accepted captions
are left out and counted (AMFMN pairs captions with images by position, five per image); extra captions are
dropped (the first ones kept) and counted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dvtr_data.export.view import ExportClip, ExportView
from dvtr_data.media import place_media

CAPTIONS_PER_IMAGE = 5
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def caption_line(text: str) -> str:
    """``text`` as one line of a caption file: verbatim, except that a line break becomes one space."""
    return _LINE_BREAK.sub(" ", text)


def filename_layout(split: str) -> str:
    """``image`` (one filename line per image) or ``caption`` (one per caption), as AMFMN's files have it."""
    return "caption" if split == "test" else "image"


def image_name(c: ExportClip, keyframe: Path | None) -> str:
    """The file name written for a clip: a published image name verbatim, else ``<export id><suffix>``."""
    if c.source is not None and Path(c.export_id).suffix:
        return c.export_id
    suffix = keyframe.suffix.lower() if keyframe is not None and keyframe.suffix else ".jpg"
    return f"{c.export_id}{suffix}"


def write_amfmn(
    view: ExportView, stage: Path, *, media: str, captions_per_image: int = CAPTIONS_PER_IMAGE
) -> dict[str, Any]:
    skipped = {"no_keyframe": 0, "too_few_captions": 0, "extra_captions_dropped": 0}
    counts: dict[str, dict[str, int]] = {}
    layouts: dict[str, str] = {}
    images = stage / "images"
    if media != "none":
        images.mkdir()
    for split in view.splits:
        layout = layouts[split] = filename_layout(split)
        caps_lines: list[str] = []
        name_lines: list[str] = []
        n_images = 0
        for c in view.by_split[split]:
            kfs = c.clip["keyframe_paths"] or []
            src = view.dataset.root / kfs[0] if kfs else None
            if media != "none" and (src is None or not src.is_file()):
                skipped["no_keyframe"] += 1
                continue
            if c.n_captions < captions_per_image:
                skipped["too_few_captions"] += 1
                continue
            skipped["extra_captions_dropped"] += c.n_captions - captions_per_image
            name = image_name(c, src)
            if media != "none" and src is not None:
                place_media(src, images / name, media)
            caps_lines.extend(caption_line(text) for text in c.texts[:captions_per_image])
            name_lines.extend([name] * (captions_per_image if layout == "caption" else 1))
            n_images += 1
        (stage / f"{split}_caps.txt").write_text("".join(f"{t}\n" for t in caps_lines), encoding="utf-8")
        (stage / f"{split}_filename.txt").write_text("".join(f"{n}\n" for n in name_lines), encoding="utf-8")
        counts[split] = {"images": n_images, "captions": len(caps_lines)}
    need = "a keyframe and " if media != "none" else ""
    return {
        "skipped": skipped,
        "counts": counts,
        "written": sum(c["images"] for c in counts.values()),
        "empty_reason": f"no clip has {need}{captions_per_image} accepted captions",
        "extra": {"filename_lines": {s: f"one per {layouts[s]}" for s in view.splits}},
    }
