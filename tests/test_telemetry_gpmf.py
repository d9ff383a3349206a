"""GoPro GPMF telemetry: the real karma.mp4 read as GoPro's own parser reads it, and hand-built payloads.

Reference values for karma.mp4 were read with GoPro's C gpmf-parser (through its Python bindings
``py-gpmf-parser`` 0.1.1, run once outside the project, not a dependency): 47 ``GLPI`` samples, the first at
33.1253688 N 117.3310668 W, the last at 33.1260123 N 117.3314792 W, mean 33.1256541 N 117.3312489 W, first
velocity north 0.88 m/s east -0.75 m/s. That is the bluffs of Carlsbad, California, where the flight follows
the coast.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from dvtr_data.telemetry import check_telemetry, gpmf_to_telemetry, read_embedded, read_gpmf, summarize
from dvtr_data.telemetry.gpmf import iter_klv

KARMA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "videos" / "gopro_gpmf-parser" / "karma.mp4"


@pytest.fixture
def karma() -> Path:
    if not KARMA.is_file():
        pytest.skip(f"real GoPro sample not present at {KARMA}")
    return KARMA


@pytest.mark.realdata
def test_karma_positions_match_gopros_parser(karma):
    tel = read_gpmf(karma)
    assert tel is not None and tel.layout == "gopro-gpmf-glpi"
    assert read_embedded(karma).kind == "gpmf"
    assert len(tel.cues) == 47
    first, last = tel.cues[0], tel.cues[-1]
    assert (first.lat, first.lon) == (pytest.approx(33.1253688, abs=1e-9), pytest.approx(-117.3310668, abs=1e-9))
    assert (last.lat, last.lon) == (pytest.approx(33.1260123, abs=1e-9), pytest.approx(-117.3314792, abs=1e-9))
    assert first.speed_h == pytest.approx(math.hypot(0.88, -0.75))
    assert first.rel_alt == pytest.approx(2.003) and first.abs_alt == pytest.approx(15.711)
    # 12 payloads of 1.001 s, four samples each, spread over the 12.08 s video
    times = tel.times()
    assert times[0] == 0.0 and 11.5 < times[-1] < 12.1 and np.all(np.diff(times) > 0)


@pytest.mark.realdata
def test_karma_is_plausible_and_summarises(karma):
    tel = read_gpmf(karma)
    assert check_telemetry(tel).counts() == {}
    lats = [c.lat for c in tel.cues]
    lons = [c.lon for c in tel.cues]
    assert all(32.5 < v < 42.0 for v in lats) and all(-124.5 < v < -114.0 for v in lons)  # California
    assert all(0.0 <= c.speed_h < 30.0 for c in tel.cues)
    s = summarize(tel, 0.0, 12.08)
    assert s.flags == () and s.n_cues == 47
    assert (s.lat, s.lon) == (pytest.approx(33.1256541, abs=1e-7), pytest.approx(-117.3312489, abs=1e-7))
    assert s.altitude_kind == "relative" and 1.5 < s.altitude_m < 3.0
    assert 0.0 < s.speed_mps < 30.0


# ------------------------------------------------------------------------------------------------------------
# Hand-built GPMF: the format as documented (key, type, struct size, big-endian repeat, padded to 4 bytes)


def klv(key: str, type_: str, size: int, values: bytes, repeat: int | None = None) -> bytes:
    repeat = len(values) // size if repeat is None else repeat
    head = key.encode() + type_.encode() + bytes([size]) + struct.pack(">H", repeat)
    return head + values + b"\0" * (-len(values) % 4)


def nest(key: str, *children: bytes) -> bytes:
    body = b"".join(children)
    return key.encode() + b"\0\x01" + struct.pack(">H", len(body)) + body  # nested: size 1 x repeat bytes


def gps5_payload(fix: int, samples: list[tuple[float, float, float, float]]) -> bytes:
    scal = struct.pack(">5i", 10_000_000, 10_000_000, 1000, 1000, 100)
    data = b"".join(
        struct.pack(">5i", round(lat * 1e7), round(lon * 1e7), round(alt * 1000), round(v * 1000), 0)
        for lat, lon, alt, v in samples
    )
    strm = nest(
        "STRM",
        klv("GPSF", "L", 4, struct.pack(">I", fix)),
        klv("GPSU", "U", 16, b"170417192757.500"),
        klv("SCAL", "l", 4, scal),
        klv("GPS5", "l", 20, data),
    )
    return nest("DEVC", klv("DVNM", "c", 1, b"Camera"), strm)


def test_gps5_payloads_by_hand():
    payloads = [
        (0.0, 1.0, gps5_payload(3, [(46.5, 6.6, 400.0, 5.0), (46.50001, 6.6, 400.5, 5.5)])),
        (1.0, 2.0, gps5_payload(0, [(0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)])),
        (2.0, 3.0, gps5_payload(3, [(46.50004, 6.6, 401.0, 6.0), (46.50005, 6.6, 401.5, 6.5)])),
    ]
    tel = gpmf_to_telemetry(payloads)
    assert tel.layout == "gopro-gpmf-gps5"
    assert [c.start_s for c in tel.cues] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert [c.lat for c in tel.cues] == [46.5, 46.50001, None, None, 46.50004, 46.50005]
    assert [c.abs_alt for c in tel.cues] == [400.0, 400.5, None, None, 401.0, 401.5]
    assert [c.speed_h for c in tel.cues] == [5.0, 5.5, None, None, 6.0, 6.5]
    assert tel.start_time == datetime(2017, 4, 17, 19, 27, 57, 500_000, tzinfo=UTC)
    assert tel.warnings == ["2 GPMF GPS5 sample(s) without a GPS fix: position left empty"]
    s = summarize(tel, 0.0, 3.0)
    assert s.flags == ("telemetry:position_zero",) and s.n_left_out == 2
    assert s.lat == pytest.approx((46.5 + 46.50001 + 46.50004 + 46.50005) / 4)
    assert s.speed_mps == pytest.approx(5.75) and s.altitude_kind == "absolute"


def test_gps9_complex_record_by_hand():
    # GPS9: lat, lon, alt, speed 2D, speed 3D, days since 2000, seconds since midnight, DOP, fix (TYPE string)
    type_string = b"lllllllSS"
    scal = struct.pack(">9i", 10_000_000, 10_000_000, 1000, 1000, 100, 1, 1000, 100, 1)
    row = struct.pack(">7i2H", -338_568_000, 1_512_153_000, 58_000, 12_340, 0, 8000, 1000, 150, 3)
    strm = nest("STRM", klv("TYPE", "c", 1, type_string), klv("SCAL", "l", 4, scal), klv("GPS9", "?", len(row), row))
    tel = gpmf_to_telemetry([(0.0, 1.0, nest("DEVC", strm))])
    (cue,) = tel.cues
    assert (cue.lat, cue.lon) == (pytest.approx(-33.8568), pytest.approx(151.2153))  # Sydney Opera House
    assert cue.abs_alt == 58.0 and cue.speed_h == pytest.approx(12.34)


def test_truncated_and_foreign_payloads_are_skipped():
    good = gps5_payload(3, [(46.5, 6.6, 400.0, 5.0)])
    assert [r.key for r in iter_klv(good)] == ["DEVC"]
    assert list(iter_klv(good[:-6])) == []  # cut inside the record: nothing, and no exception
    tel = gpmf_to_telemetry([(0.0, 1.0, good[:-6]), (1.0, 2.0, b"garbage!" * 3), (2.0, 3.0, good)])
    assert [c.lat for c in tel.cues] == [46.5]
    empty = gpmf_to_telemetry([(0.0, 1.0, nest("DEVC", klv("DVNM", "c", 1, b"Camera")))])
    assert empty.cues == [] and empty.warnings == ["GPMF track without GPS positions"]


def test_a_video_without_gpmf_has_no_embedded_telemetry(tmp_path):
    path = tmp_path / "plain.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=Fraction(10, 1))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for k in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), k * 40, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert read_gpmf(path) is None
    found = read_embedded(path)
    assert (found.telemetry, found.kind, found.notes) == (None, None, ())
