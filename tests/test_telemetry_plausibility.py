"""Telemetry you can trust: impossible values flagged and left out, summaries that never cross a boundary.

The flights here are written as real DJI Fly SRT files (`write_dji_fly_srt`) with known glitches, read back
with `parse_srt`, and summarised. Expected values come from the generating numbers (a straight flight north
at a known speed), never from the code under test.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from dvtr_data.telemetry import (
    DEFAULT_LIMITS,
    SPAN_CROSSES_BOUNDARY,
    Telemetry,
    TelemetryCue,
    TelemetryLimits,
    check_telemetry,
    parse_srt,
    split_at,
    summarize,
    summarize_clips,
    write_dji_fly_srt,
)

# One degree of latitude on the 6,371,000 m sphere: pi / 180 * 6,371,000 = 111,194.93 m (by hand).
M_PER_DEG = 111_194.92664
FPS = 30.0
N = 300  # 10 s at 30 fps
SPEED = 10.0  # m/s, due north
ALT = 50.0


def north_m(k: int, fps: float = FPS) -> float:
    """Metres flown north at frame k."""
    return SPEED * k / fps


def flight(n: int = N, fps: float = FPS, lat0: float = 45.0, lon0: float = 7.0) -> list[TelemetryCue]:
    """A straight flight north at SPEED m/s and ALT m, one cue per frame, values at the SRT's precision."""
    return [
        TelemetryCue(
            start_s=k / fps,
            end_s=(k + 1) / fps,
            frame=k + 1,
            lat=round(lat0 + north_m(k, fps) / M_PER_DEG, 6),
            lon=lon0,
            rel_alt=ALT,
            abs_alt=ALT + 300.0,
            gimbal_pitch=-30.0,
        )
        for k in range(n)
    ]


def via_srt(cues: list[TelemetryCue], tmp_path: Path, fps: float = FPS, text_edit=None) -> Telemetry:
    path = tmp_path / "DJI_0001.SRT"
    write_dji_fly_srt(cues, fps, path)
    if text_edit is not None:
        path.write_text(text_edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return parse_srt(path, fps=fps)


def mean_lat(cues: list[TelemetryCue], skip: set[int] = frozenset()) -> float:
    vals = [c.lat for k, c in enumerate(cues) if k not in skip]
    return sum(vals) / len(vals)


# ------------------------------------------------------------------------------------------------------------
# Limits


def test_limits_are_frozen_documented_and_settable():
    assert DEFAULT_LIMITS.max_speed_mps == 50.0
    with pytest.raises(AttributeError):
        DEFAULT_LIMITS.max_speed_mps = 1.0  # type: ignore[misc]
    slow = TelemetryLimits(max_speed_mps=5.0)
    assert slow.max_speed_mps == 5.0 and slow.position_noise_m == DEFAULT_LIMITS.position_noise_m
    with pytest.raises(ValueError, match="max_speed_mps"):
        TelemetryLimits(max_speed_mps=0.0)
    with pytest.raises(ValueError, match="min_altitude_m"):
        TelemetryLimits(min_altitude_m=10.0, max_altitude_m=5.0)


def test_clean_flight_has_no_flags_and_the_hand_computed_summary(tmp_path):
    cues = flight()
    tel = via_srt(cues, tmp_path)
    s = summarize(tel, 0.0, N / FPS)
    assert s.flags == () and s.n_left_out == 0 and s.n_cues == N
    # centre: 45 + mean distance / m per degree; mean distance = 10 m/s * mean(k / 30) = 10 * 149.5 / 30 m
    assert s.lat == pytest.approx(45.0 + SPEED * (N - 1) / 2 / FPS / M_PER_DEG, abs=1e-6)
    assert s.lon == pytest.approx(7.0)
    assert (s.altitude_m, s.altitude_kind, s.gimbal_pitch) == (ALT, "relative", -30.0)
    assert s.speed_mps == pytest.approx(SPEED, rel=0.01)  # from fixes: 6-decimal coordinates are 0.11 m steps
    assert check_telemetry(tel).warnings() == []


# ------------------------------------------------------------------------------------------------------------
# The bad-sidecar glitch matrix: each glitch is flagged, left out, and the summary is that of the clean cues


def _zero(cues):
    for k in range(100, 105):
        cues[k].lat = cues[k].lon = None  # the writer writes a missing fix as DJI does: 0.000000
    return set(range(100, 105))


def _jump(cues):
    cues[150].lat = round(cues[150].lat + 100_000.0 / M_PER_DEG, 6)  # 100 km north for one frame
    return {150}


def _burst(cues):
    for k in range(150, 160):  # ten frames (a third of a second) in another town 30 km east
        cues[k].lon = round(cues[k].lon + 0.38, 6)
    return set(range(150, 160))


def _bad_first_fix(cues):
    cues[0].lat, cues[0].lon = -33.9, 151.2  # Sydney, then Italy for 10 s
    return {0}


def _altitude_spike(cues):
    cues[50].rel_alt = 5_000.0
    return {50}


GLITCHES = {
    "zero_position": (_zero, "telemetry:position_zero"),
    "jump_100km": (_jump, "telemetry:position_jump"),
    "burst_of_jumps": (_burst, "telemetry:position_jump"),
    "bad_first_fix": (_bad_first_fix, "telemetry:position_jump"),
    "altitude_spike": (_altitude_spike, "telemetry:altitude_spike"),
}


@pytest.mark.parametrize("name", sorted(GLITCHES))
def test_glitch_is_flagged_and_left_out(name, tmp_path):
    glitch, flag = GLITCHES[name]
    clean = flight()
    cues = flight()
    bad = glitch(cues)
    tel = via_srt(cues, tmp_path)
    s = summarize(tel, 0.0, N / FPS)
    assert s.flags == (flag,)
    assert s.n_left_out == len(bad) and s.n_cues == N
    # centre and altitude of the clean cues that remain; the speed that of the straight flight
    lost_fixes = set() if flag == "telemetry:altitude_spike" else bad  # a spike costs the altitude only
    assert s.lat == pytest.approx(mean_lat(clean, lost_fixes), abs=1e-9)
    assert s.lon == pytest.approx(7.0)
    assert s.altitude_m == pytest.approx(ALT)
    assert s.speed_mps == pytest.approx(SPEED, rel=0.02)
    # a clip far from the glitch is untouched
    far = summarize(tel, 8.0, 9.0)
    assert far.flags == () and far.lat == pytest.approx(mean_lat(clean[240:270]), abs=1e-9)
    # and the flight gets one warning line naming the count
    (line,) = check_telemetry(tel).warnings()
    assert f"{len(bad)} cue(s)" in line


def test_time_running_backwards(tmp_path):
    cues = flight()
    cues[200].start_s, cues[200].end_s = 1.0, 1.0 + 1 / FPS  # frame 201 claims to be at 1 s
    tel = via_srt(cues, tmp_path)
    assert any("timecodes go back" in w for w in tel.warnings)
    check = check_telemetry(tel)
    assert [k for k, r in enumerate(check.reasons) if r] == [200]
    assert check.reasons[200] == {"time_backwards"}
    # the clip around the bogus time 1 s gets the flag but not the value (a position 6.7 s later)
    s = summarize(tel, 0.5, 1.5)
    assert s.flags == ("telemetry:time_backwards",)
    assert s.lat == pytest.approx(mean_lat(flight()[15:45]), abs=1e-9)
    assert summarize(tel, 6.0, 7.0).flags == ()  # the cue is not where its frame number says either


def test_nan_values(tmp_path):
    cues = flight()
    tel = via_srt(
        cues, tmp_path, text_edit=lambda t: t.replace("rel_alt: 50.000", "rel_alt: nan", 1).replace(
            f"[latitude: {cues[20].lat:.6f}]", "[latitude: nan]", 1
        )
    )
    assert math.isnan(tel.cues[0].rel_alt)
    s = summarize(tel, 0.0, 1.0)
    assert s.flags == ("telemetry:value_nan",)
    assert s.n_left_out == 2
    assert s.altitude_m == ALT and s.lat == pytest.approx(mean_lat(flight()[:30], {20}), abs=1e-9)


def test_speed_fields_above_the_limit():
    # Phantom-style 1 Hz cues with H.S / V.S fields: 100,000 m/s must never reach a summary
    cues = [
        TelemetryCue(start_s=k, end_s=k + 1, lat=45.0 + k * 5 / M_PER_DEG, lon=7.0, speed_h=5.0, speed_v=0.0)
        for k in range(10)
    ]
    cues[4].speed_h = 100_000.0
    cues[6].speed_v = -400.0
    cues[7].speed_h = -3.0
    s = summarize(Telemetry(cues=cues), 0.0, 10.0)
    assert s.flags == ("telemetry:speed_implausible",)
    assert s.speed_mps == 5.0  # mean of the eight good H.S fields (cue 6's V.S is the bad one)
    assert s.n_left_out == 3


def test_limits_are_used(tmp_path):
    tel = via_srt(flight(), tmp_path)  # 10 m/s, every step well within the default limits
    s = summarize(tel, 0.0, 10.0, limits=TelemetryLimits(max_speed_mps=2.0))
    # per frame the drone moves 0.33 m, within 2 m/s x 1/30 s + 20 m of noise: no jump, but the 10 m/s that
    # the fixes give over the clip is impossible under a 2 m/s limit, so it is not summarised
    assert s.flags == ("telemetry:speed_implausible",) and s.speed_mps is None
    assert s.lat is not None
    jumpy = summarize(tel, 0.0, 10.0, limits=TelemetryLimits(max_speed_mps=2.0, position_noise_m=0.0))
    assert "telemetry:position_jump" in jumpy.flags


def test_no_impossible_speed_ever_reaches_a_summary():
    """Garbage in (random places, times and speeds): every summary speed is None or within the limit."""
    rng = random.Random(12)
    for _ in range(30):
        n = rng.randint(2, 40)
        times = sorted(rng.uniform(0, 20) for _ in range(n))
        cues = [
            TelemetryCue(
                start_s=t,
                end_s=t + 0.5,
                lat=rng.choice([rng.uniform(-89, 89), 45.0, 0.0]),
                lon=rng.choice([rng.uniform(-179, 179), 7.0, 0.0]),
                rel_alt=rng.choice([50.0, rng.uniform(-1e5, 1e5)]),
                speed_h=rng.choice([None, rng.uniform(0, 1e6)]),
            )
            for t in times
        ]
        tel = Telemetry(cues=cues)
        check = check_telemetry(tel)
        for a in range(0, 20, 3):
            s = summarize(tel, a, a + rng.uniform(0.1, 8), check=check)
            assert s.speed_mps is None or 0.0 <= s.speed_mps <= DEFAULT_LIMITS.max_speed_mps
            assert s.altitude_m is None or -500.0 <= s.altitude_m <= 9000.0


# ------------------------------------------------------------------------------------------------------------
# Boundaries


def edited(fps: float, cut_frame: int, n: int = N) -> list[TelemetryCue]:
    """An edit: frames before ``cut_frame`` over Turin, from it on over Lyon (about 220 km apart)."""
    a = flight(n, fps, 45.07, 7.68)
    b = flight(n, fps, 45.76, 4.84)
    return a[:cut_frame] + b[cut_frame:]


def test_clip_starting_exactly_at_a_cut_takes_nothing_from_before_it(tmp_path):
    # At 29.97 fps frame 152 starts at 152 * 1001 / 30000 = 5.0717333 s; the SRT rounds the previous cue's end
    # to 5.072 s, so that cue overlaps the clip by 0.27 ms. Only cues sampled inside the clip may count.
    fps = 30000 / 1001
    cut = 152
    tel = via_srt(edited(fps, cut), tmp_path, fps=fps)
    start = cut * 1001 / 30000
    s = summarize(tel, start, 250 * 1001 / 30000)  # no boundaries given: still right
    assert s.n_cues == 250 - cut
    assert s.lon == pytest.approx(4.84)
    assert s.flags == ()
    assert s.speed_mps == pytest.approx(SPEED, rel=0.02)


def test_cuts_are_no_jumps_and_summaries_stay_on_their_side(tmp_path):
    cut_s = 5.0
    tel = via_srt(edited(FPS, 150), tmp_path)
    # without boundaries: both sides are consistent for 5 s, so both are places (no cue is a glitch), the
    # flight is warned that they join with no cut declared, and a span over the join keeps its larger side
    blind = check_telemetry(tel)
    assert blind.counts() == {} and blind.track_changes() == [pytest.approx(cut_s)]
    assert "no cut declared" in blind.warnings()[0]
    mixed = summarize(tel, 4.0, 10.0, check=blind)
    assert mixed.lon == pytest.approx(4.84) and mixed.flags == ("telemetry:position_jump",)
    assert mixed.n_left_out == 30  # the 30 frames over Turin from 4 s to 5 s
    summaries, check = summarize_clips(tel, [(0.0, 5.0), (5.0, 10.0), (4.0, 10.0)], boundaries=[cut_s])
    assert check.counts() == {}
    before, after, across = summaries
    assert before.lon == pytest.approx(7.68) and before.flags == ()
    assert after.lon == pytest.approx(4.84) and after.flags == ()
    # a span that contains the cut keeps its longest side (5 s to 10 s) and says so
    assert across.lon == pytest.approx(4.84) and across.flags == (SPAN_CROSSES_BOUNDARY,)
    assert across.n_cues == 150


def test_a_short_clip_never_borrows_a_cue_from_across_a_boundary():
    cues = [TelemetryCue(start_s=k, end_s=k + 1, lat=45.0 + k * 5 / M_PER_DEG, lon=7.0) for k in range(10)]
    tel = Telemetry(cues=cues)
    # 1 Hz cues, a 0.4 s clip from 3.5 s: the cue at 3 s covers it ...
    assert summarize(tel, 3.5, 3.9).n_cues == 1
    # ... unless a cut at 3.5 s lies between that sample and the clip: then nothing is known
    s = summarize(tel, 3.5, 3.9, boundaries=[3.5])
    assert (s.n_cues, s.lat) == (0, None)


def test_split_at_boundaries(tmp_path):
    fps = 30000 / 1001
    tel = via_srt(edited(fps, 152), tmp_path, fps=fps)
    fade = (152 * 1001 / 30000, 170 * 1001 / 30000)  # a transition: both edges are boundaries
    before, during, after = split_at(tel, fade)
    assert (len(before.cues), len(during.cues), len(after.cues)) == (152, 18, N - 170)
    assert {c.lon for c in before.cues} == {7.68} and {c.lon for c in after.cues} == {4.84}
    # no piece claims time across a boundary, and times stay those of the video
    assert before.cues[-1].end_s <= fade[0]
    assert after.cues[0].start_s == pytest.approx(fade[1], abs=0.001)
    assert summarize(after, 0.0, 100.0).lon == pytest.approx(4.84)
    # a file without timecodes keeps its derived times in the pieces
    bare = Telemetry(cues=[TelemetryCue(frame=k + 1, lat=45.0, lon=7.0) for k in range(60)], fps=30.0)
    first, second = split_at(bare, [1.0])
    assert len(first.cues) == 30 and second.cues[0].start_s == pytest.approx(1.0)


EXPECTED_FLAG = {
    "zero_position": "telemetry:position_zero",
    "jump_100km": "telemetry:position_jump",
    "time_backwards": "telemetry:time_backwards",
    "altitude_spike": "telemetry:altitude_spike",
    "nan_altitude": "telemetry:value_nan",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED_FLAG))
def test_generator_glitches_are_caught(kind, tmp_path):
    from dvtr_data.synth.sidecar import GLITCH_KINDS, inject_glitch

    assert set(GLITCH_KINDS) == set(EXPECTED_FLAG)
    cues = flight()
    touched = inject_glitch(cues, kind, at=120, count=3)
    assert touched == [120, 121, 122]
    tel = via_srt(cues, tmp_path)
    check = check_telemetry(tel)
    assert check.counts() == {EXPECTED_FLAG[kind].removeprefix("telemetry:"): 3}
    s = summarize(tel, 0.0, 10.0, check=check)
    assert s.flags == (EXPECTED_FLAG[kind],)
    assert s.altitude_m == pytest.approx(ALT) and s.speed_mps == pytest.approx(SPEED, rel=0.02)
    with pytest.raises(ValueError, match="unknown glitch"):
        inject_glitch(cues, "gremlins", 0)


REAL_SRT = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "srt"


@pytest.mark.realdata
def test_real_sidecars_raise_no_false_alarm():
    """No real value of the sample sidecars is flagged; where one moves between places, a recording restarts.

    The only flags are the three cues of the Neo 2 file recorded before GPS lock (0.000000, 0.000000).
    """
    if not REAL_SRT.is_dir():
        pytest.skip(f"real SRT samples not present at {REAL_SRT}")
    files = sorted(p for p in REAL_SRT.rglob("*") if p.suffix.lower() == ".srt")
    assert len(files) >= 15
    for path in files:
        tel = parse_srt(path)
        check = check_telemetry(tel)
        expected = {"position_zero": 3} if path.name == "neo2_clip_nogps.SRT" else {}
        assert check.counts() == expected, path.name
        frames = [c.frame for c in tel.cues]
        restarts = {
            round(float(check.times[k]), 3)
            for k in range(1, len(frames))
            if frames[k] is not None and frames[k - 1] is not None and frames[k] < frames[k - 1]
        }
        # mavic_2pro_new.SRT joins 12 recordings (its FrameCnt restarts 11 times): every change of place found
        # is at one of those restarts, found independently from the positions alone
        assert {round(t, 3) for t in check.track_changes()} <= restarts, path.name
        if path.name == "mavic_2pro_new.SRT":
            assert len(check.track_changes()) >= 5
