"""Run a stage function over items, in isolated worker processes, with a watchdog.

A stage function takes one picklable item and returns one picklable record; it shares no state with the parent.
That is the whole contract, so a distributed engine (Ray, Dask) can run the same functions unchanged: write an
`Executor` whose `run` maps the function over the items.

The default `ProcessExecutor` starts one fresh process per item (forkserver), at most ``workers`` at a time. A
fresh process per item costs a fraction of a second, which is nothing next to decoding a flight, and buys the two
things a video pipeline needs: a decoder that hangs (decord and FFmpeg both can, on bad files) is killed by the
watchdog without taking the pool down, and a decoder that crashes the interpreter (a segfault) becomes one failed
item. The watchdog is a stall timeout, not a total one: the function reports progress through a heartbeat, and the
item is killed only when no heartbeat arrived for ``stall_timeout`` seconds, so long flights are never cut short.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

Heartbeat = Callable[[int, int], None]
"""``heartbeat(done, total)``: a stage function calls it to show progress and prove it is alive."""


@dataclass
class Outcome:
    """What came back for one item: its record, or a one-line error (never both)."""

    index: int
    item: Any
    record: Any = None
    error: str | None = None


@dataclass
class Progress:
    """A heartbeat from a running item, forwarded to the caller's progress callback."""

    index: int
    done: int
    total: int


class Executor(Protocol):
    """Maps a stage function over items and yields each `Outcome` as it completes (any order)."""

    def run(
        self,
        fn: Callable[[Any, Heartbeat], Any],
        items: Iterable[Any],
        on_progress: Callable[[Progress], None] | None = None,
    ) -> Iterator[Outcome]: ...


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


class SerialExecutor:
    """Runs items one after another in this process: for debugging and for tests of stage logic.

    No isolation and no watchdog: a hang hangs the caller.
    """

    def run(self, fn, items, on_progress=None):
        for index, item in enumerate(items):

            def beat(done: int, total: int, _i: int = index) -> None:
                if on_progress:
                    on_progress(Progress(_i, done, total))

            try:
                yield Outcome(index, item, record=fn(item, beat))
            except Exception as exc:  # one bad item never stops the run
                if os.environ.get("DVTR_DEBUG"):
                    traceback.print_exc()
                yield Outcome(index, item, error=_one_line(exc))


def _child(conn: Connection, fn: Callable, item: Any) -> None:
    last = [0.0]

    def beat(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.2 or done >= total:  # throttle: heartbeats are cheap but not free
            last[0] = now
            conn.send(("beat", done, total))

    try:
        record = fn(item, beat)
    except BaseException as exc:  # noqa: BLE001 - everything becomes a per-item error
        detail = traceback.format_exc() if os.environ.get("DVTR_DEBUG") else None
        conn.send(("error", _one_line(exc), detail))
    else:
        conn.send(("ok", record))
    finally:
        conn.close()


@dataclass
class _Running:
    index: int
    item: Any
    proc: mp.Process
    conn: Connection
    last_beat: float


class ProcessExecutor:
    """One isolated process per item, ``workers`` at a time, each watched by a stall timeout."""

    def __init__(self, workers: int | None = None, stall_timeout: float = 120.0, start_method: str = "forkserver"):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.stall_timeout = stall_timeout
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if start_method != "fork" and main_file and not os.path.exists(main_file):
            # forkserver/spawn re-import __main__ by path in the child; a script fed on stdin (`python - <<EOF`)
            # or an embedded interpreter has none, so fall back to fork there.
            start_method = "fork"
        self.ctx = mp.get_context(start_method)

    def run(self, fn, items, on_progress=None):
        pending = list(enumerate(items))
        pending.reverse()
        running: dict[Connection, _Running] = {}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    index, item = pending.pop()
                    parent, child = self.ctx.Pipe(duplex=False)
                    proc = self.ctx.Process(target=_child, args=(child, fn, item), daemon=True)
                    proc.start()
                    child.close()
                    running[parent] = _Running(index, item, proc, parent, time.monotonic())
                ready = wait(list(running), timeout=1.0)
                now = time.monotonic()
                for conn in ready:
                    job = running[conn]
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):
                        job.proc.join(timeout=5)
                        code = job.proc.exitcode
                        del running[conn]
                        conn.close()
                        yield Outcome(job.index, job.item, error=f"worker process died (exit code {code})")
                        continue
                    job.last_beat = now
                    if msg[0] == "beat":
                        if on_progress:
                            on_progress(Progress(job.index, msg[1], msg[2]))
                        continue
                    del running[conn]
                    conn.close()
                    job.proc.join(timeout=30)
                    if msg[0] == "ok":
                        yield Outcome(job.index, job.item, record=msg[1])
                    else:
                        if msg[2]:
                            print(msg[2], flush=True)
                        yield Outcome(job.index, job.item, error=msg[1])
                for conn, job in list(running.items()):
                    if now - job.last_beat > self.stall_timeout:
                        job.proc.kill()
                        job.proc.join(timeout=5)
                        del running[conn]
                        conn.close()
                        yield Outcome(
                            job.index,
                            job.item,
                            error=f"no progress for {self.stall_timeout:g} s (hung decoder?); the worker was stopped",
                        )
        finally:
            for job in running.values():
                job.proc.kill()
                job.proc.join(timeout=5)
                job.conn.close()


def make_executor(workers: int | None, stall_timeout: float = 120.0) -> Executor:
    """``workers == 0`` runs in-process (debugging); otherwise isolated worker processes."""
    if workers == 0:
        return SerialExecutor()
    return ProcessExecutor(workers=workers, stall_timeout=stall_timeout)
