"""A clip's telemetry summary (centre, altitude, gimbal pitch, speed) from plausible values inside its span only.

Two ways a summary used to lie, both closed here:

- **Crossing a boundary.** A summary takes the cues *sampled* inside the clip's span (a cue's values are the
  state at its start time), not every cue whose interval overlaps it: with millisecond-rounded timecodes the
  last cue of the previous shot overlaps a clip that starts at a cut by a fraction of a millisecond, and
  averaging it in put clip centres between places hundreds of kilometres apart. Only a clip shorter than the
  cue spacing, with no sample inside, takes the cue that covers its start, and never one from before a
  boundary (``boundaries``: shot cuts and transition edges). `split_at` cuts a `Telemetry` into one piece
  per segment for callers that want the guarantee structurally.
- **Impossible values.** `plausibility.check_telemetry` flags them; they are left out and their reason codes
  come back as ``telemetry:<code>`` in `TelemetrySummary.flags`, ready for the clip's QC reasons. A speed
  above `TelemetryLimits.max_speed_mps` never reaches a summary, whatever it was computed from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dvtr_data.telemetry.dji_srt import Telemetry, _cue_ends, _derive_times, best_altitude_kind, haversine_m
from dvtr_data.telemetry.plausibility import (
    DEFAULT_LIMITS,
    REASONS,
    TelemetryCheck,
    TelemetryLimits,
    check_telemetry,
    segment_of,
)

__all__ = ["SPAN_CROSSES_BOUNDARY", "TelemetrySummary", "split_at", "summarize", "summarize_clips"]

SPAN_CROSSES_BOUNDARY = "telemetry:span_crosses_boundary"
"""Flag of a span that itself contains a boundary: only the segment covering most of the span is used."""


@dataclass(frozen=True)
class TelemetrySummary:
    """What a clip's row needs from the telemetry of its time span."""

    lat: float | None  # centre: mean of the plausible fixes sampled in the span
    lon: float | None
    altitude_m: float | None  # mean over the span, of `altitude_kind`
    altitude_kind: str | None
    gimbal_pitch: float | None  # median
    speed_mps: float | None  # horizontal: mean of the speed fields, else path length over time between fixes
    n_cues: int  # cues used for the span (including those with values left out)
    flags: tuple[str, ...] = ()  # "telemetry:<reason>" for every kind of value left out, in REASONS order
    n_left_out: int = 0  # cues of the span with at least one value left out


_EMPTY = TelemetrySummary(None, None, None, None, None, None, 0)


def _mean_lon(lons: np.ndarray) -> float:
    """Mean longitude that survives the antimeridian (179.9 and -179.9 average to 180, not 0)."""
    if lons.max() - lons.min() > 180.0:
        lons = np.where(lons < 0, lons + 360.0, lons)
    mean = float(lons.mean())
    return mean - 360.0 if mean > 180.0 else mean


def _pick(check: TelemetryCheck, start_s: float, end_s: float) -> tuple[np.ndarray, bool]:
    """Indices of the cues that describe [start_s, end_s), and whether the span crosses a boundary."""
    times, ends, tol = check.times, check.ends, check.limits.time_tolerance_s
    crosses = False
    lo, hi = start_s, end_s
    if check.boundaries and end_s > start_s:
        inside = [b for b in check.boundaries if start_s + tol < b < end_s - tol]
        if inside:  # keep the longest piece of the span between boundaries
            crosses = True
            edges = [start_s, *inside, end_s]
            k = max(range(len(edges) - 1), key=lambda i: edges[i + 1] - edges[i])
            lo, hi = edges[k], edges[k + 1]
    if hi > lo:
        picked = np.flatnonzero((times >= lo - tol) & (times < hi - tol))
        if len(picked):
            return picked, crosses
    # No sample inside (a span shorter than the cue spacing, or an instant): the cue covering the start, if
    # it is usable and no boundary lies between its sample time and the span.
    before = np.flatnonzero(check.cue_ok & (times <= lo + tol))
    if len(before) == 0:
        return before, crosses
    k = int(before[np.argmax(times[before])])
    if ends[k] <= lo - tol:
        return np.empty(0, dtype=int), crosses
    seg = segment_of(np.array([times[k], lo]), check.boundaries, tol)
    if seg[0] != seg[1]:
        return np.empty(0, dtype=int), crosses
    return np.array([k]), crosses


def _one_track(picked: np.ndarray, track: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The picked cues on the track most of them are on (the earliest on a tie), and those left out.

    Cues on no track (-1: missing or flagged) are never used; cues on another track are left out, so that a
    span over an undeclared edit still describes one place.
    """
    on = picked[track[picked] >= 0]
    ids, first, counts = np.unique(track[on], return_index=True, return_counts=True)
    if len(ids) <= 1:
        return on, on[:0]
    best = ids[max(range(len(ids)), key=lambda i: (counts[i], -times[on[first[i]]]))]
    return on[track[on] == best], on[track[on] != best]


def summarize(
    tel: Telemetry,
    start_s: float,
    end_s: float,
    *,
    limits: TelemetryLimits | None = None,
    boundaries: Sequence[float] = (),
    check: TelemetryCheck | None = None,
) -> TelemetrySummary:
    """Position, altitude, gimbal pitch and speed of the plausible cues sampled in [start_s, end_s).

    ``boundaries`` are shot cuts and transition edges (seconds from the video start; give both edges of a
    fade or dissolve): no cue from across one is used. ``check`` is `check_telemetry`'s result for ``tel``,
    computed here when not given and kept on ``tel`` for the next call with the same limits and boundaries
    (or use `summarize_clips`); a given check carries its own limits and boundaries, which then win over the
    arguments. A zero-length span
    takes the cue covering that instant.
    """
    if check is None:
        lim = limits or DEFAULT_LIMITS
        key = (lim, tuple(sorted(float(b) for b in boundaries)), len(tel.cues))
        check = tel._checks.get(key)
        if check is None:
            tel._checks.clear()  # one flight, one set of limits at a time: keep memory flat
            check = tel._checks[key] = check_telemetry(tel, lim, boundaries)
    if not tel.cues:
        return _EMPTY
    picked, crosses = _pick(check, float(start_s), float(end_s))
    if len(picked) == 0:
        return dataclasses.replace(_EMPTY, flags=(SPAN_CROSSES_BOUNDARY,) if crosses else ())
    lim = check.limits
    cues, times = tel.cues, check.times
    codes: set[str] = set()
    for k in picked.tolist():
        codes |= check.reasons[k]

    left_out = {k for k in picked.tolist() if check.reasons[k]}
    fix, other_place = _one_track(picked, check.position_track, times)
    left_out.update(other_place.tolist())
    if len(other_place):
        codes.add("position_jump")
    lat = lon = None
    if len(fix):
        lat = float(np.mean([cues[k].lat for k in fix]))
        lon = _mean_lon(np.array([cues[k].lon for k in fix], dtype=float))

    kind = tel.altitude_kind or best_altitude_kind(cues)
    altitude = None
    if kind is not None:
        ok, other_height = _one_track(picked, check.altitude_track[kind], times)
        if len(other_height):
            codes.add("altitude_spike")
            left_out.update(other_height.tolist())
        values = [cues[k].altitude(kind) for k in ok]
        altitude = float(np.mean(values)) if values else None

    pitches = [cues[k].gimbal_pitch for k in picked[check.pitch_ok[picked]]]
    pitch = float(np.median(pitches)) if pitches else None

    speeds = [cues[k].speed_h for k in picked[check.speed_h_ok[picked]]]
    speed = None
    if speeds:
        speed = float(np.mean(speeds))
    elif len(fix) >= 2:
        order = fix[np.argsort(times[fix], kind="stable")]
        elapsed = float(times[order[-1]] - times[order[0]])
        if elapsed > 0:
            la = np.array([cues[k].lat for k in order], dtype=float)
            lo = np.array([cues[k].lon for k in order], dtype=float)
            speed = float(np.sum(haversine_m(la[:-1], lo[:-1], la[1:], lo[1:]))) / elapsed
    if speed is not None and not (0.0 <= speed <= lim.max_speed_mps):
        speed = None  # the last guard: whatever slipped through, no impossible speed is ever summarised
        codes.add("speed_implausible")

    flags = tuple(f"telemetry:{c}" for c in REASONS if c in codes)
    if crosses:
        flags += (SPAN_CROSSES_BOUNDARY,)
    return TelemetrySummary(
        lat=lat,
        lon=lon,
        altitude_m=altitude,
        altitude_kind=kind if altitude is not None else None,
        gimbal_pitch=pitch,
        speed_mps=speed,
        n_cues=len(picked),
        flags=flags,
        n_left_out=len(left_out),
    )


def summarize_clips(
    tel: Telemetry,
    spans: Sequence[tuple[float, float]],
    *,
    limits: TelemetryLimits = DEFAULT_LIMITS,
    boundaries: Sequence[float] = (),
) -> tuple[list[TelemetrySummary], TelemetryCheck]:
    """`summarize` for every (start_s, end_s) span of a flight, checking the telemetry once.

    Returns the summaries (one per span, in order) and the check, whose `TelemetryCheck.warnings` are the
    flight's telemetry warning lines.
    """
    check = check_telemetry(tel, limits, boundaries)
    return [summarize(tel, s, e, check=check) for s, e in spans], check


def split_at(
    tel: Telemetry, boundaries: Sequence[float], *, tolerance_s: float = DEFAULT_LIMITS.time_tolerance_s
) -> list[Telemetry]:
    """Cut ``tel`` at ``boundaries`` (seconds): one `Telemetry` per segment, ``len(boundaries) + 1`` of them.

    A cue goes to the segment its sample time falls in (a time up to ``tolerance_s`` before a boundary
    counts as after it). Cues are copies whose ``start_s``/``end_s`` are set to their times in the video
    (derived ones included, so a piece keeps its place in time) and whose end is clipped to the next
    boundary, so that no piece claims to cover time across a boundary. Each piece keeps the file's layout,
    frame rate and altitude kind; warnings stay on the original.
    """
    times, source = _derive_times(tel.cues, tel.fps)
    ends = _cue_ends(tel.cues, times, source)
    edges = sorted(float(b) for b in boundaries)
    seg = segment_of(times, edges, tolerance_s)
    pieces: list[Telemetry] = []
    for s in range(len(edges) + 1):
        limit = edges[s] if s < len(edges) else np.inf
        cues = [
            dataclasses.replace(c, start_s=float(times[k]), end_s=float(min(ends[k], limit)))
            for k, c in enumerate(tel.cues)
            if seg[k] == s
        ]
        pieces.append(
            Telemetry(
                cues=cues,
                layout=tel.layout,
                cue_rate_hz=tel.cue_rate_hz,
                start_time=tel.start_time,
                altitude_kind=tel.altitude_kind,
                fps=tel.fps,
                time_source="timecode" if cues else None,
                source=tel.source,
            )
        )
    return pieces
