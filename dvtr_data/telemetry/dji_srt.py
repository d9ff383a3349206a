"""DJI ``.SRT`` telemetry sidecars: read every real layout, summarise a time span, write the DJI Fly layout.

Clip summaries and plausibility checks live in `summary` and `plausibility`.

DJI drones write one SubRip cue per video frame (DJI Fly, DJI GO 4 on Mavic 2 / Air) or per second (Phantom,
Mavic Pro, Mavic Mini, Matrice). The families differ in everything that matters:

- ``dji-fly-font``: ``<font size="28">FrameCnt: 1 ...`` then
  ``[latitude: ] [longitude: ] [rel_alt: x abs_alt: y]``;
- ``dji-go4``: ``<font size="36">FrameCnt : 1 ...`` (or ``SrtCnt``), ``[longtitude : ]`` (sic),
  ``[altitude: ]``;
- ``phantom-home-gps``: ``HOME(lon,lat) date`` / ``GPS(lon,lat,n) BAROMETER:h`` where n is *not* an altitude;
- ``matrice-gps``: ``GPS(lat,lon,0.0M) BAROMETER:h`` (latitude first, the third value carries a unit);
- ``one-line``: ``F/2.8, SS 30, ISO 100, EV 0, GPS (lon, lat, n), D 221.21m, H 200.70m, H.S .., V.S ..`` with
  optional ``HOME (...)``, ``F.PRY (...)`` (aircraft) and ``G.PRY (...)`` (gimbal) angles;
- ``no-timecode``: numbered cues without any ``-->`` line (times come from the timestamps).

Fields are read by name wherever they appear, so a file that mixes families still yields what it carries.
Nothing in a file's content raises: problems become ``Telemetry.warnings``. Only a file that cannot be read at
all raises `dvtr_data.errors.InputError`.

Memory: a file above `STREAM_ABOVE` bytes is read line by line and each cue is parsed as soon as it ends, so the
peak is the cues kept, not the file's text several times over (a 565 MB sidecar once peaked at 5.6 GB); identical
camera field sets are shared between cues for the same reason. Those files are split by the tolerant reader.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np
import srt

from dvtr_data.errors import InputError

__all__ = [
    "ALTITUDE_KINDS",
    "EARTH_RADIUS_M",
    "Telemetry",
    "TelemetryCue",
    "best_altitude_kind",
    "find_sidecar",
    "haversine_m",
    "parse_srt",
    "write_dji_fly_srt",
]

EARTH_RADIUS_M = 6_371_000.0
"""Mean Earth radius used by `haversine_m` (a sphere is plenty for speeds and clip centres)."""

ALTITUDE_KINDS = ("relative", "barometric", "absolute")
"""Altitude kinds, best first. Relative (above take-off) is what a caption means by "flying at 80 m"; DJI's
``BAROMETER`` is also height above take-off, only measured differently; absolute (above sea level) says
nothing about height above the ground without a terrain model, so it comes last."""

_ALT_ATTR = {"relative": "rel_alt", "barometric": "baro_alt", "absolute": "abs_alt"}


@dataclass(slots=True)
class TelemetryCue:
    """One SRT cue. A field is ``None`` when the cue does not carry it; angles in degrees, lengths in metres.

    ``lat``/``lon`` are ``None`` without a GPS fix (DJI writes ``0.000000`` then). ``satellites`` is the third
    value of ``GPS(lon,lat,n)`` in the Phantom / one-line layouts: a count, never an altitude. ``camera``
    keeps the remaining fields as raw text (``iso``, ``shutter``, ``fnum`` as written — DJI GO 4 writes f/2.8
    as ``280`` —, ``ev``, ``ct``, ``focal_len``, ``color_md`` and whatever else a model adds).
    """

    index: int | None = None
    start_s: float | None = None
    end_s: float | None = None
    frame: int | None = None  # FrameCnt when given
    timestamp: datetime | None = None  # local wall-clock time as written (DJI gives no time zone)
    lat: float | None = None
    lon: float | None = None
    rel_alt: float | None = None  # above the take-off point
    abs_alt: float | None = None  # above sea level
    baro_alt: float | None = None  # BAROMETER: barometric height above take-off
    gimbal_pitch: float | None = None
    gimbal_yaw: float | None = None
    gimbal_roll: float | None = None
    aircraft_yaw: float | None = None
    aircraft_pitch: float | None = None
    aircraft_roll: float | None = None
    speed_h: float | None = None  # m/s
    speed_v: float | None = None  # m/s
    home_lat: float | None = None
    home_lon: float | None = None
    home_alt: float | None = None
    distance_m: float | None = None  # "D": distance from the home point
    satellites: int | None = None
    camera: dict[str, str] = field(default_factory=dict)
    # Why a position the cue carried was left empty ("zero": DJI's 0/0 for no fix, "nan", "out_of_range"), so
    # that the plausibility check can tell "no GPS in this cue" from "the file had none" and flag the clip. Not
    # part of equality: it records how a value was read, not a value (a written no-fix cue reads back equal).
    position_dropped: str | None = field(default=None, compare=False)

    def altitude(self, kind: str) -> float | None:
        """The altitude of ``kind`` ("relative", "barometric" or "absolute"), if the cue has it."""
        return getattr(self, _ALT_ATTR[kind])


@dataclass
class Telemetry:
    """A parsed sidecar: the cues plus what was learnt about the file as a whole."""

    cues: list[TelemetryCue]
    layout: str = "unknown"
    warnings: list[str] = field(default_factory=list)
    cue_rate_hz: float | None = None
    start_time: datetime | None = None  # timestamp of the first cue that has one (local time, no zone)
    altitude_kind: str | None = None  # best kind any cue carries, see ALTITUDE_KINDS
    fps: float | None = None  # the video frame rate given to parse_srt, used only to derive missing times
    time_source: str | None = None  # how times() is obtained: timecode | timestamp | frame | assumed-1hz
    source: str | None = None  # the file path, when parsed from a file
    # summary.summarize keeps its plausibility check here, so that summarising clip after clip checks the
    # flight once (keyed by limits, boundaries and the cue count; cues edited in place afterwards are not seen)
    _checks: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def times(self) -> np.ndarray:
        """Start time of every cue in seconds from the start of the video (float64, one per cue).

        Taken from the SubRip timecodes. A file without them (``no-timecode``) or with damaged ones is
        derived, in this order, from: the wall-clock timestamps (seconds since the first cue's); the FrameCnt
        counter divided by ``fps`` (when the caller gave one); else the cue position at an assumed 1 Hz,
        because the only DJI files without any clock are 1 Hz kinds. A few missing values in the chosen source
        are interpolated from their neighbours (extrapolated with the median step at the ends). `time_source`
        says which one was used.
        """
        return _derive_times(self.cues, self.fps)[0]

    def altitudes(self, kind: str | None = None) -> np.ndarray:
        """Altitude of ``kind`` (default: `altitude_kind`) for every cue, NaN where missing."""
        kind = kind or self.altitude_kind or best_altitude_kind(self.cues)
        if kind is None:
            return np.full(len(self.cues), np.nan)
        attr = _ALT_ATTR[kind]
        return np.array([_nan(getattr(c, attr)) for c in self.cues], dtype=float)


# ------------------------------------------------------------------------------------------------------------
# Reading


_NUM = r"[-+]?\d+(?:\.\d+)?"
_NUM_RE = re.compile(_NUM)
_TIMECODE_RE = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})")
_ARROW_RE = re.compile(r"^\s*\d+:\d{1,2}:\d{1,2}[,.]\d{1,3}\s*-->")
_TIMESTAMP_RE = re.compile(
    r"(\d{4})[-./](\d{1,2})[-./](\d{1,2})[ T]+(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?(?:,(\d{3})(?!\d))?"
)
_FRAMECNT_RE = re.compile(r"FrameCnt\s*:\s*(\d+)")
_BRACKET_RE = re.compile(r"\[([^\[\]\n]*)\]")
_PAIR_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_ ]*?)\s*:\s*(.*?)\s*(?=[A-Za-z_][A-Za-z0-9_]*\s*:|$)")
_GPS_RE = re.compile(rf"\b(?:GPS|RTK)\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*(?:,\s*({_NUM})\s*([A-Za-z]*)\s*)?\)")
_HOME_RE = re.compile(rf"\bHOME\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*(?:,\s*({_NUM})\s*[A-Za-z]*\s*)?\)")
_BARO_RE = re.compile(rf"\bBAROMETER\s*:\s*({_NUM})")
_DIST_RE = re.compile(rf"(?<![\w.])D\s+({_NUM})\s*m\b")
_HEIGHT_RE = re.compile(rf"(?<![\w.])H\s+({_NUM})\s*m\b")
_HS_RE = re.compile(rf"\bH\.S\s+({_NUM})\s*(m/s|km/h)?")
_VS_RE = re.compile(rf"\bV\.S\s+({_NUM})\s*(m/s|km/h)?")
# The degree sign after each angle may arrive mis-decoded, so anything but a separator may follow a number.
_PRY = rf"\s*\(\s*({_NUM})[^,()]*,\s*({_NUM})[^,()]*,\s*({_NUM})[^,()]*\)"
_FPRY_RE = re.compile(rf"\bF\.PRY{_PRY}")
_GPRY_RE = re.compile(rf"\bG\.PRY{_PRY}")
_LOOSE_CAMERA = (  # one-line and Phantom camera fields, used only when a cue has no [key: value] fields
    ("fnum", re.compile(rf"(?:^|[\s,])F/({_NUM})")),
    ("shutter", re.compile(r"\bSS\s+(\d[\d./]*)")),
    ("iso", re.compile(r"\bISO\s*:?\s*(\d+)")),
    ("ev", re.compile(r"\bEV\s*:?\s*([-+]?\d+(?:[./]\d+)?)")),
    ("shutter", re.compile(r"\bShutter\s*:\s*(\d[\d./]*)")),
    ("fnum", re.compile(rf"\bFnum\s*:\s*F?({_NUM})")),
)
_POSITION_KEYS = {
    "latitude",
    "longitude",
    "longtitude",
    "rel_alt",
    "abs_alt",
    "altitude",
    "gb_yaw",
    "gb_pitch",
    "gb_roll",
}


class _Issues:
    """Collects per-cue problems and reports each kind once, with a count, instead of once per cue."""

    def __init__(self) -> None:
        self._per_cue: dict[str, list[int]] = {}
        self.file: list[str] = []

    def cue(self, message: str, cue_no: int) -> None:
        self._per_cue.setdefault(message, []).append(cue_no)

    def messages(self) -> list[str]:
        out = list(self.file)
        for message, cues in self._per_cue.items():
            where = f"cue {cues[0]}" if len(cues) == 1 else f"{len(cues)} cues, first: cue {cues[0]}"
            out.append(f"{message} ({where})")
        return out


# Files larger than this are streamed (see the module docstring); smaller ones are read whole and split by the
# srt library when they are strict SubRip. A module constant so that tests can stream small files.
STREAM_ABOVE = 16 * 1024 * 1024
_MAX_LINE = 1 << 20  # a longer "line" (no newline in a megabyte: not telemetry) is read in pieces
_PROGRESS_EVERY = 2048  # cues between two progress calls

Progress = Callable[[int, int], None]
# Values that often stay the same from one cue to the next (a per-frame file repeats them 30 times a second)
_SHARED_VALUES = ("rel_alt", "abs_alt", "baro_alt", "gimbal_pitch", "gimbal_yaw", "gimbal_roll", "aircraft_yaw",
                  "aircraft_pitch", "aircraft_roll", "speed_h", "speed_v", "home_lat", "home_lon", "home_alt", "lat",
                  "lon", "distance_m")


def parse_srt(
    source: str | os.PathLike | bytes, *, fps: float | None = None, progress: Progress | None = None
) -> Telemetry:
    """Parse a DJI SRT sidecar. ``source`` is a path (``str`` or ``Path``) or the file's bytes.

    ``fps`` is the video's frame rate; it is only needed to derive cue times for a file that has neither
    timecodes nor timestamps but does have frame counters. Malformed content never raises (see ``warnings``);
    a path that cannot be read raises `InputError`. ``progress(done, total)`` is called every few thousand cues
    (bytes read of the file's size when streaming, cues otherwise): ingest forwards it as a heartbeat, so that
    parsing a huge sidecar never looks like a stalled decoder.
    """
    where: str | None = None
    fps = float(fps) if fps else None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(source)
        where = str(path)
        try:
            size = path.stat().st_size
            if size > STREAM_ABOVE:
                return _parse_stream(path, fps, progress)
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read telemetry file {path}: {exc.strerror or exc}") from exc

    issues = _Issues()
    text = _decode(data, issues)
    del data
    if text is None or not text.strip():
        if text is not None:
            issues.file.append("the file is empty")
        return _empty(text is None, issues, fps, where)
    raw = _split_cues(text, issues)
    del text
    total = len(raw)
    return _finish(raw, issues, fps, where, lambda done: progress(done, total) if progress else None)


def _empty(binary: bool, issues: _Issues, fps: float | None, where: str | None) -> Telemetry:
    layout = "binary" if binary else "empty"
    return Telemetry(cues=[], layout=layout, warnings=issues.messages(), fps=fps, source=where)


def _finish(
    raw: Iterable[tuple[int | None, float | None, float | None, str]], issues: _Issues, fps: float | None,
    where: str | None, beat: Callable[[int], None],
) -> Telemetry:
    """Parse each cue as it comes (``raw`` may be a generator over a file being read) and summarise the file.

    Only the parsed cues are kept: bodies are dropped once parsed (the first 50 are kept to name the layout),
    equal camera field sets and equal field-group sets are one shared object each.
    """
    cues: list[TelemetryCue] = []
    present: list[frozenset[str]] = []
    sample: list[str] = []
    shared_sets: dict[frozenset[str], frozenset[str]] = {}
    prev = TelemetryCue()
    for number, (index, start_s, end_s, body) in enumerate(raw, start=1):
        cue, has = _parse_body(body, index, start_s, end_s, number, issues)
        if cue.camera == prev.camera:
            cue.camera = prev.camera  # the same settings as the cue before: one dict for the run of them
        for name in _SHARED_VALUES:  # a value equal to the cue before's is that same (immutable) float
            value = getattr(cue, name)
            if value is not None and value == getattr(prev, name):
                setattr(cue, name, getattr(prev, name))
        prev = cue
        cues.append(cue)
        present.append(shared_sets.setdefault(has, has))
        if len(sample) < 50:
            sample.append(body)
        if number % _PROGRESS_EVERY == 0:
            beat(number)
    beat(len(cues))
    if not cues:
        issues.file.append("no telemetry cues found")
    _check_consistency(cues, present, issues)
    del present

    tel = Telemetry(
        cues=cues,
        layout=_detect_layout(sample, any(c.start_s is not None for c in cues)) if cues else "empty",
        fps=fps,
        source=where,
    )
    tel.altitude_kind = best_altitude_kind(cues)
    tel.start_time = next((c.timestamp for c in cues if c.timestamp is not None), None)
    times, tel.time_source = _derive_times(cues, fps)
    if tel.time_source == "assumed-1hz" and len(cues) > 1:
        issues.file.append("no timecodes, timestamps or frame counters: cue times assume 1 cue per second")
    if len(times) >= 2 and tel.time_source != "assumed-1hz":
        span = float(times[-1] - times[0])
        tel.cue_rate_hz = round((len(times) - 1) / span, 3) if span > 0 else None
    if tel.layout == "unknown":
        issues.file.append("unrecognised SRT layout: fields were read by name where possible")
    tel.warnings = issues.messages()
    return tel


def _parse_stream(path: Path, fps: float | None, progress: Progress | None) -> Telemetry:
    """A large file, read line by line: the same checks as `_decode` on its head and on every line, the
    tolerant splitter, each cue parsed as soon as it ends (see `_finish`)."""
    issues = _Issues()
    where = str(path)
    total = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8192)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16: rare, read whole as before
            fh.seek(0)
            text = _decode(fh.read(), issues)
            return _finish(_split_cues(text or "", issues), issues, fps, where, lambda done: None)
        bom = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        control = sum(1 for b in head[bom:] if b < 9 or 13 < b < 32)
        if head[bom:] and control > 0.1 * len(head[bom:]):
            issues.file.append("not a text file (binary content): no telemetry read")
            return _empty(True, issues, fps, where)
        fh.seek(bom)
        state = {"replaced": 0, "nul": False, "arrow": False, "any": False}

        def lines() -> Iterator[str]:
            pending_cr = False
            while True:
                chunk = fh.readline(_MAX_LINE)
                if not chunk:
                    return
                try:
                    text = chunk.decode("utf-8")
                except UnicodeDecodeError:
                    text = chunk.decode("utf-8", errors="replace")
                    state["replaced"] += text.count("\ufffd")
                if "\x00" in text:
                    text = text.replace("\x00", "")
                    state["nul"] = True
                if pending_cr and text.startswith("\n"):
                    text = text[1:]  # the "\n" of a "\r\n" split at a piece boundary
                pending_cr = text.endswith("\r")
                parts = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
                if parts and parts[-1] == "":
                    parts.pop()
                for line in parts:
                    if line.strip():
                        state["any"] = True
                        if "-->" in line:
                            state["arrow"] = True
                    yield line

        def beat(_done: int) -> None:
            if progress:
                progress(fh.tell(), total)

        raw = _split_by_hand(lines(), issues)
        tel = _finish(raw, issues, fps, where, beat)
    notes = []
    if state["replaced"]:
        notes.append(f"not valid UTF-8: {state['replaced']} undecodable byte(s) replaced")
    if state["nul"]:
        notes.append("NUL bytes in the file were dropped")
    if not state["any"]:
        notes.append("the file is empty")
    elif not state["arrow"]:
        notes.append("no '-->' timecode lines: cues split by the tolerant reader, times derived")
    tel.warnings = notes + tel.warnings
    if not state["any"]:
        tel.layout = "empty"
    return tel


def _decode(data: bytes, issues: _Issues) -> str | None:
    """Bytes to text with newlines normalised; ``None`` for something that is not a text file at all."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    head = data[:8192]
    if head:
        control = sum(1 for b in head if b < 9 or 13 < b < 32)
        if control > 0.1 * len(head):
            issues.file.append("not a text file (binary content): no telemetry read")
            return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        issues.file.append(f"not valid UTF-8: {text.count(chr(0xFFFD))} undecodable byte(s) replaced")
    if "\x00" in text:
        text = text.replace("\x00", "")
        issues.file.append("NUL bytes in the file were dropped")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_cues(text: str, issues: _Issues) -> list[tuple[int | None, float | None, float | None, str]]:
    """(index, start_s, end_s, body) per cue: by the ``srt`` library for strict SubRip, else by hand."""
    try:
        return [(s.index, s.start.total_seconds(), s.end.total_seconds(), s.content) for s in srt.parse(text)]
    except (srt.SRTParseError, ValueError) as exc:  # TimestampParseError is a ValueError
        if "-->" in text:
            issues.file.append(f"not strict SubRip ({type(exc).__name__}); cues split by the tolerant reader")
        else:
            issues.file.append("no '-->' timecode lines: cues split by the tolerant reader, times derived")
    return list(_split_by_hand(text.split("\n"), issues))


def _split_by_hand(
    lines: Iterable[str], issues: _Issues
) -> Iterator[tuple[int | None, float | None, float | None, str]]:
    # Hand-written because the srt library rejects the whole file when a cue has no timecode line
    # (mavic_2_style), a cue is cut mid-way, or garbage sits between cues; here a cue starts at a bare number
    # after a blank line (or right before a timecode) and at any timecode line, and everything up to the next
    # start is its body. A generator over lines (two lines of look-ahead): a streamed file is never whole.
    ahead: deque[str] = deque()
    source = iter(lines)

    def fill() -> None:
        while len(ahead) < 3:
            nxt_line = next(source, None)
            if nxt_line is None:
                return
            ahead.append(nxt_line)

    current: list | None = None  # [index, start_s, end_s, body_lines]
    emitted = 0
    stray = 0
    blank_before = True

    def finish(cue: list) -> tuple[int | None, float | None, float | None, str] | None:
        index, start_s, end_s, body = cue
        if not body and start_s is None:
            number = index if index is not None else emitted + 1
            issues.cue("cue with neither timecode nor content dropped", number)
            return None
        return (index, start_s, end_s, "\n".join(body))

    fill()
    while ahead:
        line = ahead.popleft()
        fill()
        s = line.strip().lstrip("\ufeff")
        if not s:
            blank_before = True
            continue
        nxt = next((n.strip() for n in list(ahead)[:2] if n.strip()), "")
        started: list | None = None
        if s.isdigit() and (blank_before or current is None or _ARROW_RE.match(nxt)):
            started = [int(s), None, None, []]
        elif "-->" in s and _ARROW_RE.match(s):
            left, _, right = s.partition("-->")
            if current is None or current[1] is not None or current[3]:
                started = [None, None, None, []]
            target = started if started is not None else current
            assert target is not None  # a new cue, or the current one still without a timecode
            target[1] = _timecode_s(left)
            target[2] = _timecode_s(right)
        elif current is not None:
            current[3].append(line)
        else:
            stray += 1
        if started is not None:
            if current is not None:
                done = finish(current)
                if done is not None:
                    emitted += 1
                    yield done
            current = started
        blank_before = False
    if current is not None:
        done = finish(current)
        if done is not None:
            yield done
    if stray:
        issues.file.append(f"{stray} line(s) before the first cue ignored")


def _timecode_s(text: str) -> float | None:
    m = _TIMECODE_RE.search(text)
    if not m:
        return None
    h, mi, s, frac = m.groups()
    ms = ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1000 + int(frac.ljust(3, "0"))
    return ms / 1000


def _key(text: str) -> str:
    key = text.strip().lower()
    return " ".join(key.split()) if " " in key else key


def _num(text: str | None) -> float | None:
    """The number a field value starts with ("6.000", "0.00," and "49.21m" all work), else None."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        m = _NUM_RE.match(text.strip())
        return float(m.group()) if m else None


def _speed(match: re.Match | None) -> float | None:
    if match is None:
        return None
    value = float(match.group(1))
    return value / 3.6 if match.group(2) == "km/h" else value


def _timestamp(body: str) -> datetime | None | Literal[False]:
    """The first wall-clock timestamp in a cue; ``False`` when one is there but invalid."""
    m = _TIMESTAMP_RE.search(body)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, micro = m.groups()
    us = 0
    if frac:
        us = int(frac.ljust(6, "0")[:6])
        if micro and len(frac) == 3:  # "hh:mm:ss,mmm,uuu" (DJI GO 4): milliseconds then microseconds
            us += int(micro)
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), us)
    except ValueError:
        return False


def _parse_body(
    body: str, index: int | None, start_s: float | None, end_s: float | None, number: int, issues: _Issues
) -> tuple[TelemetryCue, frozenset[str]]:
    """One cue's fields, read by name; also the set of field groups it carried (to spot damaged cues)."""
    cue = TelemetryCue(index=index, start_s=start_s, end_s=end_s)
    has: set[str] = set()
    if "Cnt" in body:
        m = _FRAMECNT_RE.search(body)
        if m:
            cue.frame = int(m.group(1))
    ts = _timestamp(body)
    if ts is False:
        issues.cue("invalid date/time ignored", number)
    elif ts is not None:
        cue.timestamp = ts
        has.add("timestamp")

    lat = lon = None
    pairs: dict[str, str] = {}
    if "[" in body:
        for chunk in _BRACKET_RE.findall(body):
            if chunk.count(":") == 1:  # the common "[key: value]", without the slower regex
                key, _, value = chunk.partition(":")
                pairs[_key(key)] = value.strip()
            else:  # "[rel_alt: 6.000 abs_alt: -122.769]", "[shift x: 0.00, y: 0.00]"
                for key, value in _PAIR_RE.findall(chunk):
                    pairs[_key(key)] = value
    if pairs:
        lat = _num(pairs.get("latitude"))
        lon = _num(pairs.get("longitude", pairs.get("longtitude")))
        if ("latitude" in pairs) != ("longitude" in pairs or "longtitude" in pairs):
            issues.cue("position incomplete (latitude or longitude missing), treated as no fix", number)
        cue.rel_alt = _num(pairs.get("rel_alt"))
        cue.abs_alt = _num(pairs.get("abs_alt"))
        if cue.abs_alt is None and "altitude" in pairs:
            # DJI GO 4 / Air 2 "[altitude: ]" is height above sea level (m2zoom starts at 214 m in Lahore).
            cue.abs_alt = _num(pairs["altitude"])
        cue.gimbal_yaw = _num(pairs.get("gb_yaw"))
        cue.gimbal_pitch = _num(pairs.get("gb_pitch"))
        cue.gimbal_roll = _num(pairs.get("gb_roll"))
        cue.camera = {k: v for k, v in pairs.items() if k not in _POSITION_KEYS and v != ""}

    if "GPS" in body or "RTK" in body:
        m = _GPS_RE.search(body)
        if m:
            first, second, third, unit = m.groups()
            if third is not None and unit:
                # Matrice style "GPS(lat,lon,0.0M)": latitude first, the third value is an altitude in metres;
                # DJI writes 0.0 when it has none.
                lat, lon = float(first), float(second)
                alt = float(third)
                if cue.abs_alt is None and alt != 0.0:
                    cue.abs_alt = alt
            else:
                # Phantom / one-line "GPS(lon,lat,n)": longitude first; n counts satellites, it is no
                # altitude.
                lon, lat = float(first), float(second)
                if third is not None:
                    cue.satellites = int(float(third))
            if abs(lat) > 90 >= abs(lon):
                lat, lon = lon, lat
                issues.cue("GPS(...) pair in the other order than its layout says; swapped by range", number)
        elif "GPS(" in body.replace(" ", ""):
            issues.cue("GPS(...) field unreadable (damaged or truncated)", number)
    if "HOME" in body:
        m = _HOME_RE.search(body)
        if m:
            hlon, hlat = float(m.group(1)), float(m.group(2))
            if abs(hlat) > 90 >= abs(hlon):
                hlat, hlon = hlon, hlat
            if not (hlat == 0.0 and hlon == 0.0):
                cue.home_lat, cue.home_lon = hlat, hlon
            cue.home_alt = None if m.group(3) is None else float(m.group(3))
            has.add("home")
    if "BAROMETER" in body:
        m = _BARO_RE.search(body)
        if m:
            cue.baro_alt = float(m.group(1))
    if "m" in body and ("D " in body or "H " in body):
        m = _DIST_RE.search(body)
        if m:
            cue.distance_m = float(m.group(1))
        m = _HEIGHT_RE.search(body)
        if m:
            cue.rel_alt = float(m.group(1))
    if ".S" in body:
        cue.speed_h = _speed(_HS_RE.search(body))
        cue.speed_v = _speed(_VS_RE.search(body))
    if ".PRY" in body:
        m = _FPRY_RE.search(body)
        if m:  # labelled Pitch, Roll, Yaw: taken in that order
            cue.aircraft_pitch, cue.aircraft_roll, cue.aircraft_yaw = (float(v) for v in m.groups())
        m = _GPRY_RE.search(body)
        if m:
            cue.gimbal_pitch, cue.gimbal_roll, cue.gimbal_yaw = (float(v) for v in m.groups())
    if not pairs:
        camera: dict[str, str] = {}
        for key, rx in _LOOSE_CAMERA:
            if key not in camera:
                m = rx.search(body)
                if m:
                    camera[key] = m.group(1)
        cue.camera = camera

    if lat is not None and lon is not None:
        has.add("position")
        if lat == 0.0 and lon == 0.0:
            issues.cue("no GPS fix (0.000000, 0.000000): position left empty", number)
            cue.position_dropped = "zero"
            if cue.abs_alt == 0.0 and "altitude" in pairs:
                cue.abs_alt = None  # "[altitude: 0.000000]" beside a (0, 0) position is no reading either
        elif math.isnan(lat) or math.isnan(lon):
            issues.cue("position is NaN, left empty", number)
            cue.position_dropped = "nan"
        elif not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            issues.cue("position out of range, left empty", number)
            cue.position_dropped = "out_of_range"
        else:
            cue.lat, cue.lon = lat, lon
    if cue.rel_alt is not None or cue.abs_alt is not None or cue.baro_alt is not None:
        has.add("altitude")
    if cue.camera:
        has.add("camera")
    if cue.frame is not None:
        has.add("frame")
    if cue.speed_h is not None or cue.gimbal_pitch is not None:
        has.add("motion")
    return cue, frozenset(has)


def _check_consistency(cues: list[TelemetryCue], present: list[frozenset[str]], issues: _Issues) -> None:
    """Warn about cues missing what most cues carry (damage, truncation) and about odd counters."""
    n = len(cues)
    if n >= 2:
        counts: dict[str, int] = {}
        for has in present:
            for name in has:
                counts[name] = counts.get(name, 0) + 1
        usual = {name for name, c in counts.items() if c > n / 2}
        for number, has in enumerate(present, start=1):
            missing = usual - has
            if number == n:  # a cut-off last cue: compare with the cue before it as well
                missing |= present[-2] - has - {"motion"}  # "H.S n/a" after a number is no damage
            if not missing:
                continue
            what = ", ".join(sorted(missing))
            if number == n:
                issues.file.append(
                    f"the last cue ({number}) is incomplete, the file looks truncated (missing: {what})"
                )
            else:
                issues.cue(f"cue lacks fields the other cues carry ({what}): damaged", number)
    frames = [c.frame for c in cues if c.frame is not None]
    restarts = sum(1 for a, b in pairwise(frames) if b < a)
    if restarts:
        issues.file.append(f"frame counter goes back {restarts} time(s): several recordings joined?")
    starts = [c.start_s for c in cues if c.start_s is not None]
    back = sum(1 for a, b in pairwise(starts) if b < a)
    if back:
        issues.file.append(f"timecodes go back {back} time(s)")


def _detect_layout(bodies: list[str], has_timecodes: bool) -> str:
    """A short name for the file's family, from its first cues."""
    sample = "\n".join(bodies[:50])
    if not has_timecodes:
        return "no-timecode"
    if "FrameCnt" in sample or "SrtCnt" in sample or "<font" in sample:
        fly = (
            "rel_alt" in sample or "abs_alt" in sample or "gb_yaw" in sample or re.search(r"Cnt: \d", sample)
        )
        return "dji-fly-font" if fly else "dji-go4"
    gps = _GPS_RE.search(sample)
    if gps and re.search(rf"(?<![\w.])[DH]\s+{_NUM}\s*m\b", sample):
        return "one-line"
    if gps and "HOME" in sample:
        return "phantom-home-gps"
    if gps and gps.group(4):
        return "matrice-gps"
    if "[latitude" in sample:
        return "bracketed"
    return "unknown"


def best_altitude_kind(cues: Iterable[TelemetryCue]) -> str | None:
    """The best altitude kind (`ALTITUDE_KINDS` order) that at least one cue carries."""
    seen: set[str] = set()
    for c in cues:
        if c.rel_alt is not None:
            return "relative"
        if c.baro_alt is not None:
            seen.add("barometric")
        if c.abs_alt is not None:
            seen.add("absolute")
    return next((k for k in ALTITUDE_KINDS if k in seen), None)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _fill(values: np.ndarray) -> np.ndarray | None:
    """Fill NaNs by interpolating over the cue position (median step at the ends); None if < 2 known."""
    known = np.flatnonzero(~np.isnan(values))
    if len(known) == len(values):
        return values
    if len(known) < 2:
        return None
    pos = np.arange(len(values), dtype=float)
    out = np.interp(pos, known, values[known])
    step = float(np.median(np.diff(values[known]) / np.diff(known)))
    out[: known[0]] = values[known[0]] - (known[0] - pos[: known[0]]) * step
    out[known[-1] + 1 :] = values[known[-1]] + (pos[known[-1] + 1 :] - known[-1]) * step
    return out


def _derive_times(cues: Sequence[TelemetryCue], fps: float | None) -> tuple[np.ndarray, str | None]:
    n = len(cues)
    if n == 0:
        return np.empty(0), None
    starts = np.array([_nan(c.start_s) for c in cues], dtype=float)
    if n == 1 and not np.isnan(starts[0]):
        return starts, "timecode"
    filled = _fill(starts)
    if filled is not None:
        return filled, "timecode"
    stamps = [c.timestamp for c in cues]
    first = next((t for t in stamps if t is not None), None)
    if first is not None:
        offsets = np.array(
            [math.nan if t is None else (t - first).total_seconds() for t in stamps], dtype=float
        )
        base = 0.0 if np.isnan(starts).all() else float(np.nanmin(starts))
        filled = _fill(offsets)
        if filled is not None:
            return filled - filled[0] + base, "timestamp"
    if fps:
        frames = np.array([math.nan if c.frame is None else float(c.frame) for c in cues], dtype=float)
        filled = _fill(frames)
        if filled is not None:
            return (filled - filled[0]) / float(fps), "frame"
    return np.arange(n, dtype=float), "assumed-1hz"


def find_sidecar(video: Path) -> Path | None:
    """The ``.srt`` beside ``video`` with its base name (extension in any case; exact base name first)."""
    video = Path(video)
    try:
        entries = sorted(p for p in video.parent.iterdir() if p.suffix.lower() == ".srt" and p.is_file())
    except OSError:
        return None
    for same in (lambda p: p.stem == video.stem, lambda p: p.stem.lower() == video.stem.lower()):
        found = [p for p in entries if same(p)]
        if found:
            return found[0]
    return None


# ------------------------------------------------------------------------------------------------------------
# Distances and cue intervals (used by the summaries in summary.py)


def haversine_m(lat1, lon1, lat2, lon2):
    """Great-circle distance in metres between points in degrees (floats or numpy arrays) on a sphere."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    d = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(d) if np.ndim(d) == 0 else d


def _cue_ends(cues: Sequence[TelemetryCue], times: np.ndarray, source: str | None) -> np.ndarray:
    """Where each cue's interval ends: its end timecode when times are timecodes, else the next start."""
    if len(times) == 0:
        return times
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    ends = np.append(times[1:], times[-1] + max(step, 0.0))
    if source == "timecode":
        own = np.array([_nan(c.end_s) for c in cues], dtype=float)
        ok = ~np.isnan(own) & (own > times)
        ends[ok] = own[ok]
    return ends


# ------------------------------------------------------------------------------------------------------------
# Writing


_CAMERA_FIRST = ("iso", "shutter", "fnum", "ev", "color_md", "focal_len")


def _clean(value: str) -> str:
    return " ".join(str(value).replace("[", "(").replace("]", ")").split())


def _ms_stamp(ts: datetime) -> str:
    rounded = ts.replace(microsecond=0) + timedelta(milliseconds=round(ts.microsecond / 1000))
    return rounded.strftime("%Y-%m-%d %H:%M:%S.") + f"{rounded.microsecond // 1000:03d}"


def write_dji_fly_srt(cues: Sequence[TelemetryCue], fps: float, path: Path) -> None:
    """Write ``cues`` in the newest DJI Fly per-frame layout (``<font size="28">``, as the Mini 5 Pro writes).

    For simulated flights, so that every later stage reads them exactly like a real sidecar. Cue ``k`` (from
    0) covers its own ``start_s``/``end_s`` when set, else ``[k/fps, (k+1)/fps)``; FrameCnt is ``frame`` or
    ``k+1``. The layout carries: time (ms), timestamp (ms; the line is left out when None), camera fields,
    lat/lon (6 decimals; no fix is written ``0.000000`` as DJI does), rel_alt/abs_alt (3 decimals) and, like
    the DJI enterprise variant of this layout, ``[gb_yaw: gb_pitch: gb_roll:]`` (1 decimal) when a cue has
    gimbal angles. Speeds, home point, distance, barometric altitude and aircraft angles have no place in it
    and are not written. ``parse_srt`` reads the file back to equal cues for values already at that precision.
    """
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, not {fps!r}")
    subs: list[srt.Subtitle] = []
    for k, cue in enumerate(cues):
        start_ms = round(cue.start_s * 1000) if cue.start_s is not None else round(k * 1000 / fps)
        end_ms = round(cue.end_s * 1000) if cue.end_s is not None else round((k + 1) * 1000 / fps)
        frame = cue.frame if cue.frame is not None else k + 1
        lines = [f'<font size="28">FrameCnt: {frame}, DiffTime: {end_ms - start_ms}ms']
        if cue.timestamp is not None:
            lines.append(_ms_stamp(cue.timestamp))
        fields = []
        camera = {_clean(k).lower(): _clean(v) for k, v in cue.camera.items()}
        order = [k for k in _CAMERA_FIRST if k in camera]
        order += [k for k in camera if k not in _CAMERA_FIRST and k != "ct"]
        fields += [f"[{k}: {camera[k]}]" for k in order if camera[k]]
        lat, lon = (cue.lat, cue.lon) if cue.lat is not None and cue.lon is not None else (0.0, 0.0)
        fields += [f"[latitude: {lat:.6f}]", f"[longitude: {lon:.6f}]"]
        alts = [
            f"{name}: {v:.3f}"
            for name, v in (("rel_alt", cue.rel_alt), ("abs_alt", cue.abs_alt))
            if v is not None
        ]
        if alts:
            fields.append(f"[{' '.join(alts)}]")
        gimbal = [
            (n, v)
            for n, v in (
                ("gb_yaw", cue.gimbal_yaw),
                ("gb_pitch", cue.gimbal_pitch),
                ("gb_roll", cue.gimbal_roll),
            )
            if v is not None
        ]
        if gimbal:
            fields.append("[" + " ".join(f"{n}: {v:.1f}" for n, v in gimbal) + "]")
        if camera.get("ct"):
            fields.append(f"[ct: {camera['ct']}]")
        lines.append(" ".join(fields) + " </font>")
        subs.append(
            srt.Subtitle(
                k + 1, timedelta(milliseconds=start_ms), timedelta(milliseconds=end_ms), "\n".join(lines)
            )
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(srt.compose(subs, reindex=False))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
