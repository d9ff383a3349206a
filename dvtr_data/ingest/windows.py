"""Long-shot windowing: split each shot into clips of a target length.

Drone flights are mostly one long uncut shot, and PySceneDetect has no maximum scene length, so shots are split
into windows here. The rule, in frames (seconds are converted with the flight's frame rate):

1. A shot is first split at telemetry events (hover start/stop, big yaw or altitude change) when asked, but only
   where both pieces are at least ``min_s`` long.
2. Each piece is cut into consecutive windows of ``target_s`` from its start. No window crosses a cut.
3. The remainder (the tail) is shorter than ``target_s``:
   - if it is at least ``min_s`` long, it is a window of its own (``split_reason="tail"``);
   - otherwise, with ``tail="merge"`` (default), it joins the previous window when that stays within ``max_s``,
     else it is dropped; with ``tail="drop"`` it is dropped; with ``tail="keep"`` it is kept anyway.
4. A piece shorter than ``min_s`` yields no window (``tail="keep"`` keeps it).

So every window is at least ``min_s`` and at most ``max_s`` long (``tail="keep"`` aside), and windows tile each
shot except for dropped tails.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from dvtr_data.errors import UsageError
from dvtr_data.ingest.shots import Shot

TailRule = Literal["merge", "drop", "keep"]


@dataclass(frozen=True)
class WindowRule:
    target_s: float = 5.0
    min_s: float = 2.0
    max_s: float = 10.0
    tail: TailRule = "merge"

    def check(self) -> None:
        if not 0 < self.min_s <= self.target_s <= self.max_s:
            raise UsageError(
                f"window lengths must satisfy 0 < min ({self.min_s}) <= target ({self.target_s}) <= max ({self.max_s})"
            )
        if self.tail not in ("merge", "drop", "keep"):
            raise UsageError(f"tail rule must be merge, drop or keep, not {self.tail!r}")


@dataclass(frozen=True)
class Window:
    shot_index: int
    window_index: int
    start_frame: int
    end_frame: int  # exclusive
    split_reason: str  # why the window ends here

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


def _pieces(shot: Shot, event_frames: list[int], min_len: int) -> list[tuple[int, int, str]]:
    """Split a shot at event frames where both sides stay >= min_len. Returns (start, end, end_reason)."""
    pieces: list[tuple[int, int, str]] = []
    start = shot.start_frame
    for frame, kind in sorted(event_frames):
        if frame - start >= min_len and shot.end_frame - frame >= min_len:
            pieces.append((start, frame, f"telemetry:{kind}"))
            start = frame
    pieces.append((start, shot.end_frame, "cut"))
    return pieces


def make_windows(
    shots: list[Shot],
    fps: Fraction | float,
    rule: WindowRule = WindowRule(),
    events: list[tuple[int, str]] | None = None,
    n_frames: int | None = None,
) -> list[Window]:
    """Windows for all shots of a flight. ``events`` are (frame, kind) telemetry events to split at."""
    rule.check()
    fps = float(fps)
    target = max(1, round(rule.target_s * fps))
    min_len = max(1, round(rule.min_s * fps))
    max_len = max(target, round(rule.max_s * fps))
    events = events or []
    last_frame = n_frames if n_frames is not None else (shots[-1].end_frame if shots else 0)
    out: list[Window] = []
    for shot in shots:
        inside = [(f, k) for f, k in events if shot.start_frame < f < shot.end_frame]
        spans: list[tuple[int, int, str]] = []
        for start, end, end_reason in _pieces(shot, inside, min_len):
            if end_reason == "cut" and end == last_frame:
                end_reason = "end"
            length = end - start
            if length < min_len:
                if rule.tail == "keep" and length > 0:
                    spans.append((start, end, end_reason))
                continue
            pos = start
            while end - pos >= target:
                spans.append((pos, pos + target, "window"))
                pos += target
            rest = end - pos
            if rest == 0:
                spans[-1] = (spans[-1][0], spans[-1][1], end_reason)
            elif rest >= min_len or rule.tail == "keep":
                spans.append((pos, end, end_reason if rest >= min_len else "tail"))
            elif rule.tail == "merge" and spans and spans[-1][1] == pos and end - spans[-1][0] <= max_len:
                spans[-1] = (spans[-1][0], end, end_reason)
            # else: the tail is dropped
        out.extend(Window(shot.index, i, a, b, r) for i, (a, b, r) in enumerate(spans))
    return out
