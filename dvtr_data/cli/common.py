"""What every command module shares: the consoles, the one error boundary, progress bars, shared options.

Kept apart from `cli.py` (which assembles the app) so that command modules can import it in any order.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from typer.core import TyperGroup

from dvtr_data.errors import DvtrError
from dvtr_data.reporting import Event, Notice, Reporter
from dvtr_data.text import redact_url_passwords

if TYPE_CHECKING:
    # typer (0.29) runs on its own copy of click, whose Context TyperGroup.invoke takes; it has no public name
    from typer._click import Context as ClickContext


class _PipeConsole(Console):
    """A Console that, off a terminal (piped, redirected, a log file), never wraps a printed line: a path or an id
    split across two lines cannot be copied or grepped. Tables still fit the width; a terminal wraps as before."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.is_terminal:
            kwargs.setdefault("soft_wrap", True)
        super().print(*objects, **kwargs)


out = _PipeConsole()
err = _PipeConsole(stderr=True)

# Shared options, declared once.
DatasetOpt = Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder (created when missing).")]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", "-j", help="Flights processed in parallel (default: CPU cores; 0 = in-process, for debugging)."),
]
ExecutorOpt = Annotated[
    str,
    typer.Option("--executor", help="Where items run: local (worker processes here) or ray (tasks on a Ray cluster; "
                 "tables are still written here)."),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option("--ray-address", help="Ray cluster for --executor ray: 'auto' joins the one `ray start` runs on "
                 "this machine, ray://HOST:10001 a remote one; default: start a local cluster."),
]


def _in_boundary(run: Callable[[], Any]) -> Any:
    """The one error boundary: user errors become one line on stderr and a documented exit code."""
    try:
        return run()
    except (typer.Exit, typer.Abort, typer.TyperException):
        # typer's own usage errors, aborts and exits (raised by its copy of click, not by the click package):
        # it prints them and picks the exit code (2 for a usage error)
        raise
    except DvtrError as exc:
        if os.environ.get("DVTR_DEBUG"):
            raise
        err.print(Text.assemble(("error: ", "bold red"), one_line(str(exc))), highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume", highlight=False)
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("DVTR_DEBUG"):
            raise
        err.print(
            Text.assemble(
                ("internal error: ", "bold red"),
                f"{type(exc).__name__}: {one_line(str(exc), 300)} "
                "(re-run with DVTR_DEBUG=1 for the traceback, and please report it)",
            ),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(70) from None


def one_line(text: str, limit: int = 2000) -> str:
    """``text`` as one line of at most ``limit`` characters (an error naming a 5 MB id stays readable)."""
    flat = redact_url_passwords(" ".join(text.split()))  # a --url with a password is never echoed
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class BoundaryGroup(TyperGroup):
    """The app's top group: every command, at any depth, runs inside the one error boundary, applied here once."""

    def invoke(self, ctx: ClickContext) -> Any:
        return _in_boundary(lambda: super(BoundaryGroup, self).invoke(ctx))


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


class ProgressBars:
    """The CLI's one renderer of the reporting protocol (`dvtr_data.reporting`).

    One rich bar per (stage, label), created on its first event; a transient bar (one flight's frames) goes when
    it completes. Notices print above the bars: warnings in yellow, errors in red. Off a terminal the bars are
    hidden and notices still print, so a log file keeps them.
    """

    STYLES: ClassVar[dict[str, str]] = {"warning": "[yellow]warning:[/] ", "error": "[red]failed:[/] ", "info": ""}

    def __init__(self, progress: Progress | None = None) -> None:
        self.bar = progress or _progress()
        self.tasks: dict[tuple[str, str], Any] = {}

    def __call__(self, event: Event) -> None:
        if isinstance(event, Notice):
            self.bar.console.print(f"{self.STYLES[event.level]}{escape(event.text)}", markup=True, highlight=False,
                                   soft_wrap=True)
            return
        key = (event.stage, event.label)
        task = self.tasks.get(key)
        if task is None:
            if event.transient and event.finished:
                return
            label = f"  {event.label}" if event.transient else event.label
            # a label can hold user text (a flight file named flights[/]): escaped, never read as markup
            task = self.tasks[key] = self.bar.add_task(escape(label), total=event.total, completed=event.done)
        else:
            self.bar.update(task, completed=event.done, total=event.total)
        if event.transient and event.finished:
            self.bar.remove_task(task)
            del self.tasks[key]

    def __enter__(self) -> Self:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def reporter(self, stage: str = "") -> Reporter:
        return Reporter(self, stage)


@contextlib.contextmanager
def progress_bars(stage: str = "") -> Iterator[Reporter]:
    """``with progress_bars("split") as reporter: split(..., reporter=reporter)``."""
    with ProgressBars() as bars:
        yield bars.reporter(stage)


def reflow_paragraphs(text: str) -> str:
    """Join each paragraph's lines: Typer's rich help keeps a docstring's line breaks, so a paragraph wrapped at
    the source's 110 columns came out broken mid-sentence in an 80- or 100-column terminal."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Reflow the docstrings of every command and group callback of ``app``, recursively (read when Typer builds
    the click commands, so this runs once after registration)."""

    def fix(fn: Any) -> None:
        if fn is not None and fn.__doc__:
            fn.__doc__ = reflow_paragraphs(fn.__doc__)

    for info in app.registered_commands:
        fix(info.callback)
    if app.registered_callback is not None:
        fix(app.registered_callback.callback)
    for group in app.registered_groups:
        fix(group.callback)
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)
