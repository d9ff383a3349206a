"""Imports of published sets: verbatim ids, exact round trips, videos beside the captions, and hostile input."""

from __future__ import annotations

import filecmp
import json
import pickle
import pickletools
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.errors import InputError, UsageError
from dvtr_data.export import export_dataset, verify_export
from dvtr_data.importers import clean_ids, import_published, read_amfmn

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "captions"
ASLVT = REAL / "huangjh98_ASLVT"
CAPERA = REAL / "yakoubbazi_CapEra"
PRECOMP = REAL / "ZhanYang-nwpu_PE-RSITR"
C4C_FILES = ("raw-captions.pkl", "train_list.txt", "val_list.txt", "test_list.txt")


def same_c4c(src: Path, out: Path) -> None:
    """Pickle contents equal (key order included) and list files byte-identical."""
    a = pickle.loads((src / "raw-captions.pkl").read_bytes())
    b = pickle.loads((out / "raw-captions.pkl").read_bytes())
    assert a == b and list(a) == list(b)
    for name in C4C_FILES[1:]:
        if (src / name).exists():
            assert (src / name).read_bytes() == (out / name).read_bytes(), name


def need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"real caption sets not present at {path} (../shared/realdata is optional)")


def write_c4c(folder: Path, captions: dict, lists: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "raw-captions.pkl").write_bytes(pickle.dumps(captions, protocol=4))
    for split, ids in lists.items():
        (folder / f"{split}_list.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    return folder


def make_video(path: Path, frames: int = 12, fps: int = 12, size: int = 64, seed: int = 0) -> None:
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        base = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, k, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


SMALL = {
    "Party_042 ": [["there", "are", "people"], ["a", "party"], ["tables"], ["chairs"], ["lights"]],
    "Party_042 1": [["an", "outdoor", "party"], ["music"], ["dancing"], ["a", "tent"], ["night"]],
    "Video_291": [["a", "road"], ["cars"], [], ["trees"], ["a", "bridge"]],
}
SMALL_LISTS = {"train": ["Party_042 1"], "val": ["Video_291"], "test": ["Party_042 "]}


# ---------------------------------------------------------------------------------------------------------
def test_clean_ids_keep_published_ids_apart():
    assert clean_ids("usrd", ["Party_042 ", "Party_042 1", "a/b c", "Party_042"]) == [
        "usrd-Party_042",
        "usrd-Party_042_1",
        "usrd-a_b_c",
        "usrd-Party_042-2",
    ]


def test_import_keeps_ids_verbatim_and_round_trips(tmp_path):
    src = write_c4c(tmp_path / "pub", SMALL, SMALL_LISTS)
    ds = Dataset(tmp_path / "ds")
    r = import_published("clip4clip", src, ds, name="usrd", media="none")
    assert (r.videos, r.captions, r.splits) == (3, 15, {"test": 1, "train": 1, "val": 1})
    imports = ds.read_table("imports").to_pylist()
    assert [i["source_id"] for i in imports] == list(SMALL)
    assert [i["clip_id"] for i in imports] == ["usrd-Party_042", "usrd-Party_042_1", "usrd-Video_291"]
    caps = ds.read_table("captions").to_pylist()
    assert {c["source_id"] for c in caps} == set(SMALL)
    empty = [c for c in caps if c["tokens"] == []]
    assert len(empty) == 1 and empty[0]["flags"] == ["empty"] and empty[0]["text"] == ""
    clips = ds.read_table("clips").to_pylist()
    assert all(c["flight_id"] == c["clip_id"] and c["duration_s"] == 0.0 for c in clips)
    assert {c["category"] for c in clips} == {"Party", "Video"}
    out = export_dataset(ds, "clip4clip", tmp_path / "out").out
    same_c4c(src, out)
    # importing again replaces, never duplicates
    import_published("clip4clip", src, ds, name="usrd", media="none")
    assert ds.read_table("captions").num_rows == 15 and ds.read_table("clips").num_rows == 3


def test_import_with_videos_beside_the_captions(tmp_path):
    src = write_c4c(tmp_path / "pub", SMALL, SMALL_LISTS)
    for k, vid in enumerate(SMALL):
        make_video(src / "Videos" / f"{vid}.mp4", frames=10 + k, seed=k)
    ds = Dataset(tmp_path / "ds")
    r = import_published("clip4clip", src, ds, name="usrd", media="copy")
    assert r.media_found == 3 and r.media_missing == 0
    clips = {c["clip_id"]: c for c in ds.read_table("clips").to_pylist()}
    c = clips["usrd-Party_042"]
    assert c["n_frames"] == 10 and abs(c["duration_s"] - 10 / 12) < 1e-6 and c["end_frame"] == 10
    assert (ds.root / c["clip_path"]).is_file() and (ds.root / c["keyframe_paths"][0]).is_file()
    out = export_dataset(ds, "clip4clip", tmp_path / "out", media="copy").out
    assert (out / "Videos" / "Party_042 .mp4").is_file()  # the trailing space the MSAM loader expects
    assert filecmp.cmp(out / "Videos" / "Party_042 1.mp4", src / "Videos" / "Party_042 1.mp4", shallow=False)
    same_c4c(src, out)


def test_generated_dataset_round_trips_through_its_own_export(tmp_path):
    from dvtr_data.splits import SplitConfig, split_dataset
    from dvtr_data.testing.tables import write_generated_dataset

    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=30, clips_per_flight=(2, 6), seed=6)
    split_dataset(ds, SplitConfig(tolerance=0.1))
    first = export_dataset(ds, "clip4clip", tmp_path / "first", media="none").out
    again = Dataset(tmp_path / "again")
    r = import_published("clip4clip", first, again, name="mine", media="none")
    assert r.captions == ds.read_table("captions").num_rows
    second = export_dataset(again, "clip4clip", tmp_path / "second").out
    for name in C4C_FILES:
        assert filecmp.cmp(first / name, second / name, shallow=False), name
    assert verify_export(second) == []


# ---------------------------------------------------------------------------------------------------------
# real published sets
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("name", ["USRD", "UMCRD"])
def test_real_clip4clip_round_trip_is_exact(tmp_path, name):
    src = ASLVT / name
    need(src)
    ds = Dataset(tmp_path / "ds")
    r = import_published("clip4clip", src, ds, name=name.lower())
    assert r.videos == {"USRD": 2864, "UMCRD": 4235}[name]
    out = export_dataset(ds, "clip4clip", tmp_path / "out").out
    same_c4c(src, out)
    for fname in C4C_FILES:  # the real files even come back byte for byte
        assert filecmp.cmp(src / fname, out / fname, shallow=False), fname
    with open(src / "raw-captions.pkl", "rb") as fh:
        ops = {op.name for op, _, _ in pickletools.genops(fh.read())}
    assert (
        "GLOBAL" not in ops and "STACK_GLOBAL" not in ops
    )  # the file is plain data; we never unpickled it unsafely
    if name == "USRD":
        ids = {i["source_id"] for i in ds.read_table("imports").to_pylist()}
        assert "Party_042 " in ids and "Party_042 1" in ids
        # and the same through the CLI's default export location
        assert export_dataset(ds, "clip4clip").out == ds.root / "exports" / "clip4clip"


@pytest.mark.realdata
def test_real_capera_round_trip(tmp_path):
    need(CAPERA)
    ds = Dataset(tmp_path / "ds")
    r = import_published("capera", CAPERA, ds, name="capera")
    assert r.videos == 2864 and r.captions == 14320 and r.splits == {"test": 1391, "train": 1473}
    assert any("kept apart by split" in n for n in r.notes)
    out = export_dataset(ds, "parquet", tmp_path / "out").out
    got = {}
    for split in ("train", "test"):
        for row in pq.read_table(out / f"{split}.parquet").to_pylist():
            got[(split, row["video_id"])] = row["captions"]
    want = {}
    for split in ("train", "test"):
        data = json.loads((CAPERA / f"CapERA_DATASET_{split}.json").read_text())
        for e in data["ERA_caption"]:
            want[(split, e["video_id"])] = e["annotation"]["English_caption"]
    assert got == want


@pytest.mark.realdata
def test_real_amfmn_reads_both_filename_layouts(tmp_path):
    src = PRECOMP / "rsitmd_precomp"
    need(src)
    pub = read_amfmn(src)
    assert pub.meta["captions_per_filename_line"] == {"train": 5, "test": 1}
    by_split = {}
    for it in pub.items:
        by_split.setdefault(it.split, []).append(it)
        assert len(it.captions) == 5
    assert len(by_split["train"]) == 4291 and len(by_split["test"]) == 452
    caps = (src / "test_caps.txt").read_text().split("\n")[:-1]
    assert [c for it in by_split["test"] for c in it.captions] == caps


def test_amfmn_round_trip_with_images(tmp_path):
    from PIL import Image

    src = tmp_path / "precomp"
    (src / "images").mkdir(parents=True)
    names = ["boat_0.tif", "airport_1.tif", "farm_2.tif"]
    for k, n in enumerate(names):
        Image.fromarray(np.full((32, 32, 3), 40 * k, np.uint8)).save(src / "images" / n)
    caps = {n: [f"{n.split('_')[0]} caption {j}" for j in range(5)] for n in names}
    (src / "train_caps.txt").write_text("".join(f"{c}\n" for n in names[:2] for c in caps[n]))
    (src / "train_filename.txt").write_text("".join(f"{n}\n" for n in names[:2]))  # one line per image
    (src / "test_caps.txt").write_text("".join(f"{c}\n" for c in caps[names[2]]))
    (src / "test_filename.txt").write_text("".join(f"{names[2]}\n" for _ in range(5)))  # one per caption
    ds = Dataset(tmp_path / "ds")
    r = import_published("amfmn", src, ds, name="mini")
    assert r.media_found == 3 and r.splits == {"train": 2, "test": 1}
    out = export_dataset(ds, "amfmn", tmp_path / "out", splits=("train", "test")).out
    assert (out / "train_caps.txt").read_text() == (src / "train_caps.txt").read_text()
    # one filename line per train image, as published (and as AMFMN's train.py asserts)
    assert (out / "train_filename.txt").read_text() == (src / "train_filename.txt").read_text()
    assert (out / "test_filename.txt").read_text() == (src / "test_filename.txt").read_text()
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(names)


# ---------------------------------------------------------------------------------------------------------
# bad and hostile input: one clear message, and the dataset is left as it was
# ---------------------------------------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def assert_untouched(ds: Dataset) -> None:
    assert not ds.exists() and not ds.root.exists()


def test_hostile_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    src = tmp_path / "pub"
    src.mkdir()
    (src / "raw-captions.pkl").write_bytes(pickle.dumps({"a": _Evil(str(marker))}))
    ds = Dataset(tmp_path / "ds")
    with pytest.raises(InputError, match="refused.*posix.system|refused.*os.system|refused.*nt.system"):
        import_published("clip4clip", src, ds)
    assert not marker.exists()
    assert_untouched(ds)


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_pickle_is_one_clear_error(tmp_path, cut):
    src = write_c4c(tmp_path / "pub", SMALL, SMALL_LISTS)
    data = (src / "raw-captions.pkl").read_bytes()
    (src / "raw-captions.pkl").write_bytes(data[: int(len(data) * cut)])
    ds = Dataset(tmp_path / "ds")
    with pytest.raises(InputError, match="not a readable pickle"):
        import_published("clip4clip", src, ds)
    assert_untouched(ds)


@pytest.mark.parametrize(
    "captions,match",
    [
        (["not", "a", "dict"], "expected a dict"),
        ({"a": "a caption as a string"}, "not a list of token lists"),
        ({1: [["a"]]}, "is not a string"),
    ],
)
def test_pickle_of_the_wrong_shape(tmp_path, captions, match):
    src = tmp_path / "pub"
    src.mkdir()
    (src / "raw-captions.pkl").write_bytes(pickle.dumps(captions))
    with pytest.raises(InputError, match=match):
        import_published("clip4clip", src, tmp_path / "ds")


def test_list_ids_are_matched_verbatim(tmp_path):
    src = write_c4c(tmp_path / "pub", SMALL, {"train": ["Party_042"]})  # the space was stripped
    with pytest.raises(InputError, match="check trailing spaces"):
        import_published("clip4clip", src, tmp_path / "ds")
    src = write_c4c(tmp_path / "pub2", SMALL, {"train": ["Video_291"], "test": ["Video_291"]})
    with pytest.raises(InputError, match="also in train_list.txt"):
        import_published("clip4clip", src, tmp_path / "ds")


def capera_file(path: Path, ids: list[str]) -> None:
    path.write_text(
        json.dumps(
            {
                "ERA_caption": [
                    {"video_id": v, "annotation": {"English_caption": [f"{v} caption {k}" for k in range(5)]}}
                    for v in ids
                ]
            }
        )
    )


def test_capera_repeated_ids(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    capera_file(good / "CapERA_DATASET_train.json", ["Baseball_001.mp4", "Baseball_002.mp4"])
    capera_file(good / "CapERA_DATASET_test.json", ["Baseball_001.mp4"])
    ds = Dataset(tmp_path / "ds")
    r = import_published("capera", good, ds, name="capera")
    assert r.videos == 3 and any("kept apart by split" in n for n in r.notes)
    assert sorted(ds.read_table("imports").column("clip_id").to_pylist()) == [
        "capera-test-Baseball_001",
        "capera-train-Baseball_001",
        "capera-train-Baseball_002",
    ]

    same = tmp_path / "same"
    same.mkdir()
    capera_file(same / "part_a.json", ["Baseball_001.mp4"])
    capera_file(same / "part_b.json", ["Baseball_001.mp4"])
    with pytest.raises(
        InputError, match=r"both hold video id 'Baseball_001.mp4'.*do not tell their splits apart"
    ):
        import_published("capera", same, tmp_path / "ds2")
    assert_untouched(Dataset(tmp_path / "ds2"))

    twice = tmp_path / "twice"
    twice.mkdir()
    capera_file(twice / "CapERA_DATASET_train.json", ["A_001.mp4", "A_001.mp4"])
    with pytest.raises(InputError, match="appears twice"):
        import_published("capera", twice, tmp_path / "ds3")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "CapERA_DATASET_train.json").write_text('{"ERA_caption": [{"video_id": "x"')
    with pytest.raises(InputError, match="not valid JSON"):
        import_published("capera", broken, tmp_path / "ds4")


def test_amfmn_misaligned_files(tmp_path):
    src = tmp_path / "p"
    src.mkdir()
    (src / "train_caps.txt").write_text("a\nb\nc\n")
    (src / "train_filename.txt").write_text("x.tif\ny.tif\n")
    with pytest.raises(InputError, match="do not match"):
        import_published("amfmn", src, tmp_path / "ds")


def test_usage_errors(tmp_path):
    src = write_c4c(tmp_path / "pub", SMALL, SMALL_LISTS)
    with pytest.raises(UsageError, match="unknown import format"):
        import_published("msrvtt", src, tmp_path / "ds")
    with pytest.raises(UsageError, match="--name"):
        import_published("clip4clip", src, tmp_path / "ds", name="Bad Name")
    with pytest.raises(InputError, match="no such file"):
        import_published("clip4clip", tmp_path / "missing", tmp_path / "ds")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not a dvtr-data dataset"):
        import_published("clip4clip", src, tmp_path / "junk")


def test_clean_id_clash_with_another_source(tmp_path):
    from dvtr_data.importers.common import PublishedItem, write_import

    ds = Dataset(tmp_path / "ds")
    write_import(
        ds,
        source="a",
        fmt="clip4clip",
        items=[PublishedItem("b-x", ["c"])],
        media_mode="none",
        media_kind="video",
        meta={},
        notes=[],
    )  # clip id a-b-x
    ds2 = Dataset(tmp_path / "ds")
    write_import(
        ds2,
        source="a-b",
        fmt="clip4clip",
        items=[PublishedItem("y", ["c"])],
        media_mode="none",
        media_kind="video",
        meta={},
        notes=[],
    )
    with pytest.raises(InputError, match="already exists"):
        write_import(
            ds2,
            source="a-b",
            fmt="clip4clip",
            items=[PublishedItem("x", ["c"])],
            media_mode="none",
            media_kind="video",
            meta={},
            notes=[],
        )
