"""DJI SRT telemetry: every real sidecar in ../shared/realdata/srt, synthetic quirks, summaries, events.

Expected values for the real files were read from the files themselves (first and last cue, cue counts), not
produced by the parser. The real-data tests skip when the folder is absent; the rest always run.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import pytest

from dvtr_data.errors import InputError
from dvtr_data.telemetry import (
    Telemetry,
    TelemetryCue,
    TelemetryEvent,
    detect_events,
    find_sidecar,
    haversine_m,
    parse_srt,
    summarize,
    write_dji_fly_srt,
)

SRT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "srt"
JUAN = SRT_DIR / "JuanIrache_DJI_SRT_Parser"
MARCUS = SRT_DIR / "CallMarcus_dji-drone-metadata-embedder"
WEBODM = SRT_DIR / "OpenDroneMap_WebODM"

# 0.001 degree of arc on a 6,371,000 m sphere: 0.001 * pi / 180 * 6,371,000 = 111.19492664 m (by hand).
ARC_0001_DEG_M = 111.19492664


@pytest.fixture
def real() -> Path:
    """The real samples folder; tests that use it skip, saying why, when it is absent."""
    if not SRT_DIR.is_dir():
        pytest.skip(f"real SRT samples not present at {SRT_DIR}")
    return SRT_DIR


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ------------------------------------------------------------------------------------------------------------
# Every real file: (file, layout, cue count, first cue, last cue). A cue tuple is
# (lat, lon, altitude kind, altitude value of that kind, FrameCnt, timestamp); None where the file has none.

REAL = [
    (
        JUAN / "MAVIC3.srt",
        "dji-fly-font",
        12318,
        (3.41531, -3.37440, "relative", -2.4, 1, "2021-12-25 12:27:52.373"),
        (3.41368, -3.37721, "relative", 3.6, 12318, "2021-12-25 12:31:58.710"),
    ),
    (
        JUAN / "m2zoom.SRT",
        "dji-go4",
        7113,
        (31.452012, 74.398751, "absolute", 213.983002, 1, "2020-04-02 15:19:58.720764"),
        (31.450438, 74.398905, "absolute", 264.541992, 7113, "2020-04-02 15:21:57.372289"),
    ),
    (
        JUAN / "mavic_2pro_new.SRT",
        "dji-go4",
        8952,
        (-35.080155, -60.286702, None, None, 218, "2019-09-27 10:28:08.438904"),
        (-35.077976, -60.314572, None, None, 1049, "2019-09-27 11:11:41.524497"),
    ),
    (
        JUAN / "mavic_2_style.SRT",
        "no-timecode",
        468,
        (-20.2533, 149.0251, None, None, None, "2017-08-05 14:11:51.393525"),
        (-20.2532, 149.0251, None, None, None, "2017-08-05 14:19:39.393525"),
    ),
    (
        JUAN / "mavic_air.SRT",
        "dji-go4",
        2,
        (None, None, None, None, 1, "2018-02-19 08:04:51.265847"),
        (None, None, None, None, 2, "2018-02-19 08:04:51.305846"),
    ),
    (
        JUAN / "mavic_air2.srt",
        "dji-go4",
        25,
        (41.420684, 2.162162, "absolute", 27.3, None, "2022-05-01 15:01:58.531716"),
        (41.420686, 2.162162, "absolute", 29.2, None, "2022-05-01 15:01:58.931885"),
    ),
    (
        JUAN / "mavic_pro.SRT",
        "phantom-home-gps",
        468,
        (-20.2533, 149.0251, "barometric", 1.9, None, "2017-08-05 14:11:51"),
        (-20.2532, 149.0251, "barometric", 0.0, None, "2017-08-05 14:19:39"),
    ),
    (
        JUAN / "mavic_mini.SRT",
        "one-line",
        117,
        (48.0771, -121.7458, "relative", 200.7, None, None),
        (48.0775, -121.7476, "relative", 200.8, None, None),
    ),
    (
        JUAN / "p4p_sample.SRT",
        "one-line",
        5,
        (47.4692, 8.2090, "relative", 45.6, None, None),
        (47.4692, 8.2090, "relative", 45.6, None, None),
    ),
    (
        JUAN / "p4_rtk.SRT",
        "one-line",
        55,
        (-34.237922, -58.851745, "relative", 85.8, None, None),
        (-34.232349, -58.849196, "relative", 85.8, None, None),
    ),
    (
        JUAN / "broken_incomplete.SRT",
        "phantom-home-gps",
        20,
        (-34.7383, -58.4563, "barometric", 20.1, None, "2017-07-03 10:15:03"),
        (None, None, "barometric", None, None, "2017-07-03 10:15:22"),
    ),  # cut after its HOME line
    (
        JUAN / "broken_incomplete2.SRT",
        "dji-go4",
        6,
        (-34.869950, -57.823395, "absolute", 74.725998, 1, "2020-08-12 08:55:21.745078"),
        (None, None, "absolute", None, 6, "2020-08-12 08:55:21.945095"),
    ),  # cut inside "[longtitude"
    (
        MARCUS / "Mini5PRO_clip.SRT",
        "dji-fly-font",
        5,
        (53.365108, 6.460719, "relative", 6.0, 1, "2026-05-27 13:14:22.911"),
        (53.365109, 6.460718, "relative", 6.0, 5, "2026-05-27 13:14:23.071"),
    ),
    (
        MARCUS / "air3S_clip.SRT",
        "dji-fly-font",
        5,
        (34.270373, -84.176160, "relative", 0.0, 1, "2026-05-17 08:28:30.219"),
        (34.270373, -84.176160, "relative", 0.0, 5, "2026-05-17 08:28:30.285"),
    ),
    (
        MARCUS / "neo2_clip.SRT",
        "dji-fly-font",
        5,
        (45.607181, 13.753860, "relative", 0.0, 1, "2026-05-15 08:24:18.623"),
        (45.607181, 13.753859, "relative", 0.1, 5, "2026-05-15 08:24:18.757"),
    ),
    (
        MARCUS / "neo2_clip_nogps.SRT",
        "dji-fly-font",
        6,
        (None, None, "relative", 0.4, 1, "2026-05-31 16:15:29.797"),
        (32.848932, -84.861966, "relative", 0.4, 6, "2026-05-31 16:15:29.964"),
    ),
    (
        WEBODM / "video.srt",
        "one-line",
        3,
        (27.7716, -82.6669, "relative", 0.0, None, None),
        (27.7716, -82.6669, "relative", 0.0, None, None),
    ),
    (JUAN / "broken_empty.SRT", "empty", 0, None, None),
    (JUAN / "broken_empty2.SRT", "empty", 0, None, None),
]


def _check_cue(cue: TelemetryCue, expected: tuple, kind: str | None) -> None:
    lat, lon, alt_kind, alt, frame, stamp = expected
    assert cue.lat == (None if lat is None else pytest.approx(lat, abs=1e-9))
    assert cue.lon == (None if lon is None else pytest.approx(lon, abs=1e-9))
    assert kind == alt_kind
    if alt_kind is not None:
        got = cue.altitude(alt_kind)
        assert got == (None if alt is None else pytest.approx(alt, abs=1e-9))
    assert cue.frame == frame
    assert cue.timestamp == (None if stamp is None else ts(stamp))


@pytest.mark.realdata
@pytest.mark.parametrize("path, layout, count, first, last", REAL, ids=[r[0].name for r in REAL])
def test_real_file(real, path, layout, count, first, last):
    tel = parse_srt(path)
    assert tel.layout == layout
    assert len(tel.cues) == count
    if count == 0:
        assert tel.warnings, "an empty or broken file must say why it gave nothing"
        assert tel.times().size == 0
        return
    _check_cue(tel.cues[0], first, tel.altitude_kind)
    _check_cue(tel.cues[-1], last, tel.altitude_kind)
    assert tel.start_time == (None if first[5] is None else ts(first[5]))
    assert len(tel.times()) == count


@pytest.mark.realdata
def test_every_real_file_is_covered(real):
    """A new file dropped into the samples folder must get its own expected values above."""
    on_disk = {p.name for p in SRT_DIR.rglob("*") if p.is_file() and p.suffix.lower() == ".srt"}
    assert on_disk == {r[0].name for r in REAL}


@pytest.mark.realdata
def test_real_details_per_family(real):
    # MAVIC3: 50 fps per-frame cues, last timecode 00:04:06,340
    tel = parse_srt(JUAN / "MAVIC3.srt")
    assert tel.cue_rate_hz == pytest.approx(50.0, abs=0.01)
    assert tel.cues[-1].start_s == pytest.approx(246.34)
    assert tel.cues[0].abs_alt == pytest.approx(0.401) and tel.cues[0].camera["iso"] == "220"
    assert tel.cues[0].camera["color_md"] == "default"  # written "[color_md : default]" with a space
    # m2zoom: 60 fps ("longtitude" spelling is read above); 7113 cues over 118.651 s
    assert parse_srt(JUAN / "m2zoom.SRT").cue_rate_hz == pytest.approx(7112 / 118.651, abs=0.01)
    # mavic_2pro_new: BOM before the first "1"; no altitude anywhere; starts at frame 218 with timecode 0
    tel = parse_srt(JUAN / "mavic_2pro_new.SRT")
    assert tel.altitude_kind is None and tel.cues[0].start_s == 0.0 and tel.cues[0].index == 1
    assert any("frame counter goes back" in w for w in tel.warnings)  # seven clips joined, FrameCnt restarts
    # mavic_pro: 1 Hz, first cue at 00:00:01; HOME(lon,lat); GPS third value 16 is satellites, not altitude
    tel = parse_srt(JUAN / "mavic_pro.SRT")
    c = tel.cues[0]
    assert (c.start_s, c.end_s) == (1.0, 2.0) and tel.cue_rate_hz == pytest.approx(1.0)
    assert (c.home_lat, c.home_lon) == (-20.2532, 149.0251)
    assert c.satellites == 16 and c.abs_alt is None and c.rel_alt is None
    assert c.camera == {"iso": "100", "shutter": "60", "fnum": "2.2"}  # "EV:" is empty
    # mavic_mini: "D 221.21m, H 200.70m", "H.S n/a"
    c = parse_srt(JUAN / "mavic_mini.SRT").cues[0]
    assert (c.distance_m, c.rel_alt, c.satellites, c.speed_h, c.speed_v) == (221.21, 200.7, 17, None, None)
    # p4p_sample: speeds 0.00 then 0.20, 1.90, 2.62, 2.44 m/s
    assert [c.speed_h for c in parse_srt(JUAN / "p4p_sample.SRT").cues] == [0.0, 0.2, 1.9, 2.62, 2.44]
    # p4_rtk: HOME with altitude, F.PRY (2.7, -7.0, 110.1), G.PRY (-24.4, 0.0, 110.4), D 698.70m
    c = parse_srt(JUAN / "p4_rtk.SRT").cues[0]
    assert (c.home_lat, c.home_lon, c.home_alt) == (-34.232707, -58.847509, -57.98)
    assert (c.aircraft_pitch, c.aircraft_roll, c.aircraft_yaw) == (2.7, -7.0, 110.1)
    assert (c.gimbal_pitch, c.gimbal_roll, c.gimbal_yaw) == (-24.4, 0.0, 110.4)
    assert (c.distance_m, c.speed_h, c.speed_v, c.satellites) == (698.7, 0.0, 0.0, 15)
    assert parse_srt(JUAN / "p4_rtk.SRT").cues[4].speed_v == -0.1  # "V.S -0.10m/s"
    # video.srt (WebODM): GPS (-82.6669, 27.7716, 10) is Florida, i.e. (lon, lat)
    c = parse_srt(WEBODM / "video.srt").cues[2]
    assert (c.lat, c.lon, c.satellites, c.distance_m) == (27.7716, -82.6669, 9, 2.84)
    # Mini5PRO: [ct: 5263] and [color_md: dlog_m]
    c = parse_srt(MARCUS / "Mini5PRO_clip.SRT").cues[0]
    assert c.camera["ct"] == "5263" and c.camera["color_md"] == "dlog_m" and c.abs_alt == -122.769


@pytest.mark.realdata
def test_no_timecode_file_times_come_from_timestamps(real):
    tel = parse_srt(JUAN / "mavic_2_style.SRT")
    assert all(c.start_s is None for c in tel.cues)
    assert tel.time_source == "timestamp"
    t = tel.times()
    # 14:11:51.393525 to 14:19:39.393525 is 7 min 48 s = 468 s
    assert t[0] == 0.0 and t[-1] == pytest.approx(468.0)
    assert any("no '-->'" in w for w in tel.warnings)


@pytest.mark.realdata
def test_neo2_without_gps_lock(real):
    tel = parse_srt(MARCUS / "neo2_clip_nogps.SRT")
    assert [c.lat for c in tel.cues] == [None, None, None, 32.848932, 32.848932, 32.848932]
    assert [c.lon for c in tel.cues[:3]] == [None, None, None]
    assert all(c.rel_alt == 0.4 and c.abs_alt == 269.099 for c in tel.cues)  # the altimeter still works
    assert any("no GPS fix" in w and "3 cues" in w for w in tel.warnings)
    s = summarize(tel, 0.0, 1.0)
    assert (s.lat, s.lon, s.n_cues) == (pytest.approx(32.848932), pytest.approx(-84.861966), 6)


@pytest.mark.realdata
def test_truncated_files_warn_and_keep_what_is_there(real):
    tel = parse_srt(JUAN / "broken_incomplete.SRT")
    assert tel.cues[-1].home_lat == -34.7386 and tel.cues[-1].baro_alt is None
    assert any("truncated" in w for w in tel.warnings)
    tel = parse_srt(JUAN / "broken_incomplete2.SRT")
    assert [c.lat for c in tel.cues] == [-34.869950, -34.869950, None, -34.869945, -34.869945, None]
    assert tel.cues[3].lon == -57.823383
    assert any("truncated" in w for w in tel.warnings)
    assert any("cue 3" in w for w in tel.warnings)  # cut mid-field in the middle of the file


@pytest.mark.realdata
def test_mavic3_parses_in_one_pass_with_heartbeats(real, monkeypatch):
    """A 12,318-cue sidecar is parsed in one pass (each cue's body parsed once: linear, never re-scanned) and
    reports progress as it goes, so a stall watchdog watching ingest never mistakes a long sidecar for a hang."""
    import dvtr_data.telemetry.dji_srt as dji_srt

    parsed = []
    parse_body = dji_srt._parse_body
    monkeypatch.setattr(dji_srt, "_parse_body", lambda body, *a: parsed.append(a[-2]) or parse_body(body, *a))
    beats = []
    tel = parse_srt(JUAN / "MAVIC3.srt", progress=lambda done, total: beats.append((done, total)))
    assert len(tel.cues) == 12318
    assert parsed == list(range(1, 12319))  # cue numbers 1..12318, each once, in order
    # beats every few thousand cues, never going backwards, the last one at the end
    done = [0] + [d for d, _ in beats]
    assert all(0 < b - a <= 4096 for a, b in zip(done, done[1:], strict=False)), done
    assert beats[-1] == (12318, 12318) and {t for _, t in beats} == {12318}


# ------------------------------------------------------------------------------------------------------------
# Synthetic quirks


def test_bom_and_crlf():
    text = (
        "1\r\n00:00:00,000 --> 00:00:00,033\r\n"
        '<font size="28">FrameCnt: 1, DiffTime: 33ms\r\n2024-03-01 10:00:00.500\r\n'
        "[iso: 100] [latitude: 51.500000] [longitude: -0.120000] [rel_alt: 12.500 abs_alt: 40.000] "
        "</font>\r\n\r\n"
        "2\r\n00:00:00,033 --> 00:00:00,066\r\n"
        '<font size="28">FrameCnt: 2, DiffTime: 33ms\r\n2024-03-01 10:00:00.533\r\n'
        "[iso: 100] [latitude: 51.500010] [longitude: -0.120010] [rel_alt: 12.600 abs_alt: 40.100] "
        "</font>\r\n"
    )
    tel = parse_srt(b"\xef\xbb\xbf" + text.encode())
    assert tel.warnings == []
    assert tel.layout == "dji-fly-font"
    assert [c.index for c in tel.cues] == [1, 2]
    assert (tel.cues[0].lat, tel.cues[0].lon, tel.cues[0].rel_alt) == (51.5, -0.12, 12.5)
    assert tel.cues[1].timestamp == datetime(2024, 3, 1, 10, 0, 0, 533000)
    assert tel.cues[1].start_s == 0.033


def test_gps_lon_lat_order_and_satellites():
    text = (
        "1\n00:00:00,000 --> 00:00:01,000\n"
        "F/2.8, SS 100, ISO 100, EV 0, GPS (-121.5000, 38.2500, 12), D 5.00m, H 30.00m\n"
    )
    c = parse_srt(text.encode()).cues[0]
    assert (c.lat, c.lon) == (38.25, -121.5)
    assert c.satellites == 12 and c.rel_alt == 30.0 and c.abs_alt is None  # 12 is no altitude


def test_gps_pair_swapped_against_its_layout_is_fixed_by_range():
    text = "1\n00:00:00,000 --> 00:00:01,000\nGPS (38.2500, -121.5000, 12), D 5.00m, H 30.00m\n"
    tel = parse_srt(text.encode())
    assert (tel.cues[0].lat, tel.cues[0].lon) == (38.25, -121.5)
    assert any("swapped" in w for w in tel.warnings)


def test_matrice_gps_is_lat_lon_with_a_unit():
    text = (
        "1\n00:00:00,000 --> 00:00:01,000\n2022.06.21 16:06:17\nGPS(36.6146,-6.1120,0.0M) BAROMETER:0.3M\n\n"
        "2\n00:00:01,000 --> 00:00:02,000\n2022.06.21 16:06:18\nGPS(36.6146,-6.1120,0.0M) BAROMETER:0.8M\n"
    )
    tel = parse_srt(text.encode())
    assert tel.layout == "matrice-gps"
    c = tel.cues[1]
    assert (c.lat, c.lon, c.baro_alt, c.abs_alt, c.satellites) == (36.6146, -6.112, 0.8, None, None)
    assert tel.altitude_kind == "barometric"
    assert tel.cues[0].timestamp == datetime(2022, 6, 21, 16, 6, 17)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("2021-12-25 12:27:52.373", datetime(2021, 12, 25, 12, 27, 52, 373000)),  # DJI Fly
        ("2020-04-02 15:19:58,720,764", datetime(2020, 4, 2, 15, 19, 58, 720764)),  # GO 4: ms, then us
        ("2017.08.05 14:11:51,393,525", datetime(2017, 8, 5, 14, 11, 51, 393525)),  # Mavic 2 style
        ("2017.08.05 14:11:51,393,525,393,525", datetime(2017, 8, 5, 14, 11, 51, 393525)),  # its first cue
        ("HOME(149.0251,-20.2532) 2017.08.05 14:11:51", datetime(2017, 8, 5, 14, 11, 51)),  # Phantom
        ("F/2.8, SS 30.15, ISO 260, EV -1.7", None),  # one-line: no date at all
        ("2021-13-45 12:27:52.373", None),  # impossible date: ignored with a warning
    ],
)
def test_timestamp_layouts(line, expected):
    tel = parse_srt(f"1\n00:00:00,000 --> 00:00:01,000\n{line}\n".encode())
    assert tel.cues[0].timestamp == expected


def test_garbage_bytes_between_cues():
    good = b"00:00:00,000 --> 00:00:01,000\nGPS(149.0251,-20.2533,16) BAROMETER:1.9\n"
    data = (
        b"1\n" + good + b"\n\x80\xff\xfe garbage \xc3\x28\n\n2\n" + good.replace(b"00,000 -->", b"01,000 -->")
    )
    tel = parse_srt(data)
    assert [c.lat for c in tel.cues] == [-20.2533, -20.2533]
    assert any("UTF-8" in w for w in tel.warnings)


def test_binary_file_named_srt(tmp_path):
    path = tmp_path / "DJI_0001.SRT"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    tel = parse_srt(path)
    assert tel.cues == [] and tel.layout == "binary"
    assert any("binary" in w for w in tel.warnings)


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf", b"1\n", b"1\n00:00:0"])
def test_empty_and_stub_files_warn(data):
    tel = parse_srt(data)
    assert tel.cues == [] or all(c.lat is None for c in tel.cues)
    assert tel.warnings


def test_truncated_last_cue():
    text = (
        '1\n00:00:00,000 --> 00:00:00,040\n<font size="36">FrameCnt : 1, DiffTime : 40ms\n'
        "[iso : 100] [latitude : -34.869950] [longtitude : -57.823395] [altitude: 74.725998] </font>\n\n"
        '2\n00:00:00,040 --> 00:00:00,080\n<font size="36">FrameCnt : 2, DiffTime : 40ms\n'
        "[iso : 100] [latitude : -34.869950] [longti"
    )
    tel = parse_srt(text.encode())
    assert len(tel.cues) == 2 and tel.cues[1].frame == 2
    assert tel.cues[1].lat is None and tel.cues[1].abs_alt is None
    assert any("truncated" in w for w in tel.warnings)


def test_unreadable_path_raises_input_error(tmp_path):
    with pytest.raises(InputError):
        parse_srt(tmp_path / "missing.SRT")
    with pytest.raises(InputError):
        parse_srt(tmp_path)  # a folder


def test_times_from_frames_or_assumed():
    frames = "".join(f"{i}\n<font>FrameCnt: {100 + 2 * i}</font>\n\n" for i in range(1, 4))
    tel = parse_srt(frames.encode(), fps=50)
    assert tel.time_source == "frame"
    assert list(tel.times()) == [0.0, 0.04, 0.08]  # (frame - 102) / 50
    tel = parse_srt(frames.encode())  # no fps: nothing to go on but the order
    assert tel.time_source == "assumed-1hz" and list(tel.times()) == [0.0, 1.0, 2.0]
    assert any("assume" in w for w in tel.warnings)


def test_find_sidecar(tmp_path):
    video = tmp_path / "DJI_0001.MP4"
    video.write_bytes(b"")
    assert find_sidecar(video) is None
    (tmp_path / "DJI_0002.SRT").write_text("")
    assert find_sidecar(video) is None
    (tmp_path / "DJI_0001.srt").write_text("")
    assert find_sidecar(video) == tmp_path / "DJI_0001.srt"
    (tmp_path / "dji_0003.SRT").write_text("")
    assert find_sidecar(tmp_path / "DJI_0003.MOV") == tmp_path / "dji_0003.SRT"
    assert find_sidecar(tmp_path / "nowhere" / "x.mp4") is None


# ------------------------------------------------------------------------------------------------------------
# Summaries and events on constructed cues


def cue(t: float, step: float = 1.0, **fields) -> TelemetryCue:
    return TelemetryCue(start_s=t, end_s=t + step, **fields)


def test_haversine_by_hand():
    assert haversine_m(45.0, 7.0, 45.001, 7.0) == pytest.approx(ARC_0001_DEG_M, abs=1e-6)  # along a meridian
    assert haversine_m(0.0, 10.0, 0.0, 10.001) == pytest.approx(ARC_0001_DEG_M, abs=1e-6)  # along the equator
    assert haversine_m(10.0, 20.0, 10.0, 20.0) == 0.0


def test_summarize_from_fixes():
    tel = Telemetry(
        cues=[
            cue(0, 10, lat=45.000, lon=7.0, rel_alt=10.0, abs_alt=500.0, gimbal_pitch=-90.0),
            cue(10, 10, lat=45.001, lon=7.0, rel_alt=20.0, abs_alt=510.0, gimbal_pitch=-45.0),
            cue(20, 10, lat=45.002, lon=7.0, rel_alt=30.0, abs_alt=520.0, gimbal_pitch=-30.0),
            cue(30, 10, lat=None, lon=None, rel_alt=99.0),
        ]
    )
    s = summarize(tel, 0.0, 30.0)
    assert s.n_cues == 3
    assert (s.lat, s.lon) == (pytest.approx(45.001), pytest.approx(7.0))
    assert (s.altitude_m, s.altitude_kind) == (pytest.approx(20.0), "relative")  # relative beats absolute
    assert s.gimbal_pitch == -45.0  # median of -90, -45, -30
    assert s.speed_mps == pytest.approx(2 * ARC_0001_DEG_M / 20.0, rel=1e-9)  # 222.39 m in 20 s = 11.12 m/s


def test_summarize_prefers_speed_fields_and_covers_short_spans():
    tel = Telemetry(
        cues=[
            cue(0, lat=45.0, lon=7.0, speed_h=2.0),
            cue(1, lat=45.0001, lon=7.0, speed_h=4.0),
            cue(2, lat=45.0002, lon=7.0, speed_h=9.0),
        ]
    )
    assert summarize(tel, 0.0, 3.0).speed_mps == 5.0  # mean of 2, 4, 9; the fixes (11.1 m/s) are not used
    inside = summarize(tel, 1.2, 1.7)  # shorter than the 1 s cue spacing: the cue covering it
    assert (inside.n_cues, inside.lat, inside.speed_mps) == (1, 45.0001, 4.0)
    assert summarize(tel, 1.5, 1.5).n_cues == 1
    past = summarize(tel, 10.0, 20.0)
    assert past.n_cues == 0 and past.lat is None and past.altitude_kind is None


def test_summarize_across_the_antimeridian():
    # 0.0002 degrees of longitude at 16 S is 21 m: a plausible second of flight across the antimeridian
    tel = Telemetry(cues=[cue(0, lat=-16.0, lon=179.9999), cue(1, lat=-16.0, lon=-179.9999)])
    assert abs(summarize(tel, 0.0, 2.0).lon) == pytest.approx(180.0)


def test_summarize_barometric_only():
    tel = Telemetry(cues=[cue(0, baro_alt=1.0), cue(1, baro_alt=3.0)])
    s = summarize(tel, 0.0, 2.0)
    assert (s.altitude_m, s.altitude_kind, s.lat, s.speed_mps) == (2.0, "barometric", None, None)


def events_of(tel: Telemetry, **kw) -> list[tuple[float, str]]:
    return [(e.time_s, e.kind) for e in detect_events(tel, **kw)]


def test_hover_start_and_stop():
    speeds = [3, 3, 3, 0, 0, 0, 0, 0, 3, 3, 3, 3]
    tel = Telemetry(cues=[cue(i, speed_h=float(v), speed_v=0.0) for i, v in enumerate(speeds)])
    assert events_of(tel) == [(3.0, "hover_start"), (8.0, "hover_stop")]


def test_hover_shorter_than_min_gap_is_ignored():
    speeds = [3, 3, 3, 0, 3, 3, 3, 3]  # a 1 s dip below 0.5 m/s
    tel = Telemetry(cues=[cue(i, speed_h=float(v), speed_v=0.0) for i, v in enumerate(speeds)])
    assert events_of(tel) == []
    assert events_of(tel, min_gap_s=1.0) == [(3.0, "hover_start"), (4.0, "hover_stop")]


def test_climbing_is_not_hovering():
    tel = Telemetry(cues=[cue(i, speed_h=0.0, speed_v=v) for i, v in enumerate([0, 0, 0, 3, 3, 3, 3])])
    assert events_of(tel, alt_change_m=1e9) == [(3.0, "hover_stop")]


def test_yaw_change_from_gimbal():
    yaws = [0, 0, 10, 20, 30, 40, 50, 60, 60, 60]
    tel = Telemetry(cues=[cue(i, gimbal_yaw=float(y)) for i, y in enumerate(yaws)])
    assert events_of(tel) == [(6.0, "yaw_change")]  # first at 50 degrees from the start's 0


def test_yaw_change_wraps_the_short_way():
    yaws = [170, 175, -175, -170, -160, -140, -125]  # +5, +15, +20, +30, +50 from 170 going through 180
    tel = Telemetry(cues=[cue(i, aircraft_yaw=float(y)) for i, y in enumerate(yaws)])
    assert events_of(tel) == [(5.0, "yaw_change")]


def test_yaw_change_from_course_over_ground():
    # 10 m/s north for 5 s, then east. Courses use fixes 3 s apart: at t=6, from t=3, 20 m N and 10 m E is
    # atan(10/20) = 26.6 degrees; at t=7, from t=4, 10 m N and 20 m E is atan(20/10) = 63.4 >= 45: the event.
    north = 10.0 / ARC_0001_DEG_M * 0.001  # 10 m in degrees of latitude
    east = north / math.cos(math.radians(45.0))
    path = [(45.0 + k * north, 7.0) for k in range(6)]
    path += [(path[-1][0], 7.0 + k * east) for k in range(1, 6)]
    tel = Telemetry(cues=[cue(i, lat=la, lon=lo) for i, (la, lo) in enumerate(path)])
    assert events_of(tel) == [(7.0, "yaw_change")]


def test_altitude_change():
    alts = [10, 10, 12, 15, 21, 25, 31, 33]
    tel = Telemetry(cues=[cue(i, rel_alt=float(a)) for i, a in enumerate(alts)])
    assert events_of(tel) == [(4.0, "altitude_change"), (6.0, "altitude_change")]  # 21 - 10, then 31 - 21
    assert events_of(tel, min_gap_s=5.0) == [(4.0, "altitude_change")]


def test_events_need_two_cues():
    assert detect_events(Telemetry(cues=[cue(0, speed_h=0.0)])) == []
    assert detect_events(Telemetry(cues=[])) == []
    assert TelemetryEvent(1.0, "hover_start").kind == "hover_start"


# ------------------------------------------------------------------------------------------------------------
# Writer


def test_writer_round_trip(tmp_path):
    cues = [
        TelemetryCue(
            index=k + 1,
            start_s=k * 40 / 1000,
            end_s=(k + 1) * 40 / 1000,
            frame=300 + k,
            timestamp=datetime(2026, 5, 27, 13, 14, 22, 911000 - 40000 * (k % 2)),
            lat=None if k == 2 else 53.365108 + k / 1e6,
            lon=None if k == 2 else 6.460719,
            rel_alt=6.0 + k,
            abs_alt=-122.769,
            gimbal_pitch=-45.5 if k else None,
            gimbal_yaw=120.0 if k else None,
            gimbal_roll=0.0 if k else None,
            camera={
                "iso": "200",
                "shutter": "1/6400.0",
                "fnum": "1.8",
                "ev": "-0.7",
                "color_md": "dlog_m",
                "focal_len": "24.00",
                "ct": str(5263 - k),
            },
        )
        for k in range(4)
    ]
    path = tmp_path / "sim" / "flight.SRT"
    write_dji_fly_srt(cues, 25.0, path)
    tel = parse_srt(path)
    assert tel.layout == "dji-fly-font"
    assert tel.cues == cues
    assert tel.cue_rate_hz == 25.0


def test_writer_derives_times_and_frames(tmp_path):
    path = tmp_path / "f.srt"
    write_dji_fly_srt([TelemetryCue(lat=1.5, lon=2.5), TelemetryCue(lat=1.5, lon=2.5)], 30.0, path)
    text = path.read_text()
    assert text.startswith('1\n00:00:00,000 --> 00:00:00,033\n<font size="28">FrameCnt: 1, DiffTime: 33ms\n')
    assert "2\n00:00:00,033 --> 00:00:00,067\n" in text
    assert [c.frame for c in parse_srt(path).cues] == [1, 2]


@pytest.mark.realdata
@pytest.mark.parametrize("name, fps", [("Mini5PRO_clip.SRT", 25.0), ("air3S_clip.SRT", 60.0)])
def test_writer_reproduces_dji_fly_files(real, tmp_path, name, fps):
    """Parsed and rewritten, a real DJI Fly file comes back byte for byte (up to the final blank line)."""
    original = (MARCUS / name).read_text()
    write_dji_fly_srt(parse_srt(MARCUS / name).cues, fps, tmp_path / name)
    assert (tmp_path / name).read_text().rstrip("\n") == original.rstrip("\n")
