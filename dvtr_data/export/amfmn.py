"""AMFMN "precomp" layout (remote-sensing image-text retrieval): keyframes and five caption lines per image.

``<split>_caps.txt`` holds one caption per line; ``<split>_filename.txt`` holds the image file name on the matching
line (five identical lines per image: the layout of the published test files, which AMFMN reads with ``im_div =
1``); ``images/<name>`` holds the keyframes. A caption's line breaks and tabs become spaces: one stray newline in an
untrusted caption would shift every later line onto the wrong image. Clips with fewer captions than
``captions_per_image`` are left out and counted; extra captions are dropped (first ones kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dvtr_data.export.view import ExportView
from dvtr_data.importers.common import place_media

CAPTIONS_PER_IMAGE = 5


def one_line(text: str) -> str:
    return " ".join(text.split())


def write_amfmn(
    view: ExportView, stage: Path, *, media: str, captions_per_image: int = CAPTIONS_PER_IMAGE
) -> dict[str, Any]:
    skipped = {"no_keyframe": 0, "too_few_captions": 0, "extra_captions_dropped": 0}
    counts: dict[str, dict[str, int]] = {}
    images = stage / "images"
    if media != "none":
        images.mkdir()
    for split in view.splits:
        caps_lines: list[str] = []
        name_lines: list[str] = []
        n_images = 0
        for c in view.by_split[split]:
            kfs = c.clip["keyframe_paths"] or []
            src = view.dataset.root / kfs[0] if kfs else None
            if src is None or not src.is_file():
                skipped["no_keyframe"] += 1
                continue
            if c.n_captions < captions_per_image:
                skipped["too_few_captions"] += 1
                continue
            skipped["extra_captions_dropped"] += c.n_captions - captions_per_image
            if c.source is not None and Path(c.export_id).suffix:
                name = c.export_id
            else:
                name = f"{c.export_id}{src.suffix.lower() or '.jpg'}"
            if media != "none":
                place_media(src, images / name, media)
            for text in c.texts[:captions_per_image]:
                caps_lines.append(one_line(text))
                name_lines.append(name)
            n_images += 1
        (stage / f"{split}_caps.txt").write_text("".join(f"{t}\n" for t in caps_lines), encoding="utf-8")
        (stage / f"{split}_filename.txt").write_text("".join(f"{n}\n" for n in name_lines), encoding="utf-8")
        counts[split] = {"images": n_images, "captions": len(caps_lines)}
    return {
        "skipped": skipped,
        "counts": counts,
        "written": sum(c["images"] for c in counts.values()),
        "empty_reason": f"no clip has a keyframe and {captions_per_image} accepted captions",
    }
