"""The DJI-style telemetry sidecar of a simulated flight: one DJI Fly cue per frame, from the camera path.

Positions are the camera's unwrapped map position (metres east/south of where the shot's world starts) turned
into latitude/longitude around the place's seeded home point, so distances and speeds computed from the SRT
match the flown path.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

from dvtr_data.telemetry.dji_srt import EARTH_RADIUS_M, TelemetryCue, write_dji_fly_srt


def metres_to_latlon(home: tuple[float, float], x_east: float, y_south: float) -> tuple[float, float]:
    """Equirectangular around the home point: plenty for the few kilometres of a flight."""
    lat0, lon0 = home
    lat = lat0 + math.degrees(-y_south / EARTH_RADIUS_M)
    lon = lon0 + math.degrees(x_east / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lat, lon


def latlon_to_metres(home: tuple[float, float], lat: float, lon: float) -> tuple[float, float]:
    """Inverse of `metres_to_latlon` (x east, y south)."""
    lat0, lon0 = home
    y = -math.radians(lat - lat0) * EARTH_RADIUS_M
    x = math.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    return x, y


def make_cue(
    i: int, fps: float, when: datetime, home: tuple[float, float], home_alt: float, x: float, y: float,
    alt: float, yaw: float, pitch: float, speed_h: float, speed_v: float, gain: float,
) -> TelemetryCue:
    """Cue of video frame ``i`` (0-based) with the camera state of that frame."""
    lat, lon = metres_to_latlon(home, x, y)
    gb_yaw = (yaw + 180.0) % 360.0 - 180.0  # DJI writes headings in [-180, 180)
    shutter = 1000.0 / max(gain, 0.05)  # auto exposure: a brighter scene gets a faster shutter
    return TelemetryCue(
        index=i + 1,
        start_s=i / fps,
        end_s=(i + 1) / fps,
        frame=i + 1,
        timestamp=when,
        lat=round(lat, 6),
        lon=round(lon, 6),
        rel_alt=round(alt, 3),
        abs_alt=round(home_alt + alt, 3),
        gimbal_pitch=round(pitch, 1),
        gimbal_yaw=round(gb_yaw, 1),
        gimbal_roll=0.0,
        aircraft_yaw=round(gb_yaw, 1),
        speed_h=round(speed_h, 2),
        speed_v=round(speed_v, 2),
        home_lat=home[0],
        home_lon=home[1],
        camera={"iso": "100", "shutter": f"1/{shutter:.1f}", "fnum": "1.7", "ev": "0", "color_md": "default",
                "focal_len": "24.00", "ct": "5500"},
    )


def write_srt(cues: list[TelemetryCue], fps: float, path: Path) -> None:
    """The DJI Fly ``<font>`` layout that the newest DJI drones write, via the project's own writer."""
    write_dji_fly_srt(cues, fps, path)


GLITCH_KINDS = ("zero_position", "jump_100km", "time_backwards", "altitude_spike", "nan_altitude")
"""Telemetry faults `inject_glitch` can write, each one a way real sidecars go wrong."""


def inject_glitch(cues: list[TelemetryCue], kind: str, at: int, count: int = 1) -> list[int]:
    """Corrupt ``cues[at:at + count]`` in place like a real faulty sidecar; return the indices touched.

    ``zero_position``: no GPS lock (written ``0.000000``); ``jump_100km``: the fix 100 km north;
    ``time_backwards``: the cue's timecode 2 s earlier (not before 0); ``altitude_spike``: +5,000 m;
    ``nan_altitude``: the relative altitude written as ``nan``. The plausibility check must flag each and
    keep it out of clip summaries (reason codes in `dvtr_data.telemetry.plausibility.REASONS`).
    """
    if kind not in GLITCH_KINDS:
        raise ValueError(f"unknown glitch {kind!r}; one of {', '.join(GLITCH_KINDS)}")
    touched = list(range(max(at, 0), min(at + count, len(cues))))
    for k in touched:
        c = cues[k]
        if kind == "zero_position":
            c.lat = c.lon = None
        elif kind == "jump_100km" and c.lat is not None:
            c.lat = round(c.lat + math.degrees(100_000.0 / EARTH_RADIUS_M), 6)
        elif kind == "time_backwards" and c.start_s is not None:
            length = (c.end_s - c.start_s) if c.end_s is not None else 0.0
            c.start_s = max(c.start_s - 2.0, 0.0)
            c.end_s = c.start_s + length
        elif kind == "altitude_spike":
            c.rel_alt = None if c.rel_alt is None else c.rel_alt + 5_000.0
            c.abs_alt = None if c.abs_alt is None else c.abs_alt + 5_000.0
        elif kind == "nan_altitude":
            c.rel_alt = math.nan
    return touched
