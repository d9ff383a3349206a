"""The worker engine: outcomes for every item, the stall watchdog, crashed workers, prefetch bound, gate, recycling.

The stage functions below run inside the engine's worker processes (they import this module by name).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from dvtr_data.engine import Outcome, Progress, SerialExecutor, make_executor
from dvtr_data.engine.local import ProcessExecutor


# ----------------------------------------------------------------------------------------------------------------
# stage functions (picklable by reference)
# ----------------------------------------------------------------------------------------------------------------
def sleepy(item, heartbeat):
    if item == "hang":
        time.sleep(3600)
    heartbeat(1, 1)
    return item


def beating_then_hang(item, heartbeat):
    """Beats steadily for longer than the stall timeout, then hangs: only the hang may stop it."""
    for i in range(12):
        time.sleep(0.25)
        heartbeat(i + 1, 100)
    if item == "hang":
        time.sleep(3600)
    return item


def crashy(item, heartbeat):
    if item == "exit":
        os._exit(3)
    if item == "segfault":
        ctypes.string_at(0)
    if item == "raise":
        raise ValueError("bad\n  thing")
    return item


def three_beats(item, heartbeat):
    for done in (1, 2, 3):
        heartbeat(done, 3)
    return item * 10


def whoami(item, heartbeat):
    return os.getpid()


def mark_started(item, heartbeat):
    folder, i = item
    (Path(folder) / f"started-{i}").touch()
    return i


def env_threads(item, heartbeat):
    return os.environ.get("OMP_NUM_THREADS")


def wait_for(predicate, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_a_hung_item_is_stalled_and_the_rest_complete():
    outcomes = list(ProcessExecutor(workers=2, stall_timeout=1.5).run(sleepy, [0, 1, "hang", 3, 4]))
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3, 4]
    failed = [o for o in outcomes if not o.ok]
    assert [(o.item, o.status) for o in failed] == [("hang", "stalled")]
    assert failed[0].error == "no progress for 1.5 s (hung decoder?); the worker was stopped"
    assert sorted(o.record for o in outcomes if o.ok) == [0, 1, 3, 4]


@pytest.mark.timeout(90)
def test_the_stall_timeout_counts_from_the_last_heartbeat_not_from_the_start():
    # each item runs 3 s while beating every 0.25 s: twice the stall timeout, yet only the hang stops
    outcomes = {o.item: o for o in ProcessExecutor(workers=2, stall_timeout=1.5).run(beating_then_hang, ["a", "hang"])}
    assert outcomes["a"].ok and outcomes["a"].record == "a"
    assert outcomes["hang"].status == "stalled"


@pytest.mark.timeout(90)
def test_crashes_and_exceptions_are_one_outcome_each():
    outcomes = list(ProcessExecutor(workers=2, stall_timeout=30).run(crashy, ["a", "exit", "segfault", "raise", "b"]))
    by_item = {o.item: o for o in outcomes}
    assert len(outcomes) == 5
    assert by_item["a"].record == "a" and by_item["b"].record == "b"
    assert (by_item["exit"].status, by_item["exit"].error) == ("died", "worker process died (exit code 3)")
    assert by_item["segfault"].error == f"worker process died (exit code {-signal.SIGSEGV})"
    assert (by_item["raise"].status, by_item["raise"].error) == ("error", "bad thing")


@pytest.mark.timeout(60)
def test_heartbeats_reach_on_progress_with_their_item_index():
    seen: list[Progress] = []
    outcomes = list(ProcessExecutor(workers=1).run(three_beats, [4, 5], seen.append))
    assert sorted(o.record for o in outcomes) == [40, 50]
    for index in (0, 1):
        mine = [(p.done, p.total) for p in seen if p.index == index]
        # throttled to one per 0.2 s, but the first and the last always arrive
        assert mine[0] == (1, 3) and mine[-1] == (3, 3)


@pytest.mark.timeout(60)
def test_workers_persist_across_items_and_recycle_restarts_them():
    pids = [o.record for o in ProcessExecutor(workers=1).run(whoami, range(5))]
    assert len(set(pids)) == 1 and pids[0] != os.getpid()
    pids = [o.record for o in ProcessExecutor(workers=1, recycle=2).run(whoami, range(5))]
    assert len(pids) == 5 and len(set(pids)) == 3  # items 0-1, 2-3, 4: three processes


@pytest.mark.timeout(90)
def test_prefetch_bounds_work_done_ahead_of_the_caller(tmp_path):
    ex = ProcessExecutor(workers=1, prefetch=1, stall_timeout=60)
    outcomes = ex.run(mark_started, [(str(tmp_path), i) for i in range(6)])

    def started() -> int:
        return len(list(tmp_path.glob("started-*")))

    # before the caller takes anything: one item in the worker's hands plus one waiting, no more
    assert wait_for(lambda: started() == 2)
    time.sleep(1.0)
    assert started() == 2
    first = next(outcomes)
    assert first.record == 0
    assert wait_for(lambda: started() == 3)
    rest = [o.record for o in outcomes]
    assert sorted(rest) == [1, 2, 3, 4, 5]


@pytest.mark.timeout(90)
def test_a_closed_gate_holds_new_items_back(tmp_path):
    ex = ProcessExecutor(workers=1, prefetch=4, stall_timeout=60)
    ex.gate.clear()
    outcomes = ex.run(mark_started, [(str(tmp_path), i) for i in range(3)])
    time.sleep(1.5)
    assert not list(tmp_path.glob("started-*"))
    ex.gate.set()
    assert sorted(o.record for o in outcomes) == [0, 1, 2]


@pytest.mark.timeout(60)
def test_worker_environment_can_pin_threads():
    (o,) = list(ProcessExecutor(workers=1, env={"OMP_NUM_THREADS": "1"}).run(env_threads, [0]))
    assert o.record == "1"


@pytest.mark.timeout(90)
def test_an_unloadable_stage_function_fails_every_item_once():
    module = types.ModuleType("dvtr_vanishing_module")
    fn = types.FunctionType(sleepy.__code__, {"time": time})  # a copy whose module only this process has
    fn.__module__, fn.__qualname__ = module.__name__, "fn"
    module.fn = fn  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        outcomes = list(ProcessExecutor(workers=2, stall_timeout=30).run(module.fn, range(4)))
    finally:
        del sys.modules[module.__name__]
    assert sorted(o.index for o in outcomes) == [0, 1, 2, 3]
    assert all(o.status == "died" and "No module named 'dvtr_vanishing_module'" in o.error for o in outcomes)


@pytest.mark.timeout(60)
def test_closing_the_iterator_stops_the_workers(tmp_path):
    ex = ProcessExecutor(workers=2, stall_timeout=60)
    outcomes = ex.run(sleepy, ["hang", "hang"])
    state = outcomes.state  # type: ignore[attr-defined]
    assert wait_for(lambda: len(state.workers) == 2 and all(w.job for w in state.workers))
    procs = [w.proc for w in state.workers]
    outcomes.close()  # type: ignore[attr-defined]
    assert all(p.poll() is not None for p in procs)


@pytest.mark.timeout(60)
def test_workers_start_when_the_main_module_is_stdin():
    """Workers are plain subprocesses: a caller whose __main__ cannot be re-imported (stdin, a notebook) works."""
    code = textwrap.dedent("""
        from dvtr_data.engine.local import ProcessExecutor
        table = {"a": 1, "b": 2}
        outs = list(ProcessExecutor(workers=2).run(table.get, ["a", "b"]))  # table.get(item, heartbeat)
        print(sorted(o.record for o in outs), sorted(o.index for o in outs))
    """)
    proc = subprocess.run([sys.executable, "-"], check=False, input=code, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 2] [0, 1]"


def test_serial_executor_and_make_executor():
    outcomes = list(SerialExecutor().run(crashy, ["a", "raise"]))
    assert outcomes == [Outcome(0, "a", record="a"), Outcome(1, "raise", error="bad thing", status="error")]
    assert isinstance(make_executor(0), SerialExecutor)
    ex = make_executor(3, 7.0, prefetch=2)
    assert isinstance(ex, ProcessExecutor) and (ex.workers, ex.stall_timeout, ex.prefetch) == (3, 7.0, 2)
    from dvtr_data.errors import UsageError

    with pytest.raises(UsageError, match="unknown executor"):
        make_executor(1, kind="dask")
