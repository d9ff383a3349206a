"""GoPro GPMF telemetry embedded in MP4/MOV files, read into the same `Telemetry` the SRT parser produces.

GoPro cameras (HERO5 and later) and the GoPro Karma drone write a timed data track (``gpmd``, handler "GoPro
MET") of GPMF: nested KLV records (4-byte key, 1-byte type, 1-byte struct size, 2-byte big-endian repeat,
payload padded to 4 bytes), one payload per ~1 s of video. Positions come from, in order of preference:

- ``GLPI`` (Karma flight controller, MAVLink GLOBAL_POSITION_INT): time, lat, lon, altitude above sea level,
  altitude above take-off, velocity north/east/down, heading;
- ``GPS9`` (HERO11+): lat, lon, altitude, 2D speed, 3D speed, days since 2000, seconds since midnight, DOP, fix;
- ``GPS5`` (HERO5-10): lat, lon, altitude, 2D speed, 3D speed, with the fix type in the sticky ``GPSF``.

Samples of a payload are spread evenly over the payload's time span in the video, as GoPro's own
gpmf-parser does. Scaling follows the stream's sticky ``SCAL`` (one divisor, or one per element); structure
types of ``?`` records come from the sticky ``TYPE`` string.

Why hand-written (about 200 lines) rather than a PyPI package: the candidates were checked in December 2026.
``gpmf`` 0.1 has had no release since 2020. ``pygpmf-oz`` 0.3.2 extracts the track by running the ffmpeg
program through ``ffmpeg-python`` and pulls in geopandas, contextily and matplotlib for plotting, and its
import name ``gpmf`` collides with the former. ``py-gpmf-parser`` 0.1.1 (bindings to GoPro's C parser) is a
single release with a CPython-3.11-only Linux wheel and no documentation. None reads the Karma ``GLPI``
positions that the sample ``karma.mp4`` carries without extra work, and GPMF's KLV layout is small and
documented (github.com/gopro/gpmf-parser, README "GPMF Format"). The track is demuxed with PyAV, which the
project already uses for video.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av

from dvtr_data.errors import InputError
from dvtr_data.telemetry.dji_srt import Telemetry, TelemetryCue, best_altitude_kind

__all__ = [
    "GPMF_POSITION_KEYS",
    "KLV",
    "EmbeddedTelemetry",
    "find_gpmf_stream",
    "gpmf_to_telemetry",
    "iter_klv",
    "read_embedded",
    "read_gpmf",
]

GPMF_POSITION_KEYS = ("GLPI", "GPS9", "GPS5")
"""Position records read, best first."""

# GPMF type char -> (struct format, size in bytes). 'q'/'Q' are fixed point Q15.16 / Q31.32.
_TYPES = {
    "b": ("b", 1), "B": ("B", 1), "c": ("c", 1), "d": ("d", 8), "f": ("f", 4), "F": ("4s", 4),
    "G": ("16s", 16), "j": ("q", 8), "J": ("Q", 8), "l": ("i", 4), "L": ("I", 4), "q": ("i", 4),
    "Q": ("q", 8), "s": ("h", 2), "S": ("H", 2), "U": ("16s", 16),
}  # fmt: skip


@dataclass(frozen=True)
class KLV:
    """One GPMF record: ``value`` is the raw payload (``size * repeat`` bytes, without padding)."""

    key: str
    type: str  # "\0" for a nested record
    size: int  # bytes per sample (struct size)
    repeat: int  # number of samples
    value: bytes


def iter_klv(data: bytes) -> Iterator[KLV]:
    """The records at one nesting level of ``data``; stops quietly at a truncated record."""
    i = 0
    while i + 8 <= len(data):
        key = data[i : i + 4].decode("latin-1")
        type_, size = chr(data[i + 4]), data[i + 5]
        (repeat,) = struct.unpack(">H", data[i + 6 : i + 8])
        length = size * repeat
        if key == "\0\0\0\0" or i + 8 + length > len(data):
            return
        yield KLV(key, type_, size, repeat, data[i + 8 : i + 8 + length])
        i += 8 + ((length + 3) // 4) * 4


def _decode(rec: KLV, type_string: str | None) -> list[tuple]:
    """The samples of a data record as tuples of numbers (unscaled)."""
    if rec.type == "?":
        if not type_string:
            return []
        fmt = "".join(_TYPES[t][0] for t in type_string if t in _TYPES)
        types = [t for t in type_string if t in _TYPES]
    else:
        if rec.type not in _TYPES:
            return []
        one, width = _TYPES[rec.type]
        count = rec.size // width if width else 0
        fmt, types = one * count, [rec.type] * count
    unpack = struct.Struct(">" + fmt)
    if unpack.size != rec.size:
        return []
    out = []
    for k in range(rec.repeat):
        values = unpack.unpack_from(rec.value, k * rec.size)
        out.append(
            tuple(
                v / 65536.0 if t == "q" else v / 4294967296.0 if t == "Q" else v
                for v, t in zip(values, types, strict=False)
            )
        )
    return out


def _scales(rec: KLV | None) -> list[float]:
    if rec is None:
        return []
    return [float(x) for row in _decode(rec, None) for x in row]  # 'l' 4 x 10 and 'l' 40 x 1 alike


def _scaled(samples: list[tuple], scal: list[float]) -> list[list[float]]:
    out = []
    for s in samples:
        row = []
        for k, v in enumerate(s):
            div = scal[k] if len(scal) > 1 and k < len(scal) else scal[0] if scal else 1.0
            row.append(float(v) / div if div else math.nan)
        out.append(row)
    return out


def _gpsu(rec: KLV) -> datetime | None:
    """GPSU 'yymmddhhmmss.sss' (UTC)."""
    try:
        text = rec.value[:16].decode("ascii").strip("\0 ")
        base = datetime.strptime(text[:12], "%y%m%d%H%M%S").replace(tzinfo=UTC)
        return base + timedelta(seconds=float("0" + text[12:]) if text[12:] else 0.0)
    except (ValueError, UnicodeDecodeError):
        return None


def _streams(payload: bytes) -> Iterator[dict[str, KLV]]:
    """Each STRM of each DEVC: its records by key (sticky metadata and the data record)."""
    for devc in iter_klv(payload):
        if devc.key != "DEVC" or devc.type != "\0":
            continue
        for strm in iter_klv(devc.value):
            if strm.key == "STRM" and strm.type == "\0":
                yield {r.key: r for r in iter_klv(strm.value)}


def find_gpmf_stream(container: av.container.InputContainer) -> av.stream.Stream | None:
    """The data stream that carries GPMF (a first payload that starts with a ``DEVC`` record)."""
    for stream in container.streams:
        if stream.type != "data":
            continue
        try:
            container.seek(0)
            for packet in container.demux(stream):
                if packet.size:
                    if bytes(packet)[:4] == b"DEVC":
                        container.seek(0)
                        return stream
                    break
        except av.error.FFmpegError:
            continue
    return None


@dataclass(frozen=True)
class EmbeddedTelemetry:
    """What `read_embedded` found in a video file: telemetry it could read, and notes on what it could not."""

    telemetry: Telemetry | None
    kind: str | None  # "gpmf", "djmd" (DJI, not read), or None when the file carries no telemetry track
    notes: tuple[str, ...] = ()


def _dji_meta_streams(container: av.container.InputContainer) -> list[int]:
    """Data streams that look like DJI's embedded protobuf metadata (handler "DJI meta" / "DJI dbgi")."""
    found = []
    for stream in container.streams:
        handler = (stream.metadata or {}).get("handler_name", "")
        if stream.type == "data" and "DJI" in handler and ("meta" in handler.lower() or "dbgi" in handler.lower()):
            found.append(stream.index)
    return found


def read_embedded(path: str | os.PathLike) -> EmbeddedTelemetry:
    """Telemetry embedded in the video file itself: GoPro GPMF is read; DJI's ``djmd`` track is only noticed.

    Newer DJI aircraft and action cameras (Mini 4 Pro, Air 3, Avata 2, Osmo Action 4+) write a protobuf
    ``djmd`` track (handler "DJI meta") whose message layout differs per model. No public real sample of it
    could be found to test a reader against, so it is reported in ``notes`` (for the flight's warnings)
    rather than guessed at; the SRT sidecar, when the aircraft wrote one, still serves.
    """
    tel = read_gpmf(path)
    if tel is not None:
        return EmbeddedTelemetry(tel, "gpmf", tuple(tel.warnings))
    with av.open(str(path)) as container:
        dji = _dji_meta_streams(container)
    if dji:
        note = (
            f"the video embeds DJI telemetry (data stream {dji[0]}, handler 'DJI meta'); reading it is not "
            "supported yet: use the SRT sidecar if the aircraft wrote one"
        )
        return EmbeddedTelemetry(None, "djmd", (note,))
    return EmbeddedTelemetry(None, None)


def read_gpmf(path: str | os.PathLike) -> Telemetry | None:
    """The positions of a GoPro MP4's GPMF track as `Telemetry`; None when the file has no GPMF track.

    Cue times are seconds from the start of the file's timeline, like SRT timecodes. Warnings (damaged
    payloads, samples without a GPS fix) go to `Telemetry.warnings`. A file PyAV cannot open raises
    `InputError`.
    """
    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read {path} for embedded telemetry: {exc}") from exc
    with container:
        stream = find_gpmf_stream(container)
        if stream is None:
            return None
        base = float(stream.time_base) if stream.time_base else 1.0
        payloads = []
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                t_in = packet.pts * base
                t_out = t_in + (packet.duration or 0) * base
                payloads.append((t_in, t_out, bytes(packet)))
    return gpmf_to_telemetry(payloads, source=str(path))


def gpmf_to_telemetry(payloads: list[tuple[float, float, bytes]], *, source: str | None = None) -> Telemetry:
    """`Telemetry` from GPMF payloads given as (start_s, end_s, bytes), one per packet of the track.

    Separate from `read_gpmf` so that payloads from any demuxer (or built by hand in a test) read the same.
    """
    payloads = sorted(payloads, key=lambda p: p[0])
    for k in range(len(payloads) - 1):  # a payload without a duration ends where the next one starts
        if payloads[k][1] <= payloads[k][0]:
            payloads[k] = (payloads[k][0], payloads[k + 1][0], payloads[k][2])

    per_key: dict[str, list[TelemetryCue]] = {k: [] for k in GPMF_POSITION_KEYS}
    no_fix = 0
    start_time: datetime | None = None
    for t_in, t_out, payload in payloads:
        for recs in _streams(payload):
            key = next((k for k in GPMF_POSITION_KEYS if k in recs), None)
            if key is None:
                continue
            rec = recs[key]
            type_rec = recs.get("TYPE")
            type_string = type_rec.value.decode("latin-1").rstrip("\0") if type_rec else None
            rows = _scaled(_decode(rec, type_string), _scales(recs.get("SCAL")))
            if start_time is None and "GPSU" in recs:
                start_time = _gpsu(recs["GPSU"])
            fix = None
            if "GPSF" in recs:
                fix_rows = _decode(recs["GPSF"], None)
                fix = int(fix_rows[0][0]) if fix_rows else None
            step = (t_out - t_in) / len(rows) if rows and t_out > t_in else 0.0
            for j, row in enumerate(rows):
                cue = _cue(key, row, fix)
                if cue is None:
                    continue
                cue.start_s = t_in + j * step
                cue.end_s = t_in + (j + 1) * step if step else None
                if cue.position_dropped:
                    no_fix += 1
                per_key[key].append(cue)
    key = next((k for k in GPMF_POSITION_KEYS if per_key[k]), None)
    if key is None:
        return Telemetry(cues=[], layout="gopro-gpmf", warnings=["GPMF track without GPS positions"],
                         source=source)
    cues = per_key[key]
    for k, cue in enumerate(cues, start=1):
        cue.index = k
    warnings = [f"{no_fix} GPMF {key} sample(s) without a GPS fix: position left empty"] if no_fix else []
    times = [c.start_s for c in cues if c.start_s is not None]
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return Telemetry(
        cues=cues,
        layout=f"gopro-gpmf-{key.lower()}",
        warnings=warnings,
        cue_rate_hz=round((len(times) - 1) / span, 3) if span > 0 else None,
        start_time=start_time,
        altitude_kind=best_altitude_kind(cues),
        time_source="timecode",
        source=source,
    )


def _cue(key: str, row: list[float], fix: int | None) -> TelemetryCue | None:
    """One sample of a position record as a cue (None for a sample too short to read)."""
    cue = TelemetryCue()
    if key == "GLPI":  # time_ms, lat, lon, alt MSL, alt above take-off, vN, vE, vD, heading (MAVLink)
        if len(row) < 9:
            return None
        _, lat, lon, cue.abs_alt, cue.rel_alt, vn, ve, vd, heading = row[:9]
        cue.speed_h = math.hypot(vn, ve)
        cue.speed_v = -vd  # MAVLink's z points down; DJI's V.S is positive climbing
        cue.aircraft_yaw = heading if heading < 360.0 else None  # UINT16_MAX/100 means unknown
    elif key == "GPS9":  # lat, lon, alt, speed 2D, speed 3D, days, seconds, DOP, fix
        if len(row) < 9:
            return None
        lat, lon, cue.abs_alt, cue.speed_h = row[0], row[1], row[2], row[3]
        fix = int(row[8])
    else:  # GPS5: lat, lon, alt, speed 2D, speed 3D
        if len(row) < 4:
            return None
        lat, lon, cue.abs_alt, cue.speed_h = row[0], row[1], row[2], row[3]
    if fix == 0 or (lat == 0.0 and lon == 0.0):
        cue.position_dropped = "zero"
        if key != "GLPI":
            cue.abs_alt = cue.speed_h = None  # without a fix the GPS altitude and speed are no readings either
    elif not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        cue.position_dropped = "out_of_range"
    else:
        cue.lat, cue.lon = lat, lon
    return cue
