"""The error boundary leaves typer's own errors to typer.

typer (0.29) raises its usage errors and aborts from its vendored copy of click, not from the click package; a
boundary that re-raised only the click package's classes turned ``--bogus-option`` into "internal error", exit 70.
"""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.cli.common import _in_boundary

runner = CliRunner()


@pytest.mark.boundary
def test_unknown_option_is_a_usage_error_not_an_internal_one():
    result = runner.invoke(app, ["split", "--no-such-option-here"])
    assert result.exit_code == 2  # click's documented usage-error code
    assert "No such option" in result.output
    assert "internal error" not in result.output


@pytest.mark.boundary
@pytest.mark.parametrize(
    "exc", [typer.Abort(), typer.BadParameter("bad value"), typer.Exit(3)], ids=["abort", "bad-parameter", "exit"]
)
def test_typer_errors_pass_through_the_boundary_unchanged(exc):
    def run() -> None:
        raise exc

    with pytest.raises(type(exc)) as caught:
        _in_boundary(run)
    assert caught.value is exc
