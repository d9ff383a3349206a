"""The demo's moment step on the hand-made moments dataset: with the default CLIP weights absent it falls back to a
random-weight ViT-S-32-alt (said so), exports QVHighlights with features and trains the tiny Moment-DETR it names.
Slow-ish (a small random CLIP over 130 cells of video, two epochs)."""

from __future__ import annotations

import json

import pytest

from dvtr_data.annotation import moments as M
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.errors import ModelError
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
from dvtr_data.testing.moments import make_moments_dataset, write_grey_video

LOCAL = Connection("http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567", local=True)


@pytest.mark.slow
def test_demo_moment_step_exports_features_and_trains(tmp_path, monkeypatch):
    import dvtr_data.demo as demo
    import dvtr_data.precaption.encoder as encoder

    ds = make_moments_dataset(tmp_path / "ds")
    said: list[str] = []
    demo._moments_baseline_step(ds.root, said.append)
    assert said == ["moments: none annotated, so no moment export or baseline"]

    studio = Studio(LOCAL, sdk=FakeSDK(FakeServer()))
    M.push_moments(ds.root, LOCAL, studio=studio)
    M.simulate_moments(ds.root, LOCAL, studio=studio)
    M.pull_moments(ds.root, LOCAL, studio=studio)
    split_dataset(ds, SplitConfig(min_captions=0, ratios=(0.5, 0.0, 0.5), near_duplicates=False))
    for f in ds.read_table("flights").to_pylist():
        write_grey_video(f["source_path"], seconds=f["duration_s"])

    def absent(*_: object) -> None:
        raise ModelError("weights of ViT-B-32 'openai' are not on this machine")

    monkeypatch.setattr(encoder, "resolve_tag_weights", absent)
    said.clear()
    demo._moments_baseline_step(ds.root, said.append)
    assert said[0].startswith("default CLIP weights unavailable") and "ViT-S-32-alt" in said[0]
    assert said[1].startswith("export qvhighlights with features (ViT-S-32-alt/random)")
    assert said[-1].startswith("baseline moment-detr (tiny, 2 epochs")
    manifest = json.loads((ds.root / "exports" / "qvhighlights-features" / "manifest.json").read_text())
    assert manifest["saliency"]["moments_filled"] == 7  # no rating round here: one rater each, filled and marked
    (run,) = list((ds.root / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and len(metrics["epochs"]) == 2
