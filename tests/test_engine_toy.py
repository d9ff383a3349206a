"""Checks of the engine tests' toy dataset (built by :func:`dvtr_data.testing.engine.build_toy_dataset`)."""

from __future__ import annotations

import av
import pyarrow.parquet as pq
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.testing.engine import build_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    return build_toy_dataset(tmp_path_factory.mktemp("toy") / "ds")


def test_toy_dataset_tables_and_files(toy: Dataset) -> None:
    clips = toy.read_table("clips").to_pylist()
    assert len(clips) == 12
    assert all((toy.root / c["clip_path"]).is_file() for c in clips)
    caps = pq.read_table(toy.table_path("captions")).to_pylist()
    assert len({c["text"] for c in caps}) == len(caps) == 36
    with av.open(str(toy.root / clips[0]["clip_path"])) as f:
        assert f.streams.video[0].frames == clips[0]["n_frames"]
