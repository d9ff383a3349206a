"""Variable-frame-rate sources: windows in seconds, no clip across a recording gap, clip files in real time.

The VFR files are written here with explicit timestamps (PyAV), small (320x180, a few seconds) and the
same for the same seed. Expected spans are worked out by hand from the frame times; durations are probed
with PyAV.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.ingest.cutting import ClipSpec, EncoderSettings, cut_clips
from dvtr_data.ingest.windows import WindowRule, find_gaps, typical_rate

SIZE = (320, 180)
PAN = 2  # pixels per frame: every source frame differs visibly from the next


# ------------------------------------------------------------------------------------------------------------
# generators
# ------------------------------------------------------------------------------------------------------------
def _pan(seed: int, n: int) -> list[np.ndarray]:
    """``n`` RGB frames panning over seeded random rectangles: sharp (QC passes), each frame distinct."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    world = np.empty((h + 8, w + PAN * n + 8, 3), np.uint8)
    world[:] = rng.integers(60, 190, 3)
    for _ in range(world.shape[0] * world.shape[1] // 300):
        x, y = rng.integers(0, world.shape[1]), rng.integers(0, world.shape[0])
        bw, bh = rng.integers(4, 40, 2)
        world[y : y + bh, x : x + bw] = rng.integers(0, 256, 3)
    return [np.ascontiguousarray(world[:h, PAN * i : PAN * i + w]) for i in range(n)]


def write_vfr(path: Path, pts_ms: list[int], seed: int = 0) -> Path:
    """H.264 in MP4 whose frame ``i`` is shown at ``pts_ms[i]`` milliseconds (millisecond time base)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        stream.codec_context.time_base = Fraction(1, 1000)
        for t, rgb in zip(pts_ms, _pan(seed, len(pts_ms)), strict=True):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = t
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def gap_pts() -> list[int]:
    """3 s at 30 fps (0-2967 ms), a 2 s pause, 3 s more (5000-7967 ms): 180 frames."""
    return [round(i * 1000 / 30) for i in range(90)] + [5000 + round(i * 1000 / 30) for i in range(90)]


def jitter_pts(seed: int, n: int) -> list[int]:
    """Frame steps of 17-67 ms at random (a phone under load): about 24 fps on average."""
    rng = np.random.default_rng(seed)
    return np.concatenate([[0], np.cumsum(rng.choice([17, 33, 50, 67], size=n - 1))]).astype(int).tolist()


# ------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------
def probed_duration(path: Path) -> tuple[float, int, float]:
    """(duration from the stream header, decoded frames, frame rate) of a clip file."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        duration = float(s.duration * s.time_base)
        rate = float(s.average_rate)
        n = sum(1 for _ in c.decode(s))
    return duration, n, rate


def gray_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)]


# ------------------------------------------------------------------------------------------------------------
# cutting: frames placed by timestamp
# ------------------------------------------------------------------------------------------------------------
def test_a_span_across_a_hole_plays_in_real_time_and_freezes_over_the_hole(tmp_path: Path) -> None:
    src = write_vfr(tmp_path / "gap.mp4", gap_pts())
    times = np.asarray(gap_pts()) / 1000
    # frames 60-120 span 2.0 s -> 6.0 s (frame 120 is at 6000 ms): 4 s, which is 120 frames at 30 fps;
    # counting its 60 source frames at 30 fps would make a 2 s file playing the 4 s at double speed
    spec = ClipSpec("c", 60, 120, tmp_path / "c.mp4", (), float(times[60]), float(times[120]))
    written, error = cut_clips(src, [spec], Fraction(30), SIZE, 0, EncoderSettings(max_height=0), times=times)
    assert error is None and written == {"c": 120}
    duration, n, rate = probed_duration(spec.path)
    assert (n, rate) == (120, 30.0)
    assert duration == pytest.approx(4.0, abs=1 / 30)
    # output frame k shows the last source frame at or before 2.0 + (k + 0.5) / 30 s: frame 89 (2.967 s) from
    # k = 29 (2.983 s) to k = 89 (4.983 s); frame 90 (5.0 s) at k = 90. The picture freezes over the hole.
    frames = gray_frames(spec.path)
    step = [float(np.abs(frames[k + 1] - frames[k]).mean()) for k in range(len(frames) - 1)]
    moving = np.median(step[:28])
    assert moving > 5  # the pan moves 2 px a frame over sharp texture
    assert max(step[29:89]) < moving / 10, "frames over the hole are repeats of source frame 89"
    assert step[28] > moving / 2 and step[89] > moving / 2


def test_a_constant_rate_span_keeps_its_source_frames_one_to_one(tmp_path: Path) -> None:
    src = write_vfr(tmp_path / "cfr.mp4", [round(i * 1000 / 30) for i in range(60)])
    times = np.asarray([round(i * 1000 / 30) for i in range(60)]) / 1000
    spec = ClipSpec("c", 10, 40, tmp_path / "c.mp4", ())  # no span given: the frames' own times
    written, _ = cut_clips(src, [spec], Fraction(30), SIZE, 0, EncoderSettings(max_height=0), times=times)
    assert written == {"c": 30}
    frames = gray_frames(spec.path)
    with av.open(str(src)) as c:
        source = [f.to_ndarray(format="gray").astype(np.float32) for f in c.decode(video=0)][10:40]
    # each output frame is its own source frame (lossy re-encode: near it, nearer than to the next one)
    for k in range(30):
        own = np.abs(frames[k] - source[k]).mean()
        assert own < 3
        if k + 1 < 30:
            assert own < np.abs(frames[k] - source[k + 1]).mean() / 2


def test_the_clip_rate_of_a_vfr_recording_ignores_its_gaps() -> None:
    times = np.asarray(gap_pts()) / 1000
    assert find_gaps(times) == [90]
    # the container's average counts the pause: 180 frames in 8 s read as 22.5 fps; outside the gap it is 30
    assert typical_rate(times, [90], Fraction(45, 2)) == 30
    assert typical_rate(times, [], Fraction(45, 2)) != 30


# ------------------------------------------------------------------------------------------------------------
# ingest end to end
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[Dataset, dict[str, dict], dict[str, list[dict]]]:
    root = tmp_path_factory.mktemp("vfr")
    write_vfr(root / "flights" / "gap.mp4", gap_pts(), seed=1)
    write_vfr(root / "flights" / "jitter.mp4", jitter_pts(8, 150), seed=2)
    report = ingest(
        [root / "flights"], root / "ds", IngestConfig(window=WindowRule(1.6, 1.0, 4.0)), workers=0
    )
    assert report.ok, report.errors
    ds = Dataset(root / "ds")
    flights = {r["file_name"]: r for r in ds.read_table("flights").to_pylist()}
    clips: dict[str, list[dict]] = {}
    for c in ds.read_table("clips").to_pylist():
        name = next(k for k, f in flights.items() if f["flight_id"] == c["flight_id"])
        clips.setdefault(name, []).append(c)
    for rows in clips.values():
        rows.sort(key=lambda c: c["start_frame"])
    return ds, flights, clips


def test_ingest_windows_of_a_gapped_recording_are_worked_out_from_its_times(ingested) -> None:
    _, flights, clips = ingested
    rows = clips["gap.mp4"]
    # 30 fps outside the gap; window rule 1.6 / 1.0 / 4.0 s. Before the gap: 0-48 (1.6 s), then a 1.4 s tail
    # (not under 0.8 s, at least 1.0 s): its own clip, ending one frame after 2.967 s. After: the same
    # from 5.0 s.
    assert [(c["start_frame"], c["end_frame"]) for c in rows] == [(0, 48), (48, 90), (90, 138), (138, 180)]
    assert [c["split_reason"] for c in rows] == ["window", "gap", "window", "end"]
    expected = [(0.0, 1.6), (1.6, 2.967 + 1 / 30), (5.0, 6.6), (6.6, 7.967 + 1 / 30)]
    assert [(c["start_s"], c["end_s"]) for c in rows] == [
        (pytest.approx(a), pytest.approx(b)) for a, b in expected
    ]
    assert any("recording gap" in w for w in flights["gap.mp4"]["warnings"])
    assert flights["gap.mp4"]["duration_s"] == pytest.approx(7.967 + 1 / 30)


def test_no_clip_spans_the_gap(ingested) -> None:
    _, _, clips = ingested
    for c in clips["gap.mp4"]:
        assert not (c["start_frame"] < 90 < c["end_frame"])
        assert c["end_s"] <= 2.967 + 1 / 30 + 1e-6 or c["start_s"] >= 5.0


@pytest.mark.parametrize("name", ["gap.mp4", "jitter.mp4"])
def test_clip_files_last_as_long_as_their_spans(ingested, name: str) -> None:
    ds, _, clips = ingested
    assert clips[name]
    for c in clips[name]:
        assert c["clip_path"], c
        duration, n, rate = probed_duration(ds.root / c["clip_path"])
        span = c["end_s"] - c["start_s"]
        assert abs(duration - span) <= 1 / rate + 1e-6, (c["clip_id"], duration, span)
        assert abs(n / rate - span) <= 1 / rate + 1e-6
        assert n == c["n_frames"] and rate == pytest.approx(c["fps"])


def test_jittered_windows_hold_in_seconds_not_frames(ingested) -> None:
    _, flights, clips = ingested
    times = np.asarray(jitter_pts(8, 150)) / 1000
    for c in clips["jitter.mp4"]:
        assert c["start_s"] == pytest.approx(times[c["start_frame"]])
        assert 1.0 - 1e-6 <= c["end_s"] - c["start_s"] <= 4.0 + 1e-6
    # the windows are 1.6 s of recording each (the nearest frame boundary: within half of the longest step,
    # 67 ms), not 1.6 s of frames counted at the nominal rate
    full = [c for c in clips["jitter.mp4"] if c["split_reason"] == "window"]
    assert full and all(abs(c["end_s"] - c["start_s"] - 1.6) <= 0.034 for c in full)
    assert flights["jitter.mp4"]["fps_variable"] is True
