"""Seamless (periodic) value noise, sampled row-band by row-band.

The simulated worlds wrap around like a torus so that a flight of any length never flies off the edge; every
texture ingredient must therefore tile seamlessly. Sampling small random lattices with ``cv2.warpAffine`` and
``BORDER_WRAP`` gives periodic multi-octave noise at any size, and sampling a band of rows at a time keeps the
memory of an 8k texture bounded.
"""

from __future__ import annotations

import cv2
import numpy as np

_WARP = cv2.WARP_INVERSE_MAP


def sample_periodic(grid: np.ndarray, n: int, r0: int, r1: int, interp: int = cv2.INTER_CUBIC) -> np.ndarray:
    """Rows ``[r0, r1)`` of ``grid`` stretched over an ``n`` x ``n`` torus (pixel centres aligned)."""
    s = grid.shape[0] / n
    m = np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, (r0 + 0.5) * s - 0.5]], np.float64)
    return cv2.warpAffine(grid, m, (n, r1 - r0), flags=interp | _WARP, borderMode=cv2.BORDER_WRAP)


class PeriodicNoise:
    """Fractal value noise on a torus of side ``size_m`` metres; ``feature_m`` is the coarsest blob size."""

    def __init__(
        self, rng: np.random.Generator, size_m: float, feature_m: float, octaves: int = 4,
        persistence: float = 0.5,
    ) -> None:
        self.grids: list[np.ndarray] = []
        self.amps: list[float] = []
        cells = max(2, round(size_m / feature_m))
        amp = 1.0
        for _ in range(octaves):
            self.grids.append(rng.standard_normal((cells, cells)).astype(np.float32))
            self.amps.append(amp)
            cells *= 2
            amp *= persistence
        # Cubic interpolation of a white lattice keeps roughly 0.55 of its standard deviation.
        self.norm = 1.0 / (0.55 * float(np.sqrt(np.sum(np.square(self.amps)))))

    def rows(self, n: int, r0: int = 0, r1: int | None = None) -> np.ndarray:
        """Rows ``[r0, r1)`` of the field rendered at ``n`` x ``n`` samples; about zero mean, unit spread."""
        r1 = n if r1 is None else r1
        out = np.zeros((r1 - r0, n), np.float32)
        for grid, amp in zip(self.grids, self.amps, strict=False):
            if grid.shape[0] > 2 * n:  # finer than the sampling: would only alias
                continue
            out += amp * sample_periodic(grid, n, r0, r1)
        out *= self.norm
        return out


def wrap_pad(a: np.ndarray, pad: int) -> np.ndarray:
    """Pad a periodic map with its own opposite edges (for filters that do not know about wrapping)."""
    widths = [(pad, pad), (pad, pad)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, widths, mode="wrap")


def periodic_blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a periodic map."""
    pad = int(3 * sigma) + 1
    b = cv2.GaussianBlur(wrap_pad(a, pad), (0, 0), sigma)
    return b[pad:-pad, pad:-pad]


def periodic_distance(mask: np.ndarray) -> np.ndarray:
    """Distance (in cells) from every cell to the nearest cell where ``mask`` is False, on a torus."""
    pad = min(mask.shape[0] // 2, 64)
    src = wrap_pad(mask.astype(np.uint8), pad)
    d = cv2.distanceTransform(src, cv2.DIST_L2, 5)
    return d[pad:-pad, pad:-pad]
