"""A dataset of flights and moments (and ratings) but no captions exports as QVHighlights, with and without
features: `split --min-captions 0` splits its clips by flight, and each moment takes the split of its flight's clips
(the rule the export already applies to moments). Without splits the export says to run that split."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dvtr_data.annotation import moments as M
from dvtr_data.annotation import ratings as R
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.errors import DatasetError
from dvtr_data.export import export_dataset
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
from dvtr_data.testing.moments import make_moments_dataset, write_grey_video

LOCAL = Connection("http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567", local=True)
A1, B2 = "f00000000000000a1", "f00000000000000b2"


@pytest.fixture
def moments_only(tmp_path):
    ds = make_moments_dataset(tmp_path / "ds")
    studio = Studio(LOCAL, sdk=FakeSDK(FakeServer()))
    M.push_moments(ds.root, LOCAL, studio=studio)
    M.simulate_moments(ds.root, LOCAL, studio=studio)
    M.pull_moments(ds.root, LOCAL, studio=studio)
    R.push_ratings(ds.root, LOCAL, studio=studio)
    R.simulate_ratings(ds.root, LOCAL, studio=studio)
    R.pull_ratings(ds.root, LOCAL, studio=studio)
    assert not ds.read_table("captions").num_rows
    return ds


@pytest.mark.boundary
def test_without_splits_the_export_says_to_split_with_min_captions_0(moments_only, tmp_path):
    from dvtr_data.cli import app

    with pytest.raises(DatasetError, match="no splits yet") as info:
        export_dataset(moments_only, "qvhighlights", tmp_path / "qv")
    assert "--min-captions 0" in (info.value.hint or "")
    r = CliRunner().invoke(app, ["split", "--dataset", str(moments_only.root)], env={"COLUMNS": "200"})
    assert r.exit_code == 4 and "no captions yet" in r.output and "--min-captions 0" in r.output
    with pytest.raises(DatasetError, match="no captions yet"):  # the other formats still need captions
        export_dataset(moments_only, "parquet", tmp_path / "pq")


def test_split_min_captions_0_then_export_with_and_without_features(moments_only, tmp_path):
    from dvtr_data.export.moment_features import FeatureOptions
    from dvtr_data.testing.moments import TINY_CLIP

    ds = moments_only
    # two flights, one clip each: 50/50 so that each flight (a group) makes a split
    result = split_dataset(ds, SplitConfig(min_captions=0, ratios=(0.5, 0.0, 0.5), near_duplicates=False))
    split_of = {r["clip_id"].split("-")[0]: r["split"] for r in ds.read_table("splits").to_pylist()}
    assert sorted(split_of.values()) == ["test", "train"] and result.sizes["val"]["clips"] == 0
    r = export_dataset(ds, "qvhighlights", tmp_path / "qv")
    lines = {s: [json.loads(ln) for ln in (tmp_path / "qv" / f"highlight_{s}_release.jsonl").read_text().splitlines()]
             for s in ("train", "test")}
    # flight a1 has 5 moments, b2 has 2: each moment follows its flight's clip
    assert {len(lines[split_of[A1]]), len(lines[split_of[B2]])} == {5, 2}
    assert len(lines[split_of[A1]]) == 5 and {q["flight_id"] for q in lines[split_of[B2]]} == {B2}
    assert all(q["saliency_raters"] == 3 for s in lines.values() for q in s)
    assert r.manifest["saliency"]["moments_filled"] == 0

    for f in ds.read_table("flights").to_pylist():  # real (tiny) videos for the clip features
        write_grey_video(f["source_path"], seconds=f["duration_s"])
    export_dataset(ds, "qvhighlights", tmp_path / "qvf", media="none",
                   features=FeatureOptions(model="tiny", model_cfg=TINY_CLIP))
    qids = sorted(q["qid"] for s in lines.values() for q in s)
    assert sorted(int(p.stem[3:]) for p in (tmp_path / "qvf" / "features" / "text").glob("qid*.npz")) == qids
    with np.load(tmp_path / "qvf" / "features" / "text" / f"qid{qids[0]}.npz") as f:
        assert f["pooler_output"].shape == (32,)
    vids = {q["vid"] for s in lines.values() for q in s}
    assert vids == {f"{A1}_s00000", f"{A1}_s00100", f"{B2}_s00000"}
    for vid, cells in ((f"{A1}_s00000", 50), (f"{B2}_s00000", 31)):  # 100 s and 61 s: ceil(duration / 2) rows
        with np.load(tmp_path / "qvf" / "features" / "clip" / f"{vid}.npz") as f:
            assert f["features"].shape == (cells, 32)
