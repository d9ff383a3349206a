"""Flight events found in telemetry: where the drone starts or stops hovering, turns, or climbs / descends.

They are candidate clip boundaries (``windows.make_windows(events=...)``): a clip that spans a hover and a fast
pass, or a 90 degree turn, describes two different scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dvtr_data.telemetry.dji_srt import Telemetry, _derive_times, haversine_m

__all__ = ["EventKind", "TelemetryEvent", "detect_events"]

EventKind = Literal["hover_start", "hover_stop", "yaw_change", "altitude_change"]

_WINDOW_S = 1.0  # speeds and courses from fixes this far apart: per-frame GPS repeats, then jumps
_MIN_COURSE_M = 5.0  # a course needs this much displacement over the window, else GPS noise sets it


@dataclass(frozen=True)
class TelemetryEvent:
    time_s: float  # seconds from the start of the video, as Telemetry.times()
    kind: EventKind


def _column(tel: Telemetry, attr: str) -> np.ndarray:
    return np.array([math.nan if (v := getattr(c, attr)) is None else v for c in tel.cues], dtype=float)


def _lagged(t: np.ndarray) -> np.ndarray:
    """For each time, the index of the latest one at least `_WINDOW_S` earlier, else of the previous one (-1: none)."""
    own = np.arange(len(t))
    ref = np.searchsorted(t, t - _WINDOW_S, side="right") - 1
    return np.where((ref < 0) | (ref >= own), own - 1, ref)


def _fix_motion(times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal speed (m/s) and course (degrees from north) per cue, from fixes about `_WINDOW_S` apart.

    Each fix is compared with the latest earlier fix at least `_WINDOW_S` before it (or the previous fix when
    none is that old); cues without a fix take the value of the nearest fix in time. NaN where unknown.
    """
    n = len(times)
    speed = np.full(n, np.nan)
    course = np.full(n, np.nan)
    fix = np.flatnonzero(~np.isnan(lat) & ~np.isnan(lon))
    if len(fix) < 2:
        return speed, course
    t, la, lo = times[fix], lat[fix], lon[fix]
    ref = _lagged(t)
    ok = ref >= 0
    i, j = np.flatnonzero(ok), ref[ok]
    dt = t[i] - t[j]
    dist = haversine_m(la[j], lo[j], la[i], lo[i])
    s = np.full(len(t), np.nan)
    c = np.full(len(t), np.nan)
    good = dt > 0
    s[i[good]] = dist[good] / dt[good]
    p1, p2 = np.radians(la[j]), np.radians(la[i])
    dl = np.radians(lo[i] - lo[j])
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    bearing = np.degrees(np.arctan2(y, x))
    moved = good & (dist >= _MIN_COURSE_M)
    c[i[moved]] = bearing[moved] % 360.0
    if np.isnan(s[0]) and len(s) > 1:
        s[0] = s[1]
    # Map back to every cue: the value of the fix at or before it (the first fix for cues before any).
    at = np.clip(np.searchsorted(t, times, side="right") - 1, 0, len(t) - 1)
    return s[at], c[at]


def _hover_events(times: np.ndarray, hovering: np.ndarray, known: np.ndarray, min_gap_s: float) -> list[TelemetryEvent]:
    """Transitions between hovering and moving, ignoring states that last less than ``min_gap_s``."""
    if not known.any():
        return []
    state = hovering.copy()
    last = state[np.flatnonzero(known)[0]]
    for k in range(len(state)):  # unknown speed: the state goes on
        if known[k]:
            last = state[k]
        state[k] = last
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    runs: list[list] = []  # [state, start_s, end_s]
    for k, s in enumerate(state):
        end = times[k + 1] if k + 1 < len(times) else times[k] + step
        if runs and runs[-1][0] == s:
            runs[-1][2] = end
        else:
            runs.append([bool(s), float(times[k]), float(end)])
    changed = True
    while changed and len(runs) > 1:  # absorb the shortest too-short run into its neighbour, then re-join
        changed = False
        short = [r for r in runs if r[2] - r[1] < min_gap_s]
        if short:
            k = runs.index(min(short, key=lambda r: r[2] - r[1]))
            if k == 0:
                runs[1][1] = runs[0][1]
            else:
                runs[k - 1][2] = runs[k][2]
            del runs[k]
            merged: list[list] = []
            for r in runs:
                if merged and merged[-1][0] == r[0]:
                    merged[-1][2] = r[2]
                else:
                    merged.append(r)
            runs = merged
            changed = True
    return [TelemetryEvent(r[1], "hover_start" if r[0] else "hover_stop") for r in runs[1:]]


def _threshold_events(
    times: np.ndarray, values: np.ndarray, threshold: float, min_gap_s: float, kind: EventKind, circular: bool
) -> list[TelemetryEvent]:
    """An event each time ``values`` has moved ``threshold`` from the value at the previous event (or the start).

    The reference moves on at every crossing, so a slow 180 degree pan gives an event every ``threshold``
    degrees; a crossing within ``min_gap_s`` of the previous event of this kind moves the reference silently.
    """
    out: list[TelemetryEvent] = []
    ref = None
    last_t = -math.inf
    for t, v in zip(times, values):
        if math.isnan(v):
            continue
        if ref is None:
            ref = v
            continue
        delta = ((v - ref + 180.0) % 360.0) - 180.0 if circular else v - ref
        if abs(delta) >= threshold:
            if t - last_t >= min_gap_s:
                out.append(TelemetryEvent(float(t), kind))
                last_t = t
            ref = v
    return out


def detect_events(
    tel: Telemetry,
    *,
    hover_speed: float = 0.5,
    yaw_deg: float = 45.0,
    alt_change_m: float = 10.0,
    min_gap_s: float = 2.0,
) -> list[TelemetryEvent]:
    """Hover start/stop, yaw and altitude changes, sorted by time.

    - Hovering: horizontal speed below ``hover_speed`` m/s (the ``H.S`` field, else from fixes about a second
      apart) and, when known, vertical speed (``V.S``, else from the altitude) below it too. A hover or a move
      shorter than ``min_gap_s`` does not count; events mark transitions only, so a flight that starts hovering
      has no ``hover_start`` at 0.
    - Yaw: the gimbal yaw, else the aircraft yaw, else the course over ground while moving; an event when it has
      turned ``yaw_deg`` from the previous event (the shorter way round).
    - Altitude: the best altitude kind (`Telemetry.altitude_kind`); an event when it has changed ``alt_change_m``.

    Yaw and altitude events of one kind are at least ``min_gap_s`` apart.
    """
    if len(tel.cues) < 2:
        return []
    times, _ = _derive_times(tel.cues, tel.fps)
    lat, lon = _column(tel, "lat"), _column(tel, "lon")
    fix_speed, course = _fix_motion(times, lat, lon)

    speed_h = _column(tel, "speed_h")
    speed_h = np.where(np.isnan(speed_h), fix_speed, speed_h)
    speed_v = _column(tel, "speed_v")
    alt = tel.altitudes()
    if np.isnan(speed_v).all() and (~np.isnan(alt)).sum() >= 2:  # no V.S field: from the altitude
        ok = np.flatnonzero(~np.isnan(alt))
        t, a = times[ok], alt[ok]
        ref = _lagged(t)
        has = np.flatnonzero(ref >= 0)
        dt = t[has] - t[ref[has]]
        speed_v = np.full(len(times), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            speed_v[ok[has]] = np.where(dt > 0, (a[has] - a[ref[has]]) / dt, np.nan)
    known = ~np.isnan(speed_h)
    with np.errstate(invalid="ignore"):
        hovering = known & (speed_h < hover_speed) & (np.isnan(speed_v) | (np.abs(speed_v) < hover_speed))
    events = _hover_events(times, hovering, known, min_gap_s)

    for attr in ("gimbal_yaw", "aircraft_yaw"):
        heading = _column(tel, attr)
        if not np.isnan(heading).all():
            break
    else:
        with np.errstate(invalid="ignore"):
            heading = np.where(speed_h >= hover_speed, course, np.nan)
    events += _threshold_events(times, heading, yaw_deg, min_gap_s, "yaw_change", circular=True)
    events += _threshold_events(times, alt, alt_change_m, min_gap_s, "altitude_change", circular=False)
    return sorted(events, key=lambda e: (e.time_s, e.kind))
