"""One progress and reporting protocol for every long-running command.

A stage reports through a `Reporter`: `progress` events (a labelled count, absolute, so a lost or repeated event
never skews a bar) and `notice` lines (a warning or a failed item, said while the run goes on). The reporter
hands each event to a sink, a plain callable. The library never renders anything: the CLI's sink draws rich
progress bars (`dvtr_data.cli.common.progress_bars`), a notebook or a test passes ``list.append``, and no sink
means silence. Events are small frozen dataclasses, so they cross process and cluster boundaries unchanged
(a Ray executor forwards its workers' heartbeats as the same events).

Shapes that older code used are adapters over one reporter: `Reporter.callback` is the ``(label, done, total)``
callable of the baseline engine and of the caption-bank embedding; `Reporter.heartbeat` is an executor's
``(done, total)``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` ``unit`` of the task ``label`` of ``stage``; ``total`` None: not known yet.

    ``transient`` marks a sub-task (one flight's frames) whose bar may go once it is complete.
    """

    stage: str
    label: str
    done: int
    total: int | None = None
    unit: str = "items"
    transient: bool = False

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total


@dataclass(frozen=True)
class Notice:
    """One line worth saying while the run goes on (a warning, a failed item, which model was loaded)."""

    stage: str
    text: str
    level: Level = "info"


Event = ProgressEvent | Notice
Sink = Callable[[Event], None]
LabelledProgress = Callable[[str, int, int], None]
"""``progress(label, done, total)``: the shape the baseline engine and the bank embedding call."""


class Reporter:
    """A stage's handle on the protocol: events carry the stage's name and go to one sink (or nowhere)."""

    def __init__(self, sink: Sink | None = None, stage: str = "") -> None:
        self.sink = sink
        self.stage = stage

    def child(self, stage: str) -> Reporter:
        """The same sink, events named after ``stage``."""
        return Reporter(self.sink, stage)

    def emit(self, event: Event) -> None:
        if self.sink is not None:
            self.sink(event)

    def progress(self, label: str, done: int, total: int | None = None, unit: str = "items", *,
                 transient: bool = False) -> None:
        self.emit(ProgressEvent(self.stage, label, int(done), None if total is None else int(total), unit, transient))

    def notice(self, text: str, level: Level = "info") -> None:
        self.emit(Notice(self.stage, text, level))

    def warning(self, text: str) -> None:
        self.notice(text, "warning")

    def error(self, text: str) -> None:
        self.notice(text, "error")

    def callback(self, unit: str = "items") -> LabelledProgress:
        """The ``(label, done, total)`` adapter."""

        def progress(label: str, done: int, total: int) -> None:
            self.progress(label, done, total, unit)

        return progress

    def heartbeat(self, label: str, unit: str = "items", *, transient: bool = False) -> Callable[[int, int], None]:
        """The ``(done, total)`` adapter, for one fixed label."""

        def beat(done: int, total: int) -> None:
            self.progress(label, done, total, unit, transient=transient)

        return beat

    def counter(self, label: str, total: int | None, unit: str = "items", done: int = 0) -> Counter:
        """A count to `advance` one at a time (announced at once, so the bar shows before the first item ends)."""
        counter = Counter(self, label, total, unit, done)
        counter.show()
        return counter


@dataclass
class Counter:
    """A labelled count that a stage advances as items finish."""

    reporter: Reporter
    label: str
    total: int | None
    unit: str = "items"
    done: int = 0

    def show(self) -> None:
        self.reporter.progress(self.label, self.done, self.total, self.unit)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.show()


def as_reporter(reporter: Reporter | Sink | None, stage: str) -> Reporter:
    """Accept a reporter, a bare sink or nothing, and name the events after ``stage``."""
    if reporter is None:
        return Reporter(None, stage)
    if isinstance(reporter, Reporter):
        return reporter.child(stage)
    return Reporter(reporter, stage)


NULL = Reporter()


class _DropRootWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


@contextlib.contextmanager
def quiet_root_warnings() -> Iterator[None]:
    """Drop warnings logged through the root logger meanwhile: open_clip says "No pretrained weights loaded ...
    Model initialized randomly" there, in its own words beside ours; the model's identity (``random-s0``) and
    our own line already say it, once."""
    root = logging.getLogger()
    quiet = _DropRootWarnings()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
