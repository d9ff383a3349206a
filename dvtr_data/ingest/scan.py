"""One decode pass over a flight: shot cuts, per-frame QC signals and frame times, together.

Decoding is the floor of ingest's cost, so everything that needs every frame shares this pass: the shot detector
gets a ~256 px BGR frame (scaled by FFmpeg's swscale inside the decoder's output conversion, much cheaper than
converting full frames in numpy), the QC signals are computed on that small frame's luma, and sharpness is sampled
twice a second on the full-resolution luma plane (downscaled to about 640 px).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from dvtr_data.errors import InputError
from dvtr_data.ingest.probe import main_video_stream
from dvtr_data.ingest.shots import CutFinder, detection_size
from dvtr_data.ingest.transitions import Transition, TransitionFinder, TransitionRule

SHARPNESS_WIDTH = 640
SHARPNESS_PER_SECOND = 2.0


@dataclass
class FlightScan:
    n_frames: int  # frames actually decoded
    times: np.ndarray  # seconds from the first frame, per frame (from pts: exact for VFR)
    cuts: list[int]  # frames that start a new shot
    motion: np.ndarray  # mean |diff| of the blurred small grey frame and the one `motion_baseline` frames before
    motion_baseline: int  # frames (about one second); motion[i] for i < baseline is NaN
    luma: np.ndarray
    dark: np.ndarray
    bright: np.ndarray
    sharp_frames: np.ndarray  # frame indices where sharpness was sampled
    sharpness: np.ndarray
    decode_error: str | None  # set when decoding stopped early (truncated file): frames before it are kept
    transitions: list[Transition] = field(default_factory=list)  # fades and dissolves (`transitions.py`)


def _luma_plane(frame: av.VideoFrame) -> np.ndarray | None:
    """The Y plane as a 2-D uint8 view (no copy) for 8-bit YUV frames; None for other formats."""
    if not frame.format.name.startswith(("yuv", "yuvj", "nv12", "nv21")) or frame.format.name.endswith(("p10le", "p10be", "p12le")):
        return None
    plane = frame.planes[0]
    buf = np.frombuffer(memoryview(plane), dtype=np.uint8)  # the plane's own memory, still no copy
    return buf.reshape(plane.height, plane.line_size)[:, : plane.width]


def _laplacian_var(gray: np.ndarray) -> float:
    h, w = gray.shape
    if w > SHARPNESS_WIDTH:
        gray = cv2.resize(gray, (SHARPNESS_WIDTH, max(2, round(h * SHARPNESS_WIDTH / w))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def _decoded(container: av.container.InputContainer, stream: av.video.stream.VideoStream, sharp_every: int) -> Iterator[tuple | str]:
    """Decode in a background thread, handing over small I420 frames (and a luma plane every ``sharp_every``).

    The decoder, swscale and OpenCV release the GIL, so on a multi-core machine decoding the next frames overlaps
    with analysing this one. Yields (pts, small I420 array, full luma or None), or a one-line decode error last.
    """
    q: queue.Queue = queue.Queue(maxsize=16)
    stop = threading.Event()

    def produce() -> None:
        dw = dh = None
        n = 0
        try:
            for frame in container.decode(stream):
                if stop.is_set():
                    return
                if dw is None:
                    dw, dh = detection_size(frame.width, frame.height)
                # FAST_BILINEAR into a small I420 frame is ~4x cheaper than scaling to BGR at full quality, and
                # the shot detector and QC only need a ~256 px picture.
                small = frame.reformat(width=dw, height=dh, format="yuv420p", interpolation="FAST_BILINEAR").to_ndarray()
                sharp = None
                if n % sharp_every == 0:
                    y = _luma_plane(frame)
                    sharp = y.copy() if y is not None else frame.to_ndarray(format="gray")
                q.put((frame.pts, small, sharp))
                n += 1
        except av.FFmpegError as exc:
            q.put(f"decoding stopped at frame {n} ({' '.join(str(exc).split())[:160]})")
        except Exception as exc:  # surfaced in the consumer as a decode error
            q.put(f"decoding failed ({type(exc).__name__}: {exc})")
        finally:
            q.put(None)

    worker = threading.Thread(target=produce, name="dvtr-decode", daemon=True)
    worker.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


def scan_flight(
    path: Path,
    fps: Fraction,
    expected_frames: int,
    detector: str = "adaptive",
    min_shot_s: float = 0.6,
    heartbeat: Callable[[int, int], None] | None = None,
    transitions: TransitionRule | None = None,
) -> FlightScan:
    """Decode every frame of ``path`` once and return cuts, gradual transitions and per-frame signals."""
    finder = CutFinder(detector, fps, min_shot_s)
    rule = transitions or TransitionRule()
    fader = TransitionFinder(fps, rule) if rule.enabled else None
    n_cap = max(expected_frames, 1) + 16
    # per-frame signals, grown when the stream has more frames than its packets promised
    motion: np.ndarray = np.zeros(n_cap, np.float32)
    luma: np.ndarray = np.zeros(n_cap, np.float32)
    dark: np.ndarray = np.zeros(n_cap, np.float32)
    bright: np.ndarray = np.zeros(n_cap, np.float32)
    times: np.ndarray = np.zeros(n_cap, np.float64)
    sharp_frames: list[int] = []
    sharpness: list[float] = []
    sharp_every = max(1, round(float(fps) / SHARPNESS_PER_SECOND))
    baseline = max(1, round(float(fps)))
    ring: list[np.ndarray | None] = [None] * baseline
    i = 0
    pts0 = None
    decode_error = None
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise InputError(f"{path}: cannot open for decoding ({exc})") from exc
    with container:
        stream = main_video_stream(container)  # the one the probe chose
        stream.thread_type = "AUTO"
        tb = float(stream.time_base or 0)
        for item in _decoded(container, stream, sharp_every):
            if isinstance(item, str):
                decode_error = item
                break
            pts, small_yuv, sharp_y = item
            if i >= len(motion):  # more frames than demuxed packets (rare): grow
                grow = len(motion)
                motion, luma, dark, bright = (np.concatenate([a, np.zeros(grow, a.dtype)]) for a in (motion, luma, dark, bright))
                times = np.concatenate([times, np.zeros(grow)])
            h = small_yuv.shape[0] * 2 // 3
            finder.feed(i, cv2.cvtColor(small_yuv, cv2.COLOR_YUV2BGR_I420))
            gray = small_yuv[:h]
            if fader is not None:
                fader.feed(i, gray)
            luma[i] = gray.mean()
            dark[i] = np.count_nonzero(gray <= 8) / gray.size
            bright[i] = np.count_nonzero(gray >= 247) / gray.size
            # Motion over a one-second baseline: wind jitter does not accumulate, flight does. Consecutive
            # frames differ too little on slow oblique flights to tell hover from moving.
            soft = cv2.GaussianBlur(gray, (0, 0), 1.5)
            old = ring[i % baseline]
            motion[i] = cv2.absdiff(soft, old).mean() if old is not None else np.nan
            ring[i % baseline] = soft
            if pts is not None and tb:
                if pts0 is None:
                    pts0 = pts
                times[i] = (pts - pts0) * tb
            else:
                times[i] = i / float(fps)
            if sharp_y is not None:
                sharp_frames.append(i)
                sharpness.append(_laplacian_var(sharp_y))
            i += 1
            if heartbeat is not None:
                heartbeat(i, expected_frames)
    if i == 0:
        raise InputError(f"{path}: no frame could be decoded" + (f": {decode_error}" if decode_error else ""))
    return FlightScan(
        n_frames=i,
        times=times[:i],
        cuts=finder.finish(),
        motion=motion[:i],
        motion_baseline=baseline,
        luma=luma[:i],
        dark=dark[:i],
        bright=bright[:i],
        sharp_frames=np.asarray(sharp_frames, np.int64),
        sharpness=np.asarray(sharpness, np.float64),
        decode_error=decode_error,
        transitions=fader.finish() if fader is not None else [],
    )
