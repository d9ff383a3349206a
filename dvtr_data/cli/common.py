"""What every command module shares: the consoles, the one error boundary, progress bars, shared options.

Kept apart from `cli.py` (which assembles the app) so that command modules can import it in any order.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from dvtr_data.errors import DvtrError

out = Console()
err = Console(stderr=True)

# Shared options, declared once.
DatasetOpt = Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder (created when missing).")]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", "-j", help="Flights processed in parallel (default: CPU cores; 0 = in-process, for debugging)."),
]


def _boundary(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The one error boundary: user errors become one line on stderr and a documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except DvtrError as exc:
            if os.environ.get("DVTR_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted; run the same command again to resume", highlight=False)
            raise typer.Exit(130) from None
        except Exception as exc:
            if os.environ.get("DVTR_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
                "(re-run with DVTR_DEBUG=1 for the traceback, and please report it)",
                markup=True,
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(70) from None

    return wrapper


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
