"""The CLIP4Clip / MSVD layout the MSAM authors' code reads.

``raw-captions.pkl``: a dict video id -> list of token lists (pickle protocol 4 unless the imported source used
another); ``train_list.txt``, ``val_list.txt``, ``test_list.txt``: one id per line, newline-terminated, read by the
loader with ``strip("\\n")`` only; ``Videos/<id>.mp4``. Ids are written verbatim: a USRD id with a trailing space
names the file ``"Party_042 .mp4"``, exactly what the loader opens.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from dvtr_data.export.view import ExportView
from dvtr_data.media import place_media

LIST_NAMES = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
DEFAULT_PROTOCOL = 4


def write_clip4clip(view: ExportView, stage: Path, *, media: str) -> dict[str, Any]:
    every = view.caption_order()
    # a clip without a caption is skipped everywhere (captions, lists, videos), as the manifest says
    clips = [c for c in every if c.n_captions]
    written = {c.export_id for c in clips}
    captions = {c.export_id: c.tokens for c in clips}
    sources = {c.source for c in clips}
    protocol = DEFAULT_PROTOCOL
    only_source = next(iter(sources)) if len(sources) == 1 else None
    if only_source is not None:
        recorded = view.import_meta.get(only_source, {}).get("pickle_protocol")
        if isinstance(recorded, int) and 2 <= recorded <= pickle.HIGHEST_PROTOCOL:
            protocol = recorded
    (stage / "raw-captions.pkl").write_bytes(pickle.dumps(captions, protocol=protocol))
    for split in view.splits:
        lines = "".join(f"{c.export_id}\n" for c in view.by_split[split] if c.export_id in written)
        (stage / LIST_NAMES[split]).write_bytes(lines.encode("utf-8"))
    skipped = {"videos_missing": 0, "without_captions": len(every) - len(clips)}
    notes = []
    if media != "none":
        folder = stage / "Videos"
        folder.mkdir()
        for c in clips:
            path = c.clip["clip_path"]
            src = view.dataset.root / path if path else None
            if src is None or not src.is_file():
                skipped["videos_missing"] += 1
                continue
            place_media(src, folder / f"{c.export_id}{src.suffix.lower() or '.mp4'}", media)
        if skipped["videos_missing"]:
            notes.append(
                f"{skipped['videos_missing']} clip(s) have no video file in the dataset (captions-only imports)"
            )
    counts = {
        split: {"clips_written": sum(1 for c in view.by_split[split] if c.export_id in written)} for split in view.splits
    }
    return {"skipped": skipped, "notes": notes, "counts": counts, "extra": {"pickle_protocol": protocol}}
