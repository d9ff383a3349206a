"""The one-click start from a draft, data side: control names, the task fields behind the boxes, pull's reading.

A click on "draft i" swaps a caption box's empty box for one that starts out holding draft i (label_config.xml.j2);
these tests check what push writes for it and what pull makes of what Label Studio sends back, against the
in-memory stand-in. The page itself is driven in Chromium in tests/test_annotate_browser_drafts.py. Expected values
are worked out by hand in each test.
"""

from __future__ import annotations

from typing import Any

from dvtr_data.annotation import labeling
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.annotation.pull import annotation_rows
from dvtr_data.annotation.push import push
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer, make_dataset, write_precaptions

LOCAL = Connection("http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567", local=True)
DRAFTS = ["two cars drive along a road", "a boat crosses the lake slowly", "a red roof beside a field"]


def _box(name: str, text: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": "video", "type": "textarea", "value": {"text": [text]}}


def _pick(name: str, *choices: str) -> dict[str, Any]:
    return {"from_name": name, "to_name": "video", "type": "choices", "value": {"choices": list(choices)}}


def _rows(result: list[dict[str, Any]], areas: int = 1, drafts: list[str] = DRAFTS) -> list[dict[str, Any]]:
    task = {"id": 5, "data": {"clip_id": "c1", "draft_texts": drafts, **labeling.start_fields(drafts)}}
    ann = {"id": 11, "result": result, "completed_by": 1, "created_at": "2026-01-01T00:00:00Z"}
    return annotation_rows(task, ann, project_id=3, areas=areas, emails={1: "a@x.org"}, guideline=lambda _: "1",
                           min_words=3)


def test_draft_box_names_say_their_slot_and_draft():
    assert labeling.draft_box_name(0, 1) == "caption_1_draft_2"
    assert labeling.draft_box("caption_1_draft_2") == (0, 1)
    assert labeling.draft_box("caption_10_draft_5") == (9, 4)
    for other in ("caption_1", "caption_1_draft_0", "caption_1_draft_6", "caption_x_draft_1", "caption_0_draft_1",
                  "start_from", "caption_1_draft_", "qc"):
        assert labeling.draft_box(other) is None, other
    assert labeling.caption_slot("caption_1_draft_2") is None  # a draft box is not an extra caption area
    assert [labeling.start_name(i) for i in range(3)] == ["start_from", "start_from_2", "start_from_3"]


def test_start_fields_offer_each_trained_draft_and_no_noise_draft():
    trained = labeling.start_fields(DRAFTS[:2])
    assert trained["start_choices"] == [{"value": "draft 1"}, {"value": "draft 2"}]
    assert [trained[f"start_{n}"] for n in range(1, 6)] == [DRAFTS[0], DRAFTS[1], "", "", ""]
    assert trained["start_header"] == labeling.START_HEADER_DRAFTS
    noise = labeling.start_fields(DRAFTS, random_weights=True)
    assert noise["start_choices"] == [] and all(noise[f"start_{n}"] == "" for n in range(1, 6))
    assert "noise" in str(noise["start_header"])
    assert labeling.start_fields([])["start_choices"] == []
    many = labeling.start_fields([f"d{i}" for i in range(8)])  # only the five a page shows
    assert len(many["start_choices"]) == 5 and many["start_5"] == "d4" and "start_6" not in many


def test_an_edited_draft_box_is_the_caption_and_its_draft_the_starting_point():
    edited = DRAFTS[1] + " at dusk"
    row = _rows([_pick("start_from", "draft 2"), _box("caption_1_draft_2", edited)])[0]
    assert row["text"] == edited and row["draft_shown"] == DRAFTS[1]
    assert row["edit_distance"] == len(" at dusk") and "unchanged_draft" not in row["flags"] and row["accepted"] is False
    assert row["status"] == "submitted" and row["flags"] == []  # accepted is decided at merge (duplicates)


def test_a_draft_box_submitted_as_it_started_is_flagged_unchanged():
    row = _rows([_pick("start_from", "draft 1"), _box("caption_1_draft_1", DRAFTS[0])])[0]
    assert row["text"] == DRAFTS[0] and row["draft_shown"] == DRAFTS[0] and row["edit_distance"] == 0
    assert row["flags"] == ["unchanged_draft"]
    # the box emptied before submitting: the ticked draft counts as the text (flagged, never accepted)
    emptied = _rows([_pick("start_from", "draft 3")])[0]
    assert emptied["text"] == DRAFTS[2] and "unchanged_draft" in emptied["flags"]


def test_each_box_has_its_own_start_and_an_untouched_box_has_none():
    result = [_box("caption_1", "people walk across a wide green field"), _pick("start_from_2", "draft 3"),
              _box("caption_2_draft_3", "a red roof beside a ploughed field")]
    first, second = _rows(result, areas=2)
    assert first["text"] == "people walk across a wide green field" and first["draft_shown"] is None
    assert first["edit_distance"] is None
    assert second["text"] == "a red roof beside a ploughed field" and second["draft_shown"] == DRAFTS[2]
    assert second["edit_distance"] == len("ploughed ")  # 9 characters inserted
    assert second["caption_id"] == "ls-p3-a11-2"


def test_push_writes_the_start_fields_and_a_repush_brings_old_tasks_up_to_date(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    write_precaptions(ds, model="ViT-B-32/openai", per_clip=2)
    srv = FakeServer()
    push(ds.root, LOCAL, studio=Studio(LOCAL, sdk=FakeSDK(srv)))
    for task in srv.tasks.values():
        data = task["data"]
        assert data["start_choices"] == [{"value": "draft 1"}, {"value": "draft 2"}]
        assert (data["start_1"], data["start_2"], data["start_3"]) == (*data["draft_texts"], "")
        assert data["start_1"] == "draft 1: two cars drive along a road"
    for task in srv.tasks.values():  # tasks as an earlier push made them, before the one-click start
        for key in [k for k in task["data"] if k.startswith("start_")]:
            del task["data"][key]
    report = push(ds.root, LOCAL, studio=Studio(LOCAL, sdk=FakeSDK(srv)))
    assert report.tasks_refreshed == 2 and all(t["data"]["start_2"] for t in srv.tasks.values())
    write_precaptions(ds, model="ViT-B-32/random-s0", per_clip=2)  # noise now: nothing to start from
    push(ds.root, LOCAL, studio=Studio(LOCAL, sdk=FakeSDK(srv)))
    for task in srv.tasks.values():
        assert task["data"]["start_choices"] == [] and task["data"]["start_1"] == ""
        assert "noise" in task["data"]["drafts"] and len(task["data"]["draft_texts"]) == 2
