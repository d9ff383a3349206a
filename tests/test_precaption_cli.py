"""`dvtr-data precaption` and `precaption show`: help with examples, real runs, one-line errors and exit codes.

They run in the real app, inside its one error boundary.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dvtr_data.cli import app as root
from dvtr_data.testing.precaption import make_dataset

runner = CliRunner()
ENV = {"COLUMNS": "200"}


def invoke(*args: str):
    return runner.invoke(root, list(args), env=ENV)


def test_help_of_both_commands_has_an_example():
    for args in (["precaption", "--help"], ["precaption", "show", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert "Example:" in result.output and "dvtr-data precaption" in result.output
    assert "--checkpoint" in invoke("precaption", "--help").output


def test_run_and_show_with_the_small_model(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red", "blue"])
    bank = tmp_path / "bank.txt"
    bank.write_text("A red roof.\nA blue lake.\nA port.\n\nA port\n")
    tags = tmp_path / "classes.txt"
    tags.write_text("# my classes\nwater: a lake; a river\nroofs: red roofs\nport\n")
    result = invoke("precaption", "-d", str(ds.root), "--model", "ViT-S-32-alt", "--pretrained", "none",
                    "--bank", str(bank), "--tags", str(tags), "--top-k", "2", "--top-tags", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "embedded 2 clip(s), skipped 0 already embedded, 0 failed" in result.stdout
    assert "model ViT-S-32-alt/random-s0" in result.stdout
    assert "4 draft caption(s) from bank bank@" in result.stdout and "1 empty, 1 duplicate" in result.stdout
    assert "2 clip(s) tagged from classes@" in result.stdout

    again = invoke("precaption", "-d", str(ds.root), "--model", "ViT-S-32-alt", "--pretrained", "none",
                   "--bank", str(bank), "--tags", str(tags), "--top-k", "2", "--device", "cpu")
    assert again.exit_code == 0 and "skipped 2 already embedded" in again.stdout
    assert "embeddings cached" in again.stdout

    shown = invoke("precaption", "show", "f0000000000000001-0000001-blue", "-d", str(ds.root))
    assert shown.exit_code == 0, shown.output
    assert "embedding ViT-S-32-alt/random-s0 (uniform:8, decord): ok" in shown.stdout
    assert "draft captions" in shown.stdout and "tags (classes@" in shown.stdout


@pytest.mark.boundary
def test_errors_are_one_line_with_their_exit_codes(tmp_path):
    missing = invoke("precaption", "-d", str(tmp_path / "nope"), "--pretrained", "none", "--model", "ViT-S-32-alt")
    assert missing.exit_code == 4
    lines = [ln for ln in missing.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "not a dvtr-data dataset" in lines[0]

    assert invoke("precaption").exit_code == 2 and "--dataset is required" in invoke("precaption").stderr

    ds = make_dataset(tmp_path / "ds", ["red"])
    offline = invoke("precaption", "-d", str(ds.root), "--model", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k",
                     "--bank", "builtin", "--top-tags", "0")
    assert offline.exit_code == 6, offline.output
    lines = [ln for ln in offline.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "not on this machine" in lines[0] and "--checkpoint PATH" in lines[0]
    assert "Traceback" not in offline.output

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    bad_bank = invoke("precaption", "-d", str(ds.root), "--bank", str(empty))
    assert bad_bank.exit_code == 3 and "no usable captions" in bad_bank.stderr

    unknown = invoke("precaption", "show", "f0000000000000001-0000000-rde", "-d", str(ds.root))
    assert unknown.exit_code == 2 and "did you mean f0000000000000001-0000000-red" in unknown.stderr
