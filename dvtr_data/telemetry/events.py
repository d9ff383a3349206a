"""Flight events found in telemetry: where the drone starts or stops hovering, turns, or climbs / descends.

They are candidate clip boundaries (``windows.make_windows(events=...)``): a clip that spans a hover and a
fast pass, or a 90 degree turn, describes two different scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dvtr_data.telemetry.dji_srt import EARTH_RADIUS_M, Telemetry, _derive_times, haversine_m

__all__ = ["EventKind", "TelemetryEvent", "detect_events"]

EventKind = Literal["hover_start", "hover_stop", "yaw_change", "altitude_change"]

_WINDOW_S = 1.0  # speeds from fixes this far apart: per-frame GPS repeats a position, then jumps
_COURSE_WINDOW_S = 3.0  # courses from fixes this far apart
_MIN_COURSE_M = 5.0  # and only over at least this displacement (more with coarse coordinates), else noise


@dataclass(frozen=True)
class TelemetryEvent:
    time_s: float  # seconds from the start of the video, as Telemetry.times()
    kind: EventKind


def _column(tel: Telemetry, attr: str) -> np.ndarray:
    return np.array([math.nan if (v := getattr(c, attr)) is None else v for c in tel.cues], dtype=float)


def _lagged(t: np.ndarray, window_s: float) -> np.ndarray:
    """Per time: the latest index ``window_s`` or more before it, else the previous index (-1: none)."""
    own = np.arange(len(t))
    ref = np.searchsorted(t, t - window_s, side="right") - 1
    return np.where((ref < 0) | (ref >= own), own - 1, ref)


def _quantum_m(lat: np.ndarray, lon: np.ndarray) -> float:
    """The coordinate resolution in metres: 4 decimals (Phantom, Mavic Mini) is ~11 m, 6 decimals ~0.1 m.

    The most decimals any coordinate needs (its shortest exact ``repr``); 7 or more is continuous (0 m).
    """
    decimals = 0
    for v in np.concatenate([lat, lon]).tolist():
        text = repr(v)
        if "e" in text:
            return 0.0
        decimals = max(decimals, len(text.partition(".")[2].rstrip("0")))
        if decimals >= 7:
            return 0.0
    return math.radians(10.0**-decimals) * EARTH_RADIUS_M


def _fix_motion(times: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal speed (m/s) and course (degrees from north) per cue, from fixes.

    Speed compares each fix with the latest fix at least `_WINDOW_S` earlier (or the previous fix), course
    with one `_COURSE_WINDOW_S` earlier, and only when the drone moved more than twice the coordinate
    resolution.
    Cues without a fix take the value of the latest fix before them. NaN where unknown.
    """
    n = len(times)
    fix = np.flatnonzero(~np.isnan(lat) & ~np.isnan(lon))
    if len(fix) < 2:
        return np.full(n, np.nan), np.full(n, np.nan)
    t, la, lo = times[fix], lat[fix], lon[fix]
    min_move = max(_MIN_COURSE_M, 2.0 * _quantum_m(la, lo))
    speed = np.full(len(t), np.nan)
    course = np.full(len(t), np.nan)
    for window_s, out in ((_WINDOW_S, speed), (_COURSE_WINDOW_S, course)):
        ref = _lagged(t, window_s)
        i = np.flatnonzero(ref >= 0)
        j = ref[i]
        dt = t[i] - t[j]
        dist = haversine_m(la[j], lo[j], la[i], lo[i])
        good = dt > 0
        if out is speed:
            out[i[good]] = dist[good] / dt[good]
            continue
        p1, p2 = np.radians(la[j]), np.radians(la[i])
        dl = np.radians(lo[i] - lo[j])
        y = np.sin(dl) * np.cos(p2)
        x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
        moved = good & (dist >= min_move)
        out[i[moved]] = np.degrees(np.arctan2(y, x))[moved] % 360.0
    speed[0] = speed[1]
    at = np.clip(np.searchsorted(t, times, side="right") - 1, 0, len(t) - 1)
    return speed[at], course[at]


def _hover_events(
    times: np.ndarray, hovering: np.ndarray, known: np.ndarray, min_gap_s: float
) -> list[TelemetryEvent]:
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
    """An event each time ``values`` has moved ``threshold`` from its value at the previous event (or start).

    The reference moves on at every crossing, so a slow 180 degree pan gives an event every ``threshold``
    degrees; a crossing within ``min_gap_s`` of the previous event of this kind moves the reference silently.
    """
    out: list[TelemetryEvent] = []
    ref = None
    last_t = -math.inf
    for t, v in zip(times, values, strict=False):
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

    - Hovering: horizontal speed below ``hover_speed`` m/s (the ``H.S`` field, else from fixes about a
      second apart) and, when known, vertical speed (``V.S``, else from the altitude) below it too. A hover
      or a move shorter than ``min_gap_s`` does not count; events mark transitions only, so a flight that
      starts hovering has no ``hover_start`` at 0.
    - Yaw: the gimbal yaw, else the aircraft yaw, else the course over ground while moving; an event when it
      has turned ``yaw_deg`` from the previous event (the shorter way round).
    - Altitude: the best altitude kind (`Telemetry.altitude_kind`); an event when it has changed
      ``alt_change_m``.

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
        ref = _lagged(t, _WINDOW_S)
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
