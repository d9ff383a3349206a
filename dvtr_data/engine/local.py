"""`ProcessExecutor`: persistent worker processes, a stall-timeout watchdog, and bounded prefetch.

Why processes, and why this watchdog: decoders hang (decord holds the GIL forever on a file that over-reports its
frames; FFmpeg can block on a broken stream) and crash (a segfault takes the interpreter with it). Neither may
take the run down. Each worker is a plain ``python -c`` subprocess talking over an inherited socket, not a
multiprocessing spawn or fork: spawn re-imports the caller's ``__main__`` (a notebook, stdin, an unguarded
script), and fork copies a parent that may hold torch's threads and a CUDA context.

The watchdog is a stall timeout, not a total one: a running item is stopped only when no heartbeat arrived for
``stall_timeout`` seconds (a function that never beats gets ``stall_timeout`` for the whole item), so a long
flight that keeps beating is never cut short. A worker's start-up (importing the stage's modules) is not counted.
A stalled or crashed worker is killed and replaced; its item becomes one outcome with an error.

Workers persist across items (a stage that decodes thousands of short clips cannot pay a process start per clip);
``recycle`` restarts a worker after that many items, because decoders' memory creeps over long runs.

Overlap: one engine thread keeps the workers busy while the caller consumes outcomes, up to ``prefetch``
finished outcomes waiting; the caller's model runs while the next clips decode. A caller that wants the cores to
itself clears `gate` meanwhile (workers finish the item in hand and take no new one).
"""

from __future__ import annotations

import collections
import contextlib
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from dvtr_data.engine import Outcome, Progress, ProgressFn, StageFn, one_line, stalled_message

STARTUP_TIMEOUT = 120.0  # a worker importing numpy, PyAV and a stage's modules on a loaded machine
_START_FAILURES = 3  # this many workers in a row failing to start fail the remaining items
BEAT_INTERVAL = 0.2  # seconds between heartbeats a worker forwards (heartbeats are cheap but not free)

_WORKER_CODE = "import sys; from dvtr_data.engine.local import worker_main; worker_main(int(sys.argv[1]))"


# ----------------------------------------------------------------------------------------------------------------
# the worker process
# ----------------------------------------------------------------------------------------------------------------
def worker_main(fd: int) -> None:
    """A worker: load the stage function once, then answer each ``(index, item)`` until told to stop.

    Messages to the parent: ``("ready",)``, ``("fatal", text)``, ``("beat", done, total)``, ``("ok", record)``,
    ``("error", text, traceback or None)``. Ctrl-C is the parent's to handle.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        sys.path[:] = conn.recv()  # first the parent's import path, so the stage function can be found
        fn = conn.recv()
    except (EOFError, OSError):
        return
    except BaseException as exc:  # an unloadable function is reported, not a silent exit
        with contextlib.suppress(OSError):
            conn.send(("fatal", f"cannot load the stage function: {one_line(exc)}"))
        return
    conn.send(("ready",))
    last = [0.0]

    def beat(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= BEAT_INTERVAL or done >= total:
            last[0] = now
            conn.send(("beat", done, total))

    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        _index, item = message
        last[0] = 0.0
        try:
            record = fn(item, beat)
        except BaseException as exc:  # everything becomes a per-item error
            detail = traceback.format_exc() if os.environ.get("DVTR_DEBUG") else None
            conn.send(("error", one_line(exc), detail))
        else:
            conn.send(("ok", record))


# ----------------------------------------------------------------------------------------------------------------
# the parent's side
# ----------------------------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    born: float
    ready: bool = False
    job: tuple[int, Any] | None = None
    last_beat: float = 0.0
    done: int = 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()

    def retire(self) -> None:
        """Ask to exit after the item in hand (there is none when this is called); kill if it does not."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()

    def exitcode(self) -> int | None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        return self.proc.poll()


_END = object()


@dataclass
class _Crash:
    exc: BaseException


@dataclass
class _Run:
    """One ``run`` call: the engine thread's state."""

    executor: ProcessExecutor
    fn: StageFn
    pending: collections.deque[tuple[int, Any]]
    out: queue.Queue = field(default_factory=queue.Queue)
    stop: threading.Event = field(default_factory=threading.Event)
    slots: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))
    workers: list[_Worker] = field(default_factory=list)
    start_failures: int = 0
    last_start_error: str = ""

    # -- workers ---------------------------------------------------------------------------------------------
    def spawn(self) -> _Worker:
        mine, theirs = socket.socketpair()
        env = {**os.environ, **self.executor.env} if self.executor.env else None
        try:
            proc = subprocess.Popen([sys.executable, "-c", _WORKER_CODE, str(theirs.fileno())],
                                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True, env=env)
        finally:
            theirs.close()
        conn = Connection(mine.detach())
        w = _Worker(proc, conn, time.monotonic())
        try:
            conn.send(list(sys.path))
            conn.send(self.fn)
        except (OSError, ValueError):
            pass  # it died already: noticed as a start failure
        self.workers.append(w)
        return w

    def drop(self, w: _Worker) -> None:
        w.kill()
        self.workers.remove(w)

    def start_failed(self, w: _Worker, why: str) -> None:
        self.drop(w)
        self.start_failures += 1
        self.last_start_error = why
        if self.start_failures >= _START_FAILURES:  # it will not get better: fail what is left, once each
            while self.pending:
                index, item = self.pending.popleft()
                self.emit(Outcome(index, item, error=f"worker could not start: {why}", status="died"))

    def emit(self, outcome: Outcome) -> None:
        self.out.put(outcome)

    # -- the loop ----------------------------------------------------------------------------------------------
    def loop(self) -> None:
        ex = self.executor
        try:
            while not self.stop.is_set():
                busy = sum(1 for w in self.workers if w.job is not None)
                if not self.pending and not busy:
                    break
                # enough workers for the work that is left
                while len(self.workers) < min(ex.workers, busy + len(self.pending)):
                    self.spawn()
                # hand out items to ready idle workers, within the prefetch bound and while the gate is open
                for w in self.workers:
                    if not self.pending or not ex.gate.is_set():
                        break
                    if w.ready and w.job is None and self.slots.acquire(blocking=False):
                        w.job = self.pending.popleft()
                        w.last_beat = time.monotonic()
                        try:
                            w.conn.send(w.job)
                        except (OSError, ValueError):
                            pass  # it died: the EOF below reports the item
                self.poll(0.2)
        except BaseException as exc:  # a bug here reaches the caller, never a silent hang
            self.out.put(_Crash(exc))
        finally:
            for w in list(self.workers):
                w.kill()
            self.workers.clear()
            self.out.put(_END)

    def poll(self, timeout: float) -> None:
        ex = self.executor
        conns = {w.conn: w for w in self.workers}
        if conns:
            ready = wait(list(conns), timeout=timeout)
        else:
            time.sleep(timeout)
            ready = []
        now = time.monotonic()
        for conn in ready:
            w = conns[conn]  # type: ignore[index]
            try:
                msg: tuple[Any, ...] = w.conn.recv()
            except (EOFError, OSError):
                self.died(w)
                continue
            kind = msg[0]
            if kind == "ready":
                w.ready = True
                self.start_failures = 0
            elif kind == "fatal":
                self.start_failed(w, str(msg[1]))
            elif kind == "beat" and w.job is not None:
                w.last_beat = now
                self.out.put(Progress(w.job[0], msg[1], msg[2]))
            elif kind in ("ok", "error") and w.job is not None:
                index, item = w.job
                w.job = None
                w.done += 1
                if kind == "ok":
                    self.emit(Outcome(index, item, record=msg[1]))
                else:
                    if msg[2]:
                        print(msg[2], file=sys.stderr, flush=True)
                    self.emit(Outcome(index, item, error=str(msg[1]), status="error"))
                if ex.recycle and w.done >= ex.recycle:
                    self.workers.remove(w)
                    w.retire()
        for w in list(self.workers):
            if w.job is not None and now - w.last_beat > ex.stall_timeout:
                index, item = w.job
                self.drop(w)
                self.emit(Outcome(index, item, error=stalled_message(ex.stall_timeout), status="stalled"))
            elif not w.ready and w in self.workers and now - w.born > ex.startup_timeout:
                self.start_failed(w, f"no answer in {ex.startup_timeout:g} s")

    def died(self, w: _Worker) -> None:
        code = w.exitcode()
        if w.job is None:
            if not w.ready:
                self.start_failed(w, f"the worker process exited (exit code {code})")
            else:
                self.drop(w)
            return
        index, item = w.job
        self.drop(w)
        self.emit(Outcome(index, item, error=f"worker process died (exit code {code})", status="died"))


class ProcessExecutor:
    """Persistent isolated worker processes, ``workers`` at a time, each item watched by a stall timeout.

    ``prefetch``: finished outcomes allowed to wait for the caller (default: one per worker); ``recycle``: items
    per worker before it is restarted (None: never); ``env``: extra environment of the workers (e.g. one thread
    each: ``{"OMP_NUM_THREADS": "1"}``).
    """

    def __init__(
        self,
        workers: int | None = None,
        stall_timeout: float = 120.0,
        *,
        prefetch: int | None = None,
        recycle: int | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.stall_timeout = stall_timeout
        self.prefetch = self.workers if prefetch is None else max(0, prefetch)
        self.recycle = recycle
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.gate = threading.Event()  # cleared: workers take no new item (the caller wants the cores)
        self.gate.set()

    def run(self, fn: StageFn, items: Iterable[Any], on_progress: ProgressFn | None = None) -> Iterator[Outcome]:
        """Start at once: workers spawn and take their first items before the first ``next`` (the caller may load
        a model meanwhile). Closing the returned iterator stops the workers."""
        pickle.dumps(fn)  # an unpicklable function is the caller's bug: say so here, not from the engine thread
        state = _Run(self, fn, collections.deque(enumerate(items)),
                     slots=threading.Semaphore(self.workers + self.prefetch))
        thread = threading.Thread(target=state.loop, daemon=True, name="dvtr-engine")
        thread.start()
        return _Outcomes(state, thread, on_progress)


class _Outcomes(Iterator[Outcome]):
    """The outcomes of one run; ``close`` (or garbage collection) stops the engine even before the first ``next``."""

    def __init__(self, state: _Run, thread: threading.Thread, on_progress: ProgressFn | None) -> None:
        self.state, self.thread, self.on_progress = state, thread, on_progress
        self.finished = False

    def __next__(self) -> Outcome:
        state = self.state
        while not self.finished:
            try:
                msg = state.out.get(timeout=0.5)
            except queue.Empty:
                continue
            if msg is _END:
                self.close()
                break
            if isinstance(msg, _Crash):
                self.close()
                raise RuntimeError(f"worker engine failed: {one_line(msg.exc)}") from msg.exc
            if isinstance(msg, Progress):
                if self.on_progress:
                    self.on_progress(msg)
                continue
            state.slots.release()
            return msg
        raise StopIteration

    def close(self) -> None:
        self.finished = True
        self.state.stop.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=15)

    def __del__(self) -> None:
        self.state.stop.set()
