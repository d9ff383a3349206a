"""End to end on generated long flights: synth (preset ``moments``) -> ingest -> moments pushed, answered from
the truth and pulled (fake Label Studio) -> QVHighlights export with CLIP features -> 2 epochs of a tiny MS-DETR
-> `moment_results_table` shows the run. Slow (renders and ingests 158 s of small video)."""

from __future__ import annotations

import json

import pytest
from test_moments import TINY_CLIP

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

LOCAL = Connection("http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567", local=True)
TINY = {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 1,
        "cross_enc_layers": 1, "num_queries": 5, "dn_groups": 2, "epochs": 2, "batch_size": 4, "eval_every": 1,
        "device": "cpu"}


@pytest.mark.slow
def test_generated_long_flights_to_a_moment_baseline_row(tmp_path):
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

    studio = Studio(LOCAL, sdk=FakeSDK(FakeServer()))
    M.push_moments(ds.root, LOCAL, studio=studio)
    simulated = M.simulate_moments(ds.root, LOCAL, studio=studio)
    pulled = M.pull_moments(ds.root, LOCAL, studio=studio)
    assert simulated.annotations_created == pulled.rows_new == 10  # 6 + 4 maneuvers of 4 s and more

    run = run_moment_baseline(ds.root, "ms-detr", features=FeatureOptions(model="tiny", model_cfg=TINY_CLIP),
                              overrides=TINY, split_eval=("val",), run_id="msdetr-tiny")
    manifest = json.loads((run.run_dir / "export" / "manifest.json").read_text())
    # train windows 6, 18, 4, 36, 8, 14 s fill every bucket; val 32, 24, 6, 10 s too
    assert all(min(b.values()) > 0 for s, b in manifest["length_buckets"].items() if s in ("train", "val"))
    assert run.metrics["status"] == "finished" and len(run.metrics["epochs"]) == 2
    header, rows = moment_results_table(ds.root / "runs", split="val")
    assert [r[:3] for r in rows] == [["msdetr-tiny", "ms-detr", "ms-detr"]]
    assert "MR-full-R1@0.7" in " ".join(header)
