"""`export --force` replaces only a provably earlier export of ours and never deletes a file its manifest does not list
(issue 11, item 1: a web app's folder holding a `manifest.json` lost a user's `precious.txt`)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.tables import write_generated_dataset

runner = CliRunner()
pytestmark = pytest.mark.boundary  # the CLI's one-line errors and exit codes (without DVTR_DEBUG)


def _export(ds, out, *extra: str):
    return runner.invoke(app, ["export", "--dataset", str(ds.root), "--format", "parquet", "--out", str(out),
                               "--media", "none", *extra], env={"COLUMNS": "200"})


def _dataset(tmp_path):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=12, clips_per_flight=(2, 3), seed=5)
    split_dataset(ds, SplitConfig(tolerance=0.2, near_duplicates=False))
    return ds


def test_export_force_leaves_a_folder_that_only_has_a_manifest_json(tmp_path):
    ds = _dataset(tmp_path)
    out = tmp_path / "webapp"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"name": "my web app", "icons": []}))
    (out / "precious.txt").write_text("keep me")
    result = _export(ds, out, "--force")
    assert result.exit_code == 2, result.output
    assert "not a dvtr-data export manifest" in result.output
    assert (out / "precious.txt").read_text() == "keep me"
    assert json.loads((out / "manifest.json").read_text())["name"] == "my web app"


def test_export_force_refuses_an_earlier_export_holding_a_file_its_manifest_does_not_list(tmp_path):
    ds = _dataset(tmp_path)
    out = tmp_path / "exp"
    assert _export(ds, out).exit_code == 0
    (out / "precious.txt").write_text("keep me")
    refused = _export(ds, out, "--force")
    assert refused.exit_code == 2 and "precious.txt" in refused.output
    assert (out / "precious.txt").read_text() == "keep me"
    (out / "precious.txt").unlink()
    replaced = _export(ds, out, "--force")  # provably ours again: replaced, and nothing half-made is left beside it
    assert replaced.exit_code == 0, replaced.output
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]
