"""Gradual transitions (fades through black or white, dissolves) found on ingest's single decode pass.

A hard cut is a boundary PySceneDetect finds (`shots.py`); a fade or a dissolve is not a cut for it, yet the frames
on its two sides show different places, and the frames inside it show both (or neither). Every frame of a
transition is therefore excluded from both neighbouring clips, and its two edges are boundaries for the clips'
telemetry summaries. What is found is the transition's *extent* ``[start_frame, end_frame)``, not one frame.

Why our own detector rather than PySceneDetect's ``ThresholdDetector`` for fades: that detector reports one cut
frame per fade (placed inside the dark run by ``fade_bias``), not where the fade starts and ends, and it only
knows fades to black (or, with ``method=CEILING``, to white) below a fixed mean-intensity threshold, which a
fade whose darkest frame carries sensor noise can miss. Both facts we need, the flat frame at the bottom and the
ramp into and out of it, are read from per-frame statistics of a 64 px thumbnail that this pass computes anyway.

**Fades** (`_fades`, after the pass): a fade multiplies the picture by a falling weight and blends in a flat
colour, so the frame's contrast (standard deviation of the luma thumbnail) falls in proportion to the weight and
reaches ~0 at the fade's bottom, whose mean is near black or white. A run of flat frames (``flat_std``) that is
reached by such a ramp on at least one side is a fade; its extent runs out along each ramp while the contrast
keeps changing by more than ``ramp`` (relative) per frame, up to ``max_s`` each way. A flat sky or calm sea with
no ramp into it is not a fade.

**Dissolves** (`_dissolve`, streaming): during a dissolve from A to B every frame is a blend
``(1 - a) A + a B`` with ``a`` rising from 0 to 1. Windows ``[s, e]`` of a few lengths (up to ``max_s``) ending
every quarter length are tested, keeping only the last ``max_s`` of thumbnails in memory (about 0.7 ms a frame).
A window is a dissolve when its end frames are different pictures (mean absolute difference above
``min_change``, correlation below ``max_corr``: a gain change or slow drift is not), the frames between are each
explained by the blend of the two ends (least-squares ``a``, relative residual below ``max_residual``: loose,
because both pictures keep moving during the blend), ``a`` rises without a jump (a jump is a hard cut) and
stays within [-0.1, 1.1], and the contrast dips as a blend of two unrelated pictures does (observed over
predicted standard deviation within [``std_low``, ``std_high``]). The last test is what rejects camera motion:
a pan between two different views can look like a blend on small pictures, but its frames keep their contrast
(1.2-1.4 times a blend's), while a blend's halves partly cancel. The extent is the dip in contrast around the
window (`_refine`): motion biases ``a`` near the ends, the contrast recovers exactly where the blend stops.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from dvtr_data.errors import UsageError

THUMB_WIDTH = 64  # pixels: enough structure to tell a blend from motion, cheap enough to test many windows


@dataclass(frozen=True)
class Transition:
    """One gradual transition: frames ``[start_frame, end_frame)`` belong to no clip."""

    start_frame: int
    end_frame: int  # exclusive
    kind: str  # fade_black | fade_white | fade (to another flat colour) | dissolve

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass(frozen=True)
class TransitionRule:
    """Settings of the transition detector (see the module docstring for what each test does).

    Luma values are 0-255 on the 64 px thumbnail. ``enabled=False`` finds none (hard cuts only, as before).
    """

    enabled: bool = True
    max_s: float = 2.0  # longest dissolve, and longest ramp on each side of a fade's flat bottom
    min_s: float = 0.12  # shortest dissolve tested (shorter ones are as good as a hard cut)
    flat_std: float = 6.0  # a frame whose thumbnail's standard deviation is below this is flat
    black_luma: float = 48.0  # a flat frame darker than this is black
    white_luma: float = 207.0  # a flat frame brighter than this is white
    ramp: float = 0.008  # relative contrast change per frame that still counts as fading
    min_ramp_contrast: float = 4.0  # a fade's ramp reaches at least this many times ``flat_std``
    min_change: float = 12.0  # mean |end - start| of a dissolve window
    max_corr: float = 0.3  # correlation of a dissolve window's two ends, at most
    max_residual: float = 0.6  # a blended frame's residual over |end - start|, at most (motion during the blend)
    std_low: float = 0.75  # observed / predicted contrast of a blended frame, at least (motion, vignetting)
    std_high: float = 1.12  # and at most: camera motion keeps its contrast (about 1.2-1.4 here), a blend dips

    def check(self) -> None:
        if not 0 < self.min_s < self.max_s:
            raise UsageError(f"transition lengths must satisfy 0 < min ({self.min_s}) < max ({self.max_s})")
        if not 0 < self.flat_std < self.min_change:
            raise UsageError("transition flat_std must be positive and below min_change")


def _thumb(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(2, round(h * tw / w))
    return cv2.resize(gray, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()


class TransitionFinder:
    """Feed every frame's grey picture in order (``feed``), then ``finish`` for the transitions found."""

    def __init__(self, fps: Fraction | float, rule: TransitionRule | None = None) -> None:
        self.rule = rule or TransitionRule()
        self.rule.check()
        rate = float(fps)
        self.max_len = max(3, round(self.rule.max_s * rate))
        lengths: list[int] = []
        length = max(3, round(self.rule.min_s * rate))
        while length < self.max_len:
            lengths.append(length)
            length = max(length + 1, math.ceil(length * 1.4))
        lengths.append(self.max_len)
        self.lengths = lengths
        self._ring: deque[np.ndarray] = deque(maxlen=self.max_len + 1)
        self._mean: list[float] = []
        self._std: list[float] = []
        self._dissolves: list[tuple[int, int]] = []
        self._last = -1

    def feed(self, frame_index: int, gray: np.ndarray) -> None:
        """``gray``: the frame's luma at any size (the scan's ~256 px picture); frames must come in order."""
        t = _thumb(gray)
        self._last = frame_index
        self._ring.append(t)
        self._mean.append(float(t.mean()))
        self._std.append(float(t.std()))
        e = frame_index
        for length in self.lengths:
            step = max(1, length // 4)
            if e % step or length >= len(self._ring):
                continue
            s = e - length
            found = _dissolve(np.stack(list(self._ring)[-length - 1 :]), self.rule)
            if found is not None:
                a, b = found
                self._dissolves.append((s + a, s + b))

    def finish(self) -> list[Transition]:
        """Fades and dissolves, sorted, overlapping finds merged (a fade's kind wins over a dissolve's)."""
        if self._last < 0:
            return []
        std = np.asarray(self._std)
        refined = (_refine(a, b, std, self.max_len, self.rule) for a, b in sorted(set(self._dissolves)) if b - a >= 2)
        found = [t for t in refined if t is not None]
        found += _fades(np.asarray(self._mean), std, self.max_len, self.rule)
        return merge_transitions(found, self._last + 1)


def merge_transitions(found: list[Transition], n_frames: int) -> list[Transition]:
    """Union of overlapping or touching transitions, clamped to ``[0, n_frames)``."""
    rank = {"fade_black": 0, "fade_white": 0, "fade": 1, "dissolve": 2}
    out: list[Transition] = []
    for t in sorted(found, key=lambda t: (t.start_frame, t.end_frame)):
        a, b = max(0, t.start_frame), min(n_frames, t.end_frame)
        if b <= a:
            continue
        if out and a <= out[-1].end_frame:
            last = out[-1]
            kind = min(last.kind, t.kind, key=lambda k: rank.get(k, 3))
            out[-1] = Transition(last.start_frame, max(last.end_frame, b), kind)
        else:
            out.append(Transition(a, b, t.kind))
    return out


def _dissolve(window: np.ndarray, rule: TransitionRule) -> tuple[int, int] | None:
    """``[start, end)`` of a dissolve inside ``window`` (frames x pixels, offsets into it), or None."""
    first, last = window[0], window[-1]
    diff = last - first
    if float(np.abs(diff).mean()) < rule.min_change:
        return None
    s0, s1 = float(first.std()), float(last.std())
    if s0 < rule.flat_std or s1 < rule.flat_std:  # a flat end: a fade's, handled by `_fades`
        return None
    rho = float(np.dot(first - first.mean(), last - last.mean())) / (first.size * s0 * s1)
    if rho > rule.max_corr:
        return None
    mid = window[1:-1]
    x = mid - first
    dd = float(np.dot(diff, diff))
    a = x @ diff / dd
    mixing = (a > 0.2) & (a < 0.8)
    if np.count_nonzero(mixing) < 2:
        return None
    steps = np.diff(np.concatenate([[0.0], a, [1.0]]))
    if float(steps.max()) > 0.5:  # a jump: a hard cut, not a blend
        return None
    if float(steps.min()) < -0.08 or float(a.min()) < -0.1 or float(a.max()) > 1.1:  # not one rising blend
        return None
    resid = x[mixing] - a[mixing, None] * diff
    ratio = np.sqrt((resid * resid).mean(axis=1) / (dd / diff.size))
    if float(ratio.max()) > rule.max_residual:
        return None
    am = a[mixing]
    predicted = np.sqrt((1 - am) ** 2 * s0**2 + am**2 * s1**2 + 2 * am * (1 - am) * rho * s0 * s1)
    observed = mid[mixing].std(axis=1)
    rel = observed / predicted
    if float(rel.min()) < rule.std_low or float(rel.max()) > rule.std_high:
        return None
    idx = np.flatnonzero(mixing) + 1  # offsets into the window
    if len(idx) >= 2 and idx[-1] > idx[0]:
        slope, icpt = np.polyfit(idx.astype(float), am, 1)
    else:
        return None
    if not slope > 0:
        return None
    start = math.ceil((0.0 - icpt) / slope - 1e-9)
    end = math.floor((1.0 - icpt) / slope + 1e-9) + 1
    start, end = max(1, start), min(len(window) - 1, end)
    return (start, end) if end - start >= 2 else None


def _ramp_edges(lo: int, hi: int, std: np.ndarray, max_len: int, rule: TransitionRule) -> tuple[int, int]:
    """Walk out of ``[lo, hi)`` (the low-contrast middle of a transition) while the contrast keeps rising.

    The walk stops on the first frame that is not clearly above its inner neighbour: the last full frame, or
    the first barely blended one; that frame is left to the clip. Returns the transition's ``[start, end)``.
    """
    n = len(std)
    a = lo
    while a > 0 and lo - a < max_len and std[a - 1] > std[a] * (1 + rule.ramp) + 0.05:
        a -= 1
    b = hi - 1
    while b + 1 < n and b - (hi - 1) < max_len and std[b + 1] > std[b] * (1 + rule.ramp) + 0.05:
        b += 1
    return (a + 1 if a < lo else a), (b if b > hi - 1 else b + 1)


def _refine(a: int, b: int, std: np.ndarray, max_len: int, rule: TransitionRule) -> Transition | None:
    """A dissolve found by the blend test, its extent taken from its contrast dip: the contrast of a blend of
    two unrelated pictures is lowest inside and recovers exactly where the blend stops, while the blend test's
    ``a`` is biased by motion near the ends (a few frames early on a fast flight). The bottom of the dip may
    be flat for a few frames. A window that only grazes the transition shows no dip of two frames: None (the
    windows that hold the transition give its extent)."""
    low = a + int(np.argmin(std[a:b]))
    floor = std[low] * (1 + rule.ramp) + 0.05
    lo, hi = low, low + 1
    while lo > a and std[lo - 1] <= floor:
        lo -= 1
    while hi < b and std[hi] <= floor:
        hi += 1
    start, end = _ramp_edges(lo, hi, std, max_len, rule)
    return Transition(start, end, "dissolve") if end - start >= 2 else None


def _fades(mean: np.ndarray, std: np.ndarray, max_len: int, rule: TransitionRule) -> list[Transition]:
    """Fades through a flat frame, with the ramps into and out of it (see the module docstring)."""
    n = len(std)
    flat = std < rule.flat_std
    out: list[Transition] = []
    i = 0
    while i < n:
        if not flat[i]:
            i += 1
            continue
        j = i
        while j < n and flat[j]:
            j += 1
        # [i, j) is a flat run; ramps out of it on both sides
        a, b = _ramp_edges(i, j, std, max_len, rule)
        reach = max(std[a - 1] if a > 0 else 0.0, std[b] if b < n else 0.0)
        if (a < i or b > j) and reach >= rule.min_ramp_contrast * rule.flat_std:
            level = float(np.median(mean[i:j]))
            kind = "fade_black" if level < rule.black_luma else "fade_white" if level > rule.white_luma else "fade"
            out.append(Transition(a, b, kind))
        i = j
    return out
