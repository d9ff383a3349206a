"""The `dvtr-data` command line: a thin Typer package over the library (the library never imports Typer).

`app` assembles the commands; `common` holds the one error boundary, the consoles, progress rendering and the
shared options; each other module is one command group.
"""

from dvtr_data.cli.app import app, main

__all__ = ["app", "main"]
