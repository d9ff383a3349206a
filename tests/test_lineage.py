"""Captions follow their clip when a re-ingest moves its boundaries, or are counted as orphans; never lost.

Hand-built cases fix the carry rule (the new clip holding most, and at least half, of the old clip's frames);
a real re-ingest of a generated flight with other window settings checks that ingest leaves caption rows alone,
writes its own lineage table, and that readers see the captions on the new clips.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.ingest.windows import WindowRule
from dvtr_data.lineage import captions_on_current_clips, orphaned_caption_count, plan_lineage, resolve
from dvtr_data.schemas.records import CaptionRow
from dvtr_data.splits.build import accepted_caption_counts

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def clip(flight: str, a: int, b: int) -> dict:
    return {"clip_id": f"{flight}-{a:07d}-{b:07d}", "flight_id": flight, "start_frame": a, "end_frame": b}


A, B, D = clip("f1", 0, 50), clip("f1", 50, 100), clip("f1", 150, 200)
G = clip("f2", 0, 80)
A2, C2 = clip("f1", 0, 60), clip("f1", 75, 150)


def test_carry_rule_on_hand_built_clips():
    caps = [A["clip_id"]] * 3 + [B["clip_id"]] * 2 + [D["clip_id"]] * 4 + [G["clip_id"]] + ["usrd-video1"] * 5
    up = plan_lineage([A, B, D, G], [A2, C2], caption_clip_ids=caps, now=NOW)
    rows = {r["old_clip_id"]: r for r in up.rows}
    # A [0,50) lies wholly in A2 [0,60); B [50,100) shares 10 frames with A2 and 25 (half of 50) with C2
    assert rows[A["clip_id"]]["new_clip_id"] == A2["clip_id"] and rows[A["clip_id"]]["overlap"] == 1.0
    assert rows[B["clip_id"]]["new_clip_id"] == C2["clip_id"] and rows[B["clip_id"]]["overlap"] == 0.5
    # D [150,200) touches no new clip; G's flight has no clips any more
    assert rows[D["clip_id"]]["new_clip_id"] is None and rows[D["clip_id"]]["reason"].startswith("orphaned")
    assert rows[G["clip_id"]]["reason"] == "orphaned: flight no longer ingested"
    assert (up.moved, up.orphaned, up.captions_carried, up.captions_orphaned) == (2, 2, 5, 5)
    assert "5 caption(s) are orphaned" in up.message


def test_less_than_half_covered_is_an_orphan_and_unchanged_ids_need_no_row():
    old = clip("f1", 0, 100)
    up = plan_lineage([old], [clip("f1", 0, 40), clip("f1", 51, 140)], now=NOW)  # at most 49 of 100 frames
    assert [(r["old_clip_id"], r["new_clip_id"]) for r in up.rows] == [(old["clip_id"], None)]
    assert plan_lineage([A2], [A2], now=NOW).message is None


def test_chains_are_followed_and_a_clip_that_exists_again_is_itself():
    first = plan_lineage([A], [A2], now=NOW)  # A -> A2
    second = plan_lineage([A2], [clip("f1", 5, 60)], previous=first.rows, caption_clip_ids=[A["clip_id"]], now=NOW)
    mapping = {r["old_clip_id"]: r["new_clip_id"] for r in second.rows}
    assert resolve(A["clip_id"], mapping) == "f1-0000005-0000060" and second.captions_carried == 1
    back = plan_lineage([clip("f1", 5, 60)], [A], previous=second.rows, now=NOW)  # settings reverted
    assert A["clip_id"] not in {r["old_clip_id"] for r in back.rows}
    assert resolve(A["clip_id"], {r["old_clip_id"]: r["new_clip_id"] for r in back.rows}, {A["clip_id"]}) == A["clip_id"]


@pytest.fixture(scope="module")
def flight(tmp_path_factory) -> Path:
    from dvtr_data.synth.flights import render_flight
    from dvtr_data.synth.presets import tiny

    spec = next(s for s in tiny(0) if s.name == "tiny_long")  # 5.4 s, one shot
    return render_flight(spec, tmp_path_factory.mktemp("lineage"))


def caption(i: int, clip_id: str) -> dict:
    return CaptionRow(caption_id=f"ls-{i}", clip_id=clip_id, text=f"caption {i}", origin="human",
                      status="submitted", accepted=True, writer="annotate", tokens=["caption"]).as_dict()


def test_reingest_with_moved_boundaries_carries_captions_without_touching_them(flight, tmp_path):
    ds_dir = tmp_path / "ds"
    ingest([flight], ds_dir, IngestConfig(window=WindowRule(target_s=1.0, min_s=0.5, max_s=2.0), cut=False), workers=1)
    ds = Dataset(ds_dir)
    old = sorted(ds.read_table("clips").to_pylist(), key=lambda c: c["start_frame"])
    assert len(old) >= 4
    with ds.writing("annotate"):
        ds.replace_rows("captions", "annotate", [caption(2 * i + k, c["clip_id"]) for i, c in enumerate(old) for k in range(2)])
    before = ds.read_table("captions").to_pylist()

    report = ingest([flight], ds_dir, IngestConfig(window=WindowRule(target_s=2.5, min_s=1.0, max_s=5.0), cut=False),
                    workers=1)
    new = sorted(ds.read_table("clips").to_pylist(), key=lambda c: c["start_frame"])
    assert {c["clip_id"] for c in new}.isdisjoint({c["clip_id"] for c in old})  # every boundary moved
    assert ds.read_table("captions").to_pylist() == before  # ingest wrote no caption row

    # naive reference: each old clip goes to the new clip with the most shared frames, if at least half
    def expected(o: dict) -> str | None:
        best = max(new, key=lambda n: max(0, min(o["end_frame"], n["end_frame"]) - max(o["start_frame"], n["start_frame"])))
        shared = max(0, min(o["end_frame"], best["end_frame"]) - max(o["start_frame"], best["start_frame"]))
        return best["clip_id"] if 2 * shared >= o["end_frame"] - o["start_frame"] else None

    want = {c["clip_id"]: expected(c) for c in old}
    mapped = captions_on_current_clips(ds).to_pylist()
    for row in mapped:
        old_id = next(r["clip_id"] for r in before if r["caption_id"] == row["caption_id"])
        assert row["clip_id"] == (want[old_id] or old_id)
    n_orphans = 2 * sum(v is None for v in want.values())
    assert report.captions_orphaned == n_orphans == orphaned_caption_count(ds)
    assert report.clips_moved == sum(v is not None for v in want.values()) >= 3
    assert any("carried to the new clip" in w for w in report.warnings)
    counts = accepted_caption_counts(captions_on_current_clips(ds))
    assert sum(counts.values()) == len(before) - n_orphans
    assert set(counts) <= {c["clip_id"] for c in new}
    lineage = ds.read_table("clip_lineage").to_pylist()
    assert {r["old_clip_id"] for r in lineage} == set(want)
