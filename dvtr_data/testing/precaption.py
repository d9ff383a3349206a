"""Helpers for the precaption tests: tiny clip datasets written with PyAV, and a deterministic fake encoder.

No binary test data is committed. Clips are 320x180 H.264, a second or two long, each a flat colour with a little
seeded texture, so the fake encoder below can tell them apart by colour and the right caption is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from dvtr_data.dataset import Dataset
from dvtr_data.precaption.encoder import ModelIdentity
from dvtr_data.precaption.sampling import FrameGeometry
from dvtr_data.schemas import TABLES

SIZE = (320, 180)
FPS = 25
COLOURS = {"red": (200, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 200), "yellow": (210, 200, 30)}


def write_clip(path: Path, colour: tuple[int, int, int], n_frames: int = 30, seed: int = 0,
               size: tuple[int, int] = SIZE) -> Path:
    """A short H.264 clip of one colour with a faint moving texture."""
    rng = np.random.default_rng(seed)
    width, height = size
    noise = rng.integers(-12, 12, (height, width + n_frames, 3))
    base = np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, i:i + width]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def clip_row(clip_id: str, clip_path: str | None, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(TABLES["clips"].schema.names)
    row.update(
        writer="ingest", clip_id=clip_id, flight_id="f0000000000000001", status="ok", shot_index=0, window_index=0,
        start_frame=0, end_frame=30, start_s=0.0, end_s=1.2, duration_s=1.2, fps=float(FPS), width=SIZE[0],
        height=SIZE[1], n_frames=30, clip_path=clip_path, keyframe_paths=[], qc_verdict="pass", qc_reasons=[],
    )
    row.update(over)
    return row


def make_dataset(root: Path, colours: list[str], *, n_frames: int = 30, extra_rows: list[dict] | None = None) -> Dataset:
    """A dataset whose clip ``c<i>-<colour>`` is a clip of that colour."""
    ds = Dataset(root).create()
    rows = []
    for i, name in enumerate(colours):
        cid = f"f0000000000000001-{i:07d}-{name}"
        rel = f"clips/f0000000000000001/{cid}.mp4"
        write_clip(ds.root / rel, COLOURS[name], n_frames=n_frames, seed=i)
        rows.append(clip_row(cid, rel, n_frames=n_frames))
    rows.extend(extra_rows or [])
    ds.write_table("clips", rows)
    return ds


@dataclass
class ColourEncoder:
    """A deterministic stand-in for CLIP: an image is its mean colour, a text is the colour it names.

    Images: unit vector of mean (R, G, B) minus grey, in 4 dimensions (the 4th is 0). Texts: the unit vector of the
    colour word they contain (several words: their mean), or the 4th axis when they name none. So the right caption
    of a red clip is the one that says "red", whatever any model's weights are.
    """

    geometry: FrameGeometry = FrameGeometry((32, 32))
    logit_scale: float = 100.0
    calls: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.identity = ModelIdentity("colour", "fake-v1", "0" * 16, None, "fp32", 4)

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.batch_sizes.append(len(frames))
        rgb = frames.reshape(len(frames), -1, 3).mean(axis=1) - 115.0
        v = np.concatenate([rgb, np.zeros((len(frames), 1))], axis=1).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def encode_texts(self, texts, progress=None) -> np.ndarray:
        out = np.zeros((len(texts), 4), np.float32)
        for i, text in enumerate(texts):
            words = text.lower().replace(".", " ").split()
            hits = [np.array([*COLOURS[w], 0.0]) - np.array([115.0, 115.0, 115.0, 0.0]) for w in words if w in COLOURS]
            out[i] = np.mean(hits, axis=0) if hits else np.array([0, 0, 0, 1.0])
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        if progress:
            progress(len(texts), len(texts))
        return out
