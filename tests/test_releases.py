"""Releases that do not move (issue 13 item 5): freeze, grow the dataset, re-split, diff.

The dataset grows the way a team's does: a generated dataset of 16 flights is written whole into a scratch
folder, and the dataset under test first gets only its first 10 flights with their first 3 clips each; "ingesting
more" then writes the whole tables, so every earlier clip and caption is byte-identical and the new clips (6 new
flights, plus the later windows of the 10 old flights) are known by construction, not from the code under test.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dvtr_data.audit import audit_dataset, render
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.hashing import sha256_file
from dvtr_data.splits.build import SplitConfig, split_dataset
from dvtr_data.splits.releases import compare, freeze_release, frozen_splits, list_releases
from dvtr_data.testing.tables import write_generated_dataset

OLD_FLIGHTS = 10
OLD_WINDOWS = 3  # clips kept per old flight before the dataset grows
CFG = SplitConfig(ratios=(0.6, 0.2, 0.2), near_duplicates=False, tolerance=0.5, stratify="none")


def _full_tables(tmp_path: Path) -> dict[str, object]:
    src, _ = write_generated_dataset(tmp_path / "full", n_flights=16, clips_per_flight=(4, 6), seed=3)
    return {name: src.read_table(name) for name in ("flights", "clips", "captions")}


def _write(ds: Dataset, tables: dict[str, object], *, grown: bool) -> None:
    """The first state (old flights, first windows) or the grown one (everything)."""
    clips = tables["clips"]
    flights = tables["flights"]
    captions = tables["captions"]
    if not grown:
        old_fids = flights.column("flight_id").to_pylist()[:OLD_FLIGHTS]
        keep = pc.and_(
            pc.is_in(clips.column("flight_id"), value_set=flights.column("flight_id").slice(0, OLD_FLIGHTS)),
            pc.less(clips.column("window_index"), OLD_WINDOWS),
        )
        clips = clips.filter(keep)
        flights = flights.filter(pc.is_in(flights.column("flight_id"), value_set=pa.array(old_fids)))
        captions = captions.filter(pc.is_in(captions.column("clip_id"), value_set=clips.column("clip_id")))
    ds.write_table("flights", flights)
    ds.write_table("clips", clips)
    ds.write_table("captions", captions)


def _splits(ds: Dataset) -> dict[str, str]:
    t = ds.read_table("splits")
    return dict(zip(t.column("clip_id").to_pylist(), t.column("split").to_pylist(), strict=True))


@pytest.fixture
def grown(tmp_path: Path):
    """A dataset split and frozen as v1, then grown; returns (dataset, splits at v1, the full tables)."""
    tables = _full_tables(tmp_path)
    ds = Dataset(tmp_path / "ds").create()
    _write(ds, tables, grown=False)
    result = split_dataset(ds, CFG, freeze="v1")
    assert result.release is not None
    v1 = _splits(ds)
    _write(ds, tables, grown=True)
    return ds, v1, tables


def test_freeze_writes_files_manifest_and_a_row_whose_hashes_match(tmp_path: Path):
    tables = _full_tables(tmp_path)
    ds = Dataset(tmp_path / "ds").create()
    _write(ds, tables, grown=False)
    split_dataset(ds, CFG)
    manifest = freeze_release(ds, "v1")
    folder = ds.root / "releases" / "v1"
    assert sorted(p.name for p in folder.iterdir()) == ["captions.parquet", "manifest.json", "splits.parquet"]
    # counts, recounted from the splits table: every clip has 5 accepted captions, all 30 clips are eligible
    now = Counter(_splits(ds).values())
    assert sum(now.values()) == OLD_FLIGHTS * OLD_WINDOWS
    assert manifest["counts"]["clips"] == {s: now.get(s, 0) for s in ("train", "val", "test")}
    assert manifest["counts"]["captions"] == {s: 5 * now.get(s, 0) for s in ("train", "val", "test")}
    assert pq.read_table(folder / "captions.parquet").num_rows == 5 * OLD_FLIGHTS * OLD_WINDOWS
    (row,) = list_releases(ds)
    assert row["release"] == "v1" and row["previous"] is None and row["test_clips"] == now["test"]
    assert row["splits_sha256"] == sha256_file(folder / "splits.parquet")
    assert row["captions_sha256"] == sha256_file(folder / "captions.parquet")
    assert row["manifest_sha256"] == sha256_file(folder / "manifest.json")
    assert (
        json.loads((folder / "manifest.json").read_text())["files"]["splits.parquet"]["sha256"]
        == row["splits_sha256"]
    )
    with pytest.raises(UsageError, match="already frozen"):
        freeze_release(ds, "v1")
    with pytest.raises(UsageError, match="not usable"):
        freeze_release(ds, "../v2")
    with pytest.raises(UsageError, match="not usable"):
        freeze_release(ds, "now")


def test_resplit_keeps_every_frozen_clip_and_places_the_new_ones(grown):
    ds, v1, tables = grown
    result = split_dataset(ds, SplitConfig(**{**CFG.__dict__, "seed": 7}))
    after = _splits(ds)
    for clip, sp in v1.items():
        assert after[clip] == sp, f"{clip} moved from {sp} to {after[clip]}"
    all_clips = set(tables["clips"].column("clip_id").to_pylist())
    new = all_clips - set(v1)
    assert len(new) == len(all_clips) - OLD_FLIGHTS * OLD_WINDOWS
    assert all(after[c] in ("train", "val", "test") for c in new)  # every new clip (5 captions each) placed
    # a new clip of a flight with frozen clips goes where the flight is
    flight_split = {c.split("-")[0]: s for c, s in v1.items()}
    later_windows = [c for c in new if c.split("-")[0] in flight_split]
    assert later_windows, "the grown dataset must add windows to frozen flights"
    for c in later_windows:
        assert after[c] == flight_split[c.split("-")[0]]
    assert result.report["frozen"]["clips_kept"] == len(v1)
    assert result.report["frozen"]["releases"] == ["v1"]
    placed = Counter(after[c] for c in new)
    assert result.report["frozen"]["new_clips_placed"] == {
        s: placed.get(s, 0) for s in ("train", "val", "test")
    }


def test_without_the_release_the_same_resplit_would_move_test_clips(grown, tmp_path: Path):
    """The pin is what keeps the test split: the same re-split of a copy without the release moves clips."""
    ds, v1, _ = grown
    bare = Dataset(tmp_path / "bare")
    shutil.copytree(ds.root, bare.root)
    shutil.rmtree(bare.root / "releases")
    bare.table_path("releases").unlink()
    split_dataset(bare, SplitConfig(**{**CFG.__dict__, "seed": 7}))
    after = _splits(bare)
    assert any(after[c] != s for c, s in v1.items() if s == "test")


def test_diff_reports_exactly_what_was_added_changed_and_removed(grown):
    ds, v1, tables = grown
    split_dataset(ds, CFG)
    after = _splits(ds)
    new = {c: s for c, s in after.items() if c not in v1 and s in ("train", "val", "test")}
    changes = compare(ds, "v1")
    assert changes["from"] == "v1" and changes["to"] == "now"
    for s in ("train", "val", "test"):
        before_n = sum(1 for x in v1.values() if x == s)
        added = sum(1 for x in new.values() if x == s)
        assert changes["clips"][s] == {
            "before": before_n,
            "after": before_n + added,
            "added": added,
            "removed": 0,
            "moved_in": 0,
            "moved_out": 0,
        }
    assert changes["moved"]["count"] == 0
    assert changes["captions"]["added"] == 5 * len(new)
    assert changes["captions"]["changed"] == changes["captions"]["removed"] == 0

    # edit one frozen caption's text, and reject another: 1 changed, 1 removed (it is no longer accepted)
    caps = ds.read_table("captions").to_pylist()
    frozen_test = sorted(c for c, s in v1.items() if s == "test")[0]
    mine = [r for r in caps if r["clip_id"] == frozen_test]
    mine[0]["text"] = "a brand new sentence about the harbour"
    mine[1]["accepted"] = False
    ds.write_table("captions", caps)
    changes = compare(ds, "v1")
    assert (changes["captions"]["changed"], changes["captions"]["removed"]) == (1, 1)
    test_added = 5 * sum(1 for s in new.values() if s == "test")
    assert changes["captions"]["by_split"]["test"] == {"added": test_added, "changed": 1, "removed": 1}
    assert changes["captions"]["examples"]["changed"][0]["after"] == "a brand new sentence about the harbour"

    # freezing v2 records the same diff, and v1 -> v2 equals v1 -> now
    manifest = split_dataset(ds, CFG, freeze="v2").release
    assert manifest["previous"] == "v1"
    between = compare(ds, "v1", "v2")
    now = compare(ds, "v1")
    assert {k: v for k, v in between.items() if k != "to"} == {k: v for k, v in now.items() if k != "to"}
    assert manifest["changes_since_previous"]["captions"] == between["captions"]
    assert compare(ds, "v2")["captions"]["added"] == 0


def test_audit_and_card_say_what_changed(grown):
    from rich.console import Console

    from dvtr_data.audit.card import card_audit

    ds, v1, _ = grown
    split_dataset(ds, CFG)
    report = audit_dataset(ds, compare="v1")
    added = sum(1 for c in _splits(ds) if c not in v1)
    assert report["releases"]["captions"]["added"] == 5 * added
    assert json.loads((ds.root / "audit.json").read_text())["releases"]["from"] == "v1"
    console = Console(width=80, record=True)
    render(report, console)
    text = console.export_text()
    assert "changes from release v1 to now" in text and f"{5 * added} added" in text
    card = card_audit(ds)
    assert card["releases"]["from"] == "v1" and card["releases"]["captions_added"] == 5 * added
    assert [r["name"] for r in card["releases"]["list"]] == ["v1"]
    with pytest.raises(UsageError, match="no release"):
        audit_dataset(ds, compare="v9", write=False)


def test_a_tampered_release_is_refused(grown):
    ds, _, _ = grown
    path = ds.root / "releases" / "v1" / "splits.parquet"
    t = pq.read_table(path)
    pq.write_table(t.slice(1), path)
    with pytest.raises(DatasetError, match="sha256"):
        frozen_splits(ds)
    with pytest.raises(DatasetError, match="sha256"):
        split_dataset(ds, CFG)


def test_a_frozen_clip_whose_boundaries_moved_keeps_its_split_under_its_new_id(grown):
    """A re-ingest that moves a clip's end gives it a new id; `clip_lineage` says which; the pin follows it."""
    from datetime import UTC, datetime

    ds, v1, _ = grown
    old = sorted(c for c, s in v1.items() if s == "test")[0]
    flight, start, _end = old.split("-")
    new_id = f"{flight}-{start}-{int(start) + 140:07d}"
    clips = ds.read_table("clips").to_pylist()
    for r in clips:
        if r["clip_id"] == old:
            r["clip_id"], r["end_frame"] = new_id, int(start) + 140
    ds.write_table("clips", clips)  # captions still name the old id, as after a real re-ingest
    ds.write_table(
        "clip_lineage",
        [
            {
                "old_clip_id": old,
                "new_clip_id": new_id,
                "flight_id": flight,
                "reason": "boundaries moved",
                "overlap": 1.0,
                "recorded_at": datetime(2026, 1, 2, tzinfo=UTC),
            }
        ],
    )
    assert frozen_splits(ds)[0][new_id] == "test"
    split_dataset(ds, SplitConfig(**{**CFG.__dict__, "seed": 7}))
    assert _splits(ds)[new_id] == "test"
    changes = compare(ds, "v1")
    added = {c for c, s in _splits(ds).items() if s in ("train", "val", "test")} - v1.keys() - {new_id}
    assert changes["renamed"] == {"count": 1, "examples": [{"from": old, "to": new_id}]}
    assert changes["clips_added"]["count"] == len(added)  # the renamed clip is neither added nor removed
    assert changes["clips_removed"]["count"] == 0 and changes["moved"]["count"] == 0
    assert changes["clips"]["test"]["added"] == sum(1 for c in added if _splits(ds)[c] == "test")
    # its 5 captions follow it: unchanged
    assert changes["captions"]["changed"] == 0 and changes["captions"]["removed"] == 0


def test_card_pages_show_the_releases(grown, tmp_path: Path):
    from dvtr_data.card.render import write_card

    ds, _, _ = grown
    split_dataset(ds, CFG)
    result = write_card(ds, tmp_path / "card")
    md = result.markdown.read_text()
    html = result.html.read_text()
    assert "Frozen releases (1): v1" in md and "Changes from v1 to now" in md
    assert "<h3>Releases</h3>" in html


def test_release_commands(grown):
    from typer.testing import CliRunner

    from dvtr_data.cli.release import release_app

    ds, v1, _ = grown
    split_dataset(ds, CFG)
    runner = CliRunner()
    res = runner.invoke(release_app, ["freeze", "--dataset", str(ds.root), "v2"])
    assert res.exit_code == 0, res.output
    assert "frozen release v2" in res.output
    res = runner.invoke(release_app, ["list", "--dataset", str(ds.root)])
    assert res.exit_code == 0 and "v1" in res.output and "v2" in res.output
    res = runner.invoke(release_app, ["diff", "--dataset", str(ds.root), "v1", "v2", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["from"] == "v1" and doc["to"] == "v2"
    assert doc["captions"]["added"] == 5 * (len(_splits(ds)) - len(v1))


def test_a_frozen_test_clip_that_lost_its_captions_stays_in_test(grown):
    """Eligibility is not re-judged for frozen clips: a rejected caption never moves a published test clip."""
    ds, v1, _ = grown
    clip = sorted(c for c, s in v1.items() if s == "test")[0]
    caps = ds.read_table("captions").to_pylist()
    for r in caps:
        if r["clip_id"] == clip:
            r["accepted"] = False
    ds.write_table("captions", caps)
    split_dataset(ds, CFG)
    assert _splits(ds)[clip] == "test"
    assert compare(ds, "v1")["captions"]["by_split"]["test"]["removed"] == 5


def test_a_new_flight_glued_to_a_frozen_test_clip_by_a_human_caption_goes_to_test(grown):
    """Groups are not only flights: a new clip sharing a human caption with a frozen test clip joins its group.
    The new flight is one that the same split without the shared caption puts in train."""
    ds, v1, tables = grown
    test_clip = sorted(c for c, s in v1.items() if s == "test")[0]
    new_flights = tables["flights"].column("flight_id").to_pylist()[OLD_FLIGHTS:]
    split_dataset(ds, CFG)
    before = _splits(ds)
    flight = next(f for f in new_flights if before[f"{f}-0000000-0000150"] == "train")
    caps = ds.read_table("captions").to_pylist()
    text = "a red kayak passes under the old stone bridge"
    for clip in (test_clip, f"{flight}-0000000-0000150"):
        row = next(r for r in caps if r["clip_id"] == clip)
        row["text"], row["origin"] = text, "human"
    ds.write_table("captions", caps)
    split_dataset(ds, CFG)
    after = _splits(ds)
    assert after[test_clip] == "test"
    assert {after[c] for c in after if c.startswith(flight)} == {"test"}
