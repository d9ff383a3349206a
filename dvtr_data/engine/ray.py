"""`RayExecutor`: the same stage functions as Ray tasks, with the same outcomes and the same stall watchdog.

What stays as it is locally: one `Outcome` per item in completion order; an exception in the stage function is an
"error" outcome (caught inside the task, so Ray does not retry a deterministic failure); a task that stops
beating for ``stall_timeout`` seconds is force-cancelled (its worker process is killed: a decoder holding the
GIL cannot be interrupted any other way) and becomes a "stalled" outcome. What Ray adds: a worker process that
dies (OOM killer, segfault, a lost node) is retried up to ``max_retries`` times, then becomes a "died" outcome.
Results come back to the driver, which alone writes the dataset's tables and holds its write lock.

Heartbeats travel through a small actor (`_Board`, one per driver): tasks post ``(run, index, done, total)``,
throttled, and the driver drains them while it waits, so progress bars and the watchdog are fed from the cluster.
A task's stall clock starts at its first beat, which the task posts as it starts, so tasks queued for a free CPU
are never "stalled". The clock also runs while Ray restarts a crashed task, so keep stall timeouts well above a
worker's restart time (seconds; the defaults are 60 s and more).

Starting Ray: ``address=None`` starts a local cluster for this process; "auto" or "ray://host:10001" joins one
(see the README's "Running on a cluster"). Either way usage statistics are off and no dashboard is started by us.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import time
import traceback
from collections.abc import Iterable, Iterator
from typing import Any

from dvtr_data.engine import Outcome, Progress, ProgressFn, StageFn, one_line, stalled_message
from dvtr_data.errors import UsageError

BEAT_INTERVAL = 0.5  # seconds between heartbeats a task posts
POLL = 0.5  # seconds the driver waits for a result before it drains heartbeats and checks for stalls


def _quiet_environment() -> None:
    """Ray must not phone home; set before any cluster process starts, and inherited by all of them."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_DISABLE_IMPORT_WARNING", "1")


def _import_ray() -> Any:
    _quiet_environment()
    try:
        import ray
    except ImportError as exc:  # pinned in requirements; a trimmed install may lack it
        raise UsageError("--executor ray needs the ray package", hint="pip install ray==2.60.0") from exc
    return ray


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None,
               object_store_memory: int | None = None) -> Any:
    """Connect to Ray once per process: join ``address``, or start a local cluster (``num_cpus`` cores).

    The workers of a local cluster inherit this process's environment, with its import path as ``PYTHONPATH``,
    so stage functions defined outside installed packages (a checkout, a test module) import there as here. (Not
    through a Ray ``runtime_env``: its workers are started apart from the pool Ray keeps warm, and idle ones are
    reaped within a second, so every run paid the workers' start-up again.) The workers of a cluster started with
    ``ray start`` see that command's environment: dvtr-data must be installed, or on ``PYTHONPATH``, there.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return ray
    debug = bool(os.environ.get("DVTR_DEBUG"))
    try:
        if address is None:
            paths = [p for p in sys.path if p and os.path.isdir(p)]
            os.environ["PYTHONPATH"] = os.pathsep.join(paths)
            # Ray runs its workers at nice 15 by default: beside other work on the machine they would get a
            # fraction of the CPU our local workers get (measured: ingest 3x slower on a busy 2-core machine).
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                     log_to_driver=debug, configure_logging=debug)
        else:
            ray.init(address=address, log_to_driver=debug, configure_logging=debug)
    except ConnectionError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address!r}: {one_line(exc)}",
                         hint="start one with `ray start --head`, or leave out --ray-address for a local one") from exc
    _board(ray)  # the heartbeat actor starts now (a second or so), while the caller plans its items
    return ray


_REMOTES: dict[str, Any] = {}
_RUNS = itertools.count()


def _remotes(ray: Any) -> tuple[Any, Any]:
    """The heartbeat actor class and the task function, made remote once per process."""
    if not _REMOTES:

        class _Board:
            def __init__(self) -> None:
                self.beats: dict[int, list[tuple[int, int, int]]] = {}

            def beat(self, run: int, index: int, done: int, total: int) -> None:
                self.beats.setdefault(run, []).append((index, done, total))

            def flush(self) -> None:
                """A no-op: once a task's call to it returns, every beat it posted before is on the board."""

            def drain(self, run: int) -> list[tuple[int, int, int]]:
                return self.beats.pop(run, [])

        _REMOTES["board"] = ray.remote(num_cpus=0)(_Board)
        _REMOTES["task"] = ray.remote(run_item)
    return _REMOTES["board"], _REMOTES["task"]


def _board(ray: Any) -> Any:
    """The heartbeat actor of this driver, started once and shared by its runs (an actor start costs seconds)."""
    job = ray.get_runtime_context().get_job_id()
    if _REMOTES.get("board_job") != job:
        _REMOTES["board_handle"] = _remotes(ray)[0].remote()
        _REMOTES["board_job"] = job
    return _REMOTES["board_handle"]


def run_item(fn: StageFn, run: int, index: int, item: Any, board: Any) -> tuple[Any, ...]:
    """One item inside a Ray worker: ``("ok", record)`` or ``("error", line, traceback or None)``."""
    board.beat.remote(run, index, -1, -1)  # started: the driver's stall clock begins now
    last = [time.monotonic()]

    def beat(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= BEAT_INTERVAL or done >= total:
            last[0] = now
            board.beat.remote(run, index, done, total)

    try:
        result: tuple[Any, ...] = ("ok", fn(item, beat))
    except Exception as exc:  # per-item errors are data, and are not worth a retry
        result = ("error", one_line(exc), traceback.format_exc() if os.environ.get("DVTR_DEBUG") else None)
    import ray

    ray.get(board.flush.remote())  # the item's last beats reach the driver before its result does
    return result


class RayExecutor:
    """Stage functions as Ray tasks (``num_cpus`` each), at most ``max_in_flight`` submitted at a time.

    ``max_in_flight`` defaults to twice the cluster's CPUs: enough to keep every core busy while results wait
    for the driver, few enough that a million items are not a million pending tasks.
    """

    def __init__(
        self,
        address: str | None = None,
        stall_timeout: float = 120.0,
        *,
        max_in_flight: int | None = None,
        num_cpus: float = 1.0,
        max_retries: int = 3,
        init_cpus: int | None = None,
    ) -> None:
        self.address = address
        self.stall_timeout = stall_timeout
        self.max_in_flight = max_in_flight
        self.num_cpus = num_cpus
        self.max_retries = max_retries
        self.init_cpus = init_cpus

    def run(self, fn: StageFn, items: Iterable[Any], on_progress: ProgressFn | None = None) -> Iterator[Outcome]:
        """Submit the first tasks now (the caller may load a model meanwhile); yield outcomes as they finish."""
        ray = ensure_ray(self.address, num_cpus=self.init_cpus)
        return _RayRun(self, ray, fn, list(enumerate(items)), on_progress)


class _RayRun(Iterator[Outcome]):
    def __init__(self, ex: RayExecutor, ray: Any, fn: StageFn, items: list[tuple[int, Any]],
                 on_progress: ProgressFn | None) -> None:
        self.ex, self.ray, self.on_progress = ex, ray, on_progress
        _, task = _remotes(ray)
        self.board = _board(ray)
        self.run_id = next(_RUNS)
        self.task = task.options(num_cpus=ex.num_cpus, max_retries=ex.max_retries, retry_exceptions=False)
        self.fn_ref = ray.put(fn)
        self.pending = list(reversed(items))
        self.running: dict[Any, tuple[int, Any]] = {}
        self.last_beat: dict[int, float] = {}
        self.cancelled: set[int] = set()
        self.ready: list[Outcome] = []
        self.drained = 0.0
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.limit = ex.max_in_flight or max(2, 2 * cpus)
        self.submit()

    def submit(self) -> None:
        while self.pending and len(self.running) < self.limit:
            index, item = self.pending.pop()
            self.running[self.task.remote(self.fn_ref, self.run_id, index, item, self.board)] = (index, item)

    def __next__(self) -> Outcome:
        while not self.ready:
            if not self.running and not self.pending:
                self.close()
                raise StopIteration
            self.step()
        return self.ready.pop(0)

    def step(self) -> None:
        ray = self.ray
        refs = list(self.running)
        done: list[Any] = []
        if refs:  # back at the first result, then take whatever else is ready
            done, rest = ray.wait(refs, num_returns=1, timeout=POLL)
            if done and rest:
                done += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        for ref in done:
            index, item = self.running.pop(ref)
            self.last_beat.pop(index, None)
            self.ready.append(self.outcome(ref, index, item))
        now = time.monotonic()
        if done or now - self.drained >= POLL:
            self.beats()
            self.drained = now
        for ref, (index, _item) in self.running.items():
            started = self.last_beat.get(index)
            if started is not None and index not in self.cancelled and now - started > self.ex.stall_timeout:
                self.cancelled.add(index)
                ray.cancel(ref, force=True)  # kills the worker process: a hung decoder holds the GIL
        self.submit()

    def beats(self) -> None:
        now = time.monotonic()
        for index, done, total in self.ray.get(self.board.drain.remote(self.run_id)):
            if index in self.cancelled:
                continue
            self.last_beat[index] = now
            if done >= 0 and self.on_progress:
                self.on_progress(Progress(index, done, total))

    def outcome(self, ref: Any, index: int, item: Any) -> Outcome:
        from ray import exceptions as rex

        try:
            result = self.ray.get(ref)
        except rex.TaskCancelledError:
            return Outcome(index, item, error=stalled_message(self.ex.stall_timeout), status="stalled")
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError) as exc:
            retries = f" after {self.ex.max_retries} retries" if self.ex.max_retries else ""
            return Outcome(index, item, error=f"worker process died{retries} ({type(exc).__name__})", status="died")
        except rex.RayError as exc:
            if index in self.cancelled:
                return Outcome(index, item, error=stalled_message(self.ex.stall_timeout), status="stalled")
            return Outcome(index, item, error=f"ray: {one_line(exc, 300)}", status="died")
        if result[0] == "ok":
            return Outcome(index, item, record=result[1])
        if result[2]:
            print(result[2], file=sys.stderr, flush=True)
        return Outcome(index, item, error=result[1], status="error")

    def close(self) -> None:
        """Cancel what is still running (on Ctrl-C, an error in the caller, or the end)."""
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
        self.running.clear()
        self.pending.clear()
        if self.board is not None:
            self.board.drain.remote(self.run_id)  # late beats of cancelled tasks: dropped
            self.board = None


# ----------------------------------------------------------------------------------------------------------------
# models in an actor pool
# ----------------------------------------------------------------------------------------------------------------
def _same(model: Any) -> Any:
    return model


class _ModelActor:
    """Holds one model for its whole life: the expensive load happens once per actor, not once per call."""

    def __init__(self, factory: Any, threads: int | None = None) -> None:
        if threads:  # Ray sets OMP_NUM_THREADS=1 in its workers; a CPU model wants the threads it has locally
            import torch

            torch.set_num_threads(threads)
        self.model = factory()

    def attrs(self, names: list[str]) -> dict[str, Any]:
        return {n: getattr(self.model, n, None) for n in names}

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.model, method)(*args)


class ModelPool:
    """A model loaded in ``size`` Ray actors, used like the model itself (an encoder's ``encode_frames`` ...).

    ``factory()`` builds the model inside each actor (pass `functools.partial(build, plan)`, or a model object
    to copy as is). Each actor asks for ``num_gpus`` GPUs where the cluster has any (default one each, as many
    actors as GPUs), otherwise ``num_cpus`` CPUs (one actor). `submit_frames` / `result` let a caller keep
    ``pipeline_depth`` batches in flight, so every actor works while the driver gathers the next batch.

    On a cluster without GPUs the default is the local executor's arrangement: the one model actor reserves no
    core (``num_cpus=0``) and runs with the driver's torch thread count, sharing the cores with the decoding tasks
    as the local model in the driver shares them with the decoding workers. Reserving a core for it on a 2-core
    machine halves the decoders, and Ray's one-thread default for its workers halves the model (measured:
    precaption 2.3x slower than local). Pass ``num_cpus`` (and ``threads``) to dedicate cores instead.
    """

    ATTRS = ("identity", "geometry", "logit_scale", "device")
    identity: Any  # copied from the model in the first actor
    geometry: Any
    logit_scale: Any
    device: Any

    def __init__(self, factory: Any, *, size: int | None = None, num_cpus: float = 0.0,
                 num_gpus: float | None = None, address: str | None = None, threads: int | None = None,
                 wait: bool = True) -> None:
        ray = ensure_ray(address)
        self.ray = ray
        if not callable(factory) or hasattr(factory, "encode_frames"):
            factory = functools.partial(_same, factory)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if num_gpus is None:
            num_gpus = 1.0 if gpus >= 1 else 0.0
        size = size or (max(1, int(gpus // num_gpus)) if num_gpus else 1)
        if threads is None and not num_gpus:
            import torch

            threads = max(int(num_cpus), 1) if num_cpus >= 1 else torch.get_num_threads()
        actor = ray.remote(_ModelActor).options(num_cpus=0 if num_gpus else num_cpus, num_gpus=num_gpus)
        self.actors = [actor.remote(factory, threads) for _ in range(size)]
        self.pipeline_depth = size + 1
        self._next = 0
        self._attrs: Any = self.actors[0].attrs.remote(list(self.ATTRS))
        if wait:
            self.ready()

    def ready(self) -> ModelPool:
        """Wait until the first actor holds its model (``wait=False`` starts the actors and returns at once, so a
        caller can plan its work meanwhile: an actor's start is a fresh process importing torch, seconds)."""
        if self._attrs is not None:
            for name, value in self.ray.get(self._attrs).items():
                setattr(self, name, value)
            self._attrs = None
        return self

    def _actor(self) -> Any:
        self._next = (self._next + 1) % len(self.actors)
        return self.actors[self._next]

    def submit_frames(self, frames: Any) -> Any:
        return self._actor().call.remote("encode_frames", frames)

    def result(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def encode_frames(self, frames: Any) -> Any:
        return self.result(self.submit_frames(frames))

    def encode_texts(self, texts: Any, progress: Any = None) -> Any:
        vectors = self.ray.get(self._actor().call.remote("encode_texts", list(texts)))
        if progress:
            progress(len(texts), len(texts))
        return vectors

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
