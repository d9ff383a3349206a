"""Simulated drone flights: truth consistency, exact frame timing, determinism, realism for a shot detector,
telemetry that follows the camera path, honest captions, and orthophoto backdrops."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from dvtr_data.errors import InputError, UsageError
from dvtr_data.synth import PRESETS, FlightSpec, Maneuver, ShotSpec, generate, load_truth, render_flight
from dvtr_data.synth.captions import OBJECT_WORDS
from dvtr_data.synth.sidecar import latlon_to_metres
from dvtr_data.synth.world import build_world

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
REALDATA_IMAGE = REALDATA / "images" / "deepforest_pypi" / "OSBS_029.png"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("tiny")
    calls: list[tuple[str, int, int]] = []
    paths = generate(out, "tiny", seed=0, progress=lambda *a: calls.append(a))
    assert calls and all(0 < d <= t for _, d, t in calls)
    assert {c[0] for c in calls} == {p.stem for p in paths}
    return paths


def _frames(path: Path) -> tuple[list[str], list[int], Fraction, Fraction]:
    """md5 per decoded frame, pts, the stream's average rate and time base."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        sums, pts = [], []
        for f in c.decode(s):
            sums.append(hashlib.md5(f.to_ndarray(format="yuv420p").tobytes()).hexdigest())
            pts.append(f.pts)
        return sums, pts, s.average_rate, s.time_base


# ------------------------------------------------------------------------------------------------ API
def test_presets_and_errors(tmp_path: Path) -> None:
    assert set(PRESETS) >= {"tiny", "demo", "bench"}
    specs = PRESETS["tiny"](0)
    joins = [j for s in specs for j in s.joins]
    assert "cut" in joins and ("crossfade" in joins or "fade_black" in joins)
    assert any(len(s.shots) == 1 and len(s.shots[0].maneuvers) >= 4 for s in specs)  # a long uncut flight
    assert all((s.width, s.height) == (640, 360) for s in specs)
    demo = PRESETS["demo"](0)
    rates = {Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60)}
    assert {s.fps for s in demo} >= rates
    assert {(s.width, s.height) for s in demo} >= {(640, 360), (1920, 1080)}
    bench = PRESETS["bench"](0)
    total = sum(sum(round(m.duration_s * float(s.fps)) for sh in s.shots for m in sh.maneuvers) / float(s.fps)
                for s in bench)
    assert total >= 300 and all((s.width, s.height) == (1920, 1080) for s in bench)
    assert PRESETS["demo"](3) == PRESETS["demo"](3)

    with pytest.raises(UsageError):
        generate(tmp_path, "huge")
    with pytest.raises(InputError):
        generate(tmp_path, "tiny", backdrop=tmp_path / "missing.png")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(InputError):
        generate(tmp_path, "tiny", backdrop=junk)
    assert not list(tmp_path.glob("*.mp4"))
    with pytest.raises(InputError):
        load_truth(tmp_path / "nothing.mp4")


def test_spec_validation() -> None:
    shot = ShotSpec("coast", 1, (Maneuver("hover", 1.0),))
    with pytest.raises(ValueError):
        FlightSpec("x", 641, 360, Fraction(30), (shot,))
    with pytest.raises(ValueError):
        FlightSpec("x", 640, 360, Fraction(30), (shot, shot), transitions=("wipe",))
    with pytest.raises(ValueError):
        FlightSpec("x", 640, 360, Fraction(30), (shot, shot), transitions=("cut", "cut"))
    with pytest.raises(ValueError):
        Maneuver("loop", 1.0)
    with pytest.raises(ValueError):
        ShotSpec("moon", 1, (Maneuver("hover", 1.0),))
    assert Maneuver("orbit", 2.0, "oblique", pitch_deg=-10).gimbal_pitch <= -35  # never the horizon


def test_world_wraps_seamlessly() -> None:
    w = build_world("farmland", 5, size_px=512, res_m=0.3)
    tex = w.levels[0].astype(np.float32)
    seam = np.abs(tex[:, 0] - tex[:, -1]).mean() + np.abs(tex[0] - tex[-1]).mean()
    inner = np.abs(tex[:, 256] - tex[:, 255]).mean() + np.abs(tex[256] - tex[255]).mean()
    assert seam < 2.0 * inner + 2.0
    assert np.array_equal(np.roll(w.levels[1], (128, 128), axis=(0, 1)), w.rolled[1])


# ------------------------------------------------------------------------------------------------ truth
def test_truth_is_consistent(tiny: list[Path]) -> None:
    assert [p.suffix for p in tiny] == [".mp4"] * 4
    for mp4 in tiny:
        t = load_truth(mp4)
        assert t == load_truth(mp4.with_name(mp4.stem + ".truth.json"))
        assert t["format"] == "dvtr-synth-truth/1"
        assert t["video"] == mp4.name and t["srt"] == mp4.stem + ".SRT"
        assert (mp4.parent / t["srt"]).is_file()
        n = t["n_frames"]
        assert Fraction(t["fps_num"], t["fps_den"]) == Fraction(round(t["fps"] * t["fps_den"]), t["fps_den"])
        assert abs(t["fps"] - t["fps_num"] / t["fps_den"]) < 1e-6
        # shots: contiguous cover of [0, n); every boundary is a hard cut or the middle of a fade
        shots = t["shots"]
        assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == n
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(shots, shots[1:], strict=False))
        bounds = [s["start_frame"] for s in shots[1:]]
        mids = [(f["start"] + f["end"]) // 2 for f in t["fades"]]
        assert t["fade_cut"] is False
        assert sorted(t["cuts"] + mids) == bounds and 0 not in t["cuts"]
        for f in t["fades"]:
            assert 0 < f["start"] < f["end"] < n
        # segments: contiguous, cover everything, each inside its shot
        segs = t["segments"]
        assert segs[0]["start_frame"] == 0 and segs[-1]["end_frame"] == n
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(segs, segs[1:], strict=False))
        for i, s in enumerate(segs):
            shot = shots[s["shot"]]
            assert s["index"] == i
            assert shot["start_frame"] <= s["start_frame"] < s["end_frame"] <= shot["end_frame"]
            assert s["path"] in {"straight", "orbit", "climb", "descent", "yaw", "hover"}
            assert s["view"] in {"nadir", "oblique"}
            assert s["scene"] in {"grass", "forest", "farmland", "sand", "water"}
            assert len(s["altitude_m"]) == 2 and all(15 < a < 170 for a in s["altitude_m"])
            assert all(isinstance(v, int) and v > 0 for v in s["objects"].values())
            assert len(s["captions"]) == 5 and len(set(s["captions"])) == 5
        for s in segs:
            if s["path"] == "climb":
                assert s["altitude_m"][1] > s["altitude_m"][0] + 1
            if s["path"] == "descent":
                assert s["altitude_m"][1] < s["altitude_m"][0] - 1
        # visible: run-length encoded, contiguous
        vis = t["visible"]
        assert vis[0]["start_frame"] == 0 and vis[-1]["end_frame"] == n
        for a, b in zip(vis, vis[1:], strict=False):
            assert a["end_frame"] == b["start_frame"] and a["classes"] != b["classes"]
        assert all(v["classes"] == sorted(v["classes"]) for v in vis)
        assert "lat" in t["home"] and "lon" in t["home"]
    kinds = {f["kind"] for p in tiny for f in load_truth(p)["fades"]}
    assert kinds == {"cross", "black"}


def test_decoded_frames_match_truth(tiny: list[Path]) -> None:
    for mp4 in tiny:
        t = load_truth(mp4)
        sums, pts, rate, tb = _frames(mp4)
        assert len(sums) == t["n_frames"]
        assert rate == Fraction(t["fps_num"], t["fps_den"])
        step = Fraction(t["fps_den"], t["fps_num"]) / tb  # one frame in stream time-base units
        assert step.denominator == 1
        assert pts == [i * int(step) for i in range(len(pts))]
        with av.open(str(mp4)) as c:
            s = c.streams.video[0]
            got = (s.codec_context.name, s.format.name, s.width, s.height)
            assert got == ("h264", "yuv420p", t["width"], t["height"])


def test_same_seed_same_files(tiny: list[Path], tmp_path: Path) -> None:
    """A fresh process (with another hash seed) renders byte-identical truth and identical frames."""
    mp4 = next(p for p in tiny if p.stem == "tiny_black")
    code = (
        "import sys; from pathlib import Path; from dvtr_data.synth import PRESETS, render_flight; "
        "spec = next(s for s in PRESETS['tiny'](0) if s.name == 'tiny_black'); "
        "render_flight(spec, Path(sys.argv[1]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env, timeout=300)
    again = tmp_path / mp4.name
    truth = "tiny_black.truth.json"
    assert again.with_name(truth).read_bytes() == mp4.with_name(truth).read_bytes()
    assert _frames(again)[0] == _frames(mp4)[0]
    assert again.with_name("tiny_black.SRT").read_bytes() == mp4.with_name("tiny_black.SRT").read_bytes()
    other = PRESETS["tiny"](1)
    assert [s.shots[0].place_seed for s in other] != [s.shots[0].place_seed for s in PRESETS["tiny"](0)]


# ------------------------------------------------------------------------------------------------ realism
def _detect(mp4: Path) -> list[int]:
    from scenedetect import AdaptiveDetector, detect

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scenes = detect(str(mp4), AdaptiveDetector(), start_in_scene=True)
        return [s[0].frame_num for s in scenes[1:]]


def test_shot_detector_sees_cuts_and_nothing_else(tiny: list[Path]) -> None:
    """The realism bar: PySceneDetect finds every hard cut (within 2 frames), no cut inside smooth flight."""
    n_cuts = 0
    for mp4 in tiny:
        t = load_truth(mp4)
        found = _detect(mp4)
        for c in t["cuts"]:
            n_cuts += 1
            assert any(abs(f - c) <= 2 for f in found), (mp4.name, c, found)
        for f in found:
            near_cut = any(abs(f - c) <= 2 for c in t["cuts"])
            in_fade = any(x["start"] - 2 <= f <= x["end"] + 2 for x in t["fades"])
            assert near_cut or in_fade, (mp4.name, f, t["cuts"], t["fades"])
    assert n_cuts >= 2


def _says(caption: str, words: tuple[str, ...] | set[str]) -> bool:
    return any(re.search(rf"\b{re.escape(w)}\b", caption.lower()) for w in words)


def test_captions_match_objects(tiny: list[Path]) -> None:
    mentioned_any: dict[str, int] = {}
    for mp4 in tiny:
        for s in load_truth(mp4)["segments"]:
            present = set(s["objects"])
            for cap in s["captions"]:
                assert cap[0].isupper() and cap.endswith(".") and "  " not in cap
                for cls, vocab in OBJECT_WORDS.items():
                    if _says(cap, vocab):
                        assert cls in present, (cls, cap, s["objects"])
                if s["land_cover"].get("water", 0) < 0.01:
                    assert not _says(cap, {"sea", "lake", "pond", "water", "boat", "boats"}), cap
            for cls in present:  # what is there gets said, at least once
                hits = sum(_says(c, OBJECT_WORDS[cls]) for c in s["captions"])
                assert hits >= 1, (cls, s["captions"])
                mentioned_any[cls] = mentioned_any.get(cls, 0) + 1
            if s["view"] == "nadir":
                assert not any("oblique" in c or "tilted aerial" in c for c in s["captions"])
    assert {"car", "building"} <= set(mentioned_any)


def test_srt_follows_the_camera_path(tiny: list[Path]) -> None:
    from dvtr_data.telemetry.dji_srt import parse_srt

    for mp4 in tiny:
        t = load_truth(mp4)
        fps = t["fps_num"] / t["fps_den"]
        tel = parse_srt(mp4.with_name(t["srt"]), fps=fps)
        cues = tel.cues
        assert len(cues) == t["n_frames"] and tel.layout.startswith("dji-fly")
        assert [c.frame for c in cues] == list(range(1, len(cues) + 1))
        assert np.allclose(tel.times(), np.arange(len(cues)) / fps, atol=0.0011)
        for shot in t["shots"]:
            home = (shot["home"]["lat"], shot["home"]["lon"])
            xy = np.array([latlon_to_metres(home, c.lat, c.lon)
                           for c in cues[shot["start_frame"]:shot["end_frame"]]])
            assert np.hypot(*xy[0]) < 2000  # the flight happens around its home point
            step = np.hypot(*np.diff(xy, axis=0).T)
            assert step.max() < 20 / fps + 0.3  # no jumps: 20 m/s at most, plus the rounding of 6 decimals
        for s in t["segments"]:
            a, b = s["start_frame"], s["end_frame"]
            assert abs(cues[a].rel_alt - s["altitude_m"][0]) < 0.06
            assert abs(cues[b - 1].rel_alt - s["altitude_m"][1]) < 0.06
            settled = cues[b - (b - a) // 3:b]  # the gimbal tilts at the start of the segment that wants it
            if s["view"] == "nadir":
                assert all(c.gimbal_pitch < -85 for c in settled), (mp4.name, s["index"])
            else:
                assert all(-60 < c.gimbal_pitch < -30 for c in settled), (mp4.name, s["index"])
            # away from the eased transitions, the path does what the segment says
            m = round(0.6 * fps)
            lo, hi = a + m, b - m
            if hi - lo < 4:
                continue
            shot = t["shots"][s["shot"]]
            home = (shot["home"]["lat"], shot["home"]["lon"])
            p0 = np.array(latlon_to_metres(home, cues[lo].lat, cues[lo].lon))
            p1 = np.array(latlon_to_metres(home, cues[hi].lat, cues[hi].lon))
            speed = np.hypot(*(p1 - p0)) / ((hi - lo) / fps)
            climb = (cues[hi].rel_alt - cues[lo].rel_alt) / ((hi - lo) / fps)
            if s["path"] == "hover":
                assert speed < 1.5, (mp4.name, s["index"], speed)
            if s["path"] in ("straight", "orbit"):
                assert speed > 3.0, (mp4.name, s["index"], speed)
                assert abs(speed - s["speed_mps"]) < 0.35 * s["speed_mps"] + 1.0
            if s["path"] == "climb":
                assert climb > 1.0
            if s["path"] == "descent":
                assert climb < -1.0
            if s["path"] == "yaw":
                yaw = np.unwrap(np.radians([c.gimbal_yaw for c in cues[lo:hi + 1]]))
                assert abs(math.degrees(yaw[-1] - yaw[0])) / ((hi - lo) / fps) > 8


# ------------------------------------------------------------------------------------------------ backdrop
def _small_spec(name: str, theme: str = "lakeside") -> FlightSpec:
    return FlightSpec(name, 320, 180, Fraction(25), (
        ShotSpec(theme, 3, (Maneuver("straight", 0.8), Maneuver("orbit", 0.8, "oblique")), altitude_m=50),
    ), world_px=512, world_res_m=0.3)


def test_backdrop_renders(tmp_path: Path) -> None:
    """An orthophoto becomes the ground; the objects stay on top; the truth reads the photo's land cover."""
    rng = np.random.default_rng(0)
    small = rng.random((24, 24)).astype(np.float32)
    field = cv2.resize(small, (600, 600), interpolation=cv2.INTER_CUBIC)
    img = np.zeros((600, 600, 3), np.uint8)
    img[...] = (40, 120, 60)  # BGR: green land
    img[field > 0.62] = (120, 70, 30)  # BGR: blue water
    img = cv2.add(img, (rng.random((600, 600, 3)) * 25).astype(np.uint8))
    photo = tmp_path / "ortho.png"
    cv2.imwrite(str(photo), img)
    mp4 = render_flight(_small_spec("over_photo"), tmp_path / "out", backdrop=photo)
    t = load_truth(mp4)
    assert t["shots"][0]["place"].startswith("ortho-")
    covers = set().union(*(s["land_cover"] for s in t["segments"]))
    assert covers & {"grass", "forest"} and "water" in covers
    sums, _, _, _ = _frames(mp4)
    assert len(sums) == t["n_frames"]
    with av.open(str(mp4)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)
    g = frame[..., 1].mean()
    assert g > frame[..., 0].mean()  # the photo's greens, not procedural colours


@pytest.mark.realdata
def test_real_orthophoto_backdrop(tmp_path: Path) -> None:
    path = REALDATA_IMAGE.resolve()
    if not path.is_file():
        pytest.skip(f"{path} not present")
    mp4 = render_flight(_small_spec("osbs", "forest"), tmp_path, backdrop=path)
    t = load_truth(mp4)
    assert t["shots"][0]["place"].startswith("OSBS_029-")
    assert len(_frames(mp4)[0]) == t["n_frames"]


# ------------------------------------------------------------------------------------------------ bigger
@pytest.mark.slow
def test_demo_preset(tmp_path: Path) -> None:
    """The demo: every video decodes to its frame count, and the shot detector agrees with the truth."""
    paths = generate(tmp_path, "demo", seed=0)
    assert len(paths) == 6
    sizes, rates = set(), set()
    for mp4 in paths:
        t = load_truth(mp4)
        sums, _, rate, _ = _frames(mp4)
        assert len(sums) == t["n_frames"] and rate == Fraction(t["fps_num"], t["fps_den"])
        sizes.add((t["width"], t["height"]))
        rates.add(rate)
        found = _detect(mp4)
        for c in t["cuts"]:
            assert any(abs(f - c) <= 2 for f in found), (mp4.name, c, found)
        for f in found:
            assert any(abs(f - c) <= 2 for c in t["cuts"]) or any(
                x["start"] - 2 <= f <= x["end"] + 2 for x in t["fades"]), (mp4.name, f)
        assert 10 <= t["n_frames"] / float(rate) <= 40
    assert len(sizes) >= 3 and len(rates) == 5
    json.dumps([load_truth(p) for p in paths])
