"""Windowing rules, with expected windows worked out by hand from the documented rule."""

from __future__ import annotations

import numpy as np
import pytest

from dvtr_data.errors import UsageError
from dvtr_data.ingest.shots import Shot, shots_from_cuts
from dvtr_data.ingest.windows import WindowRule, find_gaps, make_windows


def spans(windows):
    return [(w.start_frame, w.end_frame) for w in windows]


def test_long_shot_is_cut_into_target_windows_and_a_long_tail_stands_alone():
    # 10 fps, one shot of 137 frames, target 50, min 20: 0-50, 50-100, tail 37 >= 20 stays
    w = make_windows([Shot(0, 0, 137)], 10, WindowRule(5, 2, 10))
    assert spans(w) == [(0, 50), (50, 100), (100, 137)]
    assert [x.split_reason for x in w] == ["window", "window", "end"]
    assert [x.window_index for x in w] == [0, 1, 2]


def test_short_tail_merges_into_previous_window_within_max():
    # tail of 15 < 20 merges: 50 + 15 = 65 <= 100 (max 10 s)
    w = make_windows([Shot(0, 0, 115)], 10, WindowRule(5, 2, 10))
    assert spans(w) == [(0, 50), (50, 115)]


def test_short_tail_is_dropped_when_merging_would_exceed_max():
    # max 6 s = 60 frames: 50 + 15 = 65 > 60 -> drop the tail
    w = make_windows([Shot(0, 0, 115)], 10, WindowRule(5, 2, 6))
    assert spans(w) == [(0, 50), (50, 100)]


@pytest.mark.parametrize(
    "tail,expected", [("drop", [(0, 50), (50, 100)]), ("keep", [(0, 50), (50, 100), (100, 115)])]
)
def test_tail_rules(tail, expected):
    assert spans(make_windows([Shot(0, 0, 115)], 10, WindowRule(5, 2, 10, tail))) == expected


def test_no_window_crosses_a_cut_and_short_shots_yield_nothing():
    shots = shots_from_cuts([60, 75], 200)  # shots 0-60, 60-75 (1.5 s < min 2 s), 75-200
    assert [(s.start_frame, s.end_frame) for s in shots] == [(0, 60), (60, 75), (75, 200)]
    w = make_windows(shots, 10, WindowRule(5, 2, 10))
    # shot 0: 0-50, tail 10 merges (60 <= 100); shot 1 dropped; shot 2: 75-125, 125-175, tail 25 stays
    assert spans(w) == [(0, 60), (75, 125), (125, 175), (175, 200)]
    assert [w_.shot_index for w_ in w] == [0, 2, 2, 2]
    cuts = {60, 75}
    for win in w:
        assert not any(win.start_frame < c < win.end_frame for c in cuts)


def test_every_window_respects_min_and_max_on_many_shot_lengths():
    rule = WindowRule(5, 2, 8)
    fps = 29.97
    for length in range(1, 700, 7):
        for win in make_windows([Shot(0, 0, length)], fps, rule):
            assert round(2 * fps) <= win.n_frames <= round(8 * fps)


def test_telemetry_events_split_only_where_both_sides_are_long_enough():
    # events at 30 (both sides >= 20) and 40 (only 10 after the previous split): the second is ignored.
    # The piece 30-100 (7 s) gives 30-80 and a 2 s tail, under half the 5 s target: it merges (7 s <= max 10).
    w = make_windows(
        [Shot(0, 0, 100)], 10, WindowRule(5, 2, 10), events=[(30, "hover_start"), (40, "yaw_change")]
    )
    assert spans(w) == [(0, 30), (30, 100)]
    assert w[0].split_reason == "telemetry:hover_start"


def test_fractional_fps_targets_round_to_frames():
    w = make_windows([Shot(0, 0, 600)], 30000 / 1001, WindowRule(5, 2, 10))
    assert w[0].n_frames == 150  # 5 s at 29.97 fps is 149.85 frames


def test_invalid_rules_are_usage_errors():
    with pytest.raises(UsageError):
        make_windows([Shot(0, 0, 10)], 10, WindowRule(5, 6, 10))
    with pytest.raises(UsageError):
        make_windows([Shot(0, 0, 10)], 10, WindowRule(5, 2, 10, "sometimes"))  # type: ignore[arg-type]


# ---- the tail rule: a tail under half the target merges when the merged window stays within max ------------
def test_a_27_07_s_shot_ends_with_one_7_07_s_window_not_5_plus_2_07():
    # 100 fps, 2707 frames: windows of 500 frames, then a 2.07 s tail (< 2.5 s) merges: 2000-2707 is
    # 7.07 s <= 10
    w = make_windows([Shot(0, 0, 2707)], 100, WindowRule(5, 2, 10))
    assert spans(w) == [(0, 500), (500, 1000), (1000, 1500), (1500, 2000), (2000, 2707)]
    assert w[-1].duration_s == pytest.approx(7.07)
    assert w[-1].split_reason == "end"


def test_a_tail_of_at_least_half_the_target_stands_alone():
    # 27.9 s at 10 fps: the 2.9 s tail is not under 2.5 s, and it is >= min 2 s: its own window
    w = make_windows([Shot(0, 0, 279)], 10, WindowRule(5, 2, 10))
    assert spans(w)[-2:] == [(200, 250), (250, 279)]


def test_a_short_tail_that_cannot_merge_is_kept_when_at_least_min():
    # 7 s at 10 fps, max 6: 0-50, tail 2 s < 2.5 s but 0-70 would be 7 s > 6 s; 2 s >= min 2 s: kept
    assert spans(make_windows([Shot(0, 0, 70)], 10, WindowRule(5, 2, 6))) == [(0, 50), (50, 70)]
    # the same with min 2.5 s: the 2 s tail can neither merge nor stand: dropped
    assert spans(make_windows([Shot(0, 0, 70)], 10, WindowRule(5, 2.5, 6))) == [(0, 50)]


def test_a_tail_under_min_merges_even_when_min_is_above_half_the_target():
    # min 3 s > target/2: a 2.7 s tail cannot stand alone, so it merges (7.7 s <= 10 s) rather than being lost
    assert spans(make_windows([Shot(0, 0, 77)], 10, WindowRule(5, 3, 10))) == [(0, 77)]


def test_drop_and_keep_never_merge_a_tail_under_half_the_target():
    # 6.5 s at 10 fps: tail 1.5 s; merge gives one 6.5 s window, drop loses the tail, keep keeps it alone
    assert spans(make_windows([Shot(0, 0, 65)], 10, WindowRule(5, 1, 10, "merge"))) == [(0, 65)]
    assert spans(make_windows([Shot(0, 0, 65)], 10, WindowRule(5, 1, 10, "drop"))) == [(0, 50), (50, 65)]
    assert spans(make_windows([Shot(0, 0, 65)], 10, WindowRule(5, 2, 10, "drop"))) == [(0, 50)]
    assert spans(make_windows([Shot(0, 0, 65)], 10, WindowRule(5, 2, 10, "keep"))) == [(0, 50), (50, 65)]


# ---- variable frame rate: bounds in seconds from the frame times; recording gaps are boundaries ------------
def test_window_bounds_follow_frame_times_not_the_nominal_rate():
    # 80 frames at 20 fps (0.00-3.95 s), then 60 frames at 10 fps (4.0-9.9 s); nominal 10 fps
    times = np.concatenate([np.arange(80) / 20, 4.0 + np.arange(60) / 10])
    w = make_windows([Shot(0, 0, 140)], 10, WindowRule(5, 2, 10), n_frames=140, times=times)
    # 5.0 s is frame 80 + 10 = 90; the end is 9.9 + 0.1 = 10.0 s
    assert spans(w) == [(0, 90), (90, 140)]
    assert [(x.start_s, x.end_s) for x in w] == [
        (0.0, pytest.approx(5.0)),
        (pytest.approx(5.0), pytest.approx(10.0)),
    ]
    # counting frames at the nominal rate would have made 5 s windows of 50 frames (2.5 s of this recording)
    assert spans(make_windows([Shot(0, 0, 140)], 10, WindowRule(5, 2, 10))) == [
        (0, 50),
        (50, 100),
        (100, 140),
    ]


def test_a_recording_gap_is_a_boundary_no_window_spans():
    # 10 fps: frames 0-39 at 0.0-3.9 s, then the recording resumes at 10.0 s for 60 frames (10.0-15.9 s)
    times = np.concatenate([np.arange(40) / 10, 10.0 + np.arange(60) / 10])
    assert find_gaps(times) == [40]
    w = make_windows([Shot(0, 0, 100)], 10, WindowRule(5, 2, 10), n_frames=100, times=times)
    # before the gap: 4.0 s (3.9 + one frame), a window of its own; after: 40-90 and a 1 s tail that
    # merges (6 s)
    assert spans(w) == [(0, 40), (40, 100)]
    assert [x.split_reason for x in w] == ["gap", "end"]
    assert [(x.start_s, x.end_s) for x in w] == [(0.0, pytest.approx(4.0)), (10.0, pytest.approx(16.0))]


def test_a_short_stretch_between_gaps_yields_no_window():
    # 30 frames (3 s), a gap, 5 frames (0.5 s < min 1 s), a gap, 30 frames; target 2 s: the 1 s tails are not
    # under half the target, so they stand alone; the middle stretch is dropped
    times = np.concatenate([np.arange(30) / 10, 20 + np.arange(5) / 10, 40 + np.arange(30) / 10])
    w = make_windows([Shot(0, 0, 65)], 10, WindowRule(2, 1, 4), n_frames=65, times=times)
    assert spans(w) == [(0, 20), (20, 30), (35, 55), (55, 65)]
    assert [x.split_reason for x in w] == ["window", "gap", "window", "end"]


def test_jitter_is_not_a_gap():
    # steps of 17-67 ms around a ~42 ms median (a phone under load): at most 1.6x the median
    rng = np.random.default_rng(0)
    times = np.concatenate([[0], np.cumsum(rng.choice([0.017, 0.033, 0.05, 0.067], size=299))])
    assert find_gaps(times) == []
    assert find_gaps(np.concatenate([times, times[-1] + 1.0 + np.arange(5) * 0.04])) == [300]


@pytest.mark.parametrize("seed", range(5))
def test_vfr_windows_respect_min_and_max_in_seconds_and_never_span_a_gap(seed):
    rng = np.random.default_rng(seed)
    steps = rng.choice([0.017, 0.033, 0.05, 0.067], size=999)
    steps[rng.choice(999, size=3, replace=False)] = rng.uniform(1, 5, size=3)  # three gaps
    times = np.concatenate([[0], np.cumsum(steps)])
    gaps = find_gaps(times)
    assert len(gaps) == 3
    rule = WindowRule(3, 1.2, 5)
    for win in make_windows([Shot(0, 0, 1000)], 24, rule, n_frames=1000, times=times):
        assert rule.min_s - 1e-6 <= win.duration_s <= rule.max_s + 1e-6
        assert not any(win.start_frame < g < win.end_frame for g in gaps)
        assert win.start_s == times[win.start_frame]
