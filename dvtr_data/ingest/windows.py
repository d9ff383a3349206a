"""Long-shot windowing: split each shot into clips of a target length, measured in seconds.

Drone flights are mostly one long uncut shot, and PySceneDetect has no maximum scene length, so shots are
split into windows here. Lengths are measured on the frames' own timestamps (``FlightScan.times``), not in
frames at the nominal rate: on a variable-frame-rate source (a phone under load, a drone that drops frames)
a 5 s window holds as many frames as the source recorded in those 5 s. The rule:

1. A recording gap (a frame-to-frame step more than ``gap_factor`` times the median step) is a boundary like
   a cut: no window spans it, and the window before it ends with ``split_reason="gap"`` one nominal frame
   after its last frame (the gap's missing time is in no clip).
2. A shot is then split at telemetry events (hover start/stop, big yaw or altitude change) when asked, but
   only where both pieces are at least ``min_s`` long.
3. Each piece is cut into consecutive windows of about ``target_s`` from its start (each ends on the frame
   boundary nearest to the target, never past ``max_s``). No window crosses a cut or a gap.
4. The remainder (the tail) is shorter than ``target_s``:
   - with ``tail="merge"`` (default), a tail shorter than half of ``target_s`` (or shorter than ``min_s``)
     joins the previous window when the merged window stays within ``max_s``: a 27.07 s shot with target 5
     and max 10 ends with a 7.07 s window, not 5 s + 2.07 s;
   - a tail that does not merge is a window of its own when it is at least ``min_s`` long, else dropped;
   - ``tail="drop"`` never merges (a tail of at least ``min_s`` still stands alone); ``tail="keep"`` never
     merges and keeps a short tail anyway (``split_reason="tail"``).
5. A piece shorter than ``min_s`` yields no window (``tail="keep"`` keeps it).

So every window is at least ``min_s`` and at most ``max_s`` long in seconds (``tail="keep"`` aside), and
windows tile each shot except for dropped tails and gaps. Comparisons allow ``EPS`` seconds of slack.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

from dvtr_data.errors import UsageError
from dvtr_data.ingest.shots import Shot

TailRule = Literal["merge", "drop", "keep"]
EPS = 1e-6  # seconds: slack for float sums of frame times, far below any frame duration
COMMON_RATES = tuple(
    Fraction(r)
    for r in (
        "24000/1001",
        "24",
        "25",
        "30000/1001",
        "30",
        "48",
        "50",
        "60000/1001",
        "60",
        "100",
        "120000/1001",
        "120",
    )
)


@dataclass(frozen=True)
class WindowRule:
    """Clip lengths in seconds and what happens to a shot's tail (see the module docstring for the full rule).

    ``tail="merge"``: a tail shorter than half of ``target_s`` merges into the previous window when the merged
    window stays within ``max_s``; a tail that cannot merge is kept when at least ``min_s`` long, else it is
    dropped.
    ``gap_factor``: a frame step this many times the median step is a recording gap, a boundary no clip spans.
    """

    target_s: float = 5.0
    min_s: float = 2.0
    max_s: float = 10.0
    tail: TailRule = "merge"
    gap_factor: float = 5.0

    def check(self) -> None:
        if not 0 < self.min_s <= self.target_s <= self.max_s:
            raise UsageError(
                f"window lengths must satisfy 0 < min ({self.min_s}) <= target ({self.target_s})"
                f" <= max ({self.max_s})"
            )
        if self.tail not in ("merge", "drop", "keep"):
            raise UsageError(f"tail rule must be merge, drop or keep, not {self.tail!r}")
        if not self.gap_factor > 1:
            raise UsageError(
                f"the gap factor must be above 1 (a step longer than the median), not {self.gap_factor}"
            )


@dataclass(frozen=True)
class Window:
    shot_index: int
    window_index: int
    start_frame: int
    end_frame: int  # exclusive
    split_reason: str  # why the window ends here
    start_s: float  # time of the first frame
    end_s: float  # time of the next frame, or one nominal frame after the last (end of file, before a gap)

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def find_gaps(times: np.ndarray, factor: float = WindowRule.gap_factor) -> list[int]:
    """Frames that start after a recording gap: the step before them is over ``factor`` times the median step.

    The median, not the nominal rate, is the yardstick: a VFR phone video's steps vary by 2-4x around it,
    while a paused or dropped-out recording jumps by seconds.
    """
    times = np.asarray(times, np.float64)
    if len(times) < 3:
        return []
    steps = np.diff(times)
    median = float(np.median(steps))
    if not median > 0:
        return []
    return [int(i) + 1 for i in np.flatnonzero(steps > factor * median)]


def typical_rate(times: np.ndarray, gaps: list[int], fallback: Fraction) -> Fraction:
    """The frame rate of a VFR recording outside its gaps: the rate of its clip files and its last frame.

    The container's average rate counts a gap's missing seconds (a 30 fps recording with a 2 s pause reads as
    22.5 fps), and the median step of jittery phone video jumps between its few step values; the mean step
    outside the gaps is neither.
    """
    times = np.asarray(times, np.float64)
    if len(times) < 2:
        return fallback
    steps = np.delete(np.diff(times), [g - 1 for g in gaps])
    mean = float(steps.mean()) if len(steps) else 0.0
    if not mean > 0:
        return fallback
    rate = 1.0 / mean
    # timestamps rounded to a coarse time base land near, not on, the camera's rate: take the nearest
    # common one
    nearest = min(COMMON_RATES, key=lambda c: abs(rate - float(c)))
    if abs(rate - float(nearest)) <= 0.01 * float(nearest):
        return nearest
    return Fraction(rate).limit_denominator(1001)


class _Clock:
    """Start and end times of frame boundaries. ``end(b)`` is when a window ending before frame ``b`` ends."""

    def __init__(self, times: np.ndarray, n: int, step: float, gaps: set[int]) -> None:
        self.times = times
        self.n = n
        self.step = step
        self.gaps = gaps

    def start(self, i: int) -> float:
        return float(self.times[i])

    def end(self, b: int) -> float:
        if b >= self.n or b in self.gaps:
            return float(self.times[b - 1]) + self.step
        return float(self.times[b])


def _split(start: int, end: int, cuts: list[tuple[int, str]], end_reason: str) -> list[tuple[int, int, str]]:
    pieces: list[tuple[int, int, str]] = []
    for frame, reason in cuts:
        pieces.append((start, frame, reason))
        start = frame
    pieces.append((start, end, end_reason))
    return pieces


def _pieces(
    start: int, end: int, events: list[tuple[int, str]], min_s: float, clock: _Clock
) -> list[tuple[int, int, str]]:
    """Split ``[start, end)`` at event frames where both sides stay >= min_s: (start, end, end_reason)."""
    chosen: list[tuple[int, str]] = []
    pos = start
    for frame, kind in sorted(events):
        if (
            clock.end(frame) - clock.start(pos) >= min_s - EPS
            and clock.end(end) - clock.start(frame) >= min_s - EPS
        ):
            chosen.append((frame, f"telemetry:{kind}"))
            pos = frame
    return _split(start, end, chosen, "cut")


def _next_end(pos: int, end: int, rule: WindowRule, clock: _Clock) -> int:
    """The frame boundary in (pos, end] nearest ``target_s`` after ``pos``, within [min_s, max_s]."""
    t0 = clock.start(pos)

    def length(c: int) -> float:  # window [pos, pos + 1 + c)
        return clock.end(pos + 1 + c) - t0

    last = end - pos - 1
    # inside a piece the boundaries are frame times (sorted in sane files; searchsorted only needs a
    # starting point, the candidates around it are compared exactly)
    k = min(int(np.searchsorted(clock.times[pos + 1 : end], t0 + rule.target_s)), last)
    candidates = [c for c in (k - 1, k, k + 1) if 0 <= c <= last]
    best = min(candidates, key=lambda c: (abs(length(c) - rule.target_s), c))
    while best > 0 and length(best) > rule.max_s + EPS:
        best -= 1
    while best < last and length(best) < rule.min_s - EPS:
        best += 1
    return pos + 1 + best


def make_windows(
    shots: list[Shot],
    fps: Fraction | float,
    rule: WindowRule = WindowRule(),
    events: list[tuple[int, str]] | None = None,
    n_frames: int | None = None,
    times: np.ndarray | None = None,
) -> list[Window]:
    """Windows for all shots of a flight. ``events`` are (frame, kind) telemetry events to split at.

    ``times`` are the frames' timestamps in seconds (``FlightScan.times``); without them frames are taken
    to be evenly spaced at ``fps``. ``1 / fps`` is also the length of the last frame before the end of the
    file or a gap.
    """
    rule.check()
    step = 1.0 / float(fps)
    events = events or []
    n = n_frames if n_frames is not None else (shots[-1].end_frame if shots else 0)
    if times is None:
        clock_times = np.arange(n, dtype=np.float64) * step
        gaps: list[int] = []
    else:
        clock_times = np.asarray(times, np.float64)[:n]
        if len(clock_times) < n:
            raise ValueError(f"{len(clock_times)} frame times for {n} frames")
        gaps = find_gaps(clock_times, rule.gap_factor)
    clock = _Clock(clock_times, n, step, set(gaps))
    out: list[Window] = []
    for shot in shots:
        inside_gaps = [(g, "gap") for g in gaps if shot.start_frame < g < shot.end_frame]
        shot_end_reason = "gap" if shot.end_frame in clock.gaps else ("end" if shot.end_frame == n else "cut")
        spans: list[tuple[int, int, str]] = []
        for seg_start, seg_end, seg_reason in _split(
            shot.start_frame, shot.end_frame, inside_gaps, shot_end_reason
        ):
            inside = [(f, k) for f, k in events if seg_start < f < seg_end]
            for start, end, end_reason in _pieces(seg_start, seg_end, inside, rule.min_s, clock):
                if end_reason == "cut":
                    end_reason = seg_reason
                _window_piece(start, end, end_reason, rule, clock, spans)
        out.extend(
            Window(shot.index, i, a, b, r, clock.start(a), clock.end(b)) for i, (a, b, r) in enumerate(spans)
        )
    return out


def _window_piece(
    start: int, end: int, end_reason: str, rule: WindowRule, clock: _Clock, spans: list[tuple[int, int, str]]
) -> None:
    """Append the windows of one piece (no cut, gap or chosen event inside) to ``spans``."""
    t_end = clock.end(end)
    length = t_end - clock.start(start)
    if length < rule.min_s - EPS:
        if rule.tail == "keep" and end > start:
            spans.append((start, end, end_reason))
        return
    first = len(spans)
    pos = start
    while pos < end and t_end - clock.start(pos) >= rule.target_s - EPS:
        nxt = _next_end(pos, end, rule, clock)
        spans.append((pos, nxt, "window"))
        pos = nxt
    if pos == end:
        spans[-1] = (spans[-1][0], spans[-1][1], end_reason)
        return
    rest = t_end - clock.start(pos)
    short = rest < rule.target_s / 2 - EPS or rest < rule.min_s - EPS
    if (
        rule.tail == "merge"
        and short
        and len(spans) > first
        and t_end - clock.start(spans[-1][0]) <= rule.max_s + EPS
    ):
        spans[-1] = (spans[-1][0], end, end_reason)
    elif rest >= rule.min_s - EPS:
        spans.append((pos, end, end_reason))
    elif rule.tail == "keep":
        spans.append((pos, end, "tail"))
    # else: the tail is dropped
