"""Plausibility of telemetry: flag the values no drone can produce, so that they never reach a clip's summary.

Real sidecars carry GPS glitches (a fix 100 km away for one cue, 0/0 without a lock), barometer spikes, clocks
that jump back when recordings are joined, and ``nan`` written as a number. Averaged into a clip they invent
places and speeds of 100,000 m/s. `check_telemetry` marks each such value with a reason code; the summary
leaves the value out and returns the reason (as ``telemetry:<code>``) for the clip's QC reasons.

Reason codes (`REASONS`):

- ``time_backwards``: the cue's time is out of order (not on the longest non-decreasing run of times); the
  whole cue is left out, since its values cannot be placed in time.
- ``value_nan``: a NaN or infinite number; only that value is left out.
- ``position_zero``: a 0/0 position (no GPS lock) or one out of range; there is no position for the cue.
- ``position_jump``: a fix farther from the flight's track than `TelemetryLimits.max_speed_mps` allows in
  the time between them (plus `TelemetryLimits.position_noise_m`), on a run of such fixes shorter than
  `TelemetryLimits.min_track_s` (longer runs are a real second place: an edit; a summary then keeps one of
  the places and flags the span with this code too).
- ``altitude_spike``: the same for altitude with `TelemetryLimits.max_vertical_speed_mps`, or an altitude
  outside [`TelemetryLimits.min_altitude_m`, `TelemetryLimits.max_altitude_m`].
- ``speed_implausible``: a speed field above the limits (or a negative horizontal speed).

Jumps are judged within the segments between ``boundaries`` (shot cuts, transitions) only: an edited video
legitimately joins two places at a cut, and a summary never crosses a boundary anyway.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from dvtr_data.telemetry.dji_srt import ALTITUDE_KINDS, EARTH_RADIUS_M, Telemetry, _cue_ends, _derive_times

__all__ = [
    "DEFAULT_LIMITS",
    "REASONS",
    "TelemetryCheck",
    "TelemetryLimits",
    "check_telemetry",
    "segment_of",
]

REASONS = (
    "time_backwards",
    "value_nan",
    "position_zero",
    "position_jump",
    "altitude_spike",
    "speed_implausible",
)
"""Every reason code `check_telemetry` can give (a clip's QC reason is ``telemetry:`` + code)."""


@dataclass(frozen=True)
class TelemetryLimits:
    """Thresholds for plausible telemetry and for pairing a sidecar with its video. All settable.

    The defaults admit every consumer and professional camera drone with margin and reject glitches:

    - ``max_speed_mps`` 50 m/s (180 km/h): the fastest DJI aircraft, the DJI FPV in manual mode, flies 39 m/s
      (140 km/h); a Mavic 3 21 m/s, the GoPro Karma 15 m/s. Raise it for racing drones.
    - ``max_vertical_speed_mps`` 25 m/s: camera drones climb at most about 8 m/s and descend at most about
      15 m/s (DJI FPV manual mode); the margin absorbs barometer noise.
    - ``position_noise_m`` 20 m: consumer GPS wanders a few metres and the 4-decimal coordinates of 1 Hz DJI
      files are 11 m steps; a fix is a jump only when it is farther than speed x time plus this.
    - ``altitude_noise_m`` 10 m: barometric altitude steps and drifts by a few metres.
    - ``min_altitude_m`` / ``max_altitude_m`` -500 m / 9,000 m, applied to every altitude kind: the lowest
      shore on Earth is the Dead Sea at -430 m, and no camera drone's service ceiling reaches 9,000 m.
    - ``min_track_s`` 1 s: values that stay mutually consistent this long somewhere else are a real place or
      height (an edited video whose cuts were not declared, joined recordings), not a glitch, because a
      shot of an edit can be as short as 2 s; GPS and barometer glitches mostly last a fraction of a
      second. Either way a clip never mixes two tracks: it keeps the one with most cues and is flagged.
    - ``time_tolerance_s`` 2 ms: how far a cue's time may sit before a clip or segment start and still
      belong to it. SRT timecodes are rounded to the millisecond; keep it under half a frame interval.
    - ``sidecar_tolerance_s`` 1 s and ``sidecar_tolerance_frac`` 2 %: a sidecar matches its video when its
      duration (and start, and per-frame cue count) is within the larger of the two; DJI ends a sidecar within
      a cue or two of the video, and a 1 Hz file's last cue may cover up to a second past it.
    """

    max_speed_mps: float = 50.0
    max_vertical_speed_mps: float = 25.0
    position_noise_m: float = 20.0
    altitude_noise_m: float = 10.0
    min_altitude_m: float = -500.0
    max_altitude_m: float = 9_000.0
    time_tolerance_s: float = 0.002
    min_track_s: float = 1.0
    sidecar_tolerance_s: float = 1.0
    sidecar_tolerance_frac: float = 0.02

    def __post_init__(self) -> None:
        for name in ("max_speed_mps", "max_vertical_speed_mps", "sidecar_tolerance_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TelemetryLimits.{name} must be positive, not {getattr(self, name)!r}")
        for name in (
            "position_noise_m", "altitude_noise_m", "time_tolerance_s", "min_track_s", "sidecar_tolerance_frac"
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TelemetryLimits.{name} must not be negative, not {getattr(self, name)!r}")
        if not self.min_altitude_m < self.max_altitude_m:
            raise ValueError("TelemetryLimits.min_altitude_m must be below max_altitude_m")


DEFAULT_LIMITS = TelemetryLimits()

_ALT_ATTR = {"relative": "rel_alt", "barometric": "baro_alt", "absolute": "abs_alt"}
_NUMERIC = ("lat", "lon", "rel_alt", "abs_alt", "baro_alt", "speed_h", "speed_v", "gimbal_pitch")
_MAX_OPEN_RUNS = 8  # a fix is compared with the latest fix of this many recent runs (bounds the cost)


@dataclass
class TelemetryCheck:
    """Per-cue verdicts of `check_telemetry`: which values are usable, and why the others are not.

    Arrays have one entry per cue of the checked `Telemetry`, in cue order. ``reasons[k]`` is the set of
    reason codes of cue ``k`` (empty when all is well).
    """

    times: np.ndarray  # as Telemetry.times()
    ends: np.ndarray  # where each cue's interval ends
    boundaries: tuple[float, ...]
    limits: TelemetryLimits
    cue_ok: np.ndarray  # False: the whole cue is left out (time_backwards)
    # Consistent track of each cue's position / altitude (per kind in ALTITUDE_KINDS); -1: none, the value
    # is missing or flagged. Two tracks in one segment are two real places joined without a declared
    # boundary (an edit, joined recordings): a summary uses one of them only.
    position_track: np.ndarray
    altitude_track: dict[str, np.ndarray]
    speed_h_ok: np.ndarray
    speed_v_ok: np.ndarray
    pitch_ok: np.ndarray
    reasons: list[set[str]] = field(default_factory=list)

    @property
    def position_ok(self) -> np.ndarray:
        return self.position_track >= 0

    def altitude_ok(self, kind: str) -> np.ndarray:
        return self.altitude_track[kind] >= 0

    def track_changes(self) -> list[float]:
        """Times where the position moves to another consistent track within a segment (see position_track)."""
        t = self.position_track
        on = np.flatnonzero(t >= 0)
        on = on[np.argsort(self.times[on], kind="stable")]
        # track ids are numbered per segment: a change across a declared boundary is no change to report
        seg = segment_of(self.times, self.boundaries, self.limits.time_tolerance_s)
        return [float(self.times[b]) for a, b in pairwise(on.tolist()) if t[a] != t[b] and seg[a] == seg[b]]

    def counts(self) -> dict[str, int]:
        """How many cues carry each reason code."""
        out: Counter[str] = Counter()
        for r in self.reasons:
            out.update(r)
        return {code: out[code] for code in REASONS if out[code]}

    def warnings(self) -> list[str]:
        """One line per reason code for the flight's warnings: how many cues, and the first one's time."""
        lines = []
        what = {
            "time_backwards": "time running backwards",
            "value_nan": "NaN or infinite values",
            "position_zero": "0/0 or out-of-range positions (no GPS fix)",
            "position_jump": f"position jumps faster than {self.limits.max_speed_mps:g} m/s",
            "altitude_spike": "altitude spikes or impossible altitudes",
            "speed_implausible": "impossible speed values",
        }
        changes = self.track_changes()
        if changes:
            lines.append(
                f"telemetry: the position moves to another place {len(changes)} time(s) with no cut declared "
                f"there (first at {changes[0]:.2f} s): joined recordings or an edit; no clip summary mixes them"
            )
        for code, n in self.counts().items():
            first = next(k for k, r in enumerate(self.reasons) if code in r)
            lines.append(
                f"telemetry: {n} cue(s) with {what[code]} left out of clip summaries "
                f"(first: cue {first + 1} at {self.times[first]:.2f} s)"
            )
        return lines


def segment_of(times: np.ndarray, boundaries: Sequence[float], tolerance_s: float) -> np.ndarray:
    """The segment index of each time: 0 before the first boundary, k after the k-th (sorted) boundary.

    A time up to ``tolerance_s`` before a boundary belongs to the segment after it (millisecond rounding of
    timecodes must not push a shot's first cue into the previous shot).
    """
    edges = np.sort(np.asarray(list(boundaries), dtype=float)) - tolerance_s
    return np.searchsorted(edges, np.asarray(times, dtype=float), side="right")


def _longest_non_decreasing(values: np.ndarray) -> np.ndarray:
    """Boolean mask of one longest non-decreasing subsequence (patience sorting, O(n log n))."""
    n = len(values)
    tails: list[float] = []
    tail_idx: list[int] = []
    prev = np.full(n, -1)
    for i, v in enumerate(values.tolist()):
        pos = bisect.bisect_right(tails, v)
        if pos == len(tails):
            tails.append(v)
            tail_idx.append(i)
        else:
            tails[pos] = v
            tail_idx[pos] = i
        prev[i] = tail_idx[pos - 1] if pos > 0 else -1
    keep = np.zeros(n, dtype=bool)
    k = tail_idx[-1] if tail_idx else -1
    while k >= 0:
        keep[k] = True
        k = prev[k]
    return keep


def _tracks(
    idx: np.ndarray,
    times: np.ndarray,
    within: Callable[[int, int], bool],
    min_track_s: float,
    first_id: int,
    max_open: int = _MAX_OPEN_RUNS,
) -> tuple[dict[int, int], int]:
    """Group time-ordered samples ``idx`` into runs of mutually consistent values; return the tracks.

    Each sample joins the most recently extended run whose latest sample it is consistent with
    (``within(i, j)``), or starts a run. A run is a *track* (a real place or height) when it lasts ``min_track_s`` or more, or is
    the biggest run (the earliest on a tie); the other runs are glitches: a one-cue spike, a burst of them,
    a bad first fix. Returns {sample: track id} for the samples on tracks (ids from ``first_id`` on, in
    order of appearance) and the next free id.
    """
    runs: list[list[int]] = []  # in creation order
    recent: list[int] = []  # run numbers, the most recently extended last
    for i in idx.tolist():
        for r in reversed(recent[-max_open:]):
            if within(i, runs[r][-1]):
                runs[r].append(i)
                recent.remove(r)
                recent.append(r)
                break
        else:
            runs.append([i])
            recent.append(len(runs) - 1)
    if not runs:
        return {}, first_id
    best = max(range(len(runs)), key=lambda r: (len(runs[r]), -r))
    out: dict[int, int] = {}
    next_id = first_id
    for r, run in enumerate(runs):
        if r == best or times[run[-1]] - times[run[0]] >= min_track_s:
            out.update((i, next_id) for i in run)
            next_id += 1
    return out, next_id


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """`haversine_m` for two scalars with ``math`` (a per-pair loop over numpy scalars is ten times slower)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def _column(tel: Telemetry, attr: str) -> np.ndarray:
    return np.array([math.nan if (v := getattr(c, attr)) is None else v for c in tel.cues], dtype=float)


def check_telemetry(
    tel: Telemetry, limits: TelemetryLimits = DEFAULT_LIMITS, boundaries: Sequence[float] = ()
) -> TelemetryCheck:
    """Flag every implausible value of ``tel`` (see the module docstring for the reason codes).

    ``boundaries`` are times (seconds from the video start) of shot cuts and transition edges: position and
    altitude consistency is judged separately on each side of them. The check is O(n log n) in the number
    of cues; compute it once per flight and pass it to `summarize` for each clip.
    """
    cues = tel.cues
    n = len(cues)
    times, source = _derive_times(cues, tel.fps)
    times = np.asarray(times, dtype=float)
    ends = _cue_ends(cues, times, source)
    reasons: list[set[str]] = [set() for _ in range(n)]

    def flag(mask: np.ndarray, code: str) -> None:
        for k in np.flatnonzero(mask).tolist():
            reasons[k].add(code)

    finite_t = np.isfinite(times)
    cue_ok = finite_t.copy()
    if finite_t.any():
        order_ok = np.zeros(n, dtype=bool)
        order_ok[finite_t] = _longest_non_decreasing(times[finite_t])
        cue_ok &= order_ok
    flag(~cue_ok, "time_backwards")

    cols = {a: _column(tel, a) for a in _NUMERIC}
    ok = {}
    for a, v in cols.items():
        present = np.array([getattr(c, a) is not None for c in cues], dtype=bool)
        bad = present & ~np.isfinite(v)
        flag(bad & cue_ok, "value_nan")
        ok[a] = np.isfinite(v) & cue_ok

    lat, lon = cols["lat"], cols["lon"]
    pos_ok = ok["lat"] & ok["lon"]
    with np.errstate(invalid="ignore"):
        zero = pos_ok & (((lat == 0.0) & (lon == 0.0)) | (np.abs(lat) > 90.0) | (np.abs(lon) > 180.0))
    dropped = np.array([c.position_dropped not in (None, "nan") for c in cues], dtype=bool) & cue_ok
    flag(zero | dropped, "position_zero")
    flag(np.array([c.position_dropped == "nan" for c in cues], dtype=bool) & cue_ok, "value_nan")
    pos_ok &= ~zero

    seg = segment_of(times, boundaries, limits.time_tolerance_s) if n else np.empty(0, dtype=int)

    def track_ids(usable: np.ndarray, within: Callable[[int, int], bool]) -> np.ndarray:
        """Track id per cue (-1: unusable or a glitch), tracks found separately in each segment."""
        ids = np.full(n, -1)
        next_id = 0
        for s in np.unique(seg[usable]).tolist():
            idx = np.flatnonzero(usable & (seg == s))
            idx = idx[np.argsort(times[idx], kind="stable")]
            found, next_id = _tracks(idx, times, within, limits.min_track_s, next_id)
            for i, t in found.items():
                ids[i] = t
        return ids

    def near(i: int, j: int) -> bool:
        d = _distance_m(lat[j], lon[j], lat[i], lon[i])
        return d <= limits.max_speed_mps * abs(times[i] - times[j]) + limits.position_noise_m

    position_track = track_ids(pos_ok, near)
    flag(pos_ok & (position_track < 0), "position_jump")

    altitude_track: dict[str, np.ndarray] = {}
    for kind in ALTITUDE_KINDS:
        alt = cols[_ALT_ATTR[kind]]
        a_ok = ok[_ALT_ATTR[kind]].copy()
        with np.errstate(invalid="ignore"):
            out_of_range = a_ok & ((alt < limits.min_altitude_m) | (alt > limits.max_altitude_m))
        a_ok &= ~out_of_range

        def close(i: int, j: int, alt: np.ndarray = alt) -> bool:
            rise = abs(alt[i] - alt[j])
            return rise <= limits.max_vertical_speed_mps * abs(times[i] - times[j]) + limits.altitude_noise_m

        altitude_track[kind] = track_ids(a_ok, close)
        flag(out_of_range | (a_ok & (altitude_track[kind] < 0)), "altitude_spike")

    with np.errstate(invalid="ignore"):
        bad_h = ok["speed_h"] & ((cols["speed_h"] > limits.max_speed_mps) | (cols["speed_h"] < 0.0))
        bad_v = ok["speed_v"] & (np.abs(cols["speed_v"]) > limits.max_vertical_speed_mps)
    flag(bad_h | bad_v, "speed_implausible")

    return TelemetryCheck(
        times=times,
        ends=ends,
        boundaries=tuple(sorted(float(b) for b in boundaries)),
        limits=limits,
        cue_ok=cue_ok,
        position_track=position_track,
        altitude_track=altitude_track,
        speed_h_ok=ok["speed_h"] & ~bad_h,
        speed_v_ok=ok["speed_v"] & ~bad_v,
        pitch_ok=ok["gimbal_pitch"],
        reasons=reasons,
    )
