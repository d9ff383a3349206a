"""Ingest of a real drone clip from ../shared/realdata (skipped when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest

KARMA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "videos" / "gopro_gpmf-parser" / "karma.mp4"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not KARMA.exists(), reason=f"real drone clip not present at {KARMA}"),
]


def test_ingest_real_gopro_karma_flight(tmp_path):
    report = ingest([KARMA], tmp_path / "ds", IngestConfig(), workers=1)
    assert report.ok, report.errors
    ds = Dataset(tmp_path / "ds")
    (flight,) = ds.read_table("flights").to_pylist()
    # Properties from the realdata README: 854x480 H.264, 29.97 fps, 362 frames, 12.08 s, AAC audio, no hard cut.
    assert (flight["width"], flight["height"]) == (854, 480)
    assert flight["codec"] == "h264"
    assert flight["n_frames"] == 362
    assert flight["fps"] == pytest.approx(29.97, abs=0.01)
    assert flight["duration_s"] == pytest.approx(12.08, abs=0.02)
    assert flight["has_audio"] is True
    assert flight["fps_variable"] is False
    assert flight["n_shots"] == 1  # an uncut oblique flight along a bluff: no false cut
    clips = sorted(ds.read_table("clips").to_pylist(), key=lambda c: c["start_frame"])
    # 5 s at 29.97 fps = 150 frames: 0-150, 150-300, and a 62-frame tail (2.07 s) under half the 5 s target: it
    # merges into the previous window, 150-362 = 7.07 s within --max 10 (issue 12: not 5 s + a 2.07 s clip)
    assert [(c["start_frame"], c["end_frame"]) for c in clips] == [(0, 150), (150, 362)]
    for c in clips:
        assert c["motion_kind"] == "moving"
        if c["clip_path"]:
            with av.open(str(ds.root / c["clip_path"])) as cont:
                n = sum(1 for _ in cont.decode(video=0))
            assert n == c["end_frame"] - c["start_frame"]
    assert any(c["clip_path"] for c in clips), "no clip passed QC on a sharp, well-exposed real flight"
