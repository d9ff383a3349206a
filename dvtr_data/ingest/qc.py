"""Per-clip quality control: motion (hover vs moving), sharpness, exposure, and a verdict with reasons.

The signals come from the one decode pass over the flight (`scan.py`); this module only aggregates them over a
window and applies thresholds. Rejected clips stay in the table with their reasons, so a user can relax a
threshold and see what would come back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dvtr_data.errors import UsageError


@dataclass(frozen=True)
class QcThresholds:
    """Thresholds of the QC verdict. Metrics are measured on the luma plane of the decoded frames.

    ``motion`` is the mean absolute difference (0-255) between a slightly blurred ~256 px grey frame and the one a
    second earlier (averaged over the window);
    ``sharpness`` is the variance of the Laplacian at about 640 px wide (median over sampled frames);
    ``exposure`` is the mean luma (0-255).
    """

    hover_motion: float = 2.5  # below: the camera hovers (a label, not a rejection)
    frozen_motion: float = 0.05  # below: frames are identical (a frozen feed): rejected
    min_sharpness: float = 15.0  # below: too blurry
    min_exposure: float = 20.0  # below: too dark
    max_exposure: float = 235.0  # above: overexposed
    max_clipped: float = 0.6  # share of pixels crushed to black or blown to white
    reject_hover: bool = False  # hovering clips are normal drone footage; reject them only when asked

    def check(self) -> None:
        if self.min_exposure >= self.max_exposure:
            raise UsageError("QC: min_exposure must be below max_exposure")
        if not 0 < self.max_clipped <= 1:
            raise UsageError("QC: max_clipped must be in (0, 1]")


@dataclass
class QcResult:
    motion: float
    motion_kind: str
    sharpness: float
    exposure: float
    clipped_dark: float
    clipped_bright: float
    verdict: str
    reasons: list[str]


def assess(
    motion: np.ndarray,
    luma: np.ndarray,
    dark: np.ndarray,
    bright: np.ndarray,
    sharpness: np.ndarray,
    thresholds: QcThresholds,
) -> QcResult:
    """Aggregate per-frame signals of one window into a verdict.

    ``motion`` holds only the frames whose one-second baseline lies inside the window (NaN-free, may be empty);
    ``sharpness`` may be a sparser sample.
    """
    motion = motion[~np.isnan(motion)]
    m = float(np.mean(motion)) if len(motion) else float("nan")
    e = float(np.mean(luma)) if len(luma) else 0.0
    d = float(np.mean(dark)) if len(dark) else 0.0
    b = float(np.mean(bright)) if len(bright) else 0.0
    s = float(np.median(sharpness)) if len(sharpness) else float("nan")
    kind = "unknown" if np.isnan(m) else "hover" if m < thresholds.hover_motion else "moving"
    reasons: list[str] = []
    if not np.isnan(m) and m < thresholds.frozen_motion:
        reasons.append(f"frozen: motion {m:.3f} < {thresholds.frozen_motion}")
    if thresholds.reject_hover and kind == "hover":
        reasons.append(f"hover: motion {m:.2f} < {thresholds.hover_motion}")
    if not np.isnan(s) and s < thresholds.min_sharpness:
        reasons.append(f"blurry: sharpness {s:.1f} < {thresholds.min_sharpness}")
    if e < thresholds.min_exposure or d > thresholds.max_clipped:
        reasons.append(f"too dark: mean luma {e:.0f}, {d:.0%} crushed")
    if e > thresholds.max_exposure or b > thresholds.max_clipped:
        reasons.append(f"overexposed: mean luma {e:.0f}, {b:.0%} blown")
    return QcResult(m, kind, s, e, d, b, "reject" if reasons else "pass", reasons)
