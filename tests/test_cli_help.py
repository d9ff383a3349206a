"""Every command's help reads as paragraphs: no line break inside a paragraph (Typer's rich help keeps a
docstring's source wrapping, which broke sentences mid-line in a narrower terminal)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.cli.common import reflow_paragraphs


def _commands(c: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    if hasattr(c, "list_commands"):
        for name in c.list_commands(None):
            yield from _commands(c.get_command(None, name), [*path, name])
    yield path, c


def test_reflow_joins_lines_and_keeps_paragraphs():
    doc = """First line
        goes on.

        Second paragraph
        of two lines.
        """
    assert reflow_paragraphs(doc) == "First line goes on.\n\nSecond paragraph of two lines."


def test_no_command_help_has_a_line_break_inside_a_paragraph():
    commands = list(_commands(typer.main.get_command(app), []))
    assert len(commands) > 30  # the walk reached the sub-commands (annotate, baseline, release ...)
    broken = [" ".join(path) for path, c in commands
              if any("\n" in p.strip() for p in (c.help or "").split("\n\n"))]
    assert broken == []


def test_split_help_paragraphs_fill_their_lines_at_100_columns():
    result = CliRunner().invoke(app, ["split", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    description = result.output.split("Usage:")[1].split("Options")[0]
    paragraphs: list[list[str]] = [[]]
    for ln in description.splitlines()[1:]:  # the rest of the Usage line first
        if ln.strip():
            paragraphs[-1].append(ln.strip())
        elif paragraphs[-1]:
            paragraphs.append([])
    lines = [ln for para in paragraphs if len(para) > 1 for ln in para[:-1]]  # every line a paragraph goes on after
    assert lines and all(len(ln) > 70 for ln in lines), lines  # a source line break left "independent" alone
