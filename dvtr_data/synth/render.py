"""Frames: the ground texture projected through the camera, the moving objects drawn on top, then the air and
the sensor (haze with distance, vignetting, auto-exposure drift).

The ground is one bilinear ``cv2.warpPerspective`` per band of image rows that share a mip level: oblique
views take their far rows from coarser levels so distant ground does not shimmer, and ground that is magnified
anyway is rendered at half size and upscaled. The renderer also reports what is in view (land covers by area,
object ids), which becomes the truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dvtr_data.synth.camera import Pose, ground_homography, intrinsics
from dvtr_data.synth.world import COVER_NAMES, World

HAZE_RGB = (188, 198, 210)
HAZE_RANGE_M = 1600.0
HAZE_MAX = 0.6
OBJECT_CLASSES = ("building", "car", "boat", "person")
_COPIES = np.array([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)], np.float64)


@dataclass
class InView:
    """What one frame shows: land-cover area fractions and the ids of visible objects per class."""

    covers: dict[str, float]
    objects: dict[str, np.ndarray]

    def classes(self, min_cover: float = 0.02) -> list[str]:
        out = {c for c, f in self.covers.items() if f >= min_cover}
        out |= {c for c, ids in self.objects.items() if len(ids)}
        return sorted(out)


def _project(h: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map metres -> image px (and the homogeneous w; w <= 0 is behind the camera)."""
    p = pts @ h[:, :2].T + h[:, 2]
    w = p[..., 2]
    return p[..., :2] / np.where(np.abs(w) < 1e-9, 1e-9, w)[..., None], w


def _fix(pts: np.ndarray) -> np.ndarray:
    return np.round(pts * 16).astype(np.int32)  # cv2 shift=4


class Renderer:
    """Renders one world through one camera size. Cheap to create; holds per-size buffers."""

    def __init__(self, world: World, width: int, height: int) -> None:
        self.world = world
        self.w, self.h = width, height
        self.k = intrinsics(width, height)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        r2 = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
        vig = np.clip(255 * (1.0 - 0.22 * r2 ** 1.3), 0, 255).astype(np.uint8)
        self.vignette = vig
        self.haze = np.empty((height, width, 3), np.uint8)
        self.haze[:] = HAZE_RGB
        gx, gy = np.meshgrid(np.linspace(0.5, width - 0.5, 32), np.linspace(0.5, height - 0.5, 18))
        self.samples = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)], axis=1)

    # -------------------------------------------------------------------------------------------- ground
    def _bands(self, hinv: np.ndarray, pose: Pose) -> list[tuple[int, int, int, float]]:
        """Row bands (start, end, mip level, haze alpha), from the ground distance each row looks at."""
        w, h = self.w, self.h
        step = 8
        rows = np.arange(0, h, step, dtype=np.float64) + (step - 1) / 2
        cx = w / 2
        pts = np.stack([
            np.stack([np.full_like(rows, cx), rows, np.ones_like(rows)], axis=1),
            np.stack([np.full_like(rows, cx + 1), rows, np.ones_like(rows)], axis=1),
            np.stack([np.full_like(rows, cx), rows + 1, np.ones_like(rows)], axis=1),
        ])
        g = pts @ hinv.T
        g = g[..., :2] / g[..., 2:3]
        gx = np.linalg.norm(g[1] - g[0], axis=1)
        gy = np.linalg.norm(g[2] - g[0], axis=1)
        texels = np.sqrt(gx * gy) / self.world.res_m
        # Mip level: the nearest power of two of the texels one pixel spans (so a level is never minified by
        # more than 1.4x: sharp enough, and cache-friendly). Ground magnified about 1.4x or more (level -1) has
        # no detail at full resolution that half resolution lacks: it is rendered at half size and upscaled,
        # a quarter of the warp work.
        top = len(self.world.levels) - 1
        levels = np.clip(np.round(np.log2(np.maximum(texels, 1e-6))), -1, top).astype(int)
        dist = np.sqrt(np.sum((g[0] - (pose.x, pose.y)) ** 2, axis=1) + pose.alt**2)
        haze = HAZE_MAX * (1.0 - np.exp(-dist / HAZE_RANGE_M))
        starts = range(0, h, step)
        return [(r0, min(h, r0 + step), int(lev), float(a)) for r0, lev, a in zip(starts, levels, haze, strict=False)]

    def _ground(self, hmat: np.ndarray, pose: Pose) -> np.ndarray:
        world = self.world
        hinv = np.linalg.inv(hmat)
        bands = self._bands(hinv, pose)
        frame = np.empty((self.h, self.w, 3), np.uint8)
        start = 0
        for i in range(1, len(bands) + 1):  # runs of rows sharing a mip level -> one warp each
            if i < len(bands) and bands[i][2] == bands[start][2]:
                continue
            r0, r1, lev = bands[start][0], bands[i - 1][1], bands[start][2]
            half = lev < 0
            lev = max(lev, 0)
            s = 2.0**lev
            res = world.res_m * s
            off = world.res_m * (s - 1) / 2
            to_tex = np.linalg.inv(hmat @ np.array([[res, 0, off], [0, res, off], [0, 0, 1.0]]))
            if half:  # half-size pixel (x, y) is full-size (2x + 0.5, 2y + 0.5), as cv2.resize assumes
                w, rows = self.w // 2, (r1 - r0) // 2
                m = to_tex @ np.array([[2.0, 0, 0.5], [0, 2.0, r0 + 0.5], [0, 0, 1]])
            else:
                w, rows = self.w, r1 - r0
                m = to_tex @ np.array([[1.0, 0, 0], [0, 1, r0], [0, 0, 1]])
            src, m = self._in_range(m, lev, w, rows)
            out = np.empty((rows, w, 3), np.uint8) if half else frame[r0:r1]
            cv2.warpPerspective(src, m, (w, rows), dst=out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_WRAP)
            if half:
                cv2.resize(out, (self.w, r1 - r0), dst=frame[r0:r1], interpolation=cv2.INTER_LINEAR)
            start = i
        self._last_bands = bands
        return frame

    def _in_range(self, m: np.ndarray, lev: int, cols: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Pick the texture copy (plain, or rolled by half a period) and the whole-period shift under which
        the band samples no pixel across the texture's edge: OpenCV's wrap-around border path is over twice
        as slow as the in-range one. Falls back to wrapping when the band is wider than half the world."""
        n = self.world.levels[lev].shape[0]
        corners = np.array([[0, 0, 1], [cols - 1, 0, 1], [0, rows - 1, 1], [cols - 1, rows - 1, 1]], float)
        q = corners @ m.T
        if np.any(q[:, 2] <= 0):
            return self.world.levels[lev], m
        q = q[:, :2] / q[:, 2:3]
        lo, hi = q.min(axis=0), q.max(axis=0)
        for tex, d in ((self.world.levels[lev], 0.0), (self.world.rolled[lev], n / 2)):
            k = np.floor((lo + d) / n)
            a, b = lo + d - k * n, hi + d - k * n
            if a.min() >= 0 and b.max() <= n - 2:
                shift = np.array([[1.0, 0, d - k[0] * n], [0, 1, d - k[1] * n], [0, 0, 1]])
                return tex, shift @ m
        return self.world.levels[lev], m

    def _air(self, frame: np.ndarray) -> None:
        """Aerial perspective: distant ground fades towards the colour of the haze (bands of equal haze)."""
        bands = self._last_bands
        start = 0
        for i in range(1, len(bands) + 1):
            if i < len(bands) and round(bands[i][3] * 128) == round(bands[start][3] * 128):
                continue
            a = round(bands[start][3] * 128) / 128
            if a >= 0.03:
                r0, r1 = bands[start][0], bands[i - 1][1]
                band = frame[r0:r1]
                cv2.addWeighted(band, 1.0 - a, self.haze[r0:r1], a, 0.0, dst=band)
            start = i

    def sensor(self, yuv: np.ndarray, gain: float) -> None:
        """Lens vignetting and auto-exposure drift, applied to the luma plane of an I420 frame in place
        (a third of the work of doing it in RGB)."""
        y = yuv[: self.h]
        cv2.multiply(y, self.vignette, dst=y, scale=gain / 255.0)

    # -------------------------------------------------------------------------------------------- objects
    def _copies(
        self, pos: np.ndarray, hmat: np.ndarray, margin_px: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Torus copies of object positions that land in (or near) the frame: (object idx, position, px)."""
        if not len(pos):
            return np.zeros(0, int), np.zeros((0, 2)), np.zeros((0, 2))
        size = self.world.size_m
        cand = pos[:, None, :] + _COPIES[None, :, :] * size
        px, w = _project(hmat, cand)
        ok = (w > 0) & (px[..., 0] > -margin_px) & (px[..., 0] < self.w + margin_px)
        ok &= (px[..., 1] > -margin_px) & (px[..., 1] < self.h + margin_px)
        idx, c = np.nonzero(ok)
        return idx, cand[idx, c], px[idx, c]

    def _scale_px(self, hmat: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Image pixels per ground metre near each position."""
        a, _ = _project(hmat, at)
        b, _ = _project(hmat, at + (1.0, 0.0))
        c, _ = _project(hmat, at + (0.0, 1.0))
        return np.sqrt(np.linalg.norm(b - a, axis=-1) * np.linalg.norm(c - a, axis=-1))

    def _blend(self, frame: np.ndarray, px: np.ndarray, colour, alpha: float) -> None:
        """A translucent polygon (shadows, wakes), blended only inside its bounding box."""
        x0, y0 = np.floor(px.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(px.max(axis=0)).astype(int) + 2
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(self.w, x1), min(self.h, y1)
        if x1 <= x0 or y1 <= y0:
            return
        roi = frame[y0:y1, x0:x1]
        over = roi.copy()
        cv2.fillConvexPoly(over, _fix(px - (x0, y0)), colour, cv2.LINE_AA, 4)
        cv2.addWeighted(over, alpha, roi, 1 - alpha, 0, dst=roi)

    def _objects(self, frame: np.ndarray, hmat: np.ndarray, t: float) -> dict[str, np.ndarray]:
        world = self.world
        seen: dict[str, np.ndarray] = {}
        sun = world.sun_shadow

        def inside(px: np.ndarray) -> np.ndarray:
            return (px[:, 0] >= 0) & (px[:, 0] < self.w) & (px[:, 1] >= 0) & (px[:, 1] < self.h)

        def boxes(c: np.ndarray, u: np.ndarray, length: np.ndarray, width: np.ndarray,
                  spec: list[tuple[float, float, float, float]]) -> np.ndarray:
            """Quads (k, len(spec), 4, 2): from a0 to a1 of the length, half-widths w0 (at a0), w1 (at a1)."""
            v = np.stack([-u[:, 1], u[:, 0]], axis=1)
            out = []
            for a0, a1, w0, w1 in spec:
                ca, cb = c + u * (length * a0)[:, None], c + u * (length * a1)[:, None]
                va, vb = v * (width * w0)[:, None], v * (width * w1)[:, None]
                out.append(np.stack([ca - va, cb - vb, cb + vb, ca + va], axis=1))
            return np.stack(out, axis=1)

        # buildings are baked into the ground; only their visibility is needed
        idx, _, px = self._copies(world.buildings.centers, hmat, 0)
        seen["building"] = np.unique(idx[inside(px)])

        # boats: wake, churned water, shadow, hull (a pointed bow is a triangle on a box), cabin
        pos, head = world.boat_poses(t)
        idx, p, px = self._copies(pos, hmat, 250)
        seen["boat"] = np.unique(idx[inside(px)])
        if len(idx):
            b = world.boats
            length, width = b.size[idx, 0], b.size[idx, 1]
            wake_w = length / np.maximum(width, 1e-6)
            quads = boxes(p, head[idx], length, width, [
                (-0.5, -2.4, 0.3, 0.6 * wake_w), (-0.5, -1.3, 0.4, 0.6), (-0.5, 0.22, 0.5, 0.5),
                (-0.5, 0.22, 0.5, 0.5), (0.22, 0.5, 0.5, 0.0), (-0.28, 0.05, 0.3, 0.3)])
            quads[:, 2] += sun * 1.2
            q, _ = _project(hmat, quads)
            qi = _fix(q)
            for k, i in enumerate(idx):
                col = b.colour[i].tolist()
                dark = (b.colour[i] * 0.72).tolist()
                self._blend(frame, q[k, 0], (200, 218, 224), 0.16)
                self._blend(frame, q[k, 1], (236, 242, 244), 0.45)
                self._blend(frame, q[k, 2], (10, 30, 40), 0.45)
                for j, c in ((3, col), (4, col), (5, dark)):
                    cv2.fillConvexPoly(frame, qi[k, j], c, cv2.LINE_AA, 4)

        # cars: shadow, body, windscreen, rear window, roof
        pos, head = world.car_poses(t)
        idx, p, px = self._copies(pos, hmat, 60)
        seen["car"] = np.unique(idx[inside(px)])
        if len(idx):
            cars = world.cars
            quads = boxes(p, head[idx], cars.size[idx, 0], cars.size[idx, 1], [
                (-0.5, 0.5, 0.5, 0.5), (-0.5, 0.5, 0.5, 0.5), (0.08, 0.3, 0.42, 0.38),
                (-0.38, -0.26, 0.4, 0.42), (-0.26, 0.08, 0.44, 0.44)])
            quads[:, 0] += sun * 1.3
            q, _ = _project(hmat, quads)
            qi = _fix(q)
            for k, i in enumerate(idx):
                col = cars.colour[i]
                self._blend(frame, q[k, 0], (20, 20, 24), 0.55)
                roof = np.clip(col * 1.06, 0, 255).tolist()
                for j, c in ((1, col.tolist()), (2, (34, 40, 48)), (3, (40, 46, 54)), (4, roof)):
                    cv2.fillConvexPoly(frame, qi[k, j], c, cv2.LINE_AA, 4)

        # people: a long thin shadow and a dot of a shirt with a head
        pos, _ = world.people_poses(t)
        idx, p, px = self._copies(pos, hmat, 20)
        seen["person"] = np.unique(idx[inside(px)])
        if len(idx):
            scale = self._scale_px(hmat, p)
            tip, _ = _project(hmat, p + sun * 1.7)
            for i, a, b2, s in zip(idx, _fix(px).tolist(), _fix(tip).tolist(), scale, strict=False):
                r = max(0.6, 0.28 * s)
                thick = max(1, int(round(0.35 * s)))
                cv2.line(frame, tuple(a), tuple(b2), (30, 34, 30), thick, cv2.LINE_AA, 4)
                col = tuple(float(x) for x in world.people.colour[i])
                cv2.circle(frame, tuple(a), int(round(r * 16)), col, -1, cv2.LINE_AA, 4)
                cv2.circle(frame, tuple(a), int(round(r * 8)), (60, 45, 35), -1, cv2.LINE_AA, 4)
        return seen

    # -------------------------------------------------------------------------------------------- frame
    def render(self, pose: Pose, t: float) -> tuple[np.ndarray, InView]:
        """The RGB frame for a camera pose at time ``t`` (s), and what it shows. Vignetting and exposure come
        later, in `sensor`, once the frame is in YUV."""
        size = self.world.size_m
        # re-centre the unwrapped camera position on the torus; the texture wraps, objects are copied
        origin = (math.floor(pose.x / size) * size, math.floor(pose.y / size) * size)
        local = Pose(pose.x - origin[0], pose.y - origin[1], pose.alt, pose.yaw, pose.pitch, pose.roll,
                     pose.gain)
        hmat = ground_homography(local, self.k)
        frame = self._ground(hmat, local)
        seen = self._objects(frame, hmat, t)
        self._air(frame)
        return frame, InView(self._covers(hmat), seen)

    def _covers(self, hmat: np.ndarray) -> dict[str, float]:
        g = self.samples @ np.linalg.inv(hmat).T
        g = g[:, :2] / g[:, 2:3]
        cls = self.world.cover_at(g)
        counts = np.bincount(cls, minlength=len(COVER_NAMES)) / len(cls)
        return {name: float(f) for name, f in zip(COVER_NAMES, counts, strict=False) if f > 0}
