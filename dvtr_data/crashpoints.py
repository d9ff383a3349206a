"""Named points where a test can kill the running command, to prove that a kill -9 anywhere loses nothing.

``DVTR_CRASH_AT=NAME:N`` makes the process SIGKILL itself the N-th time it passes point NAME (N defaults to 1).
Points: ``rename`` (just before any atomic rename of a table, clip file or manifest), ``media`` (before a media file
is placed in an export or import), ``item`` (after a per-item result is stored), ``export`` (before an export's
staging folder is renamed into place). Unset (always, outside tests), a point costs one dictionary lookup.
"""

from __future__ import annotations

import multiprocessing
import os
import signal

_ENV = "DVTR_CRASH_AT"
_seen: dict[str, int] = {}


def crashpoint(name: str) -> None:
    """Kill this process with SIGKILL if ``DVTR_CRASH_AT`` names this point and its count is reached."""
    spec = os.environ.get(_ENV)
    if not spec or multiprocessing.parent_process() is not None:  # the command itself, not its workers
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
