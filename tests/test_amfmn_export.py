"""AMFMN precomp export and import: the files AMFMN's released code reads, and published files given back
byte for byte (one filename line per image in train/val, one per caption in test; captions verbatim)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError
from dvtr_data.export import export_dataset, verify_export
from dvtr_data.export.amfmn import caption_line, filename_layout
from dvtr_data.importers import import_published, read_amfmn

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
RSITMD = REALDATA / "captions" / "ZhanYang-nwpu_PE-RSITR" / "rsitmd_precomp"


def amfmn_reads(folder: Path, split: str) -> tuple[list[str], list[str]]:
    """The two files as AMFMN's loader reads them (binary lines, ``strip()``), for the assertions it makes."""
    caps = [ln.strip() for ln in (folder / f"{split}_caps.txt").read_bytes().split(b"\n")[:-1]]
    names = [ln.strip() for ln in (folder / f"{split}_filename.txt").read_bytes().split(b"\n")[:-1]]
    return [c.decode() for c in caps], [n.decode() for n in names]


# Captions with what a verbatim writer must keep: double spaces, a trailing space, an empty caption, a tab.
TRAIN = {
    "port_1.tif": ["many  boats are in the port .", "a port with boats . ", "boats", "", "the\tport is busy"],
    "farm_2.tif": ["green fields .", "a farm", "fields and a road", "a road next to fields .", "farmland ."],
}
VAL = {"beach_3.tif": ["a beach .", "sand and sea", "waves on a beach", "a  white beach", "the sea ."]}
TEST = {
    "bridge_4.tif": ["a bridge over a river .", "a river", "a long bridge", "cars on a bridge", "water"],
    "park_5.tif": ["a park .", "trees", "green trees in a park", "a pond in the park", "grass ."],
}


def write_precomp(folder: Path, *, val_per_caption: bool = True) -> Path:
    """A published-style precomp folder: train one filename per image, val and test one per caption."""
    folder.mkdir(parents=True)
    for split, data, per_caption in (
        ("train", TRAIN, False),
        ("val", VAL, val_per_caption),
        ("test", TEST, True),
    ):
        caps = "".join(f"{c}\n" for caps in data.values() for c in caps)
        names = "".join(f"{n}\n" * (len(caps_) if per_caption else 1) for n, caps_ in data.items())
        (folder / f"{split}_caps.txt").write_bytes(caps.encode())
        (folder / f"{split}_filename.txt").write_bytes(names.encode())
    return folder


def test_caption_line_keeps_text_and_replaces_only_line_breaks() -> None:
    assert caption_line("two  spaces and a trailing one ") == "two  spaces and a trailing one "
    assert caption_line("") == ""
    assert caption_line("tab\tkept") == "tab\tkept"
    assert caption_line("a\nb\r\nc\rd") == "a b c d"
    assert [filename_layout(s) for s in ("train", "val", "test")] == ["image", "image", "caption"]


def test_import_then_captions_only_export_gives_the_files_back(tmp_path: Path) -> None:
    src = write_precomp(tmp_path / "src")
    ds = Dataset(tmp_path / "ds")
    import_published("amfmn", src, ds, name="mini", media="none")
    r = export_dataset(ds, "amfmn", tmp_path / "out", media="none")
    out = r.out
    for split in ("train", "test"):
        for kind in ("caps", "filename"):
            assert (out / f"{split}_{kind}.txt").read_bytes() == (src / f"{split}_{kind}.txt").read_bytes(), (
                split,
                kind,
            )
    # val had one filename per caption in the source: it is written in the train layout (one per image)
    assert (out / "val_caps.txt").read_bytes() == (src / "val_caps.txt").read_bytes()
    assert (out / "val_filename.txt").read_text() == "beach_3.tif\n"
    assert not (out / "images").exists()
    assert r.counts["train"]["images"] == 2 and r.counts["train"]["captions"] == 10
    assert r.manifest["filename_lines"] == {
        "train": "one per image",
        "val": "one per image",
        "test": "one per caption",
    }
    assert verify_export(out) == []


def test_export_satisfies_amfmn_train_py_and_loader(tmp_path: Path) -> None:
    """train.py: ``assert len(caps) // 5 == len(fnames)`` on the train files; the loader pairs caption i with
    image ``i // im_div``, im_div = 5 when the files differ in length, else 1."""
    src = write_precomp(tmp_path / "src")
    ds = Dataset(tmp_path / "ds")
    import_published("amfmn", src, ds, name="mini", media="none")
    out = export_dataset(ds, "amfmn", tmp_path / "out", media="none").out
    caps, names = amfmn_reads(out, "train")
    assert len(caps) // 5 == len(names) == 2
    want = {n: [c.strip() for c in cs] for n, cs in {**TRAIN, **VAL, **TEST}.items()}
    for split in ("train", "val", "test"):
        caps, names = amfmn_reads(out, split)
        im_div = 5 if len(names) != len(caps) else 1
        got: dict[str, list[str]] = {}
        for i, c in enumerate(caps):
            got.setdefault(names[i // im_div], []).append(c)
        assert got == {n: want[n] for n in got} and len(got) == {"train": 2, "val": 1, "test": 2}[split]


def test_export_with_images_places_each_image_once(tmp_path: Path) -> None:
    from PIL import Image

    src = write_precomp(tmp_path / "src")
    (src / "images").mkdir()
    for k, name in enumerate([*TRAIN, *VAL, *TEST]):
        Image.fromarray(np.full((16, 16, 3), 30 * k, np.uint8)).save(src / "images" / name)
    ds = Dataset(tmp_path / "ds")
    import_published("amfmn", src, ds, name="mini")
    out = export_dataset(ds, "amfmn", tmp_path / "out", media="copy").out
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted([*TRAIN, *VAL, *TEST])
    for split in ("train", "test"):
        assert (out / f"{split}_filename.txt").read_bytes() == (src / f"{split}_filename.txt").read_bytes()


def test_own_clips_layout_and_skips(tmp_path: Path) -> None:
    """Our own clips (not imported): names are clip id + keyframe suffix; a clip with 4 captions is left out;
    a clip with 6 keeps its first 5; --media none needs no keyframe file, other media modes skip clips
    without one."""
    from dvtr_data.splits import SplitConfig, split_dataset
    from dvtr_data.testing.media import make_files
    from dvtr_data.testing.tables import write_generated_dataset

    ds, _ = write_generated_dataset(
        tmp_path / "ds", n_flights=12, clips_per_flight=(2, 3), with_files=True, seed=3
    )
    split_dataset(ds, SplitConfig(tolerance=0.2))
    caps = ds.read_table("captions").to_pylist()
    by_clip: dict[str, list[dict]] = {}
    for c in caps:
        by_clip.setdefault(c["clip_id"], []).append(c)
    short, long_ = sorted(by_clip)[:2]
    caps = [c for c in caps if c["caption_id"] != by_clip[short][-1]["caption_id"]]
    extra = dict(
        by_clip[long_][-1], caption_id=by_clip[long_][-1]["caption_id"] + "-zz", text="a sixth caption"
    )
    ds.write_table("captions", [*caps, extra])
    split_of = {r["clip_id"]: r["split"] for r in ds.read_table("splits").to_pylist()}
    n_per_split = {
        s: sum(1 for c, sp in split_of.items() if sp == s and c != short) for s in ("train", "val", "test")
    }

    r = export_dataset(ds, "amfmn", tmp_path / "none", media="none")
    assert r.skipped["too_few_captions"] == 1 and r.skipped["extra_captions_dropped"] == 1
    for split in ("train", "val", "test"):
        caps_lines, names = amfmn_reads(r.out, split)
        assert len(caps_lines) == 5 * n_per_split[split]
        assert len(names) == (5 if split == "test" else 1) * n_per_split[split]
        assert all(n.endswith(".jpg") and n[: -len(".jpg")] in split_of for n in names)
        assert "a sixth caption" not in caps_lines

    with_files = make_files(ds)
    r2 = export_dataset(ds, "amfmn", tmp_path / "link")
    placed = {p.name for p in (r2.out / "images").iterdir()}
    assert placed == {f"{c}.jpg" for c in with_files if c != short}
    assert r2.skipped["no_keyframe"] == len(split_of) - len(with_files)  # checked before the caption count
    for split in ("train", "val", "test"):
        assert set(amfmn_reads(r2.out, split)[1]) <= placed


def test_nothing_with_keyframes_is_an_error_but_captions_only_is_not(tmp_path: Path) -> None:
    src = write_precomp(tmp_path / "src")
    ds = Dataset(tmp_path / "ds")
    import_published("amfmn", src, ds, name="mini", media="none")
    with pytest.raises(DatasetError, match="nothing to export as amfmn"):
        export_dataset(ds, "amfmn", tmp_path / "out")  # default media: link, and no image was imported
    assert export_dataset(ds, "amfmn", tmp_path / "out2", media="none").counts["test"]["images"] == 2


@pytest.mark.realdata
@pytest.mark.slow
def test_real_rsitmd_round_trip_is_byte_exact(tmp_path: Path) -> None:
    if not RSITMD.is_dir():
        pytest.skip(f"{RSITMD} is absent")
    pub = read_amfmn(RSITMD)
    assert pub.meta["captions_per_filename_line"] == {"train": 5, "test": 1}
    ds = Dataset(tmp_path / "ds")
    import_published("amfmn", RSITMD, ds, name="rsitmd", media="none")
    r = export_dataset(ds, "amfmn", tmp_path / "out", media="none", hash_media=False)
    assert r.counts["train"]["images"] == 4291 and r.counts["test"]["images"] == 452
    for name in ("train_caps.txt", "train_filename.txt", "test_caps.txt", "test_filename.txt"):
        assert (r.out / name).read_bytes() == (RSITMD / name).read_bytes(), name
