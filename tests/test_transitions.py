"""Fades and dissolves are boundaries: found with their extent on the decode pass, excluded from every clip.

Hand-built frame sequences give exact expectations (a blend of two textures over frames 30-41 is a dissolve
of exactly those frames); generated flights give the truth of real renders (motion, vignetting, sensor noise,
H.264); the real karma.mp4 (one uncut shot) must give none.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from dvtr_data.ingest.shots import Shot, shots_from_boundaries
from dvtr_data.ingest.transitions import Transition, TransitionFinder, TransitionRule
from dvtr_data.synth.flights import render_flight
from dvtr_data.testing.flights import EDIT

KARMA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "videos" / "gopro_gpmf-parser" / "karma.mp4"
H, W = 144, 256
KIND = {"cross": "dissolve", "black": "fade_black", "white": "fade_white"}


def texture(seed: int, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """Aerial-like grey texture: smoothed noise at two scales, 0-255."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.uniform(0, 1, (size[0] // 16, size[1] // 16)), size[::-1], interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.uniform(0, 1, size), (0, 0), 1.5)
    img = 0.6 * coarse + 0.4 * fine
    img = (img - img.min()) / (img.max() - img.min())
    return 40 + 170 * img


def run(frames: list[np.ndarray], fps: float = 25.0, rule: TransitionRule | None = None) -> list[Transition]:
    finder = TransitionFinder(Fraction(fps).limit_denominator(1001), rule)
    rng = np.random.default_rng(7)
    for i, f in enumerate(frames):
        noisy = np.clip(f + rng.normal(0, 1.5, f.shape), 0, 255).astype(np.uint8)  # sensor noise
        finder.feed(i, noisy)
    return finder.finish()


def test_a_dissolve_of_two_textures_is_found_with_its_exact_frames():
    a, b = texture(1), texture(2)
    weights = [(k + 0.5) / 12 for k in range(12)]  # frames 30..41 are blends, 42 is all B
    frames = [a] * 30 + [(1 - w) * a + w * b for w in weights] + [b] * 30
    found = run(frames)
    assert len(found) == 1 and found[0].kind == "dissolve"
    assert abs(found[0].start_frame - 30) <= 1 and abs(found[0].end_frame - 42) <= 1, found


@pytest.mark.parametrize("colour, kind", [(0.0, "fade_black"), (255.0, "fade_white")])
def test_a_fade_through_black_or_white_covers_both_ramps(colour, kind):
    a, b = texture(3), texture(4)
    out = [(1 - (k + 0.5) / 8) for k in range(8)]  # frames 40..47 fade out, 48..55 fade in
    frames = [a] * 40 + [w * a + (1 - w) * colour for w in out] + [w * b + (1 - w) * colour for w in out[::-1]]
    frames += [b] * 40
    found = run(frames)
    assert [t.kind for t in found] == [kind]
    assert abs(found[0].start_frame - 40) <= 1 and abs(found[0].end_frame - 56) <= 1, found


def test_camera_motion_exposure_change_and_flat_water_are_not_transitions():
    big = texture(5, (H + 200, W + 600))
    slow = [big[50:50 + H, 2 * i:2 * i + W] for i in range(120)]  # a pan of 2 px per frame
    fast = [big[100:100 + H, 5 * i:5 * i + W] for i in range(100)]  # 5 px per frame: the view changes in 2 s
    gain = [texture(6) * g for g in np.linspace(1.0, 0.55, 40)]  # auto exposure over 1.6 s
    sea = np.full((H, W), 90.0) + 3 * np.sin(np.arange(W) / 9.0)[None, :]  # calm water: almost flat, no ramp
    for frames in (slow, fast, gain, [texture(7)] * 10 + [sea] * 50 + [texture(7)] * 10):
        assert run(frames) == []
    cut = [texture(8)] * 30 + [texture(9)] * 30  # a hard cut is the cut detector's, not a transition
    assert run(cut) == []


def test_disabled_rule_finds_nothing_and_bad_lengths_are_refused():
    a, b = texture(1), texture(2)
    frames = [a] * 20 + [(1 - w) * a + w * b for w in np.linspace(0.05, 0.95, 10)] + [b] * 20
    finder = TransitionFinder(25, TransitionRule(enabled=True))
    assert finder.lengths[0] >= 3 and finder.lengths[-1] == 50
    from dvtr_data.errors import UsageError

    with pytest.raises(UsageError):
        TransitionRule(min_s=2.0, max_s=1.0).check()
    assert run(frames)  # found when enabled (the scan skips the finder entirely when disabled)


def test_shots_leave_out_transition_frames_and_absorb_cuts_inside_them():
    shots = shots_from_boundaries([50, 61, 200], [Transition(60, 75, "dissolve"), Transition(0, 5, "fade_black")], 300)
    # the cut at 61 is the detector seeing the dissolve; frames 0-4 and 60-74 are in no shot
    assert shots == [Shot(0, 5, 50), Shot(1, 50, 60), Shot(2, 75, 200), Shot(3, 200, 300)]
    assert shots_from_boundaries([], [], 10) == [Shot(0, 0, 10)]


# ------------------------------------------------------------------------------------------ rendered flights
@pytest.fixture(scope="module")
def edit(tmp_path_factory) -> Path:
    return render_flight(EDIT, tmp_path_factory.mktemp("edit"))


def truth_of(video: Path) -> dict:
    return json.loads(video.with_name(video.stem + ".truth.json").read_text())


def test_generator_writes_every_transition_kind_in_the_truth(edit):
    truth = truth_of(edit)
    assert [f["kind"] for f in truth["fades"]] == ["cross", "black", "white"]
    assert truth["cuts"] == [240]
    # the white fade's middle frame is near white, the black one's near black (luma of the decoded video)
    import av

    with av.open(str(edit)) as c:
        luma = [f.to_ndarray(format="gray").mean() for f in c.decode(video=0)]
    black, white = truth["fades"][1], truth["fades"][2]
    assert min(luma[black["start"]:black["end"]]) < 20 and max(luma[white["start"]:white["end"]]) > 220


def test_scan_finds_every_transition_within_three_frames_and_nothing_else(edit):
    from dvtr_data.ingest.probe import probe_video
    from dvtr_data.ingest.scan import scan_flight

    truth = truth_of(edit)
    probe = probe_video(edit)
    scan = scan_flight(edit, probe.fps_fraction, probe.n_frames)
    got = [(t.start_frame, t.end_frame, t.kind) for t in scan.transitions]
    want = [(f["start"], f["end"], KIND[f["kind"]]) for f in truth["fades"]]
    assert len(got) == len(want), (got, want)
    for (a, b, kind), (ta, tb, tkind) in zip(got, want, strict=True):
        assert kind == tkind and abs(a - ta) <= 3 and abs(b - tb) <= 3, (got, want)
    assert any(abs(c - 240) <= 2 for c in scan.cuts)
    shots = shots_from_boundaries(scan.cuts, scan.transitions, scan.n_frames)
    assert len(shots) == 5  # one per place: no transition became an extra shot, none was missed


def test_no_false_transition_on_an_uncut_flight_through_every_maneuver(tmp_path):
    from dvtr_data.ingest.probe import probe_video
    from dvtr_data.ingest.scan import scan_flight
    from dvtr_data.synth.presets import tiny

    spec = next(s for s in tiny(0) if s.name == "tiny_long")  # straight, yaw, hover, descent, orbit
    video = render_flight(spec, tmp_path)
    probe = probe_video(video)
    assert scan_flight(video, probe.fps_fraction, probe.n_frames).transitions == []


@pytest.mark.skipif(not KARMA.exists(), reason="real sample data absent (../shared/realdata)")
def test_real_karma_flight_has_no_transition():
    from dvtr_data.ingest.probe import probe_video
    from dvtr_data.ingest.scan import scan_flight

    probe = probe_video(KARMA)
    assert scan_flight(KARMA, probe.fps_fraction, probe.n_frames).transitions == []
