"""Exports: each layout read back the way its tools read it, manifests, and no partial export ever looks complete."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.export import EXPORTERS, Exporter, export_dataset, verify_export
from dvtr_data.export.qvhighlights import derived_saliency, relevant_cells
from dvtr_data.importers import import_published
from dvtr_data.schemas import schema_of
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.media import make_files
from dvtr_data.testing.tables import write_generated_dataset


@pytest.fixture
def split_ds(tmp_path) -> Dataset:
    ds, _ = write_generated_dataset(
        tmp_path / "ds", n_flights=40, clips_per_flight=(3, 8), with_files=True, seed=11
    )
    split_dataset(ds, SplitConfig(tolerance=0.1))
    return ds


def splits_of(ds: Dataset) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for row in ds.read_table("splits").to_pylist():
        out.setdefault(row["split"], []).append(row["clip_id"])
    return out


def no_partials(folder: Path) -> None:
    leftovers = [p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------------------------
# parquet
# ---------------------------------------------------------------------------------------------------------
def test_parquet_per_split_with_list_columns_and_schema_tag(split_ds, tmp_path):
    r = export_dataset(split_ds, "parquet", tmp_path / "pq")
    want = splits_of(split_ds)
    for split in ("train", "val", "test"):
        t = pq.read_table(tmp_path / "pq" / f"{split}.parquet")
        assert sorted(t.column("clip_id").to_pylist()) == sorted(want[split])
        assert t.schema.field("captions").type == pa.list_(pa.string())
        assert t.schema.field("tokens").type == pa.list_(pa.list_(pa.string()))
        assert t.schema.metadata[b"dvtr.schema"] == b"export-parquet/1"
        assert json.loads(t.schema.metadata[b"dvtr.export"])["split"] == split
        assert set(t.column("n_captions").to_pylist()) == {5}
        assert r.counts[split] == {"clips": len(want[split]), "captions": 5 * len(want[split])}
    df = __import__("pandas").read_parquet(tmp_path / "pq" / "test.parquet")
    assert list(df["captions"].iloc[0]) and isinstance(df["captions"].iloc[0][0], str)


def test_parquet_is_readable_by_duckdb(split_ds, tmp_path):
    duckdb = pytest.importorskip("duckdb")
    export_dataset(split_ds, "parquet", tmp_path / "pq")
    path = (tmp_path / "pq" / "test.parquet").as_posix()
    n, caps, first = duckdb.sql(
        f"SELECT count(*), sum(len(captions)), min(captions[1]) FROM read_parquet('{path}')"
    ).fetchall()[0]
    assert n == len(splits_of(split_ds)["test"]) and caps == 5 * n and isinstance(first, str)


def test_parquet_is_readable_by_hugging_face_datasets(split_ds, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    datasets = pytest.importorskip("datasets")
    export_dataset(split_ds, "parquet", tmp_path / "pq")
    files = {s: str(tmp_path / "pq" / f"{s}.parquet") for s in ("train", "val", "test")}
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf-cache"))
    want = splits_of(split_ds)
    assert {k: v.num_rows for k, v in loaded.items()} == {k: len(want[k]) for k in files}
    row = loaded["test"][0]
    assert (
        isinstance(row["captions"], list) and len(row["captions"]) == 5 and isinstance(row["tokens"][0], list)
    )


def test_location_private_flights_and_drop_gps(split_ds, tmp_path):
    flights = split_ds.read_table("flights")
    private = flights.column("flight_id").to_pylist()[0]
    flags = [f == private for f in flights.column("flight_id").to_pylist()]
    split_ds.write_table(
        "flights",
        flights.set_column(
            flights.schema.get_field_index("location_private"), "location_private", pa.array(flags)
        ),
    )
    export_dataset(split_ds, "parquet", tmp_path / "a")
    rows = [
        r
        for s in ("train", "val", "test")
        for r in pq.read_table(tmp_path / "a" / f"{s}.parquet").to_pylist()
    ]
    assert all(r["lat"] is None for r in rows if r["flight_id"] == private)
    assert any(r["lat"] is not None for r in rows if r["flight_id"] != private)
    export_dataset(split_ds, "parquet", tmp_path / "b", drop_gps=True)
    assert all(
        r is None
        for s in ("train", "val", "test")
        for r in pq.read_table(tmp_path / "b" / f"{s}.parquet").column("lat").to_pylist()
    )


# ---------------------------------------------------------------------------------------------------------
# clip4clip, qvhighlights, amfmn
# ---------------------------------------------------------------------------------------------------------
def test_clip4clip_layout(split_ds, tmp_path):
    with_files = make_files(split_ds)
    r = export_dataset(split_ds, "clip4clip", tmp_path / "c4c")
    out = tmp_path / "c4c"
    caps = pickle.loads((out / "raw-captions.pkl").read_bytes())
    want = splits_of(split_ds)
    listed = []
    for split in ("train", "val", "test"):
        ids = (out / f"{split}_list.txt").read_text().split("\n")
        assert ids[-1] == "" and sorted(ids[:-1]) == sorted(want[split])
        listed += ids[:-1]
    assert sorted(caps) == sorted(listed) and len(set(listed)) == len(listed)
    assert all(len(v) == 5 and all(isinstance(w, str) for c in v for w in c) for v in caps.values())
    videos = {p.stem for p in (out / "Videos").iterdir()}
    assert videos == with_files & set(listed)
    some = sorted(videos)[0]
    assert os.path.samefile(
        out / "Videos" / f"{some}.mp4", split_ds.root / "clips" / some[:17] / f"{some}.mp4"
    )
    assert r.skipped["videos_missing"] == len(listed) - len(videos)
    export_dataset(split_ds, "clip4clip", tmp_path / "test-only", splits=("test",), media="none")
    assert sorted(p.name for p in (tmp_path / "test-only").iterdir()) == [
        "manifest.json",
        "raw-captions.pkl",
        "test_list.txt",
    ]


def test_clip4clip_writes_only_what_its_manifest_says(split_ds, tmp_path):
    make_files(split_ds)
    want = splits_of(split_ds)
    bare = sorted(want["test"])[0]
    caps = split_ds.read_table("captions")
    split_ds.write_table("captions", caps.filter(pc.not_equal(caps.column("clip_id"), bare)))
    r = export_dataset(split_ds, "clip4clip", tmp_path / "c4c")
    out = tmp_path / "c4c"
    manifest = json.loads((out / "manifest.json").read_text())
    assert r.skipped["without_captions"] == manifest["skipped"]["without_captions"] == 1
    assert bare not in pickle.loads((out / "raw-captions.pkl").read_bytes())
    assert all(bare not in (out / f"{s}_list.txt").read_text().split("\n") for s in ("train", "val", "test"))
    assert not any(p.stem == bare for p in (out / "Videos").iterdir())
    assert manifest["counts"]["test"]["clips_written"] == len(want["test"]) - 1


def test_relevant_cells_and_derived_saliency():
    assert relevant_cells([[5.0, 10.0]], 30.0) == [2, 3, 4]  # [4,6) holds 1 s of the window: half a cell
    assert relevant_cells([[5.2, 10.0]], 30.0) == [3, 4]
    assert relevant_cells([[3.2, 3.6]], 30.0) == [1]  # shorter than half a cell: the cell of its middle
    # 5 s: int(5 / 2) = 2 whole cells, the size the official mk_gt_scores gives its array; the partial last cell
    # (4-5 s) has no id (it had id 2, and the official evaluator failed with an IndexError)
    assert relevant_cells([[0.0, 5.0]], 5.0) == [0, 1]
    assert derived_saliency([[5.0, 10.0]], [2, 3, 4]) == [[2, 2, 2], [4, 4, 4], [4, 4, 4]]


def test_qvhighlights_windows_are_clip_spans_in_their_flight(split_ds, tmp_path):
    r = export_dataset(split_ds, "qvhighlights", tmp_path / "qv")
    clips = {c["clip_id"]: c for c in split_ds.read_table("clips").to_pylist()}
    flights = {f["flight_id"]: f for f in split_ds.read_table("flights").to_pylist()}
    qids = set()
    for split in ("train", "val", "test"):
        lines = (tmp_path / "qv" / f"highlight_{split}_release.jsonl").read_text().splitlines()
        assert len(lines) == r.counts[split]["captions"]
        for line in lines:
            q = json.loads(line)
            assert set(q) >= {
                "qid",
                "query",
                "duration",
                "vid",
                "relevant_windows",
                "relevant_clip_ids",
                "saliency_scores",
            }
            c = clips[q["clip_id"]]
            assert q["vid"] == c["flight_id"] and q["duration"] == flights[c["flight_id"]]["duration_s"]
            assert q["relevant_windows"] == [[c["start_s"], c["end_s"]]]
            assert len(q["saliency_scores"]) == len(q["relevant_clip_ids"]) and all(
                len(s) == 3 for s in q["saliency_scores"]
            )
            qids.add(q["qid"])
    assert len(qids) == sum(v["captions"] for v in r.counts.values())
    assert r.manifest["saliency"]["derived"] == len(qids) and "not human" in r.manifest["saliency"]["rule"]


def test_qvhighlights_uses_annotated_moments(split_ds, tmp_path):
    cap = split_ds.read_table("captions").to_pylist()[0]
    clip = next(c for c in split_ds.read_table("clips").to_pylist() if c["clip_id"] == cap["clip_id"])
    flight = next(f for f in split_ds.read_table("flights").to_pylist() if f["flight_id"] == clip["flight_id"])
    row = dict.fromkeys(schema_of("moments").schema.names)
    row.update(moment_id="m-1", query="two boats", flight_id=clip["flight_id"], segment_start_s=0.0,
               segment_end_s=min(150.0, flight["duration_s"]), windows=[[0.0, 4.0], [8.0, 10.0]],
               saliency_clip_ids=[0, 1, 4], saliency_scores=[[4, 3, 4], [2, 2, 1], [0, 1, 0]],
               raters=["a", "b", "c"], source="human", status="submitted", flags=[], accepted=True)
    split_ds.write_table("moments", [row])
    r = export_dataset(split_ds, "qvhighlights", tmp_path / "qv")
    lines = [
        json.loads(ln)
        for s in ("train", "val", "test")
        for ln in (tmp_path / "qv" / f"highlight_{s}_release.jsonl").read_text().splitlines()
    ]
    (q,) = lines  # annotated moments replace the caption-derived queries
    assert q["relevant_windows"] == [[0.0, 4.0], [8.0, 10.0]] and q["saliency_scores"][0] == [4, 3, 4]
    assert q["query"] == "two boats" and q["saliency_raters"] == 3
    assert r.manifest["source"] == "moments" and r.manifest["saliency"]["moments_filled"] == 0


def test_amfmn_five_lines_per_image(split_ds, tmp_path):
    with_files = make_files(split_ds)
    caps = split_ds.read_table("captions")
    texts = caps.column("text").to_pylist()
    first = caps.column("clip_id").to_pylist().index(min(with_files))  # a caption of an exported clip
    texts[first] = "a caption\nthat breaks\tlines"
    split_ds.write_table(
        "captions", caps.set_column(caps.schema.get_field_index("text"), "text", pa.array(texts))
    )
    r = export_dataset(split_ds, "amfmn", tmp_path / "am")
    for split in ("train", "val", "test"):
        c = (tmp_path / "am" / f"{split}_caps.txt").read_text().split("\n")[:-1]
        f = (tmp_path / "am" / f"{split}_filename.txt").read_text().split("\n")[:-1]
        per_line = 5 if split == "test" else 1  # AMFMN's train.py asserts one filename line per train image
        assert len(c) == 5 * r.counts[split]["images"] and len(f) == per_line * r.counts[split]["images"]
        assert all(len(set(f[i : i + per_line])) == 1 for i in range(0, len(f), per_line))
    n_images = sum(r.counts[s]["images"] for s in ("train", "val", "test"))
    assert n_images == len(with_files) == len(list((tmp_path / "am" / "images").iterdir()))
    all_caps = "".join((tmp_path / "am" / f"{s}_caps.txt").read_text() for s in ("train", "val", "test"))
    assert "a caption that breaks\tlines\n" in all_caps  # line breaks become spaces; the rest is verbatim


# ---------------------------------------------------------------------------------------------------------
# manifest and safety
# ---------------------------------------------------------------------------------------------------------
def test_manifest_names_counts_and_hashes(split_ds, tmp_path):
    make_files(split_ds)
    r = export_dataset(split_ds, "clip4clip", tmp_path / "c4c", media="copy")
    m = json.loads((tmp_path / "c4c" / "manifest.json").read_text())
    assert (
        m["dataset"] == "ds" and m["export_format"] == "clip4clip" and m["splits"] == ["train", "val", "test"]
    )
    assert m["dataset_version"].startswith("sha256:") and m["counts"] == r.counts
    paths = {f["path"] for f in m["files"]}
    assert {"raw-captions.pkl", "train_list.txt"} <= paths and all("sha256" in f for f in m["files"])
    assert verify_export(tmp_path / "c4c") == []
    (tmp_path / "c4c" / "test_list.txt").write_text("tampered\n")
    (tmp_path / "c4c" / "extra.txt").write_text("x")
    assert sorted(verify_export(tmp_path / "c4c")) == ["changed test_list.txt", "unlisted extra.txt"]


def test_existing_export_folder_is_refused_and_force_replaces_only_exports(split_ds, tmp_path):
    target = tmp_path / "out"
    export_dataset(split_ds, "parquet", target)
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(UsageError, match="already exists"):
        export_dataset(split_ds, "clip4clip", target)
    assert sorted(p.name for p in target.iterdir()) == before
    export_dataset(split_ds, "clip4clip", target, force=True, media="none")
    assert (target / "raw-captions.pkl").is_file() and not (target / "train.parquet").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="not an earlier export"):
        export_dataset(split_ds, "parquet", mine, force=True)
    assert (mine / "thesis.tex").read_text() == "precious"
    with pytest.raises(UsageError, match="dataset itself"):
        export_dataset(split_ds, "parquet", split_ds.root, force=True)
    no_partials(tmp_path)


def test_failed_export_leaves_nothing_that_looks_complete(split_ds, tmp_path, monkeypatch):
    def broken(view, stage, *, media):
        (stage / "train_list.txt").write_text("half\n")
        raise OSError("disk full")

    monkeypatch.setitem(EXPORTERS, "clip4clip", Exporter("clip4clip", broken, "none", "broken"))
    with pytest.raises(OSError):
        export_dataset(split_ds, "clip4clip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    no_partials(tmp_path)


def test_nothing_to_export_is_an_error_not_an_empty_folder(split_ds, tmp_path):
    with pytest.raises(DatasetError, match="nothing to export as amfmn"):
        export_dataset(split_ds, "amfmn", tmp_path / "am")  # no keyframe files on disk
    assert not (tmp_path / "am").exists()
    no_partials(tmp_path)


def test_dataset_without_splits_or_captions(tmp_path):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=5, clips_per_flight=3)
    with pytest.raises(DatasetError, match="no splits yet"):
        export_dataset(ds, "parquet", tmp_path / "out")
    ds2, _ = write_generated_dataset(tmp_path / "ds2", n_flights=5, clips_per_flight=3, captions_per_clip=0)
    with pytest.raises(DatasetError, match="no captions yet"):
        export_dataset(ds2, "parquet", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="unknown export format"):
        export_dataset(ds, "webdataset", tmp_path / "out")
    with pytest.raises(UsageError, match="unknown split"):
        export_dataset(ds, "parquet", tmp_path / "out", splits=("dev",))


def test_hostile_published_ids_cannot_name_files(tmp_path):
    src = tmp_path / "pub"
    src.mkdir()
    caps = {"../../etc/passwd": [["a"]] * 5, "line\nbreak": [["b"]] * 5, "ok": [["c"]] * 5}
    (src / "raw-captions.pkl").write_bytes(pickle.dumps(caps))
    ds = Dataset(tmp_path / "ds")
    import_published("clip4clip", src, ds, name="evil", media="none")
    split_dataset(ds, SplitConfig(ratios=(1, 1, 1), tolerance=1.0, min_captions=1))
    with pytest.raises(UsageError, match="cannot name a file"):
        export_dataset(ds, "clip4clip", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    r = export_dataset(ds, "clip4clip", tmp_path / "out", ids="clean")
    assert sum(v["clips"] for v in r.counts.values()) == 3
    listed = "".join((tmp_path / "out" / f"{s}_list.txt").read_text() for s in ("train", "val", "test"))
    assert sorted(listed.split()) == ["evil-etc_passwd", "evil-line_break", "evil-ok"]


def test_caption_order_is_natural_within_a_clip(split_ds, tmp_path):
    caps = split_ds.read_table("captions")
    clip = caps.column("clip_id")[0].as_py()
    ids = caps.column("caption_id").to_pylist()
    mine = [i for i, c in enumerate(caps.column("clip_id").to_pylist()) if c == clip]
    for i, new in zip(mine, ["ls-10", "ls-9", f"gen-{clip}-2", "ls-100", f"gen-{clip}-1"], strict=True):
        ids[i] = new
    split_ds.write_table("captions", caps.set_column(0, "caption_id", pa.array(ids)))
    export_dataset(split_ds, "parquet", tmp_path / "pq")
    rows = [
        r
        for s in ("train", "val", "test")
        for r in pq.read_table(tmp_path / "pq" / f"{s}.parquet").to_pylist()
    ]
    got = next(r for r in rows if r["clip_id"] == clip)["caption_ids"]
    assert got == ["ls-9", "ls-10", "ls-100", f"gen-{clip}-1", f"gen-{clip}-2"]
