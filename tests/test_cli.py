"""The CLI: help with examples, one error boundary, documented exit codes, the installed entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvtr_data.cli import app

runner = CliRunner()
COMMANDS = [c.name for c in app.registered_commands]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name):
    result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"dvtr-data {name}" in result.output


@pytest.mark.boundary
def test_dataset_error_is_one_line_and_exit_4(tmp_path):
    result = runner.invoke(app, ["info", "--dataset", str(tmp_path / "nope")])
    assert result.exit_code == 4
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not a dvtr-data dataset" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.boundary
def test_missing_input_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["ingest", str(tmp_path / "missing.mp4"), "--dataset", str(tmp_path / "ds")])
    assert result.exit_code == 2
    assert "no such file or folder" in result.stderr


@pytest.mark.boundary
def test_bad_option_value_is_a_usage_error(tmp_path):
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "a.mp4").write_bytes(b"")
    result = runner.invoke(app, ["ingest", str(tmp_path / "v"), "-d", str(tmp_path / "ds"), "--min", "9", "--target", "5"])
    assert result.exit_code == 2
    assert "min" in result.stderr


def test_debug_switch_shows_the_traceback(tmp_path):
    env = {**os.environ, "DVTR_DEBUG": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "dvtr_data.cli", "info", "--dataset", str(tmp_path / "nope")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "DatasetError" in proc.stderr


def test_installed_entry_point_runs():
    exe = shutil.which("dvtr-data", path=str(Path(sys.executable).parent))
    assert exe, "the dvtr-data entry point is not installed next to this Python"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout.startswith("dvtr-data ")
