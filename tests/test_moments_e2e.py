"""End to end on generated long flights: synth (preset ``moments``) -> ingest -> `annotate push/simulate/pull
--task moments` (the real CLI app, fake Label Studio) -> QVHighlights export with CLIP features -> 2 epochs of a
tiny MS-DETR (library) and 1 of a tiny Moment-DETR (`baseline moment-detr`) -> `baseline table` shows both runs.
Slow (renders and ingests 158 s of small video)."""

from __future__ import annotations

import functools
import json

import pytest
from typer.testing import CliRunner

from dvtr_data.annotation import moments as M
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.baselines.ms_detr.dataset_runs import run_moment_baseline
from dvtr_data.baselines.ms_detr.train import moment_results_table
from dvtr_data.dataset import Dataset
from dvtr_data.export.moment_features import FeatureOptions
from dvtr_data.ingest.stage import ingest
from dvtr_data.synth.presets import generate
from dvtr_data.synth.simulated import simulated_captions
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
from dvtr_data.testing.moments import TINY_CLIP

LOCAL = Connection("http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567", local=True)
TINY = {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 1,
        "cross_enc_layers": 1, "num_queries": 5, "dn_groups": 2, "epochs": 2, "batch_size": 4, "eval_every": 1,
        "device": "cpu"}


@pytest.mark.slow
def test_generated_long_flights_to_a_moment_baseline_row(tmp_path, monkeypatch):
    import dvtr_data.annotation.moments as moments_mod
    import dvtr_data.cli.annotate as cli_annotate
    import dvtr_data.export.moment_features as features_mod
    from dvtr_data.cli import app

    videos = generate(tmp_path / "synth", "moments", seed=0)
    ds = Dataset(tmp_path / "ds").create(name="moments-e2e")
    ingest([tmp_path / "synth"], ds.root, workers=1)
    flights = {f["file_name"]: f for f in ds.read_table("flights").to_pylist()}
    assert {v.name for v in videos} <= set(flights) and all(f["duration_s"] > 60 for f in flights.values())
    with ds.writing("demo"):
        ds.replace_rows("captions", "demo", simulated_captions(ds))
        split_of = {flights["moments_farm.mp4"]["flight_id"]: "train", flights["moments_edit.mp4"]["flight_id"]: "val"}
        ds.replace_rows("splits", "split", [
            {"clip_id": c["clip_id"], "split": split_of[c["flight_id"]], "group_id": c["flight_id"],
             "group_kind": "flight"} for c in ds.read_table("clips").to_pylist()])

    srv = FakeServer()
    monkeypatch.setattr(moments_mod, "Studio", lambda conn: Studio(conn, sdk=FakeSDK(srv)))
    monkeypatch.setattr(cli_annotate, "_connection", lambda *_: LOCAL)
    cli = CliRunner()
    for command in ("push", "simulate", "pull"):
        res = cli.invoke(app, ["annotate", command, "--task", "moments", "--dataset", str(ds.root)],
                         env={"COLUMNS": "200"})
        assert res.exit_code == 0, res.output
    assert "10 new" in res.output and "10 accepted" in res.output  # 6 + 4 maneuvers of 4 s and more
    assert len(M.moment_tasks(ds)) == 2 and len(ds.read_table("moments")) == 10

    run = run_moment_baseline(ds.root, "ms-detr", features=FeatureOptions(model="tiny", model_cfg=TINY_CLIP),
                              overrides=TINY, split_eval=("val",), run_id="msdetr-tiny")
    manifest = json.loads((run.run_dir / "export" / "manifest.json").read_text())
    # train windows 6, 18, 4, 36, 8, 14 s fill every bucket; val 32, 24, 6, 10 s too
    assert all(min(b.values()) > 0 for s, b in manifest["length_buckets"].items() if s in ("train", "val"))
    assert run.metrics["status"] == "finished" and len(run.metrics["epochs"]) == 2
    header, rows = moment_results_table(ds.root / "runs", split="val")
    assert [r[:3] for r in rows] == [["msdetr-tiny", "ms-detr", "ms-detr"]]
    assert "MR-full-R1@0.7" in " ".join(header)

    config = tmp_path / "tiny-moment-detr.json"
    config.write_text(json.dumps({"base": "moment-detr", "name": "moment-detr", **TINY, "epochs": 1}))
    monkeypatch.setattr(features_mod, "FeatureOptions", functools.partial(features_mod.FeatureOptions,
                                                                          model_cfg=TINY_CLIP))
    res = cli.invoke(app, ["baseline", "moment-detr", "--dataset", str(ds.root), "--config", str(config),
                           "--split-eval", "val", "--run-id", "mdetr-tiny", "--device", "cpu"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "val: MR-full-R1@0.5" in res.output
    res = cli.invoke(app, ["baseline", "table", "--dataset", str(ds.root), "--split", "val"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "moment retrieval" in res.output and "msdetr-tiny" in res.output and "mdetr-tiny" in res.output
