"""Windowing rules, with expected windows worked out by hand from the documented rule."""

from __future__ import annotations

import pytest

from dvtr_data.errors import UsageError
from dvtr_data.ingest.shots import Shot, shots_from_cuts
from dvtr_data.ingest.windows import WindowRule, make_windows


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


@pytest.mark.parametrize("tail,expected", [("drop", [(0, 50), (50, 100)]), ("keep", [(0, 50), (50, 100), (100, 115)])])
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
    # events at 30 (both sides >= 20) and 40 (only 10 after the previous split): the second is ignored
    w = make_windows([Shot(0, 0, 100)], 10, WindowRule(5, 2, 10), events=[(30, "hover_start"), (40, "yaw_change")])
    assert spans(w) == [(0, 30), (30, 80), (80, 100)]
    assert w[0].split_reason == "telemetry:hover_start"


def test_fractional_fps_targets_round_to_frames():
    w = make_windows([Shot(0, 0, 600)], 30000 / 1001, WindowRule(5, 2, 10))
    assert w[0].n_frames == 150  # 5 s at 29.97 fps is 149.85 frames


def test_invalid_rules_are_usage_errors():
    with pytest.raises(UsageError):
        make_windows([Shot(0, 0, 10)], 10, WindowRule(5, 6, 10))
    with pytest.raises(UsageError):
        make_windows([Shot(0, 0, 10)], 10, WindowRule(5, 2, 10, "sometimes"))  # type: ignore[arg-type]
