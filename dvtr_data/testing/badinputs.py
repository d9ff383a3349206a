"""Seeded generators of good and bad flight videos for the ingest tests, and stage functions that misbehave.

No binary test data is committed: every file is written into a temporary folder with PyAV and numpy, small
(320x180, a few seconds) and byte-identical for the same seed. `make_matrix` writes the whole bad-input matrix;
the module-level stage functions (`sleepy`, `crashy`, `faulty_stage`) are picklable, so worker processes of
`ProcessExecutor` can run them.
"""

from __future__ import annotations

import ctypes
import functools
import os
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from dvtr_data.executor import Heartbeat, ProcessExecutor

SIZE = (320, 180)
FPS = 30
PAN = 2  # pixels per frame: a steady drone pan, far from a cut for the adaptive detector
TRUNCATE_AT = 0.6  # truncated files keep this share of their bytes

# file name -> what `faulty_stage` does instead of the real stage function
FAULTS = {"worker_segfault.mp4": "segfault", "decoder_hang.mp4": "hang"}


# ----------------------------------------------------------------------------------------------------------------
# pictures and encoding
# ----------------------------------------------------------------------------------------------------------------
def texture(seed: int, width: int, height: int) -> np.ndarray:
    """An RGB image of random sharp-edged rectangles: textured enough to pass QC's sharpness check."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rng.integers(60, 190, 3)
    for _ in range(width * height // 300):
        x, y = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(4, 40, 2)
        img[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    return img


def pan_frames(seed: int, n: int, width: int, height: int) -> Iterator[np.ndarray]:
    """``n`` RGB frames of a camera panning over a seeded texture (down-right, ``PAN`` pixels per frame)."""
    world = texture(seed, width + PAN * n + 8, height + PAN * n // 3 + 8)
    for i in range(n):
        x, y = PAN * i, PAN * i // 3
        yield np.ascontiguousarray(world[y : y + height, x : x + width])


def encode(
    path: Path,
    frames: Iterator[np.ndarray],
    *,
    fps: int = FPS,
    movflags: str | None = None,
    rotation: int = 0,
    pts_ms: list[int] | None = None,
) -> Path:
    """Encode RGB frames as H.264 in MP4.

    ``movflags`` goes to the muxer (``faststart``: index first; ``frag_keyframe+empty_moov``: fragmented);
    ``rotation`` is the display matrix angle, counter-clockwise as PyAV reads it back (a phone held upright:
    -90); ``pts_ms`` gives each frame's time in milliseconds (variable frame rate).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": movflags} if movflags else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            if i == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                frame.pts = pts_ms[i]
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def good_video(path: Path, seed: int, seconds: float = 3.0, size: tuple[int, int] = SIZE, **kw: Any) -> Path:
    """A small flight that passes QC: a steady pan over a sharp texture, one shot, no audio."""
    return encode(path, pan_frames(seed, round(seconds * FPS), *size), **kw)


# ----------------------------------------------------------------------------------------------------------------
# bad inputs, one function each
# ----------------------------------------------------------------------------------------------------------------
def empty_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def text_file(path: Path) -> Path:
    """A text file with a video extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("flight notes, not a video\n" * 40, encoding="utf-8")
    return path


def truncated(path: Path, seed: int, movflags: str | None = None) -> Path:
    """A 5 s good video cut at ``TRUNCATE_AT`` of its bytes (about 3 s of frames: enough for one clip).

    Plain MP4 (index at the end) loses its index and cannot be opened; with ``faststart`` or a fragmented file
    the frames before the cut stay decodable.
    """
    full = good_video(path.with_name(f".full-{path.name}"), seed, seconds=5.0, movflags=movflags)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: int(len(data) * TRUNCATE_AT)])
    return path


def undecodable_codec(path: Path, seed: int) -> Path:
    """An MP4 whose video sample entry says ``evc1`` (MPEG-5 EVC).

    FFmpeg's MP4 demuxer knows the tag, but PyAV's FFmpeg build has no EVC decoder (only the external libxevd
    could decode it), so the stream is a video stream with no decoder. The payload is relabelled H.264; no
    decoder is ever tried on it.
    """
    src = good_video(path.with_name(f".src-{path.name}"), seed, seconds=1.0)
    data = src.read_bytes()
    src.unlink()
    entry = data.index(b"avc1", data.index(b"stsd"))
    path.write_bytes(data[:entry] + b"evc1" + data[entry + 4 :])
    return path


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    """An MP4 holding one AAC audio stream (a sine tone) and no video."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 44100
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def one_frame(path: Path, seed: int) -> Path:
    return encode(path, pan_frames(seed, 1, *SIZE))


def variable_frame_rate(path: Path, seed: int, seconds: float = 3.0) -> Path:
    """Frame times jitter between 17 and 67 ms (a phone under load): irregular pts, nominally ~30 fps."""
    rng = np.random.default_rng(seed)
    n = round(seconds * FPS)
    pts = np.concatenate([[0], np.cumsum(rng.choice([17, 33, 50, 67], size=n - 1))]).tolist()
    return encode(path, pan_frames(seed, n, *SIZE), pts_ms=[int(p) for p in pts])


UPRIGHT_MARK = 12  # rows at the top (bright) and bottom (dark) of the upright picture


def portrait_frames(seed: int, n: int, width: int = 180, height: int = 320) -> Iterator[np.ndarray]:
    """Upright portrait frames with a bright band on top and a dark band at the bottom, stored turned 90
    degrees counter-clockwise, as a phone held upright stores them (landscape sensor, display matrix -90)."""
    for upright in pan_frames(seed, n, width, height):
        upright = upright.copy()
        upright[:UPRIGHT_MARK] = 230
        upright[-UPRIGHT_MARK:] = 25
        yield np.ascontiguousarray(np.rot90(upright, k=1))


def rotated_portrait(path: Path, seed: int, seconds: float = 3.0) -> Path:
    """A phone-style portrait video: 320x180 stored, displayed 180x320 after a 90 degree clockwise turn."""
    return encode(path, portrait_frames(seed, round(seconds * FPS)), rotation=-90)


def garbage_sidecar(video: Path, seed: int) -> Path:
    """A good video with a ``.SRT`` sidecar of random bytes beside it; returns the sidecar."""
    good_video(video, seed)
    srt = video.with_suffix(".SRT")
    srt.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return srt


def broken_symlink(path: Path) -> Path:
    """A ``.mp4`` link to a file that does not exist (an unmounted card, a moved folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(Path("missing-card") / "DJI_0001.MP4")
    return path


def unreadable(path: Path, seed: int) -> Path:
    """A ``.mp4`` that nobody can read, root included: a link to a path whose parent is a regular file.

    Opening it fails with ENOTDIR whoever runs the tests (a chmod-000 file would not stop root). The regular
    file is a good video, kept in a hidden folder, so discovery never takes it as a flight.
    """
    inner = good_video(path.parent / ".unreadable-target" / f"video-{seed}.mp4", seed, seconds=1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(inner / "clip.mp4")  # "inside" a file: no such path can exist
    return path


def make_matrix(folder: Path) -> dict[str, Path]:
    """Write every bad input and two good flights into ``folder``; return case name -> the path ingest gets."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = {
        "good_a": good_video(folder / "good_a.mp4", seed=1),
        "good_b": good_video(folder / "good_b.mp4", seed=2),
        "empty": empty_file(folder / "empty.mp4"),
        "empty_again": empty_file(folder / "empty_again.mp4"),
        "text": text_file(folder / "notes.mp4"),
        "truncated_moov_at_end": truncated(folder / "truncated_plain.mp4", seed=3),
        "truncated_faststart": truncated(folder / "truncated_faststart.mp4", seed=4, movflags="faststart"),
        "truncated_fragmented": truncated(
            folder / "truncated_fragmented.mp4", seed=5, movflags="frag_keyframe+empty_moov+default_base_moof"
        ),
        "undecodable_codec": undecodable_codec(folder / "evc_codec.mp4", seed=6),
        "audio_only": audio_only(folder / "audio_only.mp4"),
        "one_frame": one_frame(folder / "one_frame.mp4", seed=7),
        "vfr": variable_frame_rate(folder / "vfr.mp4", seed=8),
        "rotated": rotated_portrait(folder / "portrait_phone.mp4", seed=9),
        "non_ascii_path": good_video(folder / "vols d'été" / "Überflug 1.MP4", seed=10),
        "broken_symlink": broken_symlink(folder / "broken_link.mp4"),
        "garbage_sidecar": garbage_sidecar(folder / "garbage_sidecar.mp4", seed=11).with_suffix(".mp4"),
        "worker_segfault": good_video(folder / "worker_segfault.mp4", seed=12, seconds=1.0),
        "decoder_hang": good_video(folder / "decoder_hang.mp4", seed=13, seconds=1.0),
        "unreadable": unreadable(folder / "unreadable.mp4", seed=14),
    }
    (folder / "a folder.mp4").mkdir()  # a directory with a video name: not a flight, not an error
    return cases


# ----------------------------------------------------------------------------------------------------------------
# stage functions that hang or crash (module level: picklable for worker processes)
# ----------------------------------------------------------------------------------------------------------------
def segfault() -> None:
    """Crash the interpreter the way a broken native decoder does (SIGSEGV)."""
    ctypes.string_at(0)


def sleepy(item: Any, heartbeat: Heartbeat) -> Any:
    """Returns ``item`` at once, except ``"hang"``, which sleeps without a heartbeat (a hung decoder)."""
    if item == "hang":
        time.sleep(3600)
    heartbeat(1, 1)
    return item


def crashy(item: Any, heartbeat: Heartbeat) -> Any:
    """Returns ``item``, except ``"exit"`` (``os._exit(3)``) and ``"segfault"`` (SIGSEGV)."""
    if item == "exit":
        os._exit(3)
    if item == "segfault":
        segfault()
    return item


def faulty_stage(fn: Callable[[Any, Heartbeat], Any], job: Any, heartbeat: Heartbeat) -> Any:
    """Run ``fn(job)``, unless ``job.video`` is named in `FAULTS`: then crash or hang as it says."""
    fault = FAULTS.get(Path(job.video).name)
    if fault == "segfault":
        segfault()
    elif fault == "hang":
        time.sleep(3600)
    return fn(job, heartbeat)


class FaultyExecutor(ProcessExecutor):
    """A `ProcessExecutor` whose workers run `faulty_stage` around the real stage function."""

    def run(self, fn, items, on_progress=None):
        return super().run(functools.partial(faulty_stage, fn), items, on_progress)
