"""H.264/mp4 writing with exact frame timing.

Constant frame rate, ``pts = frame index`` in a time base of exactly ``1/fps`` (a Fraction, so 29.97 is
30000/1001 and never drifts), no B-frames, so that decoders see exactly the frames written, each at exactly
``i / fps``. RGB frames are converted to I420 with OpenCV (BT.601 limited range, as the stream is tagged),
which is much faster than a per-frame software scaler.
"""

from __future__ import annotations

import queue
import threading
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import cv2
import numpy as np

# A fixed thread count keeps the encoded bytes identical from one machine to the next.
X264_THREADS = 4


class Mp4Writer:
    def __init__(self, path: Path, width: int, height: int, fps: Fraction, *, crf: int = 21,
                 preset: str = "veryfast", gop_s: float = 2.0, threaded: bool = False) -> None:
        if width % 2 or height % 2:
            raise ValueError("width and height must be even for yuv420p")
        self.path = Path(path)
        self.fps = Fraction(fps)
        self.width, self.height = width, height
        self.count = 0
        self.time_base = 1 / self.fps
        self.container = av.open(str(self.path), mode="w", format="mp4")
        self._open = True  # until closed (finished, or abandoned on an error)
        stream = self.container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / self.fps
        cc = stream.codec_context
        cc.time_base = 1 / self.fps
        cc.framerate = self.fps
        cc.color_range = 1  # MPEG (limited) range
        cc.colorspace = 6  # SMPTE 170M (BT.601)
        cc.color_primaries = 6
        cc.color_trc = 6
        gop = max(1, round(float(self.fps) * gop_s))
        stream.options = {
            "crf": str(crf), "preset": preset, "bf": "0", "g": str(gop), "threads": str(X264_THREADS),
            "x264-params": "open-gop=0",
        }
        self.stream = stream
        # Encoding in a second thread overlaps it with rendering (both release the GIL in their C code).
        self._queue: queue.Queue[np.ndarray | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=6)
            self._thread = threading.Thread(target=self._drain, name=f"encode-{self.path.name}", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        assert self._queue is not None
        while True:
            yuv = self._queue.get()
            if yuv is None:
                return
            if self._error is None:
                try:
                    self._encode(yuv)
                except BaseException as exc:
                    self._error = exc

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB frame."""
        self.write_yuv(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420))

    def write_yuv(self, yuv: np.ndarray) -> None:
        """Append one I420 frame (``height * 3 / 2`` rows of ``width`` bytes)."""
        if self._error is not None:
            raise self._error
        if self._queue is not None:
            self._queue.put(yuv)
        else:
            self._encode(yuv)

    def _encode(self, yuv: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self.count
        # 1/fps itself, not stream.time_base: the mp4 muxer changes the latter once the header is written
        frame.time_base = self.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.count += 1

    def _join(self) -> None:
        if self._thread is not None and self._queue is not None:  # both or neither are set
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        if not self._open:
            return
        self._join()
        if self._error is not None:
            self.__exit__(type(self._error), self._error, None)
            raise self._error
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()
        self._open = False

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:  # leave no half-written file behind
            self._join()
            if self._open:
                try:
                    self.container.close()
                except Exception:
                    pass
            self._open = False
            self.path.unlink(missing_ok=True)
