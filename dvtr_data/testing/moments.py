"""Moment test helpers: a hand-made dataset of two generated-looking flights (tables, placeholder videos, truth
JSON): a 200 s flight (two 100 s segments) and a 61 s flight of odd duration, at 10 fps, no video decoded; and
an inline tiny open_clip config (random weights) for feature tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from dvtr_data.dataset import Dataset
from dvtr_data.schemas import schema_of
from dvtr_data.synth.simulated import TRUTH_FORMAT

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TINY_CLIP = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
FPS = 10.0
# (flight id, duration s, maneuver segments as (start s, end s, caption, objects), visible runs (start s, end s, classes))
FLIGHTS = {
    "f00000000000000a1": (200.0, [
        (0.0, 6.0, "the drone flies straight over a road", {"car": 2}),
        (6.0, 26.0, "the camera orbits a white farmhouse", {"building": 1}),
        (26.0, 62.0, "the drone flies along a river bank", {"boat": 1}),
        (100.0, 140.0, "a long pass over a sports field", {"person": 3}),
        (140.0, 150.0, "the drone hovers above a parking lot", {"car": 5}),
    ], [(6.0, 16.0, ["building"]), (30.0, 40.0, ["boat"]), (100.0, 120.0, ["person"])]),
    "f00000000000000b2": (61.0, [
        (0.0, 12.0, "the drone climbs above a forest", {}),
        (12.0, 61.0, "the drone descends toward a lake", {"boat": 2}),
    ], [(50.0, 61.0, ["boat"])]),
}


def make_moments_dataset(root: Path) -> Dataset:
    ds = Dataset(root).create(name="moments")
    flights, clips = [], []
    for fid, (duration, segs, visible) in FLIGHTS.items():
        src = root / "src" / f"{fid}.mp4"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(b"\0" * 16)
        truth = {
            "format": TRUTH_FORMAT, "fps": FPS, "n_frames": int(duration * FPS),
            "segments": [{"index": i, "start_frame": int(a * FPS), "end_frame": int(b * FPS), "captions": [c],
                          "objects": o} for i, (a, b, c, o) in enumerate(segs)],
            "visible": [{"start_frame": int(a * FPS), "end_frame": int(b * FPS), "classes": c} for a, b, c in visible],
        }
        (root / "src" / f"{fid}.truth.json").write_text(json.dumps(truth))
        row = dict.fromkeys(schema_of("flights").schema.names)
        row.update(flight_id=fid, status="ok", source_path=str(src), file_name=f"{fid}.mp4", size_bytes=16,
                   settings_hash="x", ingested_at=T0, fps=FPS, duration_s=duration, warnings=[])
        flights.append(row)
        clip = dict.fromkeys(schema_of("clips").schema.names)
        cid = f"{fid}-0000000-0000050"
        clip.update(writer="ingest", clip_id=cid, flight_id=fid, status="ok", shot_index=0, window_index=0,
                    start_frame=0, end_frame=50, start_s=0.0, end_s=5.0, duration_s=5.0, fps=FPS, n_frames=50,
                    clip_path=None, keyframe_paths=[], qc_reasons=[], qc_verdict="pass")
        clips.append(clip)
    ds.write_table("flights", flights)
    ds.write_table("clips", clips)
    return ds


def add_captions_and_splits(ds: Dataset, splits: dict[str, str]) -> None:
    """One caption per clip (the export view needs captions) and a split per flight's clip."""
    caps, rows = [], []
    for clip in ds.read_table("clips").to_pylist():
        cap = dict.fromkeys(schema_of("captions").schema.names)
        cap.update(caption_id=f"c-{clip['clip_id']}", clip_id=clip["clip_id"], text="a drone video", tokens=["a"],
                   origin="human", status="submitted", accepted=True, writer="annotate", flags=[], qc_choices=[])
        caps.append(cap)
        rows.append({"clip_id": clip["clip_id"], "split": splits[clip["flight_id"]], "group_id": clip["flight_id"],
                     "group_kind": "flight", "writer": "split"})
    ds.write_table("captions", caps)
    ds.write_table("splits", rows)


def write_grey_video(path: str | Path, *, seconds: float, fps: int = 10) -> None:
    """A real, tiny (32x32) video of ``seconds`` whose grey level changes every second: decodable by the feature
    export, unlike the placeholder bytes `make_moments_dataset` writes."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((32, 32, 3), (i // fps) % 200, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
