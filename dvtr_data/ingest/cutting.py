"""Clip files: re-encode each window as constant-frame-rate H.264 with PyAV's bundled libx264.

Stream copy is not frame-exact (it can only cut at keyframes), and system ffmpeg is not required: PyAV ships
its own. One decode pass serves every window of a flight, in order. Frames are numbered in decode order, the
same numbering the scan pass used, so a clip is made of the frames ``[start_frame, end_frame)`` of its span.

Output frames are placed by timestamp: output frame ``k`` of a clip shows the last source frame whose time is
at most ``start_s + (k + 0.5) / fps``, and a clip has ``round((end_s - start_s) * fps)`` frames. A
constant-frame-rate source maps one to one (the clip holds exactly its source frames); a variable-frame-rate
source gets frames repeated or dropped so that the file plays in real time and its duration equals its span
within half a frame. Numbering frames at the nominal rate instead would turn a 2.5 s span with a hole into a
5 s file playing at half speed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from dvtr_data.dataset import atomic_path
from dvtr_data.errors import InputError, UsageError
from dvtr_data.ingest.probe import main_video_stream

X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo",
)
MAX_CRF = 51  # libx264's range for 8-bit output (the clip files are yuv420p)


@dataclass(frozen=True)
class EncoderSettings:
    """libx264 settings of clip files. ``max_height`` caps the clip size (the short side for portraits)."""

    crf: int = 20
    preset: str = "veryfast"
    max_height: int = 720
    keyframes: int = 1  # JPEG keyframes per clip, evenly spaced (1 = the middle frame)
    jpeg_quality: int = 90

    def check(self) -> None:
        """Refuse settings libx264 or the JPEG writer would reject, before any flight is decoded (a bad value
        used to fail every flight after its full decode pass; issue 11, item 12)."""
        if not 0 <= self.crf <= MAX_CRF:
            raise UsageError(f"--crf must be between 0 and {MAX_CRF} (lower is better), not {self.crf}")
        if self.preset not in X264_PRESETS:
            raise UsageError(f"unknown libx264 preset {self.preset!r}; choose from {', '.join(X264_PRESETS)}")
        if self.max_height != 0 and self.max_height < 16:
            raise UsageError(f"--max-height must be 0 (source size) or at least 16 pixels, "
                             f"not {self.max_height}")
        if self.keyframes < 0:
            raise UsageError(f"keyframes per clip cannot be negative, not {self.keyframes}")
        if not 1 <= self.jpeg_quality <= 100:
            raise UsageError(f"JPEG quality must be between 1 and 100, not {self.jpeg_quality}")


@dataclass(frozen=True)
class ClipSpec:
    clip_id: str
    start_frame: int
    end_frame: int
    path: Path  # absolute path of the .mp4 to write
    keyframe_paths: tuple[Path, ...]
    start_s: float | None = None  # the span in seconds (frame times); None: frames at the nominal rate
    end_s: float | None = None


def output_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """Display size after the cap (on the short side), both even as yuv420p requires."""
    short = min(width, height)
    scale = min(1.0, max_height / short) if max_height else 1.0
    w = max(2, round(width * scale))
    h = max(2, round(height * scale))
    return w - w % 2, h - h % 2


def keyframe_offsets(n_frames: int, count: int) -> list[int]:
    if count <= 0 or n_frames <= 0:
        return []
    return sorted({min(n_frames - 1, int((k + 0.5) * n_frames / count)) for k in range(count)})


def _rotate(frame: av.VideoFrame, rotation: int) -> av.VideoFrame:
    if rotation == 0:
        return frame
    rgb = frame.to_ndarray(format="rgb24")
    turned = np.ascontiguousarray(np.rot90(rgb, k=-(rotation // 90)))  # clockwise
    return av.VideoFrame.from_ndarray(turned, format="rgb24")


def n_output_frames(start_s: float, end_s: float, fps: Fraction | float) -> int:
    """Frames of a clip file spanning ``[start_s, end_s)`` at constant ``fps`` (at least one)."""
    return max(1, round((end_s - start_s) * float(fps)))


class _ClipWriter:
    """One open output file; source frames come in order with their times, and the file is renamed into place
    on close. Output frame ``k`` shows the last source frame at or before ``start_s + (k + 0.5) / fps``."""

    def __init__(
        self,
        spec: ClipSpec,
        fps: Fraction,
        size: tuple[int, int],
        settings: EncoderSettings,
        start_s: float,
        end_s: float,
    ) -> None:
        self.spec = spec
        self.size = size
        self._atomic = atomic_path(spec.path)
        self.tmp = self._atomic.__enter__()
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        self.stream = self.container.add_stream("libx264", rate=fps)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.frame_tb = Fraction(1) / fps
        self.stream.options = {"crf": str(settings.crf), "preset": settings.preset}
        self.start_s = start_s
        self.step = 1.0 / float(fps)
        self.total = n_output_frames(start_s, end_s, fps)
        self.n = 0
        self.held: av.VideoFrame | None = None  # the latest source frame, scaled, not yet shown in every slot
        self.held_shown = False
        self.key_at = dict(
            zip(keyframe_offsets(self.total, len(spec.keyframe_paths)), spec.keyframe_paths, strict=False)
        )
        self.quality = settings.jpeg_quality

    def add(self, time_s: float, frame: av.VideoFrame) -> None:
        # every slot that ends before this frame's time shows the frame held so far
        while (
            self.held is not None
            and self.n < self.total
            and self.start_s + (self.n + 0.5) * self.step < time_s
        ):
            self._emit()
        self.held = frame.reformat(width=self.size[0], height=self.size[1], format="yuv420p")
        self.held_shown = False

    def _emit(self) -> None:
        assert self.held is not None
        out = self.held
        if self.held_shown:  # a repeat: a new frame object, the encoder may still hold the first one
            out = av.VideoFrame.from_ndarray(self.held.to_ndarray(), format="yuv420p")
        out.pts = self.n
        out.time_base = self.frame_tb
        out.pict_type = av.video.frame.PictureType.NONE
        for packet in self.stream.encode(out):
            self.container.mux(packet)
        self.held_shown = True
        if self.n in self.key_at:
            with atomic_path(self.key_at[self.n]) as tmp:
                out.to_image().save(tmp, format="JPEG", quality=self.quality)
        self.n += 1

    def close(self, ok: bool = True) -> None:
        try:
            if ok:
                while self.held is not None and self.n < self.total:  # the slots after the last source frame
                    self._emit()
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
            self.container.close()
        finally:
            if ok:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


def cut_clips(
    source: Path,
    clips: list[ClipSpec],
    fps: Fraction,
    display_size: tuple[int, int],
    rotation: int,
    settings: EncoderSettings,
    heartbeat: Callable[[int, int], None] | None = None,
    times: np.ndarray | None = None,
) -> tuple[dict[str, int], str | None]:
    """Write every clip of one flight in one decode pass. Returns (clip_id -> frames written, decode error).

    ``times`` are the source frames' times in seconds (``FlightScan.times``, same numbering); without them
    frames are taken to be ``1 / fps`` apart. A spec without ``start_s``/``end_s`` spans its frames' times.
    Clips must not overlap and are processed in frame order. A clip whose frames run out (truncated file) is
    not written and is missing from the result.
    """
    if not clips:
        return {}, None
    clips = sorted(clips, key=lambda c: c.start_frame)
    size = output_size(*display_size, settings.max_height)
    step = 1.0 / float(fps)

    def time_of(index: int) -> float:
        return float(times[index]) if times is not None and index < len(times) else index * step

    def span_of(spec: ClipSpec) -> tuple[float, float]:
        start = spec.start_s if spec.start_s is not None else time_of(spec.start_frame)
        end = spec.end_s if spec.end_s is not None else time_of(spec.end_frame - 1) + step
        return start, end

    last_needed = clips[-1].end_frame
    written: dict[str, int] = {}
    k = 0
    current: _ClipWriter | None = None
    i = 0
    decode_error: str | None = None
    try:
        with av.open(str(source)) as container:
            stream = main_video_stream(container)  # the one the probe chose
            stream.thread_type = "AUTO"
            frames = container.decode(stream)
            while i < last_needed:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.FFmpegError as exc:  # truncated or corrupt: keep the clips already closed
                    decode_error = f"decoding stopped at frame {i} ({' '.join(str(exc).split())[:160]})"
                    break
                while k < len(clips) and i >= clips[k].end_frame:
                    k += 1
                if k < len(clips) and i >= clips[k].start_frame:
                    if current is None or current.spec is not clips[k]:
                        current = _ClipWriter(clips[k], fps, size, settings, *span_of(clips[k]))
                    current.add(time_of(i), _rotate(frame, rotation))
                    if i == clips[k].end_frame - 1:
                        current.close()
                        written[clips[k].clip_id] = current.n
                        current = None
                i += 1
                if heartbeat is not None:
                    heartbeat(i, last_needed)
    except av.FFmpegError as exc:
        raise InputError(
            f"{source}: cutting failed at frame {i} ({' '.join(str(exc).split())[:160]})"
        ) from exc
    finally:
        if current is not None:
            current.close(ok=False)
    if decode_error is None and len(written) < len(clips):
        decode_error = f"the file ended at frame {i}, before the last clip's end"
    return written, decode_error


def remove_stale_files(folder: Path, keep: set[Path]) -> int:
    """Delete clip files and keyframes in ``folder`` that the latest run did not produce."""
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.is_file() and entry not in keep:
            os.unlink(entry)
            removed += 1
    return removed
