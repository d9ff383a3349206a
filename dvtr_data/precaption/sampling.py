"""Sampling N frames per clip: decord in guarded worker processes, PyAV as the fallback.

decord is the fast way to fetch a few frames out of a clip, but it is unmaintained and can hang forever, holding
the GIL, on a file that over-reports its frame count (environment.md). So it never runs in the parent: each
`DecodePool` worker is a process, and a parent-side thread waits for its answer with a timeout. A worker that does
not answer in time is killed and the clip is retried with PyAV in a fresh worker; a worker that dies is replaced.
decord errors (unreadable file, bad stream) fall back to PyAV inside the worker.

Frames are decoded straight to the model's input geometry (decord and PyAV both scale while converting to RGB), so
what crosses the process boundary is ``N x 224 x 224 x 3`` bytes per clip, not full-size frames.

This module must not import torch: worker processes import it, and they only decode.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

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
        except Exception as exc:
            if job.backend == "decord":
                return SampledFrames(job.key, error=f"decord: {_one_line(exc)}")
            notes.append(f"decord failed ({_one_line(exc)}); used PyAV")
    try:
        result = sample_with_pyav(job, geometry)
        result.notes = notes + result.notes
        return result
    except Exception as exc:
        prefix = "; ".join(notes + [""]) if notes else ""
        return SampledFrames(job.key, error=f"{prefix}cannot decode: {_one_line(exc)}", notes=notes)


# ----------------------------------------------------------------------------------------------------------------
# guarded worker processes
# ----------------------------------------------------------------------------------------------------------------
def _worker_main(fd: int) -> None:
    """A decode worker: answer each job with a `SampledFrames`. Ctrl-C is the parent's to handle.

    Started as a plain ``python -c`` subprocess talking over an inherited socket, not through multiprocessing's
    spawn, which re-imports the caller's ``__main__`` (a notebook, stdin, an unguarded script) in every worker.
    """
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        sys.path[:] = conn.recv()  # first the parent's import path, so the sample function below can be found
        sample_fn = conn.recv()
        with contextlib.suppress(ImportError):  # import the decoders now, so no clip's timeout pays for it
            import av  # noqa: F401
            import decord  # noqa: F401
        conn.send("ready")
    except (EOFError, OSError):
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job, geometry = message
        conn.send(sample_fn(job, geometry))


_WORKER_CODE = "import sys; from dvtr_data.precaption.sampling import _worker_main; _worker_main(int(sys.argv[1]))"


class _Worker:
    def __init__(self, sample_fn) -> None:
        from multiprocessing.connection import Connection

        mine, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_CODE, str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send(list(sys.path))
        self.conn.send(sample_fn)
        self.jobs = 0
        self.ready = False

    @property
    def exitcode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, kill: bool = False) -> None:
        if self.alive() and not kill:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=2)
        if self.alive():
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()


_DONE = object()
STARTUP_TIMEOUT = 120.0  # a worker importing numpy, PyAV and decord on a loaded machine


class DecodePool:
    """``workers`` decode processes fed by parent threads; results come back in completion order.

    Overlap: the threads keep the workers decoding while the caller runs the model, up to ``prefetch`` decoded clips
    waiting; a caller that wants the cores to itself clears ``gate`` meanwhile (workers finish the clip in hand).
    ``timeout`` bounds one clip's decode (a new worker's imports are not counted); ``recycle`` restarts a worker
    after that many clips, because decord's memory grows over long runs.
    """

    def __init__(self, geometry: FrameGeometry | None = None, *, workers: int = 1, timeout: float = 60.0, prefetch: int = 16,
                 recycle: int = 500, sample_fn=sample_frames) -> None:
        self.geometry = geometry
        self.workers = max(1, workers)
        self.timeout = timeout
        self.prefetch = max(1, prefetch)
        self.recycle = recycle
        self.sample_fn = sample_fn
        self.gate = threading.Event()  # cleared: workers take no new clip (the caller wants the cores for itself)
        self.gate.set()
        self._stops: list[threading.Event] = []  # one per `start`; `close` sets them all
        self._live: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()

    def warm(self) -> DecodePool:
        """Start the worker processes now (they import their decoders while the caller loads its model)."""
        while len(self._idle) < self.workers:
            self._idle.append(self._new_worker())
        return self

    # the per-worker thread ---------------------------------------------------------------------------------------
    def _new_worker(self) -> _Worker:
        w = _Worker(self.sample_fn)
        with self._lock:
            self._live.add(w)
        return w

    def _retire(self, w: _Worker | None, kill: bool = False) -> None:
        if w is None:
            return
        w.stop(kill=kill)
        with self._lock:
            self._live.discard(w)

    def _wait_ready(self, w: _Worker, stop: threading.Event) -> bool:
        """Wait for a new worker's imports (not part of any clip's timeout)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if w.conn.poll(0.2):
                    w.ready = w.conn.recv() == "ready"
                    return w.ready
            except (EOFError, OSError):
                return False
            if not w.alive():
                return False
        return False

    def _ask(self, w: _Worker, job: SampleJob, stop: threading.Event) -> SampledFrames | str:
        """The worker's answer, or "timeout" / "died" (the worker is then unusable)."""
        if not w.ready and not self._wait_ready(w, stop):
            return "died"
        try:
            w.conn.send((job, self.geometry))
        except (OSError, ValueError):
            return "died"
        deadline = time.monotonic() + self.timeout
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            try:
                if w.conn.poll(min(left, 0.5)):
                    return w.conn.recv()
            except (EOFError, OSError):
                return "died"
            if not w.alive() and not w.conn.poll(0):
                return "died"
        return "died"

    def _decode(self, slot: list[_Worker | None], job: SampleJob, stop: threading.Event) -> SampledFrames:
        attempts = [job] if job.backend != "auto" else [job, replace(job, backend="pyav")]
        notes: list[str] = []
        for attempt in attempts:
            if slot[0] is None:
                slot[0] = self._new_worker()
            w = slot[0]
            answer = self._ask(w, attempt, stop)
            if isinstance(answer, SampledFrames):
                w.jobs += 1
                if self.recycle and w.jobs >= self.recycle:
                    self._retire(w)
                    slot[0] = None
                answer.notes = notes + answer.notes
                return answer
            self._retire(w, kill=True)
            slot[0] = None
            if stop.is_set():
                break
            what = (f"no answer in {self.timeout:g} s (hung decoder?)" if answer == "timeout"
                    else f"the decoder process died (exit code {w.exitcode})")
            notes.append(f"{attempt.backend if attempt.backend != 'auto' else 'decord'}: {what}")
        return SampledFrames(job.key, error="; ".join(notes) or "stopped", notes=notes)

    def _serve(self, jobs: queue.Queue, results: queue.Queue, stop: threading.Event) -> None:
        with self._lock:
            slot: list[_Worker | None] = [self._idle.pop() if self._idle else None]
        try:
            while not stop.is_set():
                job = jobs.get()
                if job is _DONE:
                    break
                while not self.gate.wait(0.2):
                    if stop.is_set():
                        return
                try:
                    result = self._decode(slot, job, stop)
                except Exception as exc:  # a bug here must not lose the clip: it becomes its error
                    result = SampledFrames(job.key, error=f"decode pool: {_one_line(exc)}")
                while not stop.is_set():
                    try:
                        results.put(result, timeout=0.5)
                        break
                    except queue.Full:
                        continue
        finally:
            self._retire(slot[0])

    # the caller's side --------------------------------------------------------------------------------------------
    def start(self, jobs: Iterable[SampleJob], geometry: FrameGeometry | None = None) -> Iterator[SampledFrames]:
        """Begin sampling every job at ``geometry`` (default: the pool's) now; the returned iterator yields each
        clip's frames as soon as they are decoded. Decoding runs ahead of the caller, up to ``prefetch`` clips."""
        self.geometry = geometry or self.geometry
        if self.geometry is None:
            raise ValueError("DecodePool needs a frame geometry")
        todo = list(jobs)
        stop = threading.Event()
        self._stops.append(stop)
        jobq: queue.Queue = queue.Queue()
        results: queue.Queue = queue.Queue(maxsize=self.prefetch)
        for job in todo:
            jobq.put(job)
        n_threads = min(self.workers, len(todo))
        for _ in range(n_threads):
            jobq.put(_DONE)
        threads = [threading.Thread(target=self._serve, args=(jobq, results, stop), daemon=True, name=f"decode-{i}")
                   for i in range(n_threads)]
        for t in threads:
            t.start()
        return self._collect(len(todo), results, threads, stop)

    def _collect(self, n: int, results: queue.Queue, threads: list[threading.Thread],
                 stop: threading.Event) -> Iterator[SampledFrames]:
        try:
            for _ in range(n):
                while True:
                    try:
                        yield results.get(timeout=1.0)
                        break
                    except queue.Empty:
                        if not any(t.is_alive() for t in threads) and results.empty():
                            raise RuntimeError("decode threads stopped before every clip was answered") from None
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
            self.close()

    def map_unordered(self, jobs: Iterable[SampleJob], geometry: FrameGeometry | None = None) -> Iterator[SampledFrames]:
        """`start`, for a caller that consumes at once."""
        return self.start(jobs, geometry)

    def close(self) -> None:
        """Stop the threads and kill every worker (idempotent)."""
        for stop in self._stops:
            stop.set()
        with self._lock:
            live = list(self._live)
            self._live.clear()
            self._idle.clear()
        for w in live:
            w.stop(kill=True)

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_workers(device: str) -> int:
    """One decode worker beside a CPU model (both want every core); more when a GPU does the model's work."""
    cores = os.cpu_count() or 1
    if device.startswith("cuda"):
        return max(1, min(8, cores - 1))
    return 1


def prefetch_for(batch_size: int, frames: int, workers: int) -> int:
    """Decoded clips allowed to wait: two model batches' worth plus one per worker."""
    return 2 * math.ceil(batch_size / max(1, frames)) + workers
