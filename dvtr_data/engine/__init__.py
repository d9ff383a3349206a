"""The one worker engine: map a stage function over items, isolated, watched, and yielding outcomes as they finish.

Contract of a stage function: ``fn(item, heartbeat) -> record``. The item and the record are picklable; the
function shares no state with the caller, and calls ``heartbeat(done, total)`` to show progress and to prove it
is alive. Everything a stage does with the results (resume bookkeeping, table writes, the dataset lock) stays in
the caller, so the same function runs unchanged in-process, in local worker processes, or on a Ray cluster.

An `Executor` is anything with ``run(fn, items, on_progress) -> Iterator[Outcome]``: it yields one `Outcome` per
item, in completion order, never raises for a per-item failure (an exception, a crashed worker, a stalled
decoder all become an outcome with ``error`` set), and stops its workers when the iterator is closed. Three
implementations:

* `SerialExecutor`: in this process, one item after another (debugging, ``--workers 0``);
* `ProcessExecutor` (`dvtr_data.engine.local`): persistent worker processes with a stall-timeout watchdog and
  bounded prefetch, so a consumer that is busy (a model) keeps the workers decoding ahead of it;
* `RayExecutor` (`dvtr_data.engine.ray`): Ray tasks, the same watchdog fed by heartbeats from the cluster.

To plug another engine in (Dask, Slurm arrays): implement ``run`` with those guarantees; `make_executor` picks one.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Heartbeat = Callable[[int, int], None]
"""``heartbeat(done, total)``: a stage function calls it to show progress and prove it is alive."""

StageFn = Callable[[Any, Heartbeat], Any]

Status = Literal["ok", "error", "stalled", "died"]


@dataclass
class Outcome:
    """What came back for one item: its record, or a one-line error (never both).

    ``status`` says which failure it was: "error" (the function raised), "stalled" (no heartbeat for the stall
    timeout: the worker was stopped), "died" (the worker process crashed or was killed).
    """

    index: int
    item: Any
    record: Any = None
    error: str | None = None
    status: Status = "ok"

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Progress:
    """A heartbeat from a running item, forwarded to the caller's ``on_progress``."""

    index: int
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


class Executor(Protocol):
    """Maps a stage function over items and yields each `Outcome` as it completes (any order)."""

    def run(self, fn: StageFn, items: Iterable[Any], on_progress: ProgressFn | None = None) -> Iterator[Outcome]: ...


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception as one line: per-item errors are table cells and log fields, not tracebacks."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stalled_message(stall_timeout: float) -> str:
    return f"no progress for {stall_timeout:g} s (hung decoder?); the worker was stopped"


class SerialExecutor:
    """Runs items one after another in this process: for debugging and for tests of stage logic.

    No isolation and no watchdog: a hang hangs the caller.
    """

    def run(self, fn: StageFn, items: Iterable[Any], on_progress: ProgressFn | None = None) -> Iterator[Outcome]:
        for index, item in enumerate(items):

            def beat(done: int, total: int, _i: int = index) -> None:
                if on_progress:
                    on_progress(Progress(_i, done, total))

            try:
                record = fn(item, beat)
            except Exception as exc:  # one bad item never stops the run
                if os.environ.get("DVTR_DEBUG"):
                    traceback.print_exc()
                yield Outcome(index, item, error=one_line(exc), status="error")
            else:
                yield Outcome(index, item, record=record)


EXECUTORS = ("local", "ray")


def make_executor(
    workers: int | None,
    stall_timeout: float = 120.0,
    *,
    kind: str = "local",
    ray_address: str | None = None,
    **options: Any,
) -> Executor:
    """The executor a stage runs on: ``kind`` "local" (``workers == 0``: in-process) or "ray".

    ``options`` go to the executor (e.g. ``prefetch``, ``recycle`` for local workers; ``num_cpus`` for Ray).
    """
    from dvtr_data.errors import UsageError

    if workers is not None and workers < 0:  # -1 would mean "one worker fewer than nothing" to some pools: refuse
        raise UsageError(f"--workers must be >= 0 (0: in-process); got {workers}")
    if kind == "ray":
        from dvtr_data.engine.ray import RayExecutor

        return RayExecutor(address=ray_address, stall_timeout=stall_timeout, max_in_flight=workers or None, **options)
    if kind != "local":
        raise UsageError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    if workers == 0:
        return SerialExecutor()
    from dvtr_data.engine.local import ProcessExecutor

    return ProcessExecutor(workers=workers, stall_timeout=stall_timeout, **options)


def __getattr__(name: str) -> Any:  # the implementations import lazily (Ray is heavy)
    if name == "ProcessExecutor":
        from dvtr_data.engine.local import ProcessExecutor

        return ProcessExecutor
    if name == "RayExecutor":
        from dvtr_data.engine.ray import RayExecutor

        return RayExecutor
    raise AttributeError(name)


__all__ = [
    "EXECUTORS",
    "Executor",
    "Heartbeat",
    "Outcome",
    "Progress",
    "ProgressFn",
    "SerialExecutor",
    "StageFn",
    "make_executor",
    "one_line",
    "stalled_message",
]
