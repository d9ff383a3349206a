"""`export --format parquet` writes a Hugging Face dataset card: front matter that parses, configs that name
the split files, a licence the hub knows, and a folder that `datasets.load_dataset` reads through the card."""

from __future__ import annotations

import pyarrow as pa
import pytest
import yaml

from dvtr_data.export import export_dataset, verify_export
from dvtr_data.export.parquet import hub_licence, size_category
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.tables import write_generated_dataset


def front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, sep, body = text[4:].partition("\n---\n")
    assert sep, "front matter is not closed"
    return yaml.safe_load(head), body


def make(tmp_path, licence: list | None = None, owner: list | None = None):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=24, clips_per_flight=(3, 6), seed=7)
    flights = ds.read_table("flights")
    for col, values in (("licence", licence), ("owner", owner)):
        if values is not None:
            i = flights.schema.get_field_index(col)
            vals = (values * flights.num_rows)[: flights.num_rows]
            flights = flights.set_column(i, flights.schema.field(i), pa.array(vals, pa.string()))
    ds.write_table("flights", flights)
    split_dataset(ds, SplitConfig(tolerance=0.1))
    return ds


def split_counts(ds) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in ds.read_table("splits").column("split").to_pylist():
        out[s] = out.get(s, 0) + 1
    return out


def test_readme_front_matter_names_the_split_files(tmp_path):
    ds = make(tmp_path, licence=["CC BY 4.0"], owner=["Aerial Lab"])
    r = export_dataset(ds, "parquet", tmp_path / "pq")
    meta, body = front_matter((r.out / "README.md").read_text())
    n = ds.read_table("clips").num_rows
    assert n < 1000
    assert meta["license"] == "cc-by-4.0"  # "CC BY 4.0" as the hub spells it
    assert meta["size_categories"] == ["n<1K"]
    assert "text-to-video" in meta["task_categories"]
    assert meta["pretty_name"] == "ds"
    (config,) = meta["configs"]
    assert config["config_name"] == "default"
    assert config["data_files"] == [
        {"split": "train", "path": "train.parquet"},
        {"split": "validation", "path": "val.parquet"},
        {"split": "test", "path": "test.parquet"},
    ]
    for f in config["data_files"]:
        assert (r.out / f["path"]).is_file()
    counts = split_counts(ds)
    assert f"| validation | val.parquet | {counts['val']} | {counts['val'] * 5} |" in body
    assert "Own footage: CC BY 4.0 (24 flights). Owner: Aerial Lab (24 flights)." in body
    assert verify_export(r.out) == []  # the README is listed in the manifest like every other file
    assert "README.md" in {f["path"] for f in r.manifest["files"]}


def test_datasets_loads_the_folder_through_its_readme(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    datasets = pytest.importorskip("datasets")
    ds = make(tmp_path, licence=["MIT"])
    r = export_dataset(ds, "parquet", tmp_path / "pq")
    loaded = datasets.load_dataset(str(r.out), cache_dir=str(tmp_path / "hf-cache"))
    counts = split_counts(ds)
    assert {k: v.num_rows for k, v in loaded.items()} == {
        "train": counts["train"],
        "validation": counts["val"],
        "test": counts["test"],
    }
    assert len(loaded["validation"][0]["captions"]) == 5


def test_hostile_names_stay_data(tmp_path):
    evil = "MIT\n---\nlicense: cc0-1.0\nconfigs: []"
    ds = make(tmp_path, licence=[evil], owner=["<script>x</script> | [a](javascript:y)"])
    r = export_dataset(ds, "parquet", tmp_path / "pq")
    text = (r.out / "README.md").read_text()
    meta, body = front_matter(text)
    assert set(meta) == {
        "license", "license_name", "pretty_name", "task_categories", "tags", "size_categories", "configs",
    }  # fmt: skip
    assert meta["license"] == "other" and len(meta["configs"][0]["data_files"]) == 3
    assert "\n---\nlicense: cc0" not in text
    assert "<script>" not in body and "&lt;script&gt;x&lt;/script&gt; \\| \\[a\\]\\(javascript:y\\)" in body


@pytest.mark.parametrize(
    ("licences", "want"),
    [
        ({"CC-BY-4.0"}, {"license": "cc-by-4.0"}),
        ({"cc0-1.0"}, {"license": "cc0-1.0"}),
        ({"Apache-2.0"}, {"license": "apache-2.0"}),
        ({"All rights reserved"}, {"license": "other", "license_name": "all-rights-reserved"}),
        ({"CC-BY-4.0", "MIT"}, {"license": "other", "license_name": "mixed"}),
        ({"MIT", None}, {"license": "other", "license_name": "mixed"}),
        ({None}, {"license": "unknown"}),
        (set(), {"license": "unknown"}),
    ],
)
def test_hub_licence(licences, want):
    assert hub_licence(licences) == want


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 9999, 10_000, 250_000, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M",
    ]  # fmt: skip
