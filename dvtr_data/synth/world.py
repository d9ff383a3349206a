"""A procedural aerial world: land cover, roads, buildings, trees and the things that move on them.

The world is a square torus (it wraps at its edges), so a camera can fly any path for any time without leaving
it. Everything static is baked once into one big RGB ground texture (plus a mip pyramid for oblique views);
the moving objects (cars on roads, boats on water, people on open ground) are kept as analytic tracks and
drawn per frame by the renderer. A coarse semantic map (one cell = 8 texture pixels) is the ground truth for
what land cover is where.

Coordinates: "map metres", x east and y south (so texture pixel = metres / ``res_m``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from dvtr_data.synth.noise import PeriodicNoise, periodic_blur, periodic_distance, sample_periodic

GRASS, FOREST, FARMLAND, SAND, WATER, ROAD = range(6)
COVER_NAMES = ("grass", "forest", "farmland", "sand", "water", "road")
N_COVERS = 5  # the land covers proper; ROAD only exists in the semantic map
THEMES = ("farmland", "forest", "suburb", "coast", "lakeside")
CELL_PX = 8  # texture pixels per semantic cell
CHUNK_ROWS = 512

_ROOF_COLOURS = np.array(
    [[168, 82, 58], [150, 60, 48], [72, 74, 80], [104, 80, 62], [168, 168, 162], [92, 102, 116],
     [190, 110, 70]],
    np.float32,
)
_CAR_COLOURS = np.array(
    [[235, 235, 235], [25, 25, 28], [140, 140, 145], [180, 30, 30], [30, 60, 150], [200, 200, 205],
     [60, 90, 60], [220, 170, 40], [100, 20, 25], [245, 245, 240]],
    np.float32,
)
_SHIRT_COLOURS = np.array(
    [[220, 40, 40], [240, 240, 240], [30, 30, 35], [40, 90, 200], [250, 200, 40], [40, 160, 80],
     [240, 120, 40], [200, 80, 160]],
    np.float32,
)
_FIELD_PALETTE = np.array(
    [[76, 124, 48], [118, 150, 66], [196, 176, 104], [178, 160, 112], [124, 98, 74], [96, 78, 60],
     [148, 140, 94], [206, 196, 78], [94, 134, 58]],
    np.float32,
)


# ------------------------------------------------------------------------------------------------ structures
@dataclass
class Road:
    """A closed loop on the torus (one period of a wrapping curve); cars drive along it."""

    pts: np.ndarray  # (P, 2) metres, one period; pts[0] + period closes the loop
    period: np.ndarray  # (2,) shift from the end of the loop back to its start
    width_m: float
    paved: bool
    cum: np.ndarray = field(init=False)
    closed: np.ndarray = field(init=False)
    tangents: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.closed = np.vstack([self.pts, self.pts[:1] + self.period])
        d = np.diff(self.closed, axis=0)
        seg = np.linalg.norm(d, axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.tangents = d / np.maximum(seg, 1e-9)[:, None]

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions and unit tangents at arc lengths ``s`` (any real numbers; the loop repeats)."""
        s = np.mod(s, self.length)
        i = np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.pts) - 1)
        t = self.tangents[i]
        return self.closed[i] + t * (s - self.cum[i])[:, None], t

    def extended(self, reps: int = 1) -> np.ndarray:
        """The polyline repeated ``reps`` periods before and after, for drawing across the wrap."""
        parts = [self.pts + k * self.period for k in range(-reps, reps + 1)]
        return np.vstack(parts + [self.pts[:1] + (reps + 1) * self.period])


@dataclass
class Buildings:
    corners: np.ndarray  # (B, 4, 2) metres; c0->c1 along the long side
    heights: np.ndarray  # (B,)
    kinds: list[str]  # house, barn, shed, cabin, block
    roofs: list[str]  # gable, hip, flat
    colours: np.ndarray  # (B, 3) roof colour

    @property
    def centers(self) -> np.ndarray:
        return self.corners.mean(axis=1) if len(self.corners) else np.zeros((0, 2))


@dataclass
class Cars:
    road: np.ndarray  # (K,) road index
    s0: np.ndarray  # arc length at t=0
    speed: np.ndarray  # signed m/s along the road
    lane: np.ndarray  # lateral offset, metres (right-hand traffic)
    size: np.ndarray  # (K, 2) length, width
    colour: np.ndarray  # (K, 3)


@dataclass
class Boats:
    center: np.ndarray  # (K, 2) centre of a circular loop
    radius: np.ndarray
    omega: np.ndarray  # rad/s, signed
    phase: np.ndarray
    size: np.ndarray  # (K, 2)
    colour: np.ndarray


@dataclass
class People:
    a: np.ndarray  # (K, 2) walking back and forth between a and b
    b: np.ndarray
    speed: np.ndarray
    phase: np.ndarray  # metres along the walk at t=0
    colour: np.ndarray


@dataclass
class World:
    theme: str
    place: str
    place_seed: int
    res_m: float
    size_px: int
    levels: list[np.ndarray]  # RGB uint8 texture pyramid, level 0 first
    rolled: list[np.ndarray]  # the same levels rolled by half a period, see `Renderer._ground`
    semantic: np.ndarray  # (M, M) uint8 land cover with ROAD on top
    roads: list[Road]
    buildings: Buildings
    cars: Cars
    boats: Boats
    people: People
    sun_shadow: np.ndarray  # (2,) ground shift of a shadow per metre of height
    home: tuple[float, float]
    water_name: str  # "sea", "lake", "pond"

    @property
    def size_m(self) -> float:
        return self.size_px * self.res_m

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.levels) * 2 + self.semantic.nbytes

    @property
    def cell_m(self) -> float:
        return self.res_m * CELL_PX

    def cover_at(self, xy: np.ndarray) -> np.ndarray:
        """Semantic class at map positions (wrapped)."""
        m = self.semantic.shape[0]
        ij = np.floor(np.mod(xy, self.size_m) / self.cell_m).astype(np.int64) % m
        return self.semantic[ij[..., 1], ij[..., 0]]

    # -- moving objects, evaluated at time t (seconds since the flight began)
    def car_poses(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        c = self.cars
        pos = np.zeros((len(c.road), 2))
        head = np.zeros((len(c.road), 2))
        for r, road in enumerate(self.roads):
            sel = np.flatnonzero(c.road == r)
            if not len(sel):
                continue
            p, d = road.at(c.s0[sel] + c.speed[sel] * t)
            d = d * np.sign(c.speed[sel])[:, None]
            right = np.stack([-d[:, 1], d[:, 0]], axis=1)
            pos[sel] = p + right * c.lane[sel, None]
            head[sel] = d
        return pos, head

    def boat_poses(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        b = self.boats
        ang = b.phase + b.omega * t
        pos = b.center + b.radius[:, None] * np.stack([np.cos(ang), np.sin(ang)], axis=1)
        head = np.stack([-np.sin(ang), np.cos(ang)], axis=1) * np.sign(b.omega)[:, None]
        return pos, head

    def people_poses(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        p = self.people
        seg = p.b - p.a
        length = np.linalg.norm(seg, axis=1) + 1e-9
        s = np.mod(p.phase + p.speed * t, 2 * length)
        back = s > length
        u = np.where(back, 2 * length - s, s) / length
        pos = p.a + seg * u[:, None]
        head = seg / length[:, None] * np.where(back, -1.0, 1.0)[:, None]
        return pos, head


# ------------------------------------------------------------------------------------------------ helpers
@dataclass
class _Ctx:
    rng: np.random.Generator
    n: int  # texture side, px
    res: float  # metres per texture px
    m: int  # semantic side, cells
    theme: str

    @property
    def size(self) -> float:
        return self.n * self.res

    @property
    def cell(self) -> float:
        return self.res * CELL_PX

    def grid_xy(self) -> tuple[np.ndarray, np.ndarray]:
        c = (np.arange(self.m) + 0.5) * self.cell
        xx, yy = np.meshgrid(c, c)
        return xx, yy


def _offsets(pts_px: np.ndarray, n: int) -> list[tuple[int, int]]:
    """Torus copies of a small shape (given in texture px) that touch the texture."""
    lo, hi = pts_px.reshape(-1, 2).min(axis=0), pts_px.reshape(-1, 2).max(axis=0)
    out = []
    for dx in (-n, 0, n):
        if hi[0] + dx < 0 or lo[0] + dx >= n:
            continue
        for dy in (-n, 0, n):
            if hi[1] + dy < 0 or lo[1] + dy >= n:
                continue
            out.append((dx, dy))
    return out


def _fix(pts: np.ndarray) -> np.ndarray:
    """Float px -> int32 with 3 fractional bits (cv2 ``shift=3``) for sub-pixel drawing."""
    return np.round(pts * 8).astype(np.int32)


def _fill_poly(img: np.ndarray, pts_px: np.ndarray, colour, n: int, aa: bool = False) -> None:
    for dx, dy in _offsets(pts_px, n):
        cv2.fillConvexPoly(img, _fix(pts_px + (dx, dy)), colour, cv2.LINE_AA if aa else cv2.LINE_8, 3)


def _circles(
    img: np.ndarray, centers_px: np.ndarray, radii_px: np.ndarray, colours, n: int, aa: bool = True
) -> None:
    """Many filled circles, drawn in order, with their torus copies where they cross an edge."""
    if not len(centers_px):
        return
    idx_parts, cen_parts = [], []
    for dx in (-n, 0, n):
        for dy in (-n, 0, n):
            c = centers_px + (dx, dy)
            sel = (c[:, 0] + radii_px >= 0) & (c[:, 0] - radii_px < n) & (c[:, 1] + radii_px >= 0)
            sel &= c[:, 1] - radii_px < n
            idx_parts.append(np.flatnonzero(sel))
            cen_parts.append(c[sel])
    idx = np.concatenate(idx_parts)
    order = np.argsort(idx, kind="stable")
    idx, cen = idx[order], np.concatenate(cen_parts)[order]
    pts = _fix(cen).tolist()
    rad = _fix(radii_px[idx]).tolist()
    col_arr = np.asarray(colours, np.float64)
    cols = col_arr[idx].tolist() if col_arr.ndim == 2 else [col_arr.tolist()] * len(idx)
    line = cv2.LINE_AA if aa else cv2.LINE_8
    for (x, y), r, col in zip(pts, rad, cols, strict=False):
        cv2.circle(img, (x, y), r, col, -1, line, 3)


def _curve_values(
    rng: np.random.Generator, size: float, u: np.ndarray, base: float, amp: float
) -> np.ndarray:
    """A smooth periodic function of ``u``: ``base + sum_k a_k sin(2 pi k u / size + phi_k)``."""
    v = np.full(u.shape, base, np.float64)
    for k in (1, 2, 3):
        a, phase = amp / k**1.3 * rng.uniform(0.4, 1.0), rng.uniform(0, 2 * np.pi)
        v += a * np.sin(2 * np.pi * k * u / size + phase)
    return v


def _periodic_curve(
    rng: np.random.Generator, size: float, base: float, amp: float, step: float = 2.0
) -> np.ndarray:
    """Points (u, v) of a closed wrapping curve sampled every ``step`` metres along u."""
    u = np.arange(0.0, size - 1e-6, step)
    return np.stack([u, _curve_values(rng, size, u, base, amp)], axis=1)


def _make_road(curve: np.ndarray, size: float, vertical: bool, width: float, paved: bool) -> Road:
    pts = curve[:, ::-1].copy() if vertical else curve.copy()
    period = np.array([0.0, size]) if vertical else np.array([size, 0.0])
    return Road(pts, period, width, paved)


def _rect(center: np.ndarray, along: np.ndarray, length: float, width: float) -> np.ndarray:
    """Corners (4, 2) of a rectangle; c0->c1 runs along ``along``."""
    u = along / (np.linalg.norm(along) + 1e-9)
    v = np.array([-u[1], u[0]])
    hl, hw = length / 2, width / 2
    return np.array([center - u * hl - v * hw, center + u * hl - v * hw, center + u * hl + v * hw,
                     center - u * hl + v * hw])


# ------------------------------------------------------------------------------------------------ land cover
def _land_cover(ctx: _Ctx) -> tuple[np.ndarray, list[Road], str, list[np.ndarray] | None]:
    """Coarse cover map, roads, water name and the farm field polygons (farmland theme), by theme."""
    rng, size, m = ctx.rng, ctx.size, ctx.m
    x, y = ctx.grid_xy()
    blobs = PeriodicNoise(rng, size, 160.0, 4).rows(m)
    patches = PeriodicNoise(rng, size, 70.0, 4).rows(m)
    wet = PeriodicNoise(rng, size, 220.0, 3).rows(m)
    cover = np.full((m, m), GRASS, np.uint8)
    roads: list[Road] = []
    water_name = "pond"

    def quant(a: np.ndarray, frac: float) -> np.ndarray:
        return a > np.quantile(a, 1.0 - frac)

    def winding(vertical: bool, amp: float, width: float, paved: bool, avoid: np.ndarray | None = None
                ) -> Road:
        curve = _periodic_curve(rng, size, rng.uniform(0, size), amp)
        best = _make_road(curve, size, vertical, width, paved)
        if avoid is None:
            return best

        def badness(road: Road) -> float:  # the share of the road over what it should avoid
            ij = np.floor(np.mod(road.pts, size) / ctx.cell).astype(int) % m
            return float(avoid[ij[:, 1], ij[:, 0]].mean())

        best_bad = badness(best)
        for _ in range(5):
            curve = _periodic_curve(rng, size, rng.uniform(0, size), amp)
            road = _make_road(curve, size, vertical, width, paved)
            bad = badness(road)
            if bad < best_bad:
                best, best_bad = road, bad
        return best

    theme = ctx.theme
    if theme == "farmland":
        cover[:] = FARMLAND
        cover[quant(blobs, 0.14)] = FOREST
        cover[quant(patches, 0.08) & (cover == FARMLAND)] = GRASS
        pond = quant(wet, 0.025)
        cover[pond] = WATER
        roads.append(winding(False, 25, 6.5, True, avoid=pond))
        roads.append(winding(True, 30, 3.5, False, avoid=pond))
        if rng.random() < 0.6:
            roads.append(winding(True, 20, 6.0, True, avoid=pond))
    elif theme == "forest":
        cover[:] = FOREST
        cover[quant(patches, 0.18)] = GRASS
        lake = quant(wet, 0.14)
        cover[lake] = WATER
        shore = (periodic_distance(~lake) < 3.5 / ctx.cell) & ~lake
        cover[shore & (patches > 0.0)] = SAND
        water_name = "lake"
        roads.append(winding(False, 40, 6.0, True, avoid=lake))
        roads.append(winding(True, 35, 3.5, False, avoid=lake))
    elif theme == "suburb":
        cover[quant(blobs, 0.12)] = FOREST
        pond = quant(wet, 0.03)
        cover[pond] = WATER
        for vertical in (False, True):
            k = max(2, round(size / rng.uniform(85, 120)))
            off = rng.uniform(0, size)
            for i in range(k):
                curve = _periodic_curve(rng, size, off + i * size / k + rng.uniform(-6, 6), 4.0)
                roads.append(_make_road(curve, size, vertical, 7.0 if i % 2 == 0 else 6.0, True))
    elif theme == "coast":
        cols_m = (np.arange(m) + 0.5) * ctx.cell
        shore = _curve_values(rng, size, cols_m, rng.uniform(0, size), 45.0)[None, :]
        beach_w = _curve_values(rng, size, cols_m, rng.uniform(24, 36), 10.0)[None, :]
        sea_w = size * rng.uniform(0.35, 0.45)
        north = np.mod(shore - y, size)  # metres north of the shoreline
        south = np.mod(y - shore, size)
        sea = north < sea_w + 20 * np.sin(2 * np.pi * x / size + 1.0)
        cover[quant(blobs, 0.18)] = FOREST
        cover[(~sea) & (south < beach_w + 6 * patches)] = SAND
        cover[sea] = WATER
        water_name = "sea"
        road_y = shore[0] + beach_w[0] + rng.uniform(20, 30)
        roads.append(_make_road(np.stack([cols_m, road_y], axis=1), size, False, 7.0, True))
        inland = road_y + rng.uniform(40, 60) + _curve_values(rng, size, cols_m, 0.0, 10.0)
        roads.append(_make_road(np.stack([cols_m, inland], axis=1), size, False, 5.5, True))
    elif theme == "lakeside":
        cover[quant(blobs, 0.22)] = FOREST
        lake = quant(wet, 0.24)
        cover[lake] = WATER
        dist = periodic_distance(~lake) * ctx.cell
        cover[(dist > 0) & (dist < 8.0) & ~lake & (patches > -0.2)] = SAND
        water_name = "lake"
        roads.append(winding(False, 35, 6.0, True, avoid=lake))
        roads.append(winding(True, 30, 3.5, False, avoid=lake))
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(theme)
    fid = _fields(ctx) if theme == "farmland" else None
    return cover, roads, water_name, fid


def _fields(ctx: _Ctx) -> list[np.ndarray]:
    """Farm parcels: a jittered grid (consistent across the wrap), some cells split into long strips."""
    rng, size = ctx.rng, ctx.size
    k = max(2, round(size / rng.uniform(70, 110)))
    cell = size / k
    jit = rng.uniform(-0.22, 0.22, (k, k, 2)) * cell
    polys = []
    for j in range(k):
        for i in range(k):
            def corner(a: int, b: int) -> np.ndarray:
                return np.array([a * cell, b * cell]) + jit[b % k, a % k]

            quad = np.array([corner(i, j), corner(i + 1, j), corner(i + 1, j + 1), corner(i, j + 1)])
            splits = rng.choice([1, 1, 2, 3])
            if splits == 1:
                polys.append(quad)
                continue
            horizontal = rng.random() < 0.5
            for s in range(splits):
                a0, a1 = s / splits, (s + 1) / splits
                if horizontal:
                    p = [quad[0] + (quad[3] - quad[0]) * a0, quad[1] + (quad[2] - quad[1]) * a0,
                         quad[1] + (quad[2] - quad[1]) * a1, quad[0] + (quad[3] - quad[0]) * a1]
                else:
                    p = [quad[0] + (quad[1] - quad[0]) * a0, quad[0] + (quad[1] - quad[0]) * a1,
                         quad[3] + (quad[2] - quad[3]) * a1, quad[3] + (quad[2] - quad[3]) * a0]
                polys.append(np.array(p))
    return polys


def _rasterise_roads(semantic: np.ndarray, roads: list[Road], ctx: _Ctx) -> None:
    for road in roads:
        pts = road.extended(1) / ctx.cell
        thick = max(1, int(round((road.width_m + 1.0) / ctx.cell)))
        shift = road.period / ctx.cell
        for k in (-1, 0, 1):
            perp = np.array([shift[1], shift[0]]) * k  # copies across the other axis of the torus
            cv2.polylines(semantic, [_fix(pts + perp)], False, ROAD, thick, cv2.LINE_8, 3)


# ------------------------------------------------------------------------------------------------ buildings
_KIND_DIMS = {  # length range, width range, height range
    "house": ((9, 15), (7, 11), (5, 8)),
    "barn": ((18, 34), (10, 16), (6, 10)),
    "shed": ((6, 10), (4, 7), (3, 4)),
    "cabin": ((6, 10), (5, 7), (3.5, 5)),
    "block": ((16, 36), (12, 22), (8, 18)),
}


def _place_buildings(
    ctx: _Ctx, cover: np.ndarray, semantic: np.ndarray, roads: list[Road]
) -> tuple[Buildings, np.ndarray]:
    """Houses along roads, farmsteads, lone cabins; also the mask of cells they (and their yards) take."""
    rng, m = ctx.rng, ctx.m
    occ = np.zeros((m, m), np.uint8)
    corners: list[np.ndarray] = []
    heights: list[float] = []
    kinds: list[str] = []
    roofs: list[str] = []
    colours: list[np.ndarray] = []
    theme = ctx.theme
    per_theme = {"farmland": 0.0, "forest": 0.12, "suburb": 0.9, "coast": 0.55, "lakeside": 0.25}
    allowed = {GRASS, SAND, FARMLAND, FOREST}

    def try_place(center: np.ndarray, along: np.ndarray, kind: str, yard: float) -> bool:
        (l0, l1), (w0, w1), (h0, h1) = _KIND_DIMS[kind]
        length, width = rng.uniform(l0, l1), rng.uniform(w0, w1)
        rect = _rect(center, along, length, width)
        big = _rect(center, along, length + 2 * yard, width + 2 * yard)
        probe = np.concatenate([big, rect, [center], (big + np.roll(big, 1, axis=0)) / 2])
        ij = np.floor(np.mod(probe, ctx.size) / ctx.cell).astype(int) % m
        if any(int(semantic[b, a]) not in allowed for a, b in ij) or occ[ij[:, 1], ij[:, 0]].any():
            return False
        px = big / ctx.cell
        tmp = np.zeros((m, m), np.uint8)
        for dx, dy in _offsets(px, m):
            cv2.fillConvexPoly(tmp, _fix(px + (dx, dy)), 1, cv2.LINE_8, 3)
        occ[tmp > 0] = 1
        yard_cells = (tmp > 0) & np.isin(cover, (FOREST, FARMLAND)) & (semantic != ROAD)
        cover[yard_cells] = GRASS
        semantic[yard_cells] = GRASS
        corners.append(rect)
        heights.append(rng.uniform(h0, h1))
        kinds.append(kind)
        if kind == "block":
            roofs.append("flat")
            colours.append(np.array([150, 150, 146], np.float32) * rng.uniform(0.8, 1.2))
        else:
            roofs.append(str(rng.choice(["gable", "gable", "hip"])))
            pal = _ROOF_COLOURS[rng.integers(len(_ROOF_COLOURS))]
            colours.append(pal * rng.uniform(0.85, 1.12))
        return True

    paved = [r for r in roads if r.paved]
    p_build = per_theme[theme]
    for road in paved:
        s = rng.uniform(0, 10)
        while s < road.length and p_build > 0:
            kind = "house"
            if theme == "forest":
                kind = "cabin"
            elif theme == "suburb" and rng.random() < 0.08:
                kind = "block"
            gap = rng.uniform(14, 22) if kind != "block" else 40
            p, d = road.at(np.array([s]))
            p, d = p[0], d[0]
            normal = np.array([-d[1], d[0]])
            for side in (-1, 1):
                if rng.random() < p_build:
                    setback = road.width_m / 2 + rng.uniform(5, 9) + (6 if kind == "block" else 4.5)
                    try_place(p + side * normal * setback, d, kind, 2.5)
            s += gap
    if theme == "farmland":  # farmsteads: a barn, a house and a shed by the road
        sites = max(2, round(len(paved) * ctx.size / 350))
        for _ in range(sites * 4):
            if sites <= 0:
                break
            road = paved[rng.integers(len(paved))]
            p, d = road.at(np.array([rng.uniform(0, road.length)]))
            p, d = p[0], d[0]
            normal = np.array([-d[1], d[0]]) * rng.choice([-1, 1])
            base = p + normal * (road.width_m / 2 + 18)
            if try_place(base + normal * 8, d, "barn", 3.0):
                sites -= 1
                for kind, off in (("house", (-28, 2)), ("shed", (22, 6)), ("shed", (4, 26))):
                    try_place(base + d * off[0] + normal * off[1], d, kind, 1.5)
    if theme in ("coast", "lakeside", "forest"):  # a few lone buildings away from the roads
        for _ in range(int(ctx.size / 80)):
            c = rng.uniform(0, ctx.size, 2)
            ang = rng.uniform(0, np.pi)
            try_place(c, np.array([np.cos(ang), np.sin(ang)]), "cabin" if theme == "forest" else "house", 3.0)
    b = len(corners)
    return Buildings(
        np.array(corners).reshape(b, 4, 2), np.array(heights), kinds, roofs,
        np.array(colours, np.float32).reshape(b, 3),
    ), occ


# ------------------------------------------------------------------------------------------------ movers
def _place_movers(
    ctx: _Ctx, semantic: np.ndarray, roads: list[Road], water_dist_m: np.ndarray
) -> tuple[Cars, Boats, People]:
    rng, m, size = ctx.rng, ctx.m, ctx.size
    theme = ctx.theme
    car_per_km = {"farmland": 5, "forest": 4, "suburb": 12, "coast": 10, "lakeside": 6}[theme]
    road_idx, s0, speed, lane, csize, ccol = [], [], [], [], [], []
    for r, road in enumerate(roads):
        if not road.paved:
            continue
        k = rng.poisson(car_per_km * road.length / 1000) + 1
        for _ in range(k):
            d = rng.choice([-1.0, 1.0])
            road_idx.append(r)
            s0.append(rng.uniform(0, road.length))
            speed.append(d * rng.uniform(7, 14))
            lane.append(road.width_m / 4)
            length = rng.uniform(4.2, 5.0) if rng.random() < 0.85 else rng.uniform(5.5, 7.5)
            csize.append((length, rng.uniform(1.8, 2.1)))
            ccol.append(_CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.9, 1.05))
    kc = len(road_idx)
    cars = Cars(np.array(road_idx, int), np.array(s0), np.array(speed), np.array(lane),
                np.array(csize).reshape(kc, 2), np.array(ccol, np.float32).reshape(kc, 3))

    # Boats loop on circles that stay inside open water.
    n_boats = {"farmland": 0, "forest": 2, "suburb": 0, "coast": 7, "lakeside": 4}[theme]
    n_boats = int(round(n_boats * max(1.0, (size / 400) ** 2)))
    bc: list[np.ndarray] = []
    br, bo, bp, bs, bcol = [], [], [], [], []
    open_water = np.argwhere(water_dist_m > 25.0)
    for _ in range(n_boats * 6):
        if len(bc) >= n_boats or not len(open_water):
            break
        i, j = open_water[rng.integers(len(open_water))]
        d = float(water_dist_m[i, j])
        radius = rng.uniform(10, max(11, min(70, d - 20)))
        if d - radius < 18:
            continue
        center = np.array([(j + 0.5) * ctx.cell, (i + 0.5) * ctx.cell]) + rng.uniform(-2, 2, 2)
        bc.append(center)
        br.append(radius)
        v = rng.uniform(2.5, 7.0)
        bo.append(rng.choice([-1, 1]) * v / radius)
        bp.append(rng.uniform(0, 2 * np.pi))
        length = rng.uniform(5, 11)
        bs.append((length, length * rng.uniform(0.32, 0.4)))
        white = rng.random() < 0.7
        bcol.append(np.array([240, 240, 236], np.float32) if white else _CAR_COLOURS[rng.integers(10)])
    kb = len(bc)
    boats = Boats(np.array(bc).reshape(kb, 2), np.array(br), np.array(bo), np.array(bp),
                  np.array(bs).reshape(kb, 2), np.array(bcol, np.float32).reshape(kb, 3))

    # People stroll back and forth on open ground, in little groups, near water where there is some.
    n_people = {"farmland": 5, "forest": 4, "suburb": 14, "coast": 40, "lakeside": 24}[theme]
    n_people = int(n_people * (size / 400) ** 2 + 0.5) if size > 400 else n_people
    ground = np.isin(semantic, (GRASS, SAND))
    if theme in ("coast", "lakeside"):
        near = ground & (water_dist_m <= 0) & (periodic_distance(water_dist_m <= 0) * ctx.cell < 35)
        if near.sum() > 50:
            ground = near
    cand = np.argwhere(ground)
    pa: list[np.ndarray] = []
    pb, ps, pph, pcol = [], [], [], []
    while len(pa) < n_people and len(cand):
        i, j = cand[rng.integers(len(cand))]
        center = np.array([(j + 0.5) * ctx.cell, (i + 0.5) * ctx.cell])
        for _ in range(int(rng.integers(1, 5))):
            a = center + rng.normal(0, 3.0, 2)
            ang = rng.uniform(0, 2 * np.pi)
            b = a + rng.uniform(4, 20) * np.array([np.cos(ang), np.sin(ang)])
            ij = np.floor(np.mod(np.array([a, b, (a + b) / 2]), size) / ctx.cell).astype(int) % m
            if not ground[ij[:, 1], ij[:, 0]].all():
                continue
            pa.append(a)
            pb.append(b)
            ps.append(rng.uniform(0.9, 1.5) if rng.random() < 0.8 else rng.uniform(0.1, 0.3))
            pph.append(rng.uniform(0, 40))
            pcol.append(_SHIRT_COLOURS[rng.integers(len(_SHIRT_COLOURS))])
            if len(pa) >= n_people:
                break
    kp = len(pa)
    people = People(np.array(pa).reshape(kp, 2), np.array(pb).reshape(kp, 2), np.array(ps), np.array(pph),
                    np.array(pcol, np.float32).reshape(kp, 3))
    return cars, boats, people


# ------------------------------------------------------------------------------------------------ texture
def _palette(ctx: _Ctx, water_name: str) -> dict[str, np.ndarray]:
    rng = ctx.rng
    season = rng.uniform(-1, 1)  # -1 lush spring .. +1 dry late summer
    grass = np.array([88, 124, 52]) + season * np.array([18, 6, 4])
    sea = water_name == "sea"
    return {
        # base, large-scale, mid-scale and fine variation per land cover (RGB)
        "base": np.array([grass, [36, 56, 30], [120, 120, 80], [208, 192, 150], [30, 60, 72]], np.float32),
        "lo": np.array([[16, 12, 6], [6, 8, 4], [0, 0, 0], [10, 10, 8], [3, 5, 6]], np.float32),
        "mid": np.array([[9, 11, 6], [7, 10, 5], [6, 6, 4], [6, 6, 5], [2, 3, 3]], np.float32),
        "hi": np.array([[9, 10, 6], [6, 7, 4], [5, 5, 4], [9, 9, 7], [2, 3, 3]], np.float32),
        "deep": np.array([16, 52, 86] if sea else [28, 54, 58], np.float32),
        "shallow": np.array([62, 140, 150] if sea else [66, 104, 88], np.float32),
    }


def _field_layers(
    ctx: _Ctx, polys: list[np.ndarray], px_m: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Field id per pixel (pixels of ``px_m`` metres), plus per-field colours, row directions and spacings."""
    rng = ctx.rng
    n = int(round(ctx.size / px_m))
    fid = np.zeros((n, n), np.uint16)
    count = len(polys)
    props = {
        "c1": np.zeros((count + 1, 3), np.float32),
        "c2": np.zeros((count + 1, 3), np.float32),
        "kx": np.zeros(count + 1, np.float32),
        "ky": np.zeros(count + 1, np.float32),
        "ref": np.zeros((count + 1, 2), np.float32),
        "track": np.zeros((count + 1, 3), np.float32),
    }
    for k, poly in enumerate(polys, start=1):
        px = poly / px_m
        for dx, dy in _offsets(px, n):
            cv2.fillPoly(fid, [_fix(px + (dx, dy))], k, cv2.LINE_8, 3)
        c1 = _FIELD_PALETTE[rng.integers(len(_FIELD_PALETTE))] * rng.uniform(0.9, 1.08)
        mode = rng.random()
        if mode < 0.45:  # crop rows on soil
            c2 = _FIELD_PALETTE[rng.choice([4, 5])] * rng.uniform(0.9, 1.1)
        elif mode < 0.85:  # furrows
            c2 = c1 * rng.uniform(0.78, 0.88)
        else:  # meadow or fallow: no rows
            c2 = c1
        edge = poly[1] - poly[0] if rng.random() < 0.5 else poly[3] - poly[0]
        ang = math.atan2(edge[1], edge[0]) + rng.normal(0, 0.02)
        spacing_px = rng.uniform(1.8, 3.4) / px_m
        props["c1"][k], props["c2"][k] = c1, c2
        props["kx"][k] = 2 * np.pi * -math.sin(ang) / spacing_px  # rows run along the chosen edge
        props["ky"][k] = 2 * np.pi * math.cos(ang) / spacing_px
        props["ref"][k] = poly.mean(axis=0) / px_m
        props["track"][k] = [150, 136, 102] if rng.random() < 0.6 else [58, 86, 44]
    return fid, props


def _compose(
    ctx: _Ctx, cover: np.ndarray, pal: dict[str, np.ndarray], polys: list[np.ndarray] | None
) -> np.ndarray:
    """The land-cover texture.

    Land cover varies smoothly, so it is composed at half the texture resolution (4x less work) and upsampled;
    crisp things (roads, roofs, crowns) and the fine grain are drawn later at full resolution. Row bands keep
    the memory of an 8k texture bounded.
    """
    rng, n = ctx.rng, ctx.n // 2
    size = ctx.size
    px_m = size / n
    onehot = np.stack([(cover == c) for c in range(N_COVERS)], axis=-1).astype(np.float32)
    soft = periodic_blur(onehot, 1.2)
    water = cover == WATER
    depth = (periodic_distance(water) * ctx.cell).astype(np.float32)  # metres into the water
    shore = (periodic_distance(~water) * ctx.cell).astype(np.float32)  # metres from the water, on land
    wobble = [PeriodicNoise(rng, size, 9.0, 2), PeriodicNoise(rng, size, 3.5, 2)]
    n_lo = PeriodicNoise(rng, size, 45.0, 2)
    n_mid = PeriodicNoise(rng, size, 5.0, 3)
    # Each cover leans on two wobble fields differently, so borders meander; small enough (|w| < 0.4) to move
    # only borders, never to punch holes inside a region.
    edge_k = np.array([[0.1, -0.04], [-0.1, 0.08], [0.0, -0.08], [0.08, 0.06], [-0.06, 0.0]], np.float32)
    fields = _field_layers(ctx, polys, px_m) if polys is not None else None
    half = np.empty((n, n, 3), np.uint8)
    xs = np.arange(n, dtype=np.float32)
    for r0 in range(0, n, CHUNK_ROWS):
        r1 = min(n, r0 + CHUNK_ROWS)
        w = sample_periodic(soft, n, r0, r1, cv2.INTER_LINEAR)
        w += np.clip(wobble[0].rows(n, r0, r1), -2, 2)[..., None] * edge_k[:, 0]
        w += np.clip(wobble[1].rows(n, r0, r1), -2, 2)[..., None] * edge_k[:, 1]
        lab = np.argmax(w, axis=-1).astype(np.uint8)
        del w
        lo, mid = n_lo.rows(n, r0, r1), n_mid.rows(n, r0, r1)
        col = pal["base"][lab]
        col += pal["lo"][lab] * lo[..., None]
        col += pal["mid"][lab] * mid[..., None]
        wm = lab == WATER
        if wm.any():
            d = sample_periodic(depth, n, r0, r1, cv2.INTER_LINEAR)[wm]
            t = np.clip(d / 22.0, 0, 1)[:, None] ** 0.7
            wc = pal["shallow"] * (1 - t) + pal["deep"] * t
            wc += (3 * lo[wm] + 1.5 * mid[wm])[:, None]
            foam = np.clip(1.0 - d / np.maximum(0.5, 1.2 + 0.5 * mid[wm]), 0, 1)[:, None] * 0.5
            col[wm] = wc * (1 - foam) + 225 * foam
        sm = lab == SAND
        if sm.any():  # wet sand darker close to the water line
            d = sample_periodic(shore, n, r0, r1, cv2.INTER_LINEAR)[sm]
            col[sm] *= (0.78 + 0.22 * np.clip((d - 1.0) / 4.0, 0, 1))[:, None]
        if fields is not None:
            fid_map, props = fields
            fm = lab == FARMLAND
            if fm.any():
                yy, xx = np.nonzero(fm)
                ff = fid_map[r0:r1][yy, xx]
                ax = np.mod(xs[xx] - props["ref"][ff, 0] + n / 2, n) - n / 2
                ay = np.mod(yy.astype(np.float32) + r0 - props["ref"][ff, 1] + n / 2, n) - n / 2
                rows = 0.5 + 0.5 * np.sin(ax * props["kx"][ff] + ay * props["ky"][ff] + 0.4 * mid[yy, xx])
                c = props["c2"][ff] + (props["c1"][ff] - props["c2"][ff]) * rows[:, None] ** 0.8
                c += (6 * lo[yy, xx] + 6 * mid[yy, xx])[:, None]
                # field margins (tracks or hedges): where the field id changes nearby
                lo_r, hi_r = max(0, r0 - 8), min(n, r1 + 8)
                fb = fid_map[lo_r:hi_r]
                edges = np.zeros(fb.shape, np.uint8)
                edges[:, 1:] |= fb[:, 1:] != fb[:, :-1]
                edges[1:, :] |= fb[1:, :] != fb[:-1, :]
                kpx = max(3, int(round(2.0 / px_m)) | 1)
                margin = cv2.dilate(edges, np.ones((kpx, kpx), np.uint8))[r0 - lo_r: r0 - lo_r + (r1 - r0)]
                eb = margin[yy, xx] > 0
                c[eb] = props["track"][ff[eb]] + (8 * mid[yy, xx][eb])[:, None]
                col[fm] = c
        half[r0:r1] = np.clip(col, 0, 255).astype(np.uint8)
    return cv2.resize(half, (ctx.n, ctx.n), interpolation=cv2.INTER_LINEAR)


def _draw_roads(tex: np.ndarray, roads: list[Road], ctx: _Ctx) -> None:
    rng, res = ctx.rng, ctx.res
    suburb = ctx.theme == "suburb"

    def line(pts_m: np.ndarray, period: np.ndarray, colour, width_m: float) -> None:
        t = max(1, int(round(width_m / res)))
        shift = period / res
        for k in (-1, 0, 1):
            perp = np.array([shift[1], shift[0]]) * k
            cv2.polylines(tex, [_fix(pts_m / res + perp)], False, colour, t, cv2.LINE_AA, 3)

    for road in roads:
        pts = road.extended(1)
        seg = np.diff(pts, axis=0)
        seg /= np.linalg.norm(seg, axis=1, keepdims=True) + 1e-9
        nrm = np.vstack([np.stack([-seg[:, 1], seg[:, 0]], axis=1), [[-seg[-1, 1], seg[-1, 0]]]])
        w = road.width_m
        if road.paved:
            verge = (172, 172, 166) if suburb else (132, 128, 100)
            line(pts, road.period, verge, w + (4.0 if suburb else 2.0))
            grey = 78 + rng.uniform(-6, 14)
            line(pts, road.period, (grey, grey, grey + 4), w)
            for side in (-1, 1):
                line(pts + nrm * side * (w / 2 - 0.35), road.period, (222, 222, 214), 0.15)
            # dashed centre line: 3 m dash, 6 m gap
            cum = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
            for s in np.arange(0, cum[-1] - 3, 9.0):
                xa = np.interp([s, s + 3], cum, pts[:, 0])
                ya = np.interp([s, s + 3], cum, pts[:, 1])
                line(np.stack([xa, ya], axis=1), road.period, (230, 230, 220), 0.15)
        else:
            line(pts, road.period, (152, 134, 102), w)
            line(pts, road.period, (118, 128, 82), 0.6)


def _shadows(ctx: _Ctx, b: Buildings, trees: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Where the ground lies in shadow (255): building volumes and tree crowns projected along the sun."""
    n, res = ctx.n, ctx.res
    mask = np.zeros((n, n), np.uint8)
    for rect, h in zip(b.corners, b.heights, strict=False):
        hull = cv2.convexHull(np.vstack([rect, rect + sun * h]).astype(np.float32))[:, 0, :]
        _fill_poly(mask, hull / res, 255, n)
    if len(trees):
        xy, r, h = trees[:, :2] / res, trees[:, 2] / res, trees[:, 3]
        # a crown throws a capsule-shaped shadow: from its lowest to its highest leaves
        for f in np.linspace(0.5, 0.9, 3):
            _circles(mask, xy + sun[None, :] * (h * f)[:, None] / res, r * 0.95, 255, n, aa=False)
    return mask


def _trees(ctx: _Ctx, semantic: np.ndarray, road_dist_m: np.ndarray, occ_free: np.ndarray) -> np.ndarray:
    """Tree crowns (x, y, radius, height): dense in forest, scattered on grass."""
    rng, size = ctx.rng, ctx.size
    out = []
    density = {FOREST: 1 / 9.0, GRASS: {"suburb": 1 / 260, "lakeside": 1 / 300}.get(ctx.theme, 1 / 900)}
    for cls, dens in density.items():
        k = int(size * size * dens)
        p = rng.uniform(0, size, (k, 2))
        ij = np.floor(p / ctx.cell).astype(int) % ctx.m
        keep = (semantic[ij[:, 1], ij[:, 0]] == cls) & occ_free[ij[:, 1], ij[:, 0]]
        keep &= road_dist_m[ij[:, 1], ij[:, 0]] > 2.5
        p = p[keep]
        r = rng.uniform(1.6, 3.6, len(p)) if cls == FOREST else rng.uniform(2.0, 4.2, len(p))
        h = rng.uniform(5, 11, len(p))
        out.append(np.column_stack([p, r, h]))
    return np.vstack(out) if out else np.zeros((0, 4))


def _draw_roofs(tex: np.ndarray, b: Buildings, ctx: _Ctx, sun_dir: np.ndarray) -> None:
    n, res, rng = ctx.n, ctx.res, ctx.rng
    for rect, roof, colour in zip(b.corners, b.roofs, b.colours, strict=False):
        c0, c1, c2, c3 = rect
        u = (c1 - c0) / (np.linalg.norm(c1 - c0) + 1e-9)
        v = (c3 - c0) / (np.linalg.norm(c3 - c0) + 1e-9)
        width = float(np.linalg.norm(c3 - c0))

        def shade(normal: np.ndarray, colour: np.ndarray = colour) -> tuple[float, ...]:
            k = 0.86 + 0.28 * float(normal @ sun_dir)
            return tuple(float(x) for x in np.clip(colour * k, 0, 255))

        if roof == "flat":
            _fill_poly(tex, rect / res, shade(np.zeros(2)), n, aa=True)
            length = float(np.linalg.norm(c1 - c0))
            inner = _rect(rect.mean(axis=0), u, length - 1.2, width - 1.2)
            _fill_poly(tex, inner / res, tuple(float(x) for x in colour * 0.93), n, aa=True)
            for _ in range(int(rng.integers(1, 4))):
                cc = rect.mean(axis=0) + u * rng.uniform(-0.3, 0.3) * length
                cc = cc + v * rng.uniform(-0.3, 0.3) * width
                box = _rect(cc, u, rng.uniform(1.2, 2.5), rng.uniform(1.2, 2.0))
                dark = tuple(float(x) for x in colour * 0.6)
                _fill_poly(tex, (box - sun_dir * 0.6) / res, dark, n, aa=True)
                _fill_poly(tex, box / res, (205, 205, 200), n, aa=True)
            continue
        m_a, m_b = (c0 + c3) / 2, (c1 + c2) / 2
        inset = width / 2 if roof == "hip" else 0.0
        ra, rb = m_a + u * inset, m_b - u * inset
        _fill_poly(tex, np.array([c0, c1, rb, ra]) / res, shade(-v), n, aa=True)
        _fill_poly(tex, np.array([c3, c2, rb, ra]) / res, shade(v), n, aa=True)
        if roof == "hip":
            _fill_poly(tex, np.array([c0, c3, ra]) / res, shade(-u), n, aa=True)
            _fill_poly(tex, np.array([c1, c2, rb]) / res, shade(u), n, aa=True)
        ridge = np.array([ra, rb]) / res
        for dx, dy in _offsets(ridge, n):
            light = tuple(float(x) for x in np.clip(colour * 1.15, 0, 255))
            thick = max(1, int(round(0.25 / res)))
            cv2.polylines(tex, [_fix(ridge + (dx, dy))], False, light, thick, cv2.LINE_AA, 3)


def _draw_crowns(tex: np.ndarray, trees: np.ndarray, ctx: _Ctx, sun_dir: np.ndarray) -> None:
    rng, n, res = ctx.rng, ctx.n, ctx.res
    if not len(trees):
        return
    base = np.array([[44, 78, 34], [56, 92, 38], [36, 64, 30], [70, 100, 44], [48, 70, 40]], np.float32)
    cols = base[rng.integers(len(base), size=len(trees))] * rng.uniform(0.85, 1.15, (len(trees), 1))
    c = trees[:, :2] / res
    rp = trees[:, 2] / res
    _circles(tex, c, rp, cols * 0.78, n)
    _circles(tex, c + sun_dir[None, :] * (rp * 0.15)[:, None], rp * 0.8, cols, n)
    _circles(tex, c + sun_dir[None, :] * (rp * 0.38)[:, None], rp * 0.42, np.clip(cols * 1.22, 0, 255), n)


def _shade(tex: np.ndarray, shadow: np.ndarray) -> None:
    """Darken (and cool) the ground under the shadow mask, with soft edges."""
    shadow = cv2.GaussianBlur(shadow, (3, 3), 0)
    tint = np.array([0.46, 0.5, 0.6])
    lut = np.stack([np.round(255 - np.arange(256) * (1 - t)) for t in tint], axis=-1).astype(np.uint8)
    lut = lut.reshape(1, 256, 3)
    for r0 in range(0, tex.shape[0], CHUNK_ROWS):
        r1 = min(tex.shape[0], r0 + CHUNK_ROWS)
        s = shadow[r0:r1]
        fac = cv2.LUT(cv2.merge([s, s, s]), lut)
        cv2.multiply(tex[r0:r1], fac, dst=tex[r0:r1], scale=1 / 255)


def _grain(tex: np.ndarray, ctx: _Ctx, amount: float) -> None:
    """Fine grain over everything (grass blades, gravel, foliage, roof texture): a seamless tile repeated."""
    n = tex.shape[0]
    tile = 512 if n % 512 == 0 else 128
    g = PeriodicNoise(ctx.rng, tile * ctx.res, max(0.3, 1.5 * ctx.res), 2).rows(tile) * amount
    g = np.repeat(g[..., None], 3, axis=-1)
    pos = np.clip(g, 0, 255).astype(np.uint8)
    neg = np.clip(-g, 0, 255).astype(np.uint8)
    reps = n // tile
    for r0 in range(0, n, tile):
        band = tex[r0:r0 + tile]
        cv2.add(band, np.tile(pos, (1, reps, 1)), dst=band)
        cv2.subtract(band, np.tile(neg, (1, reps, 1)), dst=band)


def _pyramid(tex: np.ndarray, levels: int = 5) -> list[np.ndarray]:
    out = [tex]
    for _ in range(levels - 1):
        a = out[-1]
        if a.shape[0] < 64 or a.shape[0] % 2:
            break
        out.append(cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA))
    return out


# ------------------------------------------------------------------------------------------------ backdrop
def backdrop_texture(img: np.ndarray, n: int) -> np.ndarray:
    """An aerial photo (RGB) as a seamless ``n`` x ``n`` ground: centre square, mirrored tiling."""
    h, w = img.shape[:2]
    s = min(h, w)
    sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    reps = int(np.clip(n // (2 * s), 1, 4))
    tile = n // (2 * reps)
    t = cv2.resize(sq, (tile, tile), interpolation=cv2.INTER_AREA if tile < s else cv2.INTER_CUBIC)
    period = np.vstack([np.hstack([t, t[:, ::-1]]), np.hstack([t[::-1], t[::-1, ::-1]])])
    out = np.tile(period, (reps, reps, 1))
    if out.shape[0] != n:
        out = cv2.resize(out, (n, n), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(out)


def _classify_photo(tex: np.ndarray, m: int) -> np.ndarray:
    """A rough land cover of a photo by colour, so truth and captions stay honest over a backdrop."""
    small = cv2.resize(tex, (m, m), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV).astype(np.int32)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    cover = np.full((m, m), FARMLAND, np.uint8)  # soil and anything unclassified: open ground
    green = (h >= 30) & (h <= 90) & (s > 35)
    cover[green & (v >= 95)] = GRASS
    cover[green & (v < 95)] = FOREST
    cover[(h >= 90) & (h <= 130) & (s > 40) & (v < 170)] = WATER
    cover[(s < 70) & (v > 170) & ~green] = SAND
    return cv2.medianBlur(cover, 5)


# ------------------------------------------------------------------------------------------------ entry point
def build_world(
    theme: str, place_seed: int, *, size_px: int, res_m: float, backdrop: np.ndarray | None = None,
    backdrop_name: str = "backdrop",
) -> World:
    """Generate the world for one place. Deterministic in (theme, place_seed, size_px, res_m, backdrop)."""
    if theme not in THEMES:
        raise ValueError(f"unknown theme {theme!r}")
    if size_px % (CELL_PX * 16):
        raise ValueError("size_px must be a multiple of 128")
    rng = np.random.default_rng([place_seed, THEMES.index(theme), 7919])
    ctx = _Ctx(rng, size_px, res_m, size_px // CELL_PX, theme)
    cover, roads, water_name, polys = _land_cover(ctx)
    photo = None
    if backdrop is not None:
        photo = backdrop_texture(backdrop, size_px)
        cover = _classify_photo(photo, ctx.m)
        water_name = "water"
        roads = [r for r in roads if r.paved][:2]
    semantic = cover.copy()
    _rasterise_roads(semantic, roads, ctx)
    buildings, taken = _place_buildings(ctx, cover, semantic, roads)
    water = cover == WATER
    water_dist = (periodic_distance(water) * ctx.cell).astype(np.float32)
    road_dist = (periodic_distance(semantic != ROAD) * ctx.cell).astype(np.float32)
    cars, boats, people = _place_movers(ctx, semantic, roads, water_dist)

    az = rng.uniform(0, 2 * np.pi)
    el = np.radians(rng.uniform(42, 66))
    sun_dir = np.array([np.sin(az), -np.cos(az)])  # towards the sun, map coordinates
    sun_shadow = -sun_dir / np.tan(el)

    if photo is None:
        tex = _compose(ctx, cover, _palette(ctx, water_name), polys)
        trees = _trees(ctx, semantic, road_dist, taken == 0)
    else:
        tex = photo
        trees = np.zeros((0, 4))
    _draw_roads(tex, roads, ctx)
    shadow = _shadows(ctx, buildings, trees, sun_shadow)
    _shade(tex, shadow)
    del shadow
    _draw_roofs(tex, buildings, ctx, sun_dir)
    _draw_crowns(tex, trees, ctx, sun_dir)
    if photo is None:
        _grain(tex, ctx, 5.0)
    home = (float(rng.uniform(36.0, 55.0)), float(rng.uniform(-8.0, 28.0)))
    place = f"{theme}-{place_seed}" if backdrop is None else f"{backdrop_name}-{theme}-{place_seed}"
    levels = _pyramid(tex)
    rolled = [np.roll(a, (a.shape[0] // 2, a.shape[1] // 2), axis=(0, 1)) for a in levels]
    return World(
        theme=theme, place=place, place_seed=place_seed, res_m=res_m, size_px=size_px, levels=levels,
        rolled=rolled, semantic=semantic, roads=roads,
        buildings=buildings, cars=cars, boats=boats, people=people, sun_shadow=sun_shadow, home=home,
        water_name=water_name,
    )
