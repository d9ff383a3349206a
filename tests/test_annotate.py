"""Fast tests of the annotation round trip's own logic, against an in-memory fake of the SDK (no server).

The same flows run against a real Label Studio in test_annotate_server.py; here every branch (idempotent re-runs,
a server dying mid-push, deleted tasks, edited annotations, error messages, flags, quality figures) is pinned
down in milliseconds.
"""

from __future__ import annotations

import json
import math
import os
import socket
import stat
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest
from label_studio_sdk.core.api_error import ApiError
from typer.testing import CliRunner

from dvtr_data.annotation import checks, labeling, quality, server
from dvtr_data.annotation.client import Connection, Studio, redact, resolve_connection
from dvtr_data.annotation.pull import DELETED_FLAG, SIMULATED_DOMAIN, pull
from dvtr_data.annotation.push import push, raise_for_report
from dvtr_data.annotation.simulate import simulate
from dvtr_data.annotation.status import annotation_status
from dvtr_data.dataset import Dataset
from dvtr_data.errors import PartialFailure, ServiceError, UsageError
from dvtr_data.schemas import schema_of
from dvtr_data.synth.simulated import TRUTH_FORMAT
from dvtr_data.testing.labelstudio import (
    HAND_CASE,
    FakeSDK,
    FakeServer,
    caption_result,
    hand_figures,
    make_dataset,
    write_precaptions,
)

KEY = "0123456789abcdef0123456789abcdef01234567"
LOCAL = Connection("http://127.0.0.1:8080", KEY, local=True)


def studio_for(srv: FakeServer, conn: Connection = LOCAL) -> Studio:
    return Studio(conn, sdk=FakeSDK(srv))


def tasks_by_clip(srv: FakeServer) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t in srv.tasks.values():
        out.setdefault(t["data"]["clip_id"], []).append(t["id"])
    return out


# ----------------------------------------------------------------------------------------------------------------
# labeling config, header, guidelines
# ----------------------------------------------------------------------------------------------------------------
def test_label_config_has_k_caption_areas_the_clip_frame_rate_and_escapes_values():
    nasty = 'a "quoted" <b>cat</b> & co'
    text = labeling.render_label_config(labeling.LabelingSetup(captions_per_task=3, categories=(nasty, "other")))
    root = ET.fromstring(text)
    video = root.find(".//Video")
    assert video is not None and video.get("frameRate") == "$fps" and video.get("value") == "$video"
    areas = [el.get("name") for el in root.iter("TextArea") if el.get("value") is None]
    assert areas == ["caption_1", "caption_2", "caption_3"]  # the empty boxes; the draft boxes are checked below
    assert labeling.captions_per_task_of(text) == 3
    qc = [c.get("value") for c in root.find(".//Choices[@name='qc']")]
    assert qc == list(labeling.QC_CHOICES)
    cats = [c.get("value") for c in root.find(".//Choices[@name='category']")]
    assert cats[0] == nasty  # round-trips exactly: it was escaped, not mangled
    assert "<b>cat" not in text


def test_label_config_rejects_out_of_range_k():
    with pytest.raises(UsageError):
        labeling.render_label_config(labeling.LabelingSetup(captions_per_task=0))


def test_guidelines_html_escapes_everything_and_carries_a_version():
    html = labeling.guidelines_html("<!-- dvtr-guidelines version=7 -->\n# Title <i>\n- **bold** <script>x()</script>\n\npara & *it*\n")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<strong>bold</strong>" in html and "<em>it</em>" in html and "&amp;" in html
    assert labeling.guideline_version("<!-- dvtr-guidelines version=7 -->") == "7"
    real = labeling.guidelines_html()
    for topic in ("Objects", "Counts", "Layout", "Activity", "Camera view", "Guesses", "video of", "draft unchanged"):
        assert topic in real
    assert labeling.guideline_version() != "unversioned"


def test_task_header_places_the_clip_in_its_flight():
    assert labeling.task_header("dji 0001.mp4", 65.0, 70.5, 600.0, 48.2, "relative") == (
        "Flight dji 0001.mp4  ·  1:05.0-1:10.5 of 10:00.0  ·  altitude 48 m (relative)"
    )
    assert "altitude" not in labeling.task_header("x", 0, 5, None, None, None)


# ----------------------------------------------------------------------------------------------------------------
# validation flags
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "draft", "flags"),
    [
        ("Seen from above, two cars drive along a road past houses.", None, []),
        ("", None, ["empty"]),
        ("   \n ", None, ["empty"]),
        ("two cars", None, ["too_short"]),
        ("Two cars drive along a road.", "two cars drive along a road", ["unchanged_draft"]),
        ("Two red cars drive along a road.", "two cars drive along a road", []),
        ("asdf qwrt zxcv hjkl bnm", None, ["non_language"]),
        ("12345 67890 1111 2222 3333", None, ["non_language"]),
        ("aaaaaaaaaaaaaaaaaaaaaaaa", None, ["too_short", "non_language"]),
    ],
)
def test_caption_flags(text, draft, flags):
    from dvtr_data.text import tokenize

    assert checks.caption_flags(text, tokenize(text), draft) == flags


def test_duplicates_flag_the_later_caption_and_leave_other_stages_rows_alone():
    def row(cid, text, minute, mine=True):
        from dvtr_data.text import tokenize

        return {"caption_id": cid, "clip_id": "c", "text": text, "tokens": tokenize(text), "status": "submitted",
                "created_at": datetime(2026, 1, 1, 0, minute, tzinfo=UTC), "flags": ["keep-me"] if not mine else [], "mine": mine}

    rows = [row("imp", "Two cars on a road.", 0, mine=False), row("ls-a", "two cars on a road", 1), row("ls-b", "boats on a lake", 2),
            row("ls-c", "Boats on a lake!", 3)]
    checks.mark_duplicates(rows, mine=lambda r: r["mine"])
    assert [r["flags"] for r in rows] == [["keep-me"], ["duplicate"], [], ["duplicate"]]


def test_edit_distance_counts_characters_from_the_draft():
    assert checks.edit_distance("two cars", "two red cars") == 4
    assert checks.edit_distance(None, "x") is None


# ----------------------------------------------------------------------------------------------------------------
# quality figures, computed by hand
# ----------------------------------------------------------------------------------------------------------------
def test_quality_on_a_constructed_case_matches_hand_computation():
    a = "two red cars on road".split()  # clip A: two identical captions (5 words)
    b = "boats float near pier".split()  # clip B: two captions sharing no word (4 words each)
    c = "people walk across bridge".split()
    q = quality.caption_quality({"A": [a, a], "B": [b, c]}, unchanged=1, with_draft=4)
    # BLEU-4 (corpus): clipped matches / hypothesis n-grams, summed over the 4 leave-one-out pairs
    p = [(5 + 5) / 18, (4 + 4) / 14, (3 + 3) / 10, (2 + 2) / 6]
    assert q.bleu4_loo == pytest.approx(math.prod(p) ** 0.25, abs=1e-6)
    # CIDEr-D: A's pairs are identical (cosine 1 for n = 1..4, no length penalty) -> 10 each; B's share nothing -> 0
    assert q.cider_d_loo == pytest.approx((10 + 10 + 0 + 0) / 4, abs=1e-6)
    # distinct-n over the four captions: unigrams 5 + 4 + 4 unique of 18; bigrams 4 + 3 + 3 of 14
    assert q.distinct_1 == pytest.approx(13 / 18)
    assert q.distinct_2 == pytest.approx(10 / 14)
    # self-BLEU: each A caption finds itself among the others (1.0), each B caption matches nothing (0.0)
    assert q.self_bleu4 == pytest.approx(0.5, abs=1e-6)
    assert q.mean_words == pytest.approx(18 / 4) and q.vocabulary == 13 and q.unchanged_draft_share == 0.25
    assert q.clips_scored == 2 and q.captions == 4


def test_quality_on_the_shared_hand_case():
    q = quality.caption_quality({clip: [t.split() for t in texts] for clip, texts in HAND_CASE.items()})
    want = hand_figures()
    assert q.bleu4_loo == pytest.approx(want["bleu4"], abs=1e-6)
    assert q.cider_d_loo == pytest.approx(want["cider_d"], abs=1e-6)
    assert q.self_bleu4 == pytest.approx(want["self_bleu4"], abs=1e-6)
    assert (q.distinct_1, q.distinct_2, q.mean_words, q.vocabulary) == pytest.approx(
        (want["distinct_1"], want["distinct_2"], want["mean_words"], want["vocabulary"]))


def test_quality_of_single_caption_clips_is_undefined_not_zero():
    q = quality.caption_quality({"A": ["one caption only here".split()]})
    assert q.bleu4_loo is None and q.cider_d_loo is None and q.self_bleu4 is None and q.distinct_1 == 1.0


def test_sentence_bleu_by_hand():
    gts = {"x": ["two cars on a bridge"]}
    res = {"x": ["two cars on a road"]}
    assert quality.bleu4(gts, res)[0] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25, abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# push
# ----------------------------------------------------------------------------------------------------------------
def test_push_creates_the_project_once_and_never_duplicates_tasks(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=3, rejected=1)
    srv = FakeServer()
    r1 = push(ds.root, LOCAL, overlap=5, studio=studio_for(srv))
    assert r1.project_created and r1.tasks_created == 3 and r1.model_version is None
    project = srv.projects[r1.project_id]
    assert project["maximum_annotations"] == 5 and "frameRate=\"$fps\"" in project["label_config"]
    assert "Captioning drone clips" in project["expert_instruction"] and project["show_instruction"]
    assert [s["path"] for s in srv.storages] == [str(ds.clips_dir)]
    data = next(iter(srv.tasks.values()))["data"]
    assert data["video"].startswith("/data/local-files/?d=clips/") and data["fps"] == 30.0
    assert {"clip_id", "flight_id", "start_s", "end_s", "header", "drafts"} <= set(data)
    assert "flight one.mp4" in data["header"] and data["drafts"] == labeling.NO_DRAFTS

    r2 = push(ds.root, LOCAL, studio=studio_for(srv))  # no options: keeps overlap 5
    assert not r2.project_created and r2.tasks_created == 0 and r2.tasks_existing == 3
    assert len(srv.projects) == 1 and all(len(v) == 1 for v in tasks_by_clip(srv).values())
    assert srv.projects[r1.project_id]["maximum_annotations"] == 5 and len(srv.storages) == 1

    r3 = push(ds.root, LOCAL, include_rejected=True, studio=studio_for(srv))
    assert r3.tasks_created == 1 and len(srv.tasks) == 4


def test_push_finds_its_project_without_the_state_file(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    srv = FakeServer()
    first = push(ds.root, LOCAL, studio=studio_for(srv))
    (ds.work_dir / "annotate.json").unlink()
    again = push(ds.root, LOCAL, studio=studio_for(srv))
    assert again.project_id == first.project_id and not again.project_created and len(srv.tasks) == 3


def test_drafts_are_listed_never_prefilled_and_new_drafts_refresh_them(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    srv = FakeServer()
    first = push(ds.root, LOCAL, studio=studio_for(srv))  # before precaption: tasks without drafts
    assert first.model_version is None and not first.random_drafts
    write_precaptions(ds)  # ViT-S-32-alt/random-s0: random weights
    r = push(ds.root, LOCAL, studio=studio_for(srv))
    assert r.tasks_refreshed == 2 and r.model_version.startswith("ViT-S-32-alt") and r.random_drafts
    assert not srv.predictions  # a prediction would become the annotator's starting text
    data = next(iter(srv.tasks.values()))["data"]
    assert data["draft_texts"] == [f"draft {n}: two cars drive along a road" for n in (1, 2, 3)]
    assert data["drafts"].startswith(labeling.RANDOM_DRAFTS_NOTE) and "\n1. draft 1" in data["drafts"]

    again = push(ds.root, LOCAL, studio=studio_for(srv))
    assert (again.tasks_refreshed, again.predictions_removed) == (0, 0)

    write_precaptions(ds, model="ViT-B-32/trained", suffix=" (better bank)")
    better = push(ds.root, LOCAL, studio=studio_for(srv))
    assert better.tasks_refreshed == 2 and not better.random_drafts
    data = next(iter(srv.tasks.values()))["data"]
    assert data["drafts"].startswith("1. draft 1") and "random" not in data["drafts"]
    assert all("better bank" in t for t in data["draft_texts"])


def test_push_removes_the_prefilling_predictions_of_earlier_pushes_only(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    srv = FakeServer()
    r = push(ds.root, LOCAL, studio=studio_for(srv))
    tids = sorted(srv.tasks)
    sdk = FakeSDK(srv)
    old = {"model_version": "old", "result": [{"from_name": "caption_1", "to_name": "video", "type": "textarea",
                                               "value": {"text": ["draft 1"]}}]}
    team = {"model_version": "team", "result": [{"from_name": "qc", "to_name": "video", "type": "choices",
                                                 "value": {"choices": ["usable"]}}]}
    sdk.projects.import_predictions(r.project_id, request=[{"task": tids[0], **old}, {"task": tids[1], **old},
                                                           {"task": tids[0], **team}])
    again = push(ds.root, LOCAL, studio=studio_for(srv))
    assert again.predictions_removed == 2
    assert [p["model_version"] for p in srv.predictions.values()] == ["team"]


def test_k_captions_per_task_render_k_empty_areas_and_the_start_from_choices(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    write_precaptions(ds, per_clip=2)
    srv = FakeServer()
    push(ds.root, LOCAL, captions_per_task=3, overlap=2, studio=studio_for(srv))
    config = next(iter(srv.projects.values()))["label_config"]
    assert labeling.captions_per_task_of(config) == 3 and not srv.predictions
    root = ET.fromstring(config)
    # one single "start from" choice per box, its choices read from the task (none for noise drafts)
    start = {c.get("name"): c for c in root.iter("Choices") if c.get("name", "").startswith(labeling.START_FROM)}
    assert sorted(start) == ["start_from", "start_from_2", "start_from_3"]
    assert all(c.get("choice") == "single" and c.get("value") == "$start_choices" and len(c) == 0 for c in start.values())
    # every box that holds a value sits in a View shown only while its own draft is ticked, and says so itself
    # (Label Studio submits a hidden control's text only when the control carries the condition too)
    views = [v for v in root.iter("View") if any(t.get("value") for t in v.findall("TextArea"))]
    assert len(views) == 3 * labeling.MAX_DRAFTS
    for view in views:
        (box,) = view.findall("TextArea")
        slot, draft = labeling.draft_box(box.get("name", "")) or (None, None)
        assert slot is not None and draft is not None and box.get("value") == f"$start_{draft + 1}"
        for el in (view, box):
            assert (el.get("visibleWhen"), el.get("whenTagName"), el.get("whenChoiceValue")) == (
                "choice-selected", ["start_from", "start_from_2", "start_from_3"][slot], f"draft {draft + 1}")
    plain = [t for t in root.iter("TextArea") if t.get("value") is None]
    assert [(t.get("name"), t.get("visibleWhen"), t.get("whenTagName")) for t in plain] == [
        ("caption_1", "choice-unselected", "start_from"), ("caption_2", "choice-unselected", "start_from_2"),
        ("caption_3", "choice-unselected", "start_from_3")]  # no box is pre-filled before a click


def test_a_missing_clip_file_is_reported_and_a_rerun_after_the_fix_adds_it(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=3)
    clip = ds.read_table("clips").to_pylist()[1]
    (ds.root / clip["clip_path"]).unlink()
    srv = FakeServer()
    report = push(ds.root, LOCAL, studio=studio_for(srv))
    assert report.tasks_created == 2 and report.missing_files == [clip["clip_path"]]
    with pytest.raises(PartialFailure) as exc:
        raise_for_report(report, ds.root)
    assert "missing" in str(exc.value) and "1 of them got no task" in str(exc.value) and "ingest" in str(exc.value)
    assert exc.value.exit_code == 1
    (ds.root / clip["clip_path"]).write_bytes(b"\0")
    fixed = push(ds.root, LOCAL, studio=studio_for(srv))
    assert fixed.tasks_created == 1 and fixed.ok and sorted(tasks_by_clip(srv)) == sorted(c["clip_id"] for c in ds.read_table("clips").to_pylist())


def test_server_dying_mid_push_then_rerun_completes_without_duplicates(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=5)
    write_precaptions(ds)
    srv = FakeServer()
    srv.fail_after = 8  # whoami, projects, create, storages x2, tasks list, first batch ... then the line drops
    with pytest.raises(ServiceError) as exc:
        push(ds.root, LOCAL, batch_size=2, studio=studio_for(srv))
    msg = str(exc.value)
    assert "stopped answering" in msg and "re-run" in msg and KEY not in msg
    assert 0 < len(srv.tasks) < 5
    srv.fail_after = None
    report = push(ds.root, LOCAL, batch_size=2, studio=studio_for(srv))
    assert report.tasks_created == 5 - report.tasks_existing
    assert len(srv.tasks) == 5 and all(len(v) == 1 for v in tasks_by_clip(srv).values())
    assert not srv.predictions and all(t["data"]["draft_texts"] for t in srv.tasks.values())


def test_a_task_deleted_in_the_ui_is_recreated_by_push(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    srv = FakeServer()
    push(ds.root, LOCAL, studio=studio_for(srv))
    FakeSDK(srv).tasks.delete(str(next(iter(srv.tasks))))
    report = push(ds.root, LOCAL, studio=studio_for(srv))
    assert report.tasks_created == 1 and len(srv.tasks) == 2


def test_push_selection_and_bad_selection(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=3)
    srv = FakeServer()
    one = ds.read_table("clips").column("clip_id")[2].as_py()
    assert push(ds.root, LOCAL, clip_ids=[one], studio=studio_for(srv)).tasks_created == 1
    with pytest.raises(UsageError, match="not in the dataset"):
        push(ds.root, LOCAL, clip_ids=["nope"], studio=studio_for(srv))


def test_a_remote_server_needs_to_be_told_where_the_clips_are(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    remote = Connection("https://labels.example.org", KEY, local=False)
    with pytest.raises(UsageError, match="--media-url"):
        push(ds.root, remote, studio=studio_for(FakeServer(), remote))
    srv = FakeServer()
    push(ds.root, remote, media_url="s3://bucket/ds/", studio=studio_for(srv, remote))
    assert next(iter(srv.tasks.values()))["data"]["video"].startswith("s3://bucket/ds/clips/") and not srv.storages


# ----------------------------------------------------------------------------------------------------------------
# pull
# ----------------------------------------------------------------------------------------------------------------
def _annotate(srv: FakeServer, clip_id: str, result, **kw) -> int:
    tid = tasks_by_clip(srv)[clip_id][0]
    return FakeSDK(srv).annotations.create(tid, result=result, **kw)["id"]


def test_pull_turns_annotations_into_caption_rows(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    write_precaptions(ds)
    srv = FakeServer()
    srv.users[7] = {"id": 7, "email": "ann@example.org"}
    push(ds.root, LOCAL, studio=studio_for(srv))
    c1, c2 = ds.read_table("clips").column("clip_id").to_pylist()
    weird = 'Two cars <img src=x onerror=alert(1)> drive "fast" along a road\nnear houses — ünïcode'
    _annotate(srv, c1, caption_result(weird, qc=["usable", "privacy concern"], category="residential", start=["draft 1"]),
              completed_by=7, lead_time=42.5)
    _annotate(srv, c2, caption_result("draft 1: two cars drive along a road", start=["draft 1"]), completed_by=7,
              lead_time=3.0)  # unchanged draft
    _annotate(srv, c2, [], completed_by=1, was_cancelled=True, lead_time=1.0)  # skipped

    report = pull(ds.root, LOCAL, studio=studio_for(srv))
    assert (report.rows_new, report.rows_updated, report.skipped, report.annotations) == (3, 0, 1, 3)
    rows = {r["text"]: r for r in ds.read_table("captions").to_pylist()}
    r = rows[weird]
    assert r["text"] == weird  # stored exactly as given
    assert r["annotator"] == "ann@example.org" and r["origin"] == "human" and r["status"] == "submitted"
    assert r["lead_time_s"] == 42.5 and r["created_at"].tzinfo is not None and r["updated_at"] is not None
    assert r["draft_shown"] == "draft 1: two cars drive along a road"
    assert r["edit_distance"] == checks.edit_distance(r["draft_shown"], weird) > 0
    assert r["qc_choices"] == ["usable", "privacy concern"] and r["category"] == "residential"
    assert r["tokens"][:3] == ["two", "cars", "img"] and r["accepted"] and r["flags"] == []
    assert r["caption_id"].startswith("ls-p") and r["ls_task_id"] and r["ls_annotation_id"] and r["guideline_version"] == labeling.guideline_version()
    unchanged = rows["draft 1: two cars drive along a road"]
    assert unchanged["flags"] == ["unchanged_draft"] and not unchanged["accepted"] and unchanged["edit_distance"] == 0
    skipped = rows[""]
    assert skipped["status"] == "skipped" and not skipped["accepted"] and skipped["flags"] == []


def test_repull_updates_in_place_and_keeps_captions_of_deleted_tasks(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    srv = FakeServer()
    push(ds.root, LOCAL, studio=studio_for(srv))
    c1, c2 = ds.read_table("clips").column("clip_id").to_pylist()
    a1 = _annotate(srv, c1, caption_result("Three boats float on a calm lake near the shore."))
    _annotate(srv, c2, caption_result("A truck drives across a long bridge over a river."))
    pull(ds.root, LOCAL, studio=studio_for(srv))
    again = pull(ds.root, LOCAL, studio=studio_for(srv))
    assert (again.rows_new, again.rows_updated, again.rows_unchanged) == (0, 0, 2)
    assert ds.read_table("captions").num_rows == 2

    FakeSDK(srv).annotations.update(a1, result=caption_result("Four boats float on a calm lake near the shore."))
    edited = pull(ds.root, LOCAL, studio=studio_for(srv))
    rows = ds.read_table("captions").to_pylist()
    assert (edited.rows_new, edited.rows_updated) == (0, 1) and len(rows) == 2
    assert rows[0]["text"].startswith("Four boats")  # same row, same place

    tid = tasks_by_clip(srv)[c2][0]
    FakeSDK(srv).tasks.delete(str(tid))
    gone = pull(ds.root, LOCAL, studio=studio_for(srv))
    rows = {r["clip_id"]: r for r in ds.read_table("captions").to_pylist()}
    assert gone.deleted_tasks == {tid: c2} and len(rows) == 2
    assert DELETED_FLAG in rows[c2]["flags"] and rows[c2]["text"].startswith("A truck")
    # Kept, but deleted means out of splits and exports (issue 11 item 2): no longer accepted; the other clip's is.
    assert rows[c2]["accepted"] is False and rows[c1]["accepted"] is True
    assert (gone.kept_deleted_rows, gone.newly_deleted_rows, gone.unaccepted_deleted_rows) == (1, 1, 1)


def test_pull_leaves_rows_of_other_stages_alone_and_flags_duplicates_against_them(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    clip = ds.read_table("clips").column("clip_id")[0].as_py()
    imported = dict.fromkeys(schema_of("captions").schema.names)
    imported.update(writer="import:pub", caption_id=f"{clip}-c00", clip_id=clip, text="Two cars drive along a road past houses.",
                    tokens="two cars drive along a road past houses".split(), origin="imported", status="submitted",
                    qc_choices=[], flags=["custom"], accepted=True, created_at=datetime(2020, 1, 1, tzinfo=UTC))
    ds.write_table("captions", [imported])
    srv = FakeServer()
    push(ds.root, LOCAL, studio=studio_for(srv))
    _annotate(srv, clip, caption_result("two cars drive along a road past houses"))
    pull(ds.root, LOCAL, studio=studio_for(srv))
    rows = ds.read_table("captions").to_pylist()
    assert rows[0] == {**imported, "created_at": rows[0]["created_at"]} and rows[0]["flags"] == ["custom"]
    assert rows[1]["flags"] == ["duplicate"] and not rows[1]["accepted"]


def test_k_areas_give_one_row_each_and_an_empty_area_is_flagged(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    srv = FakeServer()
    push(ds.root, LOCAL, captions_per_task=2, studio=studio_for(srv))
    clip = ds.read_table("clips").column("clip_id")[0].as_py()
    _annotate(srv, clip, caption_result("A red car waits at a crossing between two houses."))
    pull(ds.root, LOCAL, studio=studio_for(srv))
    rows = ds.read_table("captions").to_pylist()
    assert [r["caption_id"][-2:] for r in rows] == ["-1", "-2"]
    assert rows[1]["flags"] == ["empty"] and not rows[1]["accepted"] and rows[0]["accepted"]


def test_pull_without_a_project_says_push_first(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    with pytest.raises(ServiceError, match="annotate push"):
        pull(ds.root, LOCAL, studio=studio_for(FakeServer()))


# ----------------------------------------------------------------------------------------------------------------
# simulate and status
# ----------------------------------------------------------------------------------------------------------------
def _write_truth(ds: Dataset) -> None:
    flight = ds.read_table("flights").to_pylist()[0]
    src = Path(flight["source_path"])
    src.parent.mkdir(parents=True, exist_ok=True)
    segs = [{"start_frame": 0, "end_frame": 10_000, "scene": "road",
             "captions": [f"Caption {i} says that {i + 1} cars drive along a road near houses." for i in range(5)]}]
    src.with_name(src.stem + ".truth.json").write_text(json.dumps({"format": TRUTH_FORMAT, "segments": segs}))


def test_simulate_submits_as_marked_annotators_once_and_status_reports_them(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    _write_truth(ds)
    srv = FakeServer()
    push(ds.root, LOCAL, overlap=5, studio=studio_for(srv))
    rep = simulate(ds.root, LOCAL, studio=studio_for(srv))
    assert (rep.annotators, rep.annotations_created, rep.captions_submitted) == (5, 10, 10)
    emails = sorted(u["email"] for u in srv.users.values() if u["email"].endswith(SIMULATED_DOMAIN))
    assert len(emails) == 5 and all(u.get("first_name") == "Simulated" for u in srv.users.values() if u["email"] in emails)
    again = simulate(ds.root, LOCAL, studio=studio_for(srv))
    assert again.annotations_created == 0 and again.annotations_existing == 10 and len(srv.annotations) == 10

    pull(ds.root, LOCAL, studio=studio_for(srv))
    rows = ds.read_table("captions").to_pylist()
    assert len(rows) == 10 and {r["origin"] for r in rows} == {"simulated"} and all(r["accepted"] for r in rows)
    st = annotation_status(ds.root)
    assert st.target == 5 and st.clips == 2 and st.progress[5] == 2 and st.complete_clips == 2
    assert st.by_origin == {"simulated": 10} and len(st.annotators) == 5
    assert all(a.origin == "simulated" and a.annotations == 2 and a.median_lead_s for a in st.annotators)
    assert st.quality.clips_scored == 2 and st.quality.bleu4_loo is not None


def test_simulate_refuses_a_dataset_without_generated_flights(tmp_path):
    from dvtr_data.errors import DatasetError

    ds = make_dataset(tmp_path / "ds", n_clips=1)
    with pytest.raises(DatasetError, match="generated flights"):
        simulate(ds.root, LOCAL, studio=studio_for(FakeServer()))


def test_status_on_a_constructed_captions_table(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=3)
    clips = ds.read_table("clips").column("clip_id").to_pylist()
    texts = {clips[0]: ["two red cars on road", "two red cars on road"], clips[1]: ["boats float near pier", "people walk across bridge"]}
    rows = []
    for n, (clip, caps) in enumerate(texts.items()):
        for k, text in enumerate(caps):
            row = dict.fromkeys(schema_of("captions").schema.names)
            row.update(writer="annotate", caption_id=f"ls-p1-a{n * 10 + k}-1", clip_id=clip, text=text, tokens=text.split(), origin="human",
                       status="submitted", annotator=f"ann{k}@x", ls_project_id=1, ls_task_id=n, ls_annotation_id=n * 10 + k,
                       lead_time_s=30.0 + k * 30, qc_choices=["usable"], flags=[], accepted=True, draft_shown=None)
            rows.append(row)
    ds.write_table("captions", rows)
    st = annotation_status(ds.root, target=2)
    assert st.progress == {0: 1, 1: 0, 2: 2} and st.clips == 3
    assert st.quality.cider_d_loo == pytest.approx(5.0) and st.quality.self_bleu4 == pytest.approx(0.5, abs=1e-6)
    speed = {a.annotator: a for a in st.annotators}
    assert speed["ann0@x"].median_lead_s == 30.0 and speed["ann0@x"].annotations_per_hour == pytest.approx(120.0)
    assert speed["ann1@x"].annotations_per_hour == pytest.approx(60.0)
    assert st.qc_choices == {"usable": 4}


# ----------------------------------------------------------------------------------------------------------------
# connections and errors: one clear line, never the token
# ----------------------------------------------------------------------------------------------------------------
def test_wrong_token_is_one_clear_line_without_the_token():
    srv = FakeServer()
    srv.bad_key = True
    with pytest.raises(ServiceError) as exc:
        studio_for(srv).check()
    assert "refused the API key" in str(exc.value) and KEY not in str(exc.value) and exc.value.exit_code == 5


def test_an_error_body_echoing_the_token_is_redacted():
    studio = studio_for(FakeServer())
    err = studio._api_error(ApiError(status_code=400, body={"detail": f"bad token {KEY}"}), "doing x")
    assert KEY not in str(err) and "***" in str(err)
    assert redact(f"a {KEY} b", KEY) == "a *** b"


def test_server_not_running_says_how_to_start_it():
    def refuse(*a, **k):
        raise httpx.ConnectError("[Errno 111] Connection refused")

    studio = studio_for(FakeServer())
    with pytest.raises(ServiceError) as exc:
        studio.call("listing projects", refuse)
    assert "no Label Studio answers at http://127.0.0.1:8080" in str(exc.value) and "annotate serve" in str(exc.value)


def test_an_expired_personal_access_token_is_a_clear_error():
    token = jwt.encode({"exp": 1_000_000, "token_type": "refresh"}, "k" * 32, algorithm="HS256")
    with pytest.raises(ServiceError, match="refused the API key") as exc:
        Studio(Connection("http://127.0.0.1:9", token))
    assert token not in str(exc.value)


def test_resolve_connection_explains_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    with pytest.raises(ServiceError, match="annotate serve"):
        resolve_connection(ds)
    with pytest.raises(ServiceError, match="LABEL_STUDIO_API_KEY"):
        resolve_connection(ds, url="https://labels.example.org")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", KEY)
    conn = resolve_connection(ds, url="https://labels.example.org/")
    assert conn.url == "https://labels.example.org" and not conn.local and KEY not in repr(conn) and KEY not in str(conn)
    with pytest.raises(UsageError):
        resolve_connection(ds, url="ftp://x")


# ----------------------------------------------------------------------------------------------------------------
# server helpers (no server started)
# ----------------------------------------------------------------------------------------------------------------
def test_credentials_file_is_private_and_secrets_never_show_in_repr(tmp_path):
    path = tmp_path / "ls" / "credentials.json"
    creds = server.new_credentials()
    server.write_credentials(path, creds)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert creds.api_key not in repr(creds) and creds.password not in repr(creds) and creds.api_key not in str(creds)
    os.chmod(path, 0o644)
    assert server.read_credentials(path) == creds
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # narrowed again on read


def test_port_check_sees_a_listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert server.port_in_use(port)
    assert not server.port_in_use(port)


def test_serve_on_a_taken_port_is_one_clear_line(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(ServiceError, match=r"port \d+ on 127.0.0.1 is already in use") as exc:
            server.start_server(ds.root, port=sock.getsockname()[1], install=False)
    assert "--port" in str(exc.value)
    assert not (ds.root / "labelstudio" / "credentials.json").exists()


def test_stale_server_state_is_ignored(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    paths = server.ServerPaths.of(ds)
    paths.root.mkdir(parents=True)
    paths.state.write_text(json.dumps({"pid": 2**22 + 12345, "port": 1, "url": "http://127.0.0.1:1"}))
    assert server.running_server(ds) is None and not paths.state.exists()
    assert server.stop_server(ds.root) is None


def test_bound_port_is_read_from_the_last_start_in_the_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("=== dvtr-data annotate serve x port 8080\nStarting development server at http://127.0.0.1:8080/\n"
                   "=== dvtr-data annotate serve y port 8080\nStarting development server at http://127.0.0.1:8081/\n")
    assert server._bound_port(log) == 8081


def test_venv_location_and_lock_pin_label_studio():
    assert "label-studio==1.23.2" in server.lock_file().read_text()
    assert "label-studio-sdk==2.1.2" in server.lock_file().read_text()
    assert server.labelstudio_venv().name in (".venv-labelstudio", "venv-labelstudio") or os.environ.get(server.VENV_ENV)


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def _cli():
    import typer

    from dvtr_data.cli import app
    from dvtr_data.cli.annotate import annotate_app

    if not any(getattr(g, "name", None) == "annotate" for g in app.registered_groups):
        root = typer.Typer()
        root.add_typer(annotate_app, name="annotate")
        return root
    return app


@pytest.mark.parametrize("name", ["serve", "stop", "push", "pull", "status", "simulate"])
def test_every_annotate_command_has_help_with_an_example(name):
    result = CliRunner().invoke(_cli(), ["annotate", name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output and f"dvtr-data annotate {name}" in result.output


@pytest.mark.boundary
def test_push_without_a_server_is_one_line_and_exit_5(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    result = CliRunner().invoke(_cli(), ["annotate", "push", "--dataset", str(ds.root)])
    assert result.exit_code == 5
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "annotate serve" in lines[0]


@pytest.mark.boundary
def test_push_to_a_dead_url_is_one_line(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(_cli(), ["annotate", "pull", "--dataset", str(ds.root), "--url", f"http://127.0.0.1:{port}"],
                                env={"LABEL_STUDIO_API_KEY": KEY})
    assert result.exit_code == 5 and "no Label Studio answers" in result.stderr and KEY not in result.output


def test_status_cli_prints_the_figures(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    result = CliRunner().invoke(_cli(), ["annotate", "status", "--dataset", str(ds.root)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "BLEU-4" in result.output and "CIDEr-D" in result.output and "no captions pulled yet" in result.stderr


def test_bad_shape_options_are_usage_errors(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    with pytest.raises(UsageError, match="overlap"):
        push(ds.root, LOCAL, overlap=0, studio=studio_for(FakeServer()))
    with pytest.raises(UsageError, match="captions-per-task"):
        push(ds.root, LOCAL, captions_per_task=0, studio=studio_for(FakeServer()))


def test_creates_are_sent_once_never_retried_by_the_sdk(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    write_precaptions(ds)
    srv = FakeServer()
    sdk = FakeSDK(srv)
    seen = []
    original = sdk.projects.import_tasks

    def spy(pid, **kw):
        seen.append(kw.get("request_options"))
        return original(pid, **kw)

    sdk.projects.import_tasks = spy
    push(ds.root, LOCAL, studio=Studio(LOCAL, sdk=sdk))
    assert seen == [{"max_retries": 0}]


def test_a_url_that_is_not_label_studio_is_one_clear_line():
    def html(*a, **k):
        raise ValueError("Expecting value: line 1 column 1 (char 0)")

    with pytest.raises(ServiceError, match="not Label Studio's API"):
        studio_for(FakeServer()).call("listing projects", html)
