"""Simulated flights: specs, and rendering one to ``<name>.mp4`` + ``<name>.SRT`` + ``<name>.truth.json``.

A flight is one or more shots (each over its own place, flown as a list of maneuvers) joined by hard cuts,
cross-fades (dissolves) or fades through black or white. The truth's ``fades`` list every gradual transition's
frames ``[start, end)`` and kind (``cross``, ``black``, ``white``). Everything is seeded: the same spec gives
the same files.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from dvtr_data.errors import InputError
from dvtr_data.synth.camera import Maneuver, Trajectory, fly
from dvtr_data.synth.captions import SegmentFacts, caption_segment
from dvtr_data.synth.render import OBJECT_CLASSES, InView, Renderer
from dvtr_data.synth.sidecar import make_cue, write_srt
from dvtr_data.synth.video import Mp4Writer
from dvtr_data.synth.world import COVER_NAMES, ROAD, SAND, THEMES, World, build_world

TRUTH_FORMAT = "dvtr-synth-truth/1"
TRANSITIONS = ("cut", "crossfade", "fade_black", "fade_white")
LAND_COVERS = ("grass", "forest", "farmland", "sand", "water")
Progress = Callable[[str, int, int], None]


# ------------------------------------------------------------------------------------------------ specs
@dataclass(frozen=True)
class ShotSpec:
    """One continuous piece of flight over one place."""

    theme: str
    place_seed: int
    maneuvers: tuple[Maneuver, ...]
    altitude_m: float = 60.0
    start_xy: tuple[float, float] | None = None  # map metres; None: an interesting spot is picked
    yaw_deg: float | None = None  # None: along a nearby road, or random

    def __post_init__(self) -> None:
        if self.theme not in THEMES:
            raise ValueError(f"unknown theme {self.theme!r}; expected one of {THEMES}")
        if not self.maneuvers:
            raise ValueError("a shot needs at least one maneuver")

    @property
    def place(self) -> str:
        return f"{self.theme}-{self.place_seed}"


@dataclass(frozen=True)
class FlightSpec:
    """One output video. ``transitions[k]`` joins shot k to shot k+1 (default: hard cuts)."""

    name: str
    width: int
    height: int
    fps: Fraction
    shots: tuple[ShotSpec, ...]
    transitions: tuple[str, ...] = ()
    fade_s: float = 0.5
    seed: int = 0
    world_px: int = 2048
    world_res_m: float = 0.15
    crf: int = 21
    x264_preset: str = "veryfast"

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "/\\:") or self.name.startswith("."):
            raise ValueError(f"bad flight name {self.name!r}")
        if self.width % 2 or self.height % 2 or self.width < 64 or self.height < 64:
            raise ValueError("width and height must be even and at least 64")
        if Fraction(self.fps) <= 0:
            raise ValueError("fps must be positive")
        if self.world_px % 128 or self.world_px < 256 or self.world_res_m <= 0:
            raise ValueError("world_px must be a multiple of 128 (at least 256) and world_res_m positive")
        if not self.shots:
            raise ValueError("a flight needs at least one shot")
        if self.transitions and len(self.transitions) != len(self.shots) - 1:
            raise ValueError("transitions must have one entry per pair of consecutive shots")
        bad = [t for t in self.transitions if t not in TRANSITIONS]
        if bad:
            raise ValueError(f"unknown transition(s) {bad}; expected {TRANSITIONS}")

    @property
    def joins(self) -> tuple[str, ...]:
        return self.transitions or ("cut",) * (len(self.shots) - 1)


# ------------------------------------------------------------------------------------------------ timeline
class _Live(NamedTuple):
    """What a shot has while it is being rendered (from `_prepare` to `_finish_shot`)."""

    traj: Trajectory
    world: World
    renderer: Renderer
    when: datetime


@dataclass
class _Shot:
    spec: ShotSpec
    index: int
    start: int  # first video frame the shot owns
    end: int  # one past its last
    counts: list[int]
    pre: int = 0  # frames rendered before `start` (cross-fade in)
    post: int = 0  # frames rendered after `end` (cross-fade out)
    traj: Trajectory | None = None
    world: World | None = None
    renderer: Renderer | None = None
    when: datetime | None = None  # wall clock of the shot's first owned frame
    home_alt: float = 0.0
    first_segment: int = 0  # global index of its first segment
    segments: list[dict[str, Any]] | None = None  # its truth, filled once its last frame is rendered
    place: str = ""
    home: tuple[float, float] = (0.0, 0.0)

    def live(self) -> _Live:
        """Its path, world, renderer and clock; an error outside `_prepare` .. `_finish_shot` (a bug here)."""
        if self.traj is None or self.world is None or self.renderer is None or self.when is None:
            raise RuntimeError(f"shot {self.index} is used before it is prepared or after it is finished")
        return _Live(self.traj, self.world, self.renderer, self.when)


@dataclass
class _Timeline:
    n: int
    shots: list[_Shot]
    cuts: list[int]
    fades: list[dict[str, Any]]
    mix: list[list[tuple[int, float]]]  # per frame: (shot, weight); weights < 1 alone mean a fade to black
    owner: np.ndarray
    white: set[int] = field(default_factory=set)  # frames whose lone weight < 1 fades to white, not black


def _timeline(spec: FlightSpec) -> _Timeline:
    fps = float(spec.fps)
    shots: list[_Shot] = []
    pos = seg = 0
    for k, s in enumerate(spec.shots):
        counts = [max(1, round(m.duration_s * fps)) for m in s.maneuvers]
        shots.append(_Shot(s, k, pos, pos + sum(counts), counts, first_segment=seg))
        pos += sum(counts)
        seg += len(counts)
    n = pos
    owner = np.zeros(n, np.int64)
    for sh in shots:
        owner[sh.start:sh.end] = sh.index
    mix: list[list[tuple[int, float]]] = [[(int(owner[i]), 1.0)] for i in range(n)]
    cuts: list[int] = []
    fades: list[dict[str, Any]] = []
    for k, kind in enumerate(spec.joins):
        b = shots[k + 1].start
        if kind == "cut":
            cuts.append(b)
            continue
        f = max(2, round(spec.fade_s * fps))
        half = f // 2
        start, end = b - half, b - half + f
        if start <= shots[k].start + 1 or end >= shots[k + 1].end - 1:
            raise ValueError(f"shots around transition {k} are too short for a {spec.fade_s} s fade")
        name = {"crossfade": "cross", "fade_black": "black", "fade_white": "white"}[kind]
        fades.append({"start": start, "end": end, "kind": name})
        if kind == "crossfade":
            shots[k].post = end - b
            shots[k + 1].pre = b - start
            for i in range(start, end):
                a = (i - start + 0.5) / f
                mix[i] = [(k, 1.0 - a), (k + 1, a)]
        else:
            for i in range(start, b):
                mix[i] = [(k, (b - i - 0.5) / (b - start))]
            for i in range(b, end):
                mix[i] = [(k + 1, (i - b + 0.5) / (end - b))]
    white = {i for f in fades if f["kind"] == "white" for i in range(f["start"], f["end"])}
    return _Timeline(n, shots, cuts, fades, mix, owner, white)


# ------------------------------------------------------------------------------------------------ worlds
class WorldCache:
    """Keeps recently used worlds (up to ``max_bytes`` of textures), so flights that revisit a place do not
    generate it again."""

    def __init__(self, max_bytes: int = 1_200_000_000) -> None:
        self.max_bytes = max_bytes
        self._worlds: OrderedDict[tuple, World] = OrderedDict()

    def get(
        self, spec: ShotSpec, px: int, res: float, backdrop: np.ndarray | None, backdrop_name: str
    ) -> World:
        key = (spec.theme, spec.place_seed, px, res, backdrop_name if backdrop is not None else None)
        if key in self._worlds:
            self._worlds.move_to_end(key)
            return self._worlds[key]
        world = build_world(spec.theme, spec.place_seed, size_px=px, res_m=res, backdrop=backdrop,
                            backdrop_name=backdrop_name)
        self._worlds[key] = world
        while len(self._worlds) > 1 and sum(w.nbytes for w in self._worlds.values()) > self.max_bytes:
            self._worlds.popitem(last=False)
        return world


def _largest_valid_rect(valid: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the largest axis-aligned rectangle of True cells (histogram method)."""
    h, w = valid.shape
    heights = np.zeros(w, np.int64)
    best = (0, 0, 0, 0, 0)
    for r in range(h):
        heights = np.where(valid[r], heights + 1, 0)
        stack: list[int] = []
        for c in range(w + 1):
            cur = heights[c] if c < w else 0
            while stack and heights[stack[-1]] >= cur:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                area = int(heights[top]) * (c - left)
                if area > best[0]:
                    best = (area, r - int(heights[top]) + 1, left, r + 1, c)
            stack.append(c)
    return best[1:]


def load_backdrop(path: Path | str) -> np.ndarray:
    """An aerial image (any format OpenCV reads) as RGB; `InputError` when it cannot be read.

    Orthophotos usually sit in a no-data collar (transparent, or flat white/black) with a dark rim at the edge
    of the data. Tiled, those would become holes and seams, so the image is cut down to the largest rectangle
    of real ground (small leftover holes are inpainted).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"backdrop image not found: {p}")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0 or img.ndim not in (2, 3) or min(img.shape[:2]) < 16:
        raise InputError(f"cannot read the backdrop image {p}", hint="give a PNG, JPEG or TIFF aerial photo")
    if img.dtype != np.uint8:  # 16-bit or float orthophotos
        img = cv2.normalize(img, np.empty_like(img), 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    hole = np.zeros(img.shape[:2], bool)
    if img.shape[2] == 4:
        hole = img[..., 3] < 128
    img = np.ascontiguousarray(img[..., :3])
    flat = (img.min(axis=2) >= 250) | (img.max(axis=2) <= 4)
    n, labels = cv2.connectedComponents(flat.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    hole |= np.isin(labels, edge[edge > 0])  # flat white/black touching the border: a no-data collar
    hole = cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # and the rim around it
    if hole.all():
        raise InputError(f"the backdrop image {p} has no ground in it")
    if hole.any():
        scale = min(1.0, 256 / max(hole.shape))
        valid = (~hole).astype(np.uint8)
        small = cv2.resize(valid, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) == 1
        t, left, b, r = _largest_valid_rect(small)
        t, left = int(np.ceil(t / scale)), int(np.ceil(left / scale))
        b, r = int(b / scale), int(r / scale)
        if (b - t) * (r - left) >= 0.2 * hole.size and min(b - t, r - left) >= 16:
            img, hole = img[t:b, left:r], hole[t:b, left:r]
        if hole.any():
            img = cv2.inpaint(img, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    m = max(1, round(0.01 * min(img.shape[:2])))  # the outermost pixels of a mosaic are often smeared
    return cv2.cvtColor(np.ascontiguousarray(img[m:-m, m:-m]), cv2.COLOR_BGR2RGB)


def _pick_start(world: World, rng: np.random.Generator, alt: float) -> tuple[np.ndarray, float]:
    """An interesting place to start: mixed land cover, a road, some buildings and movers in view."""
    size, m, cell = world.size_m, world.semantic.shape[0], world.cell_m
    radius = max(30.0, 0.7 * alt)
    r_cells = max(2, int(radius / cell))
    movers = [pose(0.0)[0] for pose in (world.car_poses, world.boat_poses, world.people_poses)]
    movers = [a for a in movers if len(a)]
    movers_xy = np.vstack(movers) if movers else np.zeros((0, 2))
    centers = world.buildings.centers
    best_score = -math.inf
    p: np.ndarray = np.zeros(2)  # the best start so far
    for _ in range(48):
        q = rng.uniform(0, size, 2)
        ci, cj = int(q[1] / cell), int(q[0] / cell)
        rows = np.arange(ci - r_cells, ci + r_cells + 1) % m
        cols = np.arange(cj - r_cells, cj + r_cells + 1) % m
        win = world.semantic[np.ix_(rows, cols)]
        frac = np.bincount(win.ravel(), minlength=len(COVER_NAMES)) / win.size
        nz = frac[frac > 0]
        score = float(-(nz * np.log(nz)).sum())
        score += 0.4 * float(frac[ROAD] > 0.01)

        def near(xy: np.ndarray, q: np.ndarray = q) -> int:
            if not len(xy):
                return 0
            d = np.mod(xy - q + size / 2, size) - size / 2
            return int((np.hypot(d[:, 0], d[:, 1]) < radius).sum())

        score += 0.25 * min(near(centers), 4) + 0.15 * min(near(movers_xy), 6) + float(rng.uniform(0, 0.1))
        if score > best_score:  # finite, so the first candidate is always taken
            best_score, p = score, q
    yaw = float(rng.uniform(0, 360))
    if world.roads and rng.random() < 0.5:  # pilots like to follow roads
        road = world.roads[int(rng.integers(len(world.roads)))]
        s = np.linspace(0, road.length, 400, endpoint=False)
        pts, tan = road.at(s)
        d = np.mod(pts - p + size / 2, size) - size / 2
        j = int(np.argmin(np.hypot(d[:, 0], d[:, 1])))
        if np.hypot(*d[j]) < 2 * radius:
            p = pts[j] - tan[j] * rng.uniform(10, 30)
            yaw = math.degrees(math.atan2(tan[j][0], -tan[j][1])) % 360.0  # map y points south
    return p, yaw


def _prepare(
    shot: _Shot, spec: FlightSpec, cache: WorldCache, backdrop: np.ndarray | None, backdrop_name: str
) -> None:
    """Build (or fetch) the shot's world and fly its path: done lazily, right before its first frame."""
    fps = float(spec.fps)
    world = cache.get(shot.spec, spec.world_px, spec.world_res_m, backdrop, backdrop_name)
    rng = np.random.default_rng([spec.seed, shot.index, 101])
    start, yaw = _pick_start(world, rng, shot.spec.altitude_m)
    if shot.spec.start_xy is not None:
        start = np.asarray(shot.spec.start_xy, float)
    if shot.spec.yaw_deg is not None:
        yaw = shot.spec.yaw_deg
    traj, _ = fly(list(shot.spec.maneuvers), fps, start=(float(start[0]), float(start[1])), yaw=yaw,
                  alt=shot.spec.altitude_m, rng=rng, pre=shot.pre, post=shot.post)
    shot.world, shot.traj = world, traj
    shot.place, shot.home = world.place, world.home
    shot.renderer = Renderer(world, spec.width, spec.height)
    day, minute = int(rng.integers(0, 180)), int(rng.integers(0, 540))
    shot.when = datetime(2024, 4, 1, 9, 0, 0) + timedelta(days=day, minutes=minute)
    shot.home_alt = float(rng.uniform(20, 400))


# ------------------------------------------------------------------------------------------------ render
def render_flight(
    spec: FlightSpec, out_dir: Path, *, backdrop: Path | np.ndarray | None = None,
    progress: Progress | None = None, cache: WorldCache | None = None, backdrop_name: str | None = None,
) -> Path:
    """Render one flight: ``<name>.mp4`` (H.264, CFR), ``<name>.SRT`` and ``<name>.truth.json``.

    Returns the mp4 path. ``backdrop`` (an image path, or an RGB array) renders the ground from an aerial
    photo instead of procedural land cover; ``cache`` shares generated worlds between flights.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if backdrop is not None and not isinstance(backdrop, np.ndarray):
        backdrop_name = backdrop_name or Path(backdrop).stem
        backdrop = load_backdrop(backdrop)
    backdrop_name = backdrop_name or "backdrop"
    cache = cache or WorldCache()
    tl = _timeline(spec)
    fps = float(spec.fps)
    mp4 = out_dir / f"{spec.name}.mp4"
    tmp = out_dir / f".{spec.name}.mp4.partial"
    owner_views: list[InView] = [None] * tl.n  # type: ignore[list-item]
    visible: list[list[str]] = []
    cues = []
    last_use = {s.index: s.end + s.post for s in tl.shots}
    step = max(1, tl.n // 200)
    with Mp4Writer(tmp, spec.width, spec.height, spec.fps, crf=spec.crf, preset=spec.x264_preset,
                   threaded=True) as writer:
        for i in range(tl.n):
            parts = []
            classes: set[str] = set()
            for k, wgt in tl.mix[i]:
                shot = tl.shots[k]
                if shot.traj is None:
                    _prepare(shot, spec, cache, backdrop, backdrop_name)
                j = i - shot.start  # frame index within the shot (negative in a cross-fade's lead-in)
                live = shot.live()
                frame, view = live.renderer.render(live.traj.pose(j + shot.pre), j / fps)
                parts.append((frame, wgt))
                if k == tl.owner[i]:
                    owner_views[i] = view
                if wgt >= 0.3:
                    classes.update(view.classes())
            if len(parts) == 2:
                frame = cv2.addWeighted(parts[0][0], parts[0][1], parts[1][0], parts[1][1], 0.0)
            elif parts[0][1] < 1.0 and i in tl.white:
                frame = parts[0][0]  # faded to white below, after the camera's sensor model
            elif parts[0][1] < 1.0:
                frame = cv2.convertScaleAbs(parts[0][0], alpha=parts[0][1])
            else:
                frame = parts[0][0]
            own = tl.shots[int(tl.owner[i])]
            own_live = own.live()
            t = own_live.traj
            j = i - own.start + own.pre
            yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
            own_live.renderer.sensor(yuv, float(t.gain[j]))
            if i in tl.white:  # an editor's fade: white (Y 235, U = V = 128 in limited range) over the camera's frame
                w = parts[0][1]
                h = spec.height
                yuv[:h] = cv2.addWeighted(yuv[:h], w, yuv[:h], 0.0, 235.0 * (1.0 - w))
                yuv[h:] = cv2.addWeighted(yuv[h:], w, yuv[h:], 0.0, 128.0 * (1.0 - w))
            writer.write_yuv(yuv)
            visible.append(sorted(classes))
            cues.append(make_cue(
                i, fps, own_live.when + timedelta(seconds=(i - own.start) / fps), own_live.world.home,
                own.home_alt,
                float(t.x[j]), float(t.y[j]), float(t.alt[j]), float(t.yaw[j]), float(t.pitch[j]),
                float(t.speed[j]), float(t.vz[j]), float(t.gain[j])))
            for k, end in last_use.items():
                if end == i + 1:  # the shot is done: write down its truth and let its world go
                    _finish_shot(tl.shots[k], owner_views, spec)
            if progress is not None and ((i + 1) % step == 0 or i + 1 == tl.n):
                progress(spec.name, i + 1, tl.n)
    write_srt(cues, fps, out_dir / f"{spec.name}.SRT")
    truth_path = out_dir / f"{spec.name}.truth.json"
    tmp_truth = out_dir / f".{spec.name}.truth.json.partial"
    tmp_truth.write_text(_dumps(_truth(spec, tl, visible)), encoding="utf-8")
    os.replace(tmp_truth, truth_path)
    os.replace(tmp, mp4)  # last: an .mp4 present means its sidecars are complete
    return mp4


def _finish_shot(shot: _Shot, views: list[InView], spec: FlightSpec) -> None:
    shot.segments = []
    start = shot.start
    for k, (man, count) in enumerate(zip(shot.spec.maneuvers, shot.counts, strict=False)):
        shot.segments.append(_segment(shot.first_segment + k, start, start + count, shot, man, views, spec))
        start += count
    shot.world = shot.renderer = None  # the cache decides whether the world stays in memory


# ------------------------------------------------------------------------------------------------ truth
def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def _truth(spec: FlightSpec, tl: _Timeline, visible: list[list[str]]) -> dict[str, Any]:
    fps = Fraction(spec.fps)
    segments: list[dict[str, Any]] = []
    for shot in tl.shots:
        if shot.segments is None:
            raise RuntimeError(f"shot {shot.index} was never finished")
        segments += shot.segments
    runs: list[dict[str, Any]] = []
    for i, classes in enumerate(visible):
        if runs and runs[-1]["classes"] == classes:
            runs[-1]["end_frame"] = i + 1
        else:
            runs.append({"start_frame": i, "end_frame": i + 1, "classes": classes})
    first = tl.shots[0]
    return {
        "format": TRUTH_FORMAT,
        "video": f"{spec.name}.mp4",
        "srt": f"{spec.name}.SRT",
        "seed": spec.seed,
        "fps": round(float(fps), 8),
        "fps_num": fps.numerator,
        "fps_den": fps.denominator,
        "width": spec.width,
        "height": spec.height,
        "n_frames": tl.n,
        "cuts": tl.cuts,
        "fades": tl.fades,
        "fade_cut": False,
        "shots": [
            {"start_frame": s.start, "end_frame": s.end, "place": s.place, "theme": s.spec.theme,
             "home": {"lat": round(s.home[0], 6), "lon": round(s.home[1], 6)}}
            for s in tl.shots
        ],
        "segments": segments,
        "visible": runs,
        "home": {"lat": round(first.home[0], 6), "lon": round(first.home[1], 6)},
    }


def _segment(index: int, s0: int, s1: int, shot: _Shot, man: Maneuver, views: list[InView],
             spec: FlightSpec) -> dict[str, Any]:
    live = shot.live()
    world, traj = live.world, live.traj
    fps = float(spec.fps)
    n = s1 - s0
    covers = {c: 0.0 for c in COVER_NAMES}
    seen: dict[str, dict[int, int]] = {c: {} for c in OBJECT_CLASSES}
    for v in views[s0:s1]:
        for c, f in v.covers.items():
            covers[c] += f / n
        for c, ids in v.objects.items():
            for i in ids.tolist():
                seen[c][i] = seen[c].get(i, 0) + 1
    # an object counts once it has been in view for half a second (or a third of a short segment)
    min_frames = max(1, min(round(0.5 * fps), math.ceil(0.3 * n)))
    objects = {c: sum(1 for v in d.values() if v >= min_frames) for c, d in seen.items()}
    objects = {c: k for c, k in objects.items() if k}
    scene = max(LAND_COVERS, key=lambda c: covers[c])
    j0, j1 = s0 - shot.start + shot.pre, s1 - 1 - shot.start + shot.pre
    alt = [round(float(traj.alt[j0]), 1), round(float(traj.alt[j1]), 1)]

    kinds = [world.buildings.kinds[i] for i, v in seen["building"].items() if v >= min_frames]
    noun = "building"
    if kinds and shot.spec.theme == "farmland":
        noun = "farm"  # farmsteads mix barns, sheds and a house
    elif kinds:
        word = {"house": "house", "cabin": "cabin", "barn": "farm", "shed": "farm"}
        votes = [word.get(k, "building") for k in kinds]
        noun = max(sorted(set(votes)), key=votes.count)
        if votes.count(noun) < 0.75 * len(votes):
            noun = "building"
    on_sand = False
    people = [i for i, v in seen["person"].items() if v >= min_frames]
    if people:
        mid = (s0 + s1) // 2 - shot.start
        pos, _ = world.people_poses(mid / fps)
        on_sand = bool(np.mean(world.cover_at(pos[people]) == SAND) > 0.5)
    facts = SegmentFacts(
        path=man.kind, view=man.view, altitude=(alt[0], alt[1]), scene=scene,
        covers={c: v for c, v in covers.items() if v > 0}, objects=objects, theme=shot.spec.theme,
        water_name=world.water_name, building_noun=noun, on_sand=on_sand,
    )
    rng = np.random.default_rng([spec.seed, index, 577])
    return {
        "index": index,
        "start_frame": s0,
        "end_frame": s1,
        "shot": shot.index,
        "path": man.kind,
        "view": man.view,
        "altitude_m": alt,
        "scene": scene,
        "objects": objects,
        "captions": caption_segment(facts, rng),
        "land_cover": {c: round(v, 3) for c, v in covers.items() if v >= 0.005},
        "speed_mps": round(float(np.mean(traj.speed[j0:j1 + 1])), 2),
        "gimbal_pitch_deg": round(float(np.mean(traj.pitch[j0:j1 + 1])), 1),
    }


def load_truth(path: Path | str) -> dict[str, Any]:
    """The truth of a simulated video, given its ``.mp4`` or its ``.truth.json``."""
    p = Path(path)
    if p.suffix.lower() == ".mp4":
        p = p.with_name(p.stem + ".truth.json")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no truth file {p}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the truth file {p}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != TRUTH_FORMAT:
        raise InputError(f"{p} is not a {TRUTH_FORMAT} file")
    return data
