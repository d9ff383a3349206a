"""Does a sidecar belong to its video? The bad-sidecar matrix: wrong flight, truncated, offset, renumbered.

Sidecars are written as real DJI SRT files (per-frame DJI Fly, or 1 Hz one-line text built here) and read
back with `parse_srt`; durations and counts in the assertions are worked out from how they were built.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dvtr_data.telemetry import (
    TelemetryCue,
    TelemetryLimits,
    format_duration,
    match_sidecar,
    parse_srt,
    write_dji_fly_srt,
)

REAL_SRT = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "srt"


def per_frame(tmp_path: Path, n: int, fps: float = 30.0, start_s: float = 0.0, first_frame: int = 1, name="a"):
    cues = [
        TelemetryCue(
            start_s=start_s + k / fps, end_s=start_s + (k + 1) / fps, frame=first_frame + k, lat=45.0, lon=7.0,
            rel_alt=50.0,
        )
        for k in range(n)
    ]
    path = tmp_path / f"{name}.SRT"
    write_dji_fly_srt(cues, fps, path)
    return parse_srt(path, fps=fps)


def one_hz(tmp_path: Path, n: int, first_s: int = 0):
    """A Mavic Mini style 1 Hz sidecar: cue k covers [first_s + k, first_s + k + 1) s."""
    blocks = []
    for k in range(n):
        t = first_s + k
        blocks.append(
            f"{k + 1}\n00:{t // 60:02d}:{t % 60:02d},000 --> 00:{(t + 1) // 60:02d}:{(t + 1) % 60:02d},000\n"
            f"F/2.8, SS 320, ISO 100, EV 0, GPS (7.0, 45.0, 12), D 10.00m, H 50.00m\n"
        )
    path = tmp_path / "mini.SRT"
    path.write_text("\n".join(blocks), encoding="utf-8")
    return parse_srt(path)


def test_format_duration():
    assert format_duration(7.0) == "7.0 s"
    assert format_duration(381.0) == "6 min 21 s"
    assert format_duration(3720.0) == "1 h 02 min"


def test_matching_per_frame_sidecar(tmp_path):
    m = match_sidecar(per_frame(tmp_path, 210), 7.0, n_frames=210, fps=30.0, name="DJI_0001.SRT")
    assert m.verdict == "match" and m.ok and m.problems == ()
    assert m.sidecar_duration_s == pytest.approx(7.0)
    assert "matches" in m.message and "DJI_0001.SRT" in m.message


def test_within_tolerance(tmp_path):
    # 2 cues more than frames (DJI often ends a cue or two late): 1 s at 30 fps is 30 frames of tolerance
    assert match_sidecar(per_frame(tmp_path, 212), 7.0, n_frames=210, fps=30.0).ok
    # a 1 Hz file's first cue at 1 s and its last ending a second after the video: within one cue interval
    assert match_sidecar(one_hz(tmp_path, 8, first_s=1), 8.5, n_frames=255, fps=30.0).ok
    # 210 cues at 3 Hz over a 70 s, 30 fps video: not a per-frame file, so the cue count is not compared
    assert match_sidecar(per_frame(tmp_path, 210, fps=3.0), 70.0, n_frames=2100, fps=30.0).ok


def test_the_issue_case_381_cue_srt_with_a_7_s_video(tmp_path):
    tel = one_hz(tmp_path, 381)
    m = match_sidecar(tel, 7.0, n_frames=210, fps=30.0, name="DJI_0042.SRT")
    assert m.verdict == "mismatch" and not m.ok
    assert m.sidecar_duration_s == pytest.approx(381.0)
    # one clear line: what, both durations, and the way out
    assert "\n" not in m.message
    assert "DJI_0042.SRT does not match" in m.message
    assert "6 min 21 s (381 cues)" in m.message and "7.0 s (210 frames)" in m.message
    assert "--trust-sidecar" in m.message


BAD = {
    # name: (builder, video duration s, video frames, words expected in a problem)
    "wrong_flight": (lambda p: per_frame(p, 900), 7.0, 210, "covers 30.0 s"),
    "truncated": (lambda p: per_frame(p, 150), 7.0, 210, "covers 5.0 s"),
    "offset": (lambda p: per_frame(p, 210, start_s=5.0), 7.0, 210, "first cue is 5.0 s into"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_sidecar_matrix(name, tmp_path):
    build, duration, frames, words = BAD[name]
    m = match_sidecar(build(tmp_path), duration, n_frames=frames, fps=30.0)
    assert m.verdict == "mismatch"
    assert any(words in p for p in m.problems), m.problems


def test_frame_numbers_beyond_the_video(tmp_path):
    # 210 per-frame cues over 7 s, but numbered 1, 11, 21, ...: a sidecar of a 10x longer recording
    tel = per_frame(tmp_path, 210)
    for k, c in enumerate(tel.cues):
        c.frame = 1 + 10 * k
    m = match_sidecar(tel, 7.0, n_frames=210, fps=30.0)
    assert m.verdict == "mismatch"
    assert m.problems == ("its frame numbers run from 1 to 2091, the video has 210 frames",)


def test_tolerance_is_settable(tmp_path):
    tel = per_frame(tmp_path, 150)  # 5 s for a 7 s video
    assert not match_sidecar(tel, 7.0, n_frames=210, fps=30.0).ok
    loose = TelemetryLimits(sidecar_tolerance_s=2.5)
    m = match_sidecar(tel, 7.0, n_frames=210, fps=30.0, limits=loose)
    assert m.tolerance_s == 2.5
    # 2 s short is within 2.5 s, and 60 missing cues within 2.5 s x 30 fps = 75 frames
    assert m.ok


def test_empty_sidecar_is_unknown(tmp_path):
    path = tmp_path / "e.SRT"
    path.write_text("", encoding="utf-8")
    m = match_sidecar(parse_srt(path), 7.0)
    assert m.verdict == "unknown" and not m.ok and "no telemetry cues" in m.message


@pytest.mark.realdata
def test_real_mavic3_sidecar():
    if not REAL_SRT.is_dir():
        pytest.skip(f"real SRT samples not present at {REAL_SRT}")
    tel = parse_srt(REAL_SRT / "JuanIrache_DJI_SRT_Parser" / "MAVIC3.srt", fps=50.0)
    # 12,318 cues at 50 fps: a 246.36 s video of 12,318 frames is its own
    assert match_sidecar(tel, 12_318 / 50, n_frames=12_318, fps=50.0).ok
    # and the 12.08 s karma.mp4 (362 frames at 29.97 fps) is not
    m = match_sidecar(tel, 12.08, n_frames=362, fps=30000 / 1001, name="MAVIC3.srt")
    assert m.verdict == "mismatch" and "4 min 6 s (12318 cues)" in m.message
