"""Shot boundary detection with PySceneDetect's detectors, fed from our own decode pass.

We drive the detector objects directly (``process_frame`` / ``post_process``) instead of through
``SceneManager.detect_scenes`` so that shots, QC signals and timing all come from one decode of the flight: a
second decode just for cut detection would double the cost of the cheapest stage. The frames we feed are what
SceneManager would feed with its default auto-downscale (about 256 px wide, BGR), every frame, in order.

A flight with no cut is one shot: the equivalent of ``start_in_scene=True``. Gradual transitions (fades,
dissolves: `transitions.py`) are boundaries too, and their frames belong to no shot (`shots_from_boundaries`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector, ThresholdDetector
from scenedetect.common import FrameTimecode
from scenedetect.detector import SceneDetector

from dvtr_data.errors import UsageError
from dvtr_data.ingest.transitions import Transition

DETECTION_WIDTH = 256  # PySceneDetect's DEFAULT_MIN_WIDTH for auto-downscale


def _adaptive(min_scene_len: int) -> SceneDetector:
    return AdaptiveDetector(min_scene_len=min_scene_len)


def _content(min_scene_len: int) -> SceneDetector:
    return ContentDetector(min_scene_len=min_scene_len)


def _hash(min_scene_len: int) -> SceneDetector:
    return HashDetector(min_scene_len=min_scene_len)


def _histogram(min_scene_len: int) -> SceneDetector:
    return HistogramDetector(min_scene_len=min_scene_len)


def _threshold(min_scene_len: int) -> SceneDetector:
    return ThresholdDetector(min_scene_len=min_scene_len)


DETECTORS: dict[str, Callable[[int], SceneDetector]] = {
    "adaptive": _adaptive,
    "content": _content,
    "hash": _hash,
    "histogram": _histogram,
    "threshold": _threshold,
}
"""Name -> factory taking the minimum shot length in frames. AdaptiveDetector is the default: it was designed
to suppress false cuts from camera motion, which is all a drone flight is."""


@dataclass(frozen=True)
class Shot:
    index: int
    start_frame: int
    end_frame: int  # exclusive

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


class CutFinder:
    """Feeds frames to one PySceneDetect detector and collects cut frame numbers."""

    def __init__(self, detector: str, fps: Fraction, min_shot_s: float = 0.6) -> None:
        if detector not in DETECTORS:
            raise UsageError(f"unknown shot detector {detector!r}; choose from {', '.join(DETECTORS)}")
        self.fps = fps
        self.detector = DETECTORS[detector](max(1, round(min_shot_s * float(fps))))
        self.cuts: list[int] = []
        self._last = -1

    def feed(self, frame_index: int, bgr: np.ndarray) -> None:
        self._last = frame_index
        for tc in self.detector.process_frame(FrameTimecode(frame_index, self.fps), bgr):
            self.cuts.append(tc.frame_num)

    def finish(self) -> list[int]:
        if self._last >= 0:
            for tc in self.detector.post_process(FrameTimecode(self._last, self.fps)):
                self.cuts.append(tc.frame_num)
        return sorted({c for c in self.cuts if 0 < c <= self._last})


def shots_from_cuts(cuts: list[int], n_frames: int) -> list[Shot]:
    bounds = [0, *[c for c in sorted(set(cuts)) if 0 < c < n_frames], n_frames]
    return [Shot(i, a, b) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if b > a]


CUT_IN_TRANSITION_FRAMES = 2
"""A cut this close to (or inside) a transition is the detector seeing the transition: it adds no boundary."""


def shots_from_boundaries(cuts: list[int], transitions: list[Transition], n_frames: int) -> list[Shot]:
    """Shots between hard cuts and gradual transitions; a transition's frames are in no shot.

    A clip made from these shots never holds a frame of a fade or dissolve, so it never starts over one place
    and ends over another, and neither of its neighbours does.
    """
    spans = sorted((max(0, t.start_frame), min(n_frames, t.end_frame)) for t in transitions)
    spans = [(a, b) for a, b in spans if b > a]
    near = CUT_IN_TRANSITION_FRAMES
    kept = [c for c in sorted(set(cuts))
            if 0 < c < n_frames and not any(a - near <= c <= b + near for a, b in spans)]
    marks = sorted({0, n_frames, *kept, *(a for a, _ in spans), *(b for _, b in spans)})
    out: list[Shot] = []
    for a, b in zip(marks[:-1], marks[1:], strict=True):
        if b > a and not any(ta <= a and b <= tb for ta, tb in spans):
            out.append(Shot(len(out), a, b))
    return out


def detection_size(width: int, height: int) -> tuple[int, int]:
    """The frame size PySceneDetect's auto-downscale would use, rounded to even numbers."""
    if width <= DETECTION_WIDTH:
        return width - width % 2, height - height % 2
    factor = width / DETECTION_WIDTH
    w = max(2, round(width / factor))
    h = max(2, round(height / factor))
    return w - w % 2, h - h % 2
