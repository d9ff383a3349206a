"""`split`, `export`, `import` and `card` from the command line: output, exit codes, one-line errors, help.

They run in the real app, inside its one error boundary (`dvtr_data.cli.common.BoundaryGroup`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.cli.dataset import parse_ratios
from dvtr_data.errors import UsageError
from dvtr_data.testing.tables import write_generated_dataset

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("name", ["split", "export", "import", "card"])
def test_help_has_an_example(name):
    result = run(name, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and f"dvtr-data {name}" in result.output


def test_parse_ratios():
    assert parse_ratios("70/10/20") == (70, 10, 20)
    assert parse_ratios("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    with pytest.raises(UsageError):
        parse_ratios("70/30")


@pytest.mark.boundary
def test_whole_flow(tmp_path):
    ds_dir = tmp_path / "ds"
    write_generated_dataset(ds_dir, n_flights=40, clips_per_flight=(3, 8), seed=2)
    src = tmp_path / "pub"
    src.mkdir()
    (src / "raw-captions.pkl").write_bytes(
        pickle.dumps({"A_001 ": [["x", "y"]] * 5, "A_002 1": [["z"]] * 5}, protocol=4)
    )
    (src / "train_list.txt").write_text("A_001 \n")
    (src / "test_list.txt").write_text("A_002 1\n")

    r = run("import", src, "--format", "clip4clip", "--dataset", ds_dir, "--name", "pub")
    assert r.exit_code == 0, r.output
    assert "imported pub (clip4clip): 2 video(s), 10 caption(s); splits: train 1, test 1" in r.stdout

    r = run("split", "--dataset", ds_dir, "--ratios", "70/10/20", "--tolerance", "0.1")
    assert r.exit_code == 0, r.output
    assert (
        "leakage check: 0 cross-split pair(s)" in r.stdout
        and "near-duplicates: no usable embeddings" in r.stdout
    )
    assert "split_report.json" in r.stdout

    r = run(
        "export", "--dataset", ds_dir, "--split", "test", "--format", "clip4clip", "--out", tmp_path / "c4c"
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("test: ") and "exported clip4clip to" in r.stdout
    assert (
        (tmp_path / "c4c" / "test_list.txt").read_text().startswith("A_002 1\nf")
    )  # published first, verbatim

    r = run(
        "export", "--dataset", ds_dir, "--split", "test", "--format", "clip4clip", "--out", tmp_path / "c4c"
    )
    assert r.exit_code == 2 and "already exists" in one_error_line(r)

    r = run("card", "--dataset", ds_dir)
    assert r.exit_code == 0, r.output
    assert Path(r.stdout.split()[-1]).name == "card.html"


@pytest.mark.boundary
def test_errors_are_one_line_with_their_exit_code(tmp_path):
    ds_dir = tmp_path / "ds"
    write_generated_dataset(ds_dir, n_flights=4, clips_per_flight=3, captions_per_clip=0)
    r = run("split", "--dataset", ds_dir)
    assert r.exit_code == 4 and "no captions yet" in one_error_line(r)
    r = run("export", "--dataset", ds_dir, "--format", "parquet")
    assert r.exit_code == 4 and "no captions yet" in one_error_line(r)
    r = run("split", "--dataset", tmp_path / "nope")
    assert r.exit_code == 4 and "not a dvtr-data dataset" in one_error_line(r)
    r = run("split", "--dataset", ds_dir, "--ratios", "1/2")
    assert r.exit_code == 2 and "--ratios" in one_error_line(r)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "raw-captions.pkl").write_bytes(pickle.dumps({"a": [["b"]]})[:-5])
    r = run("import", bad, "--format", "clip4clip", "--dataset", tmp_path / "ds2")
    assert r.exit_code == 3 and "not a readable pickle" in one_error_line(r)
    assert not (tmp_path / "ds2").exists()
    ds3 = tmp_path / "ds3"
    write_generated_dataset(ds3, n_flights=2, clips_per_flight=5)
    r = run("split", "--dataset", ds3)
    assert r.exit_code == 4 and "cannot split 10 clips in 2 group(s)" in one_error_line(r)
