"""Sampling N frames per clip: decord in guarded worker processes, PyAV as the fallback.

decord is the fast way to fetch a few frames out of a clip, but it is unmaintained and can hang forever, holding
the GIL, on a file that over-reports its frame count (environment.md). So it never runs in the parent: clips are
decoded by the worker engine (`dvtr_data.engine`: isolated processes, or Ray tasks), whose stall timeout stops a
decoder that does not answer in time; the clip is then retried with PyAV (`decode_clips`). decord errors
(unreadable file, bad stream) fall back to PyAV inside the worker.

Frames are decoded straight to the model's input geometry (decord and PyAV both scale while converting to RGB), so
what crosses the process boundary is ``N x 224 x 224 x 3`` bytes per clip, not full-size frames.

This module must not import torch: worker processes import it, and they only decode.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from dvtr_data.engine import Executor

Backend = Literal["auto", "decord", "pyav"]


@dataclass(frozen=True)
class FrameGeometry:
    """The model's input size and how a frame gets there (open_clip's ``resize_mode``)."""

    size: tuple[int, int] = (224, 224)  # (height, width)
    resize_mode: str = "shortest"  # shortest: scale the short side, centre crop | longest: fit, pad | squash
    fill: int = 0

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """The (width, height) to decode a ``width`` x ``height`` frame to."""
        th, tw = self.size
        if self.resize_mode == "squash" or width <= 0 or height <= 0:
            return tw, th
        if self.resize_mode == "longest":
            scale = min(tw / width, th / height)
        else:
            scale = max(tw / width, th / height)
        return max(1, round(width * scale)), max(1, round(height * scale))

    def finish(self, frames: np.ndarray) -> np.ndarray:
        """Centre-crop or pad decoded frames ``(N, h, w, 3)`` to exactly ``size``."""
        th, tw = self.size
        n, h, w, _ = frames.shape
        if (h, w) == (th, tw):
            return frames
        if h >= th and w >= tw:
            y, x = (h - th) // 2, (w - tw) // 2
            return np.ascontiguousarray(frames[:, y:y + th, x:x + tw])
        out = np.full((n, th, tw, 3), self.fill, np.uint8)
        ch, cw = min(h, th), min(w, tw)
        sy, sx = (h - ch) // 2, (w - cw) // 2
        dy, dx = (th - ch) // 2, (tw - cw) // 2
        out[:, dy:dy + ch, dx:dx + cw] = frames[:, sy:sy + ch, sx:sx + cw]
        return out


def uniform_indices(total: int, count: int, start: int = 0) -> list[int]:
    """``count`` frame numbers spread evenly over ``total`` frames: the centre of each of ``count`` equal segments.

    A clip shorter than ``count`` frames repeats frames, so every clip yields exactly ``count``.
    """
    if total <= 0 or count <= 0:
        return []
    return [start + min(total - 1, int((i + 0.5) * total / count)) for i in range(count)]


@dataclass(frozen=True)
class SampleJob:
    """One clip to sample: a file, optionally a frame range inside it (a span of an uncut flight)."""

    key: int
    path: str
    count: int
    start_frame: int | None = None  # with end_frame: sample inside [start, end) of the file
    end_frame: int | None = None
    n_frames: int | None = None  # the file's frame count when known (PyAV then needs no counting pass)
    width: int | None = None  # source frame size when known (saves a probe)
    height: int | None = None
    backend: Backend = "auto"
    threads: int = 0  # decoder threads; 0 lets the decoder choose


@dataclass
class SampledFrames:
    """Frames of one clip at the model's geometry, or the reason there are none."""

    key: int
    frames: np.ndarray | None = None  # uint8 (count, H, W, 3)
    indices: list[int] = field(default_factory=list)
    decoder: str | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. why decord was not used


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _probe_size(path: str) -> tuple[int, int]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        return int(stream.codec_context.width), int(stream.codec_context.height)


def _span(job: SampleJob, total: int) -> tuple[int, int]:
    start = max(0, job.start_frame or 0)
    end = total if job.end_frame is None else min(total, job.end_frame)
    return start, end


def sample_with_decord(job: SampleJob, geometry: FrameGeometry) -> SampledFrames:
    import decord

    width, height = (job.width, job.height) if job.width and job.height else _probe_size(job.path)
    dw, dh = geometry.decode_size(width, height)
    reader = decord.VideoReader(job.path, ctx=decord.cpu(0), width=dw, height=dh, num_threads=job.threads)
    start, end = _span(job, len(reader))
    if end - start <= 0:
        raise ValueError(f"no frames in range {start}-{end} (decord counts {len(reader)})")
    indices = uniform_indices(end - start, job.count, start)
    frames = reader.get_batch(indices).asnumpy()
    del reader
    return SampledFrames(job.key, geometry.finish(frames), indices, "decord")


def _count_frames(path: str) -> int:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size)


def sample_with_pyav(job: SampleJob, geometry: FrameGeometry) -> SampledFrames:
    """Sequential decode up to the last wanted frame; slower than decord's seeking, but it does not hang."""
    import av

    with av.open(job.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if job.threads:
            stream.thread_count = job.threads
        width, height = stream.codec_context.width, stream.codec_context.height
        total = job.n_frames or stream.frames or 0
    if total <= 0:
        total = _count_frames(job.path)
    dw, dh = geometry.decode_size(width, height)
    for _attempt in range(2):
        start, end = _span(job, total)
        if end - start <= 0:
            raise ValueError(f"no frames in range {start}-{end} ({total} in the file)")
        indices = uniform_indices(end - start, job.count, start)
        wanted = set(indices)
        got: dict[int, np.ndarray] = {}
        decoded = 0
        with av.open(job.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for number, frame in enumerate(container.decode(stream)):
                decoded = number + 1
                if number in wanted:
                    got[number] = frame.to_ndarray(format="rgb24", width=dw, height=dh)
                if number >= indices[-1]:
                    break
        if len(got) == len(wanted):
            frames = np.stack([got[i] for i in indices])
            return SampledFrames(job.key, geometry.finish(frames), indices, "pyav")
        if decoded == 0:
            raise ValueError("no frame could be decoded")
        total = decoded  # the container over-reported its frames: sample what is really there
    raise ValueError(f"only {decoded} frames decodable")


def sample_frames(job: SampleJob, geometry: FrameGeometry) -> SampledFrames:
    """Sample one clip with the job's backend ("auto": decord, then PyAV when decord fails). Never raises."""
    notes: list[str] = []
    if job.backend in ("auto", "decord"):
        try:
            return sample_with_decord(job, geometry)
        except Exception as exc:  # any decord failure falls back to PyAV
            if job.backend == "decord":
                return SampledFrames(job.key, error=f"decord: {_one_line(exc)}")
            notes.append(f"decord failed ({_one_line(exc)}); used PyAV")
    try:
        result = sample_with_pyav(job, geometry)
        result.notes = notes + result.notes
        return result
    except Exception as exc:  # "never raises": the failure is the result
        prefix = "; ".join(notes + [""]) if notes else ""
        return SampledFrames(job.key, error=f"{prefix}cannot decode: {_one_line(exc)}", notes=notes)


# ----------------------------------------------------------------------------------------------------------------
# decoding on the worker engine
# ----------------------------------------------------------------------------------------------------------------
SampleFn = Callable[[SampleJob, FrameGeometry], SampledFrames]


def _load_sampler(geometry: FrameGeometry, sample_fn: SampleFn) -> Sampler:
    """Unpickled in a worker before it says it is ready: the decoders' imports count against no clip's timeout."""
    with contextlib.suppress(ImportError):
        import av  # noqa: F401
        import decord  # noqa: F401
    return Sampler(geometry, sample_fn)


@dataclass(frozen=True)
class Sampler:
    """The engine's stage function for decoding: one `SampleJob` in, its `SampledFrames` out (never raises)."""

    geometry: FrameGeometry
    sample_fn: SampleFn = sample_frames

    def __call__(self, job: SampleJob, heartbeat: Callable[[int, int], None]) -> SampledFrames:
        return self.sample_fn(job, self.geometry)

    def __reduce__(self) -> tuple[Any, ...]:
        return _load_sampler, (self.geometry, self.sample_fn)


def decode_executor(workers: int, timeout: float, prefetch: int, recycle: int = 500) -> Executor:
    """Local decode workers: ``timeout`` bounds one clip's decode (a decoder never beats), ``recycle`` restarts a
    worker after that many clips because decord's memory grows over long runs."""
    from dvtr_data.engine.local import ProcessExecutor

    return ProcessExecutor(workers=workers, stall_timeout=timeout, prefetch=prefetch, recycle=recycle)


def decode_clips(jobs: Iterable[SampleJob], geometry: FrameGeometry, executor: Executor,
                 sample_fn: SampleFn = sample_frames) -> Iterator[SampledFrames]:
    """Each clip's frames as soon as they are decoded (completion order), on ``executor``'s workers.

    decord runs only in workers: a decoder that hangs (no answer within the executor's stall timeout) or crashes
    its worker costs that worker, and the clip is tried once more with PyAV ("auto" jobs; PyAV does not hang).
    Decoding starts now, before the first ``next`` (the caller loads its model meanwhile), and runs ahead of the
    caller within the executor's prefetch bound. Closing the iterator stops the workers.
    """
    sampler = Sampler(geometry, sample_fn)
    return _decoded(executor.run(sampler, list(jobs)), sampler, executor)


def _close(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _decoded(first: Iterator[Any], sampler: Sampler, executor: Executor) -> Iterator[SampledFrames]:
    retries: list[tuple[SampleJob, str]] = []
    try:
        for outcome in first:
            job: SampleJob = outcome.item
            if outcome.ok:
                yield outcome.record
            elif job.backend == "auto" and outcome.status in ("stalled", "died"):
                retries.append((replace(job, backend="pyav"), f"decord: {outcome.error}"))
            else:
                note = f"{job.backend}: {outcome.error}"
                yield SampledFrames(job.key, error=note, notes=[note])
    finally:
        _close(first)
    if not retries:
        return
    notes = {job.key: note for job, note in retries}
    second = executor.run(sampler, [job for job, _ in retries])
    try:
        for outcome in second:
            job = outcome.item
            if outcome.ok:
                result = outcome.record
                result.notes = [notes[job.key], *result.notes]
                yield result
            else:
                both = [notes[job.key], f"pyav: {outcome.error}"]
                yield SampledFrames(job.key, error="; ".join(both), notes=both)
    finally:
        _close(second)


class Decoding:
    """The decode runs a stage started on one executor, stopped together by `close` (the stage's ``finally``)."""

    def __init__(self, executor: Executor, sample_fn: SampleFn = sample_frames) -> None:
        self.executor = executor
        self.sample_fn = sample_fn
        self._open: list[Iterator[Any]] = []
        self._closers: list[Callable[[], None]] = []

    def on_close(self, fn: Callable[[], None]) -> None:
        """Also call ``fn`` on `close` (a model pool that lives as long as the decoding)."""
        self._closers.append(fn)

    def start(self, jobs: Iterable[SampleJob], geometry: FrameGeometry) -> Iterator[SampledFrames]:
        """`decode_clips` on this executor: decoding starts now."""
        sampler = Sampler(geometry, self.sample_fn)
        first = self.executor.run(sampler, list(jobs))
        decoded = _decoded(first, sampler, self.executor)
        self._open += [decoded, first]
        return decoded

    def close_runs(self) -> None:
        """Stop every decode run started here (idempotent)."""
        for run in self._open:
            _close(run)
        self._open.clear()

    def close(self) -> None:
        """Stop the decode runs, then whatever `on_close` registered (idempotent)."""
        self.close_runs()
        while self._closers:
            self._closers.pop()()


def default_workers(device: str) -> int:
    """One decode worker beside a CPU model (both want every core); more when a GPU does the model's work."""
    cores = os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(1, min(8, cores - 1))
    return 1


def prefetch_for(batch_size: int, frames: int, workers: int) -> int:
    """Decoded clips allowed to wait: two model batches' worth plus one per worker."""
    return 2 * math.ceil(batch_size / max(1, frames)) + workers
