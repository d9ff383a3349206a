"""Captions for generated flights, from the simulator's ground truth.

Every synthetic flight has a ``<name>.truth.json`` beside it with five template captions per segment. A clip takes
the captions of the segment it overlaps most. These rows are marked ``origin="simulated"`` everywhere: they stand
in for human captions in the demo (`annotate simulate` submits them through Label Studio) and in tests of later
stages, never in a real dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dvtr_data.dataset import Dataset
from dvtr_data.schemas.records import CaptionRow
from dvtr_data.text import tokenize

TRUTH_FORMAT = "dvtr-synth-truth/1"
WRITER = "demo"  # the demo writes these locally when the Label Studio round trip cannot run


def truth_path(video: Path) -> Path:
    return video.with_name(video.stem + ".truth.json")


def load_truth(video: Path) -> dict[str, Any] | None:
    path = truth_path(Path(video))
    if not path.is_file():
        return None
    truth = json.loads(path.read_text(encoding="utf-8"))
    return truth if truth.get("format") == TRUTH_FORMAT else None


def segment_for(truth: dict[str, Any], start: int, end: int) -> dict[str, Any] | None:
    """The truth segment that overlaps frames [start, end) the most."""
    best, best_overlap = None, 0
    for seg in truth.get("segments", []):
        overlap = min(end, seg["end_frame"]) - max(start, seg["start_frame"])
        if overlap > best_overlap:
            best, best_overlap = seg, overlap
    return best


def simulated_captions(dataset: Dataset, per_clip: int = 5, only_passed: bool = True) -> list[dict[str, Any]]:
    """Caption rows (schema ``captions``) for every clip of a generated flight in ``dataset``."""
    flights = {f["flight_id"]: f for f in dataset.read_table("flights").to_pylist() if f["status"] == "ok"}
    truths: dict[str, dict[str, Any] | None] = {}
    rows: list[dict[str, Any]] = []
    for clip in dataset.read_table("clips").to_pylist():
        if clip["status"] != "ok" or (only_passed and clip["qc_verdict"] != "pass"):
            continue
        flight = flights.get(clip["flight_id"])
        if flight is None:
            continue
        if flight["flight_id"] not in truths:
            truths[flight["flight_id"]] = load_truth(Path(flight["source_path"]))
        truth = truths[flight["flight_id"]]
        if truth is None:
            continue
        seg = segment_for(truth, clip["start_frame"], clip["end_frame"])
        if seg is None:
            continue
        for k, text in enumerate(seg["captions"][:per_clip]):
            rows.append(
                CaptionRow(
                    writer=WRITER,
                    caption_id=f"sim-{clip['clip_id']}-{k}",
                    clip_id=clip["clip_id"],
                    text=text,
                    tokens=tokenize(text),
                    origin="simulated",
                    status="submitted",
                    annotator=f"simulated-{k}",
                    qc_choices=[],
                    category=seg.get("scene"),
                    flags=[],
                    accepted=True,
                ).as_dict()
            )
    return rows
