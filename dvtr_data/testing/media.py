"""Stand-in media for generated tables (:mod:`dvtr_data.testing.tables`): exporters need files, not pictures."""

from __future__ import annotations

import numpy as np

from dvtr_data.dataset import Dataset


def make_files(ds: Dataset, every: int = 2) -> set[str]:
    """Write small keyframes and stand-in clip files for every ``every``-th flight; returns their clip ids.

    Only some flights get files, so the exporters' handling of clips without media is exercised by the same
    dataset. A clip file is an MP4 signature followed by the clip id (unique bytes per clip, for hash checks).
    """
    from PIL import Image

    clips = ds.read_table("clips").to_pylist()
    flights = sorted({c["flight_id"] for c in clips})
    chosen = set(flights[::every])
    done: set[str] = set()
    for c in clips:
        if c["flight_id"] in chosen:
            (ds.root / c["clip_path"]).parent.mkdir(parents=True, exist_ok=True)
            (ds.root / c["clip_path"]).write_bytes(b"\x00\x00\x00\x18ftypmp42" + c["clip_id"].encode())
            Image.fromarray(np.full((24, 32, 3), len(done) % 255, np.uint8)).save(
                ds.root / c["keyframe_paths"][0]
            )
            done.add(c["clip_id"])
    return done
