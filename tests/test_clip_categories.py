"""Annotated categories: one vote per annotator and clip, the majority kept with its votes, ties shown as ties;
the split stratifies on them and the card reads them."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from dvtr_data.annotation.categories import annotated_categories, category_votes, write_clip_categories
from dvtr_data.dataset import Dataset

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 1, 2, tzinfo=UTC)


def cap(clip: str, who: str, cat: str | None, *, ann: int, when: datetime = T0, status: str = "submitted",
        flags: list[str] | None = None) -> dict:
    return {"clip_id": clip, "annotator": who, "category": cat, "status": status, "ls_annotation_id": ann,
            "updated_at": when, "created_at": when, "flags": flags or []}


def test_majority_ties_latest_choice_and_ignored_rows():
    rows = [
        # c1: forest, forest, water -> forest with 2 of 3 votes; annotator a wrote two caption slots (one vote)
        cap("c1", "a", "forest", ann=1), cap("c1", "a", "forest", ann=1),
        cap("c1", "b", "forest", ann=2), cap("c1", "c", "water", ann=3),
        # c2: coast against suburb: a tie, no majority
        cap("c2", "a", "coast", ann=4), cap("c2", "b", "suburb", ann=5),
        # c3: a changed their mind in a later annotation; b skipped, c's annotation was deleted in Label Studio
        cap("c3", "a", "forest", ann=6, when=T0), cap("c3", "a", "water", ann=7, when=T1),
        cap("c3", "b", "forest", ann=8, status="skipped"),
        cap("c3", "c", "forest", ann=9, flags=["deleted_in_labelstudio"]),
        # c4: nobody chose a category
        cap("c4", "a", None, ann=10),
    ]
    got = {r["clip_id"]: r for r in category_votes(rows)}
    assert set(got) == {"c1", "c2", "c3"}
    assert got["c1"] == {"clip_id": "c1", "category": "forest", "votes": {"forest": 2, "water": 1},
                         "n_annotators": 3, "agreement": pytest.approx(2 / 3, abs=1e-4), "tie": False}
    assert got["c2"]["category"] is None and got["c2"]["tie"] and got["c2"]["agreement"] == 0.5
    assert got["c2"]["votes"] == {"coast": 1, "suburb": 1}
    assert (got["c3"]["category"], got["c3"]["n_annotators"], got["c3"]["agreement"]) == ("water", 1, 1.0)


@pytest.fixture
def generated(tmp_path):
    """A generated dataset whose clips carry no category: only the annotators' choices can give one."""
    from dvtr_data.testing.tables import write_generated_dataset

    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=12, clips_per_flight=5, captions_per_clip=3)
    clips = ds.read_table("clips")
    i = clips.schema.get_field_index("category")
    with ds.writing("ingest"):
        ds.write_table("clips", clips.set_column(i, clips.schema.field(i), pa.nulls(clips.num_rows, pa.string())))
    return ds


def test_pull_table_feeds_the_split_and_the_card(generated):
    from dvtr_data.card.publishing import category_votes as card_votes
    from dvtr_data.card.publishing import clip_categories as card_categories
    from dvtr_data.splits.build import SplitConfig, split_dataset

    ds: Dataset = generated
    captions = ds.read_table("captions").to_pylist()
    want = {r["clip_id"]: r["category"] for r in captions}  # the generator gives every caption of a clip one category
    tied = sorted(want)[:2]
    # two annotators disagree on two clips: those become ties
    extra = [
        {**captions[0], "caption_id": f"ls-tie-{k}-{n}", "clip_id": cid, "annotator": f"x{n}",
         "category": f"cat{n}", "ls_annotation_id": 10_000 + 2 * k + n}
        for k, cid in enumerate(tied) for n in range(2)
    ]
    for r in captions:
        r["annotator"] = "a"
    with ds.writing("annotate"):
        ds.replace_rows("captions", "annotate", captions + extra)
        assert write_clip_categories(ds) == len(want)
    table = ds.read_table("clip_categories").to_pylist()
    by = {r["clip_id"]: r for r in table}
    for cid in tied:  # "a" chose the generated category, x0 and x1 chose others: three one-vote categories
        assert by[cid]["tie"] and by[cid]["category"] is None and by[cid]["n_annotators"] == 3
    majority = {c: v for c, v in want.items() if c not in tied}
    assert annotated_categories(ds) == {**majority, **dict.fromkeys(tied)}

    result = split_dataset(ds, SplitConfig(min_captions=1))
    assert result.report["stratified_by"] == "category"
    assert set(result.report["strata"]) == set(majority.values()) | {"-"}

    clips = ds.read_table("clips")
    mapping, source = card_categories(ds, clips)
    assert source == "clip_categories" and {c: mapping[c] for c in majority} == majority
    votes = card_votes(ds)
    assert (votes["clips"], votes["majority"], votes["no_majority"]) == (len(want), len(majority), len(tied))


def test_without_votes_the_split_has_no_category_to_stratify_on(generated):
    from dvtr_data.splits.build import SplitConfig, split_dataset

    result = split_dataset(generated, SplitConfig(min_captions=1))
    assert result.report["stratified_by"] != "category"
