"""A review's verdict reaches every reader of captions: the clip listing, the split, the export and the card."""

from __future__ import annotations

from dvtr_data.clips_listing import list_clips
from dvtr_data.dataset import Dataset
from dvtr_data.lineage import captions_on_current_clips
from dvtr_data.schemas.records import ReviewRow
from dvtr_data.splits.build import accepted_caption_counts
from dvtr_data.testing.tables import write_generated_dataset


def test_a_rejected_caption_is_no_longer_accepted_anywhere(tmp_path):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=4, clips_per_flight=(2, 2), seed=3)
    ds = Dataset(ds.root)
    caps = ds.read_table("captions").to_pylist()
    target = caps[0]
    clip = target["clip_id"]
    before = sum(1 for c in caps if c["clip_id"] == clip and c["accepted"])
    review = ReviewRow(review_id="r1", caption_id=target["caption_id"], clip_id=clip, status="rejected",
                       reviewer="reviewer@x", author=target["annotator"], reason="wrong scene")
    ds.write_table("reviews", [review.as_dict()])
    seen = {c["caption_id"]: c["accepted"] for c in captions_on_current_clips(ds).to_pylist()}
    assert seen[target["caption_id"]] is False
    assert sum(seen[c["caption_id"]] for c in caps if c["clip_id"] == clip) == before - 1
    listed = {c.clip_id: c for c in list_clips(ds.root)}
    assert listed[clip].captions_accepted == before - 1
    assert accepted_caption_counts(captions_on_current_clips(ds))[clip] == before - 1
    assert ds.read_table("captions").to_pylist()[0]["accepted"] is True  # the captions table itself is not changed
