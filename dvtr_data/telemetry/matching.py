"""Does a telemetry sidecar belong to its video? Compare durations, start, cue count and frame numbering.

A sidecar is paired with a video by file name only, and names collide (``DJI_0001.SRT`` from another day, a
sidecar of the full recording beside a trimmed export). Attached blindly, a 6 min 21 s SRT gives a 7 s video
the first seven seconds of another flight. `match_sidecar` returns a verdict and one line that says why; a
caller attaches the values only on a match, or when the user explicitly trusts the sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np

from dvtr_data.telemetry.dji_srt import Telemetry, _cue_ends, _derive_times
from dvtr_data.telemetry.plausibility import DEFAULT_LIMITS, TelemetryLimits

__all__ = ["SidecarMatch", "format_duration", "match_sidecar"]

Verdict = Literal["match", "mismatch", "unknown"]


@dataclass(frozen=True)
class SidecarMatch:
    """The verdict on a sidecar/video pair. ``message`` is one line fit for the flight's warnings."""

    verdict: Verdict  # unknown: the sidecar has no cues or no usable times, so nothing could be compared
    message: str
    problems: tuple[str, ...]  # one short phrase per failed comparison (empty on a match)
    tolerance_s: float
    sidecar_start_s: float | None = None
    sidecar_duration_s: float | None = None
    video_duration_s: float | None = None
    n_cues: int = 0

    @property
    def ok(self) -> bool:
        """True only for a match: the sidecar's values may be attached without the user's say-so."""
        return self.verdict == "match"


def format_duration(seconds: float) -> str:
    """'7.0 s', '6 min 21 s', '1 h 02 min': how a person reads a duration."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s} s"


def match_sidecar(
    tel: Telemetry,
    video_duration_s: float,
    *,
    n_frames: int | None = None,
    fps: float | None = None,
    name: str | None = None,
    limits: TelemetryLimits = DEFAULT_LIMITS,
    trust_option: str = "--trust-sidecar",
) -> SidecarMatch:
    """Compare ``tel`` with its video; the tolerance is the larger of ``limits.sidecar_tolerance_s`` and
    ``limits.sidecar_tolerance_frac`` of the video's duration.

    It fails when: the sidecar starts later than the tolerance plus one cue interval into the video (a 1 Hz
    Phantom file's first cue sits at 1 s); its covered duration (first cue to the end of the last) differs
    from the video's by more than the tolerance (a file of another flight, a truncated file, a sidecar of
    the untrimmed recording); for per-frame files (cue rate within 5 % of ``fps``), the cue count differs
    from ``n_frames`` by more than the tolerance in frames; or its FrameCnt numbering spans more frames than
    the video has beyond the same tolerance. A frame counter that goes back (joined recordings) is not
    compared. ``trust_option`` is named in the message as the way to attach the values anyway.
    """
    label = f"sidecar {name}" if name else "the sidecar"
    tol = max(limits.sidecar_tolerance_s, limits.sidecar_tolerance_frac * max(video_duration_s, 0.0))
    n = len(tel.cues)
    if n == 0:
        return SidecarMatch("unknown", f"{label} has no telemetry cues: nothing attached", (), tol)
    times, source = _derive_times(tel.cues, tel.fps or fps)
    ends = _cue_ends(tel.cues, times, source)
    if not np.isfinite(times).all():
        return SidecarMatch("unknown", f"{label} has no usable cue times: nothing attached", (), tol, n_cues=n)
    start = float(times[0])
    end = float(np.max(ends))
    covered = end - start
    step = float(np.median(np.diff(times))) if n > 1 else covered
    rate = 1.0 / step if step > 0 else None

    problems: list[str] = []
    if start > tol + max(step, 0.0):
        problems.append(f"its first cue is {format_duration(start)} into the video")
    if abs(covered - video_duration_s) > tol:
        problems.append(
            f"it covers {format_duration(covered)} ({n} cues), the video lasts {format_duration(video_duration_s)}"
            + (f" ({n_frames} frames)" if n_frames else "")
        )
    tol_frames = round(tol * fps) if fps else None
    per_frame = bool(fps and rate and abs(rate - fps) <= 0.05 * fps)
    if per_frame and n_frames and tol_frames is not None and abs(n - n_frames) > tol_frames:
        problems.append(f"it has one cue per frame but {n} cues for {n_frames} frames")
    frames = [c.frame for c in tel.cues if c.frame is not None]
    monotone = all(b >= a for a, b in pairwise(frames))
    if n_frames and tol_frames is not None and len(frames) >= 2 and monotone:
        spanned = frames[-1] - frames[0] + 1
        if spanned > n_frames + tol_frames:
            problems.append(
                f"its frame numbers run from {frames[0]} to {frames[-1]}, the video has {n_frames} frames"
            )
    problems_note = " (cue times assumed 1 per second)" if source == "assumed-1hz" else ""

    def verdict(v: Verdict, message: str, found: tuple[str, ...]) -> SidecarMatch:
        """The verdict with the figures both outcomes report."""
        return SidecarMatch(
            v,
            message,
            found,
            tolerance_s=tol,
            sidecar_start_s=start,
            sidecar_duration_s=covered,
            video_duration_s=float(video_duration_s),
            n_cues=n,
        )

    if problems:
        message = (
            f"{label} does not match its video: {'; '.join(problems)}{problems_note} "
            f"(tolerance {format_duration(tol)}); its telemetry is not attached (pass {trust_option} to attach it)"
        )
        return verdict("mismatch", message, tuple(problems))
    message = (
        f"{label} matches its video: {n} cues over {format_duration(covered)} for "
        f"{format_duration(video_duration_s)} of video (tolerance {format_duration(tol)}){problems_note}"
    )
    return verdict("match", message, ())
