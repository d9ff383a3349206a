"""Named sets of simulated flights (tiny for tests, demo, bench), and `generate` to render one."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import TypedDict

import numpy as np

from dvtr_data.errors import UsageError
from dvtr_data.synth.camera import Maneuver as M
from dvtr_data.synth.flights import FlightSpec, Progress, ShotSpec, WorldCache, load_backdrop, render_flight


class _WorldOptions(TypedDict, total=False):
    """The FlightSpec fields a preset's flights share: typed, so that `FlightSpec(..., **w)` is checked."""

    seed: int
    world_px: int
    world_res_m: float
    x264_preset: str
    crf: int


def _rng(seed: int, salt: int) -> tuple[np.random.Generator, Callable[[], int], Callable[[], int]]:
    rng = np.random.default_rng([seed, salt])
    return rng, lambda: int(rng.integers(0, 100_000)), lambda: int(rng.choice([-1, 1]))


def tiny(seed: int) -> list[FlightSpec]:
    """Four short 640x360 videos (about 18 s in all) over five small places: hard cuts, a cross-fade, a fade
    through black, and an uncut shot through every kind of maneuver. For tests: a few seconds to generate."""
    rng, place, sign = _rng(seed, 1)
    suburb, coast, farm, forest, lake = place(), place(), place(), place(), place()
    common: _WorldOptions = {"seed": seed, "world_px": 1024, "world_res_m": 0.25}
    return [
        FlightSpec("tiny_cuts", 640, 360, Fraction(30), (
            ShotSpec("suburb", suburb, (M("straight", 1.6, speed_mps=7.0),), altitude_m=55),
            ShotSpec("coast", coast, (M("orbit", 1.6, "oblique", direction=sign()),), altitude_m=50),
            ShotSpec("farmland", farm, (M("straight", 0.8), M("climb", 1.0, rate=3.0)), altitude_m=45),
        ), **common),
        FlightSpec("tiny_fade", 640, 360, Fraction(25), (
            # 2.4 s shots: the cross-fade's frames belong to neither clip, and what is left stays above 2 s
            ShotSpec("forest", forest, (M("straight", 2.4, speed_mps=9.0),), altitude_m=70),
            ShotSpec("lakeside", lake, (
                M("hover", 0.8, "oblique"), M("yaw", 1.6, "oblique", direction=sign()),
            ), altitude_m=45),
        ), transitions=("crossfade",), **common),
        FlightSpec("tiny_long", 640, 360, Fraction(30000, 1001), (
            ShotSpec("farmland", farm, (
                M("straight", 1.2), M("yaw", 1.0, direction=sign()), M("hover", 0.8),
                M("descent", 1.0, rate=3.0), M("orbit", 1.4, "oblique", direction=sign()),
            ), altitude_m=65),
        ), **common),
        FlightSpec("tiny_black", 640, 360, Fraction(24), (
            ShotSpec("coast", coast, (M("straight", 1.6, "oblique", speed_mps=6.0),), altitude_m=60),
            ShotSpec("suburb", suburb, (M("hover", 0.6), M("straight", 1.2)), altitude_m=50),
        ), transitions=("fade_black",), **common),
    ]


def demo(seed: int) -> list[FlightSpec]:
    """Six videos of 12-30 s at 640x360 to 1920x1080 and 24/25/29.97/30/60 fps: long uncut flights, edits with
    hard cuts, a cross-fade and a fade through black. About a minute or two to generate on 2 cores."""
    rng, place, sign = _rng(seed, 2)
    coast, suburb, lake, farm, forest = place(), place(), place(), place(), place()
    w: _WorldOptions = {"seed": seed, "world_px": 2048, "world_res_m": 0.15}
    return [
        FlightSpec("demo_farm_uncut", 1280, 720, Fraction(30000, 1001), (
            ShotSpec("farmland", farm, (
                M("straight", 7.0, speed_mps=9.0), M("yaw", 4.0, direction=sign()), M("climb", 4.0, rate=3.0),
                M("orbit", 8.0, "oblique", direction=sign()), M("straight", 5.0, "oblique", speed_mps=7.0),
            ), altitude_m=60),
        ), **w),
        FlightSpec("demo_coast_cuts", 1920, 1080, Fraction(25), (
            ShotSpec("coast", coast, (M("orbit", 6.0, "oblique", direction=sign()),), altitude_m=70),
            ShotSpec("suburb", suburb, (M("straight", 6.0, speed_mps=8.0),), altitude_m=75),
            ShotSpec("lakeside", lake, (M("hover", 3.0), M("straight", 5.0, "oblique")), altitude_m=65),
        ), seed=seed, world_px=3072, world_res_m=0.1),
        FlightSpec("demo_crossfade", 960, 540, Fraction(24), (
            ShotSpec("forest", forest, (M("straight", 7.0, speed_mps=10.0),), altitude_m=80),
            ShotSpec("lakeside", lake, (M("orbit", 7.0, "oblique", direction=sign()),), altitude_m=55),
        ), transitions=("crossfade",), **w),
        FlightSpec("demo_black_fade", 640, 360, Fraction(60), (
            ShotSpec("suburb", suburb, (M("descent", 5.0, rate=4.0), M("straight", 3.0)), altitude_m=90),
            ShotSpec("coast", coast, (M("straight", 6.0, "oblique", speed_mps=6.0),), altitude_m=50),
        ), transitions=("fade_black",), **w),
        FlightSpec("demo_suburb_uncut", 1280, 720, Fraction(30), (
            ShotSpec("suburb", suburb, (
                M("hover", 3.0), M("straight", 6.0, speed_mps=6.0),
                M("orbit", 7.0, "oblique", direction=sign()), M("climb", 4.0, "oblique", rate=4.0),
            ), altitude_m=45),
        ), **w),
        FlightSpec("demo_edit", 1280, 720, Fraction(30), (
            ShotSpec("farmland", farm, (M("straight", 5.0, speed_mps=10.0),), altitude_m=90),
            ShotSpec("forest", forest, (M("yaw", 5.0, direction=sign()),), altitude_m=60),
            ShotSpec("coast", coast, (M("straight", 5.0, "oblique", speed_mps=8.0),), altitude_m=40),
            ShotSpec("suburb", suburb, (M("orbit", 6.0, "oblique", direction=sign()),), altitude_m=60),
            ShotSpec("lakeside", lake, (M("descent", 5.0, rate=3.0),), altitude_m=80),
        ), transitions=("cut", "cut", "crossfade", "cut"), **w),
    ]


def bench(seed: int) -> list[FlightSpec]:
    """Two 1080p30 videos, 5.2 minutes in all, over big worlds (6144 px textures at 10 cm): a long uncut
    flight through every maneuver, and an edit of eight shots with cuts and fades. For benchmarks."""
    rng, place, sign = _rng(seed, 3)
    w: _WorldOptions = {
        "seed": seed, "world_px": 6144, "world_res_m": 0.1, "x264_preset": "superfast", "crf": 22,
    }
    long_path = []
    for _ in range(3):  # 3 x 52 s
        long_path += [
            M("straight", 12.0, speed_mps=float(rng.uniform(7, 12))), M("yaw", 5.0, direction=sign()),
            M("orbit", 10.0, "oblique", direction=sign()), M("climb", 5.0, "oblique", rate=3.0),
            M("straight", 8.0, "oblique"), M("hover", 4.0), M("descent", 5.0, rate=3.0),
            M("straight", 3.0, speed_mps=5.0),
        ]
    themes = ["farmland", "coast", "suburb", "forest", "lakeside", "farmland", "coast", "suburb"]
    kinds = [
        (M("straight", 14.0, speed_mps=9.0), M("yaw", 6.0)),
        (M("orbit", 20.0, "oblique", direction=sign()),),
        (M("hover", 4.0), M("straight", 16.0, speed_mps=7.0)),
        (M("climb", 8.0, rate=4.0), M("straight", 12.0, "oblique")),
        (M("orbit", 12.0, "oblique", direction=sign()), M("hover", 8.0, "oblique")),
        (M("descent", 8.0, rate=4.0), M("straight", 12.0)),
        (M("straight", 20.0, "oblique", speed_mps=8.0),),
        (M("yaw", 8.0, "oblique", direction=sign()), M("straight", 12.0, "oblique")),
    ]
    places = {t: place() for t in dict.fromkeys(themes)}
    return [
        FlightSpec("bench_long_uncut", 1920, 1080, Fraction(30), (
            ShotSpec("farmland", places["farmland"], tuple(long_path), altitude_m=70),
        ), **w),
        FlightSpec("bench_edit", 1920, 1080, Fraction(30000, 1001), tuple(
            ShotSpec(t, places[t], k, altitude_m=float(rng.uniform(50, 90)))
            for t, k in zip(themes, kinds, strict=True)
        ), transitions=("cut", "cut", "crossfade", "cut", "fade_black", "cut", "cut"), **w),
    ]


def moments(seed: int) -> list[FlightSpec]:
    """Two small (192x108, 10 fps) untrimmed flights of 86 s and 72 s whose maneuvers last 4-36 s, so the truth's
    maneuver spans fill every QVHighlights length bucket (<= 10 s, 10-30 s, 30-150 s): moment annotation
    (`annotate simulate` with ``--task moments``) and the moment baselines. Tens of seconds to generate."""
    rng, place, sign = _rng(seed, 4)
    farm, coast, suburb = place(), place(), place()
    w: _WorldOptions = {"seed": seed, "world_px": 2048, "world_res_m": 0.3, "x264_preset": "superfast"}
    return [
        FlightSpec("moments_farm", 192, 108, Fraction(10), (
            ShotSpec("farmland", farm, (
                M("straight", 6.0, speed_mps=4.0), M("orbit", 18.0, "oblique", direction=sign()), M("hover", 4.0),
                M("straight", 36.0, speed_mps=2.0), M("yaw", 8.0, direction=sign()), M("climb", 14.0, rate=2.0),
            ), altitude_m=60),
        ), **w),
        FlightSpec("moments_edit", 192, 108, Fraction(10), (
            ShotSpec("coast", coast, (M("straight", 32.0, "oblique", speed_mps=2.0),), altitude_m=55),
            ShotSpec("suburb", suburb, (
                M("orbit", 24.0, "oblique", direction=sign()), M("hover", 6.0), M("descent", 10.0, rate=1.0),
            ), altitude_m=70),
        ), **w),
    ]


PRESETS: dict[str, Callable[[int], list[FlightSpec]]] = {"tiny": tiny, "demo": demo, "bench": bench, "moments": moments}


def generate(
    out_dir: Path, preset: str = "demo", *, seed: int = 0, backdrop: Path | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Render every flight of ``preset`` into ``out_dir``; returns the .mp4 paths. Deterministic in ``seed``.

    ``backdrop``: render the ground from this aerial image (an orthophoto) instead of procedural land cover.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown synth preset {preset!r}", hint=f"choose one of: {', '.join(PRESETS)}")
    specs = PRESETS[preset](seed)
    image = load_backdrop(backdrop) if backdrop is not None else None  # fail before rendering anything
    name = Path(backdrop).stem if backdrop is not None else "backdrop"
    cache = WorldCache()
    return [
        render_flight(spec, Path(out_dir), backdrop=image, progress=progress, cache=cache, backdrop_name=name)
        for spec in specs
    ]
