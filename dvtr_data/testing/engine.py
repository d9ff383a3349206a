"""A tiny hand-made dataset for the baseline engine's tests (PyAV clips + clips/captions/splits tables).

The ``test_engine_*`` and ``test_mcsan_*`` modules build it with :func:`build_toy_dataset` and train a random-init
CLIP of :data:`TINY_CLIP` on it (:data:`TINY_OVERRIDES`). Every clip is a few seconds of a coloured shape moving
over a coloured ground at 10 fps, so clips differ in pixels, and every caption text is unique, so a model can
reach R@1 = 100 % on the training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np

from dvtr_data.dataset import Dataset
from dvtr_data.schemas import schema_of

COLOURS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
    "white": (240, 240, 240), "black": (15, 15, 15), "orange": (240, 140, 20), "purple": (130, 40, 170),
}
SHAPES = ("square", "bar", "block", "stripe")
MOTIONS = ("left", "right", "up", "down")

# A small random CLIP (open_clip config): 64 px frames, 2 layers per tower; the tokenizer's full vocabulary.
TINY_CLIP = {
    "embed_dim": 128,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 128, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}
TINY_OVERRIDES = {
    "backbone": {"model": "tiny-test", "pretrained": None, "model_cfg": TINY_CLIP},
    "data": {"decode_workers": 0},
}


def _row(name: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {f.name: None for f in schema_of(name).schema}
    row["writer"] = {"clips": "ingest", "captions": "annotate", "splits": "split"}.get(name)
    row.update(values)
    return row


def write_clip(path: Path, rng: np.random.Generator, *, seconds: float, fps: int = 10, size: tuple[int, int] = (64, 48)) -> tuple[str, str, str, str]:
    """A clip of a shape moving over a ground; returns the words that describe it."""
    names = list(COLOURS)
    ground, colour = rng.choice(names, 2, replace=False)
    shape, motion = SHAPES[rng.integers(len(SHAPES))], MOTIONS[rng.integers(len(MOTIONS))]
    w, h = size
    n = int(round(seconds * fps))
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = rng.integers(0, 30, size=(h, w, 3))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18", "g": "10", "bf": "0"}
        for i in range(n):
            ground_img = np.empty((h, w, 3), np.uint8)
            ground_img[:] = COLOURS[ground]
            img = np.clip(ground_img.astype(int) + noise, 0, 255).astype(np.uint8)
            t = i / max(n - 1, 1)
            sw, sh = (16, 16) if shape in ("square", "block") else (30, 8)
            x = {"left": (1 - t) * (w - sw), "right": t * (w - sw)}.get(motion, (w - sw) / 2)
            y = {"up": (1 - t) * (h - sh), "down": t * (h - sh)}.get(motion, (h - sh) / 2)
            img[int(y) : int(y) + sh, int(x) : int(x) + sw] = COLOURS[colour]
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(ground), str(colour), shape, motion


def build_toy_dataset(root: Path, *, n_clips: int = 12, captions_per_clip: int = 3, seed: int = 0,
                      splits: tuple[tuple[str, int], ...] = (("train", 8), ("val", 2), ("test", 2))) -> Dataset:
    """``root`` as a dataset folder: ``n_clips`` clips (2-5 s, 10 fps), unique captions, a per-flight split."""
    rng = np.random.default_rng(seed)
    ds = Dataset(root).create(name="toy")
    clips, captions, split_rows = [], [], []
    split_of = [name for name, count in splits for _ in range(count)]
    if len(split_of) < n_clips:
        split_of += [splits[-1][0]] * (n_clips - len(split_of))
    for k in range(n_clips):
        flight = f"f{k // 2:016x}"
        seconds = float(rng.choice([2.0, 3.0, 4.0, 5.0]))
        n_frames = int(seconds * 10)
        clip_id = f"{flight}-{(k % 2) * 100}-{(k % 2) * 100 + n_frames}"
        rel = f"clips/{flight}/{clip_id}.mp4"
        ground, colour, shape, motion = write_clip(root / rel, rng, seconds=seconds)
        start = (k % 2) * 10.0
        clips.append(_row(
            "clips", clip_id=clip_id, flight_id=flight, status="ok", shot_index=0, window_index=k % 2,
            start_frame=(k % 2) * 100, end_frame=(k % 2) * 100 + n_frames, start_s=start, end_s=start + seconds,
            duration_s=seconds, fps=10.0, width=64, height=48, n_frames=n_frames, clip_path=rel, keyframe_paths=[],
            qc_verdict="pass", qc_reasons=[],
        ))
        texts = [
            f"a {colour} {shape} moves {motion} over {ground} ground in scene {k}",
            f"scene {k}: {ground} terrain with one {colour} {shape} heading {motion}",
            f"drone view number {k} of a {shape} coloured {colour} going {motion} on {ground}",
            f"clip {k} shows {colour} things above a {ground} area",
            f"the {ground} land of shot {k} and a {colour} {shape}",
        ][:captions_per_clip]
        for j, text in enumerate(texts):
            captions.append(_row(
                "captions", caption_id=f"toy-{k:03d}-{j}", clip_id=clip_id, text=text, tokens=text.split(),
                origin="simulated", status="submitted", qc_choices=[], flags=[], accepted=True,
            ))
        split_rows.append({"clip_id": clip_id, "split": split_of[k], "group_id": flight, "group_kind": "flight",
                           "writer": "split"})
    ds.write_table("clips", clips)
    ds.write_table("captions", captions)
    ds.write_table("splits", split_rows)
    return ds
