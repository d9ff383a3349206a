"""The review step and the annotator page's data side, against the in-memory Label Studio stand-in.

The same flows run against a real Label Studio (and the page in Chromium) in tests/test_annotate_server.py.
Expected values are worked out by hand in each test.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from dvtr_data.annotation import labeling, reviewed, server
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.annotation.pull import annotation_rows, picked_drafts, pull
from dvtr_data.annotation.push import push
from dvtr_data.annotation.review import FIX_WRITER, review_pull, review_push, review_verdict
from dvtr_data.annotation.status import annotation_status
from dvtr_data.schemas import schema_of
from dvtr_data.splits import accepted_caption_counts
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer, caption_result, make_dataset

KEY = "0123456789abcdef0123456789abcdef01234567"
LOCAL = Connection("http://127.0.0.1:8080", KEY, local=True)
AUTHOR, REVIEWER, OTHER = 7, 8, 9


def _cli() -> Any:
    import typer

    from dvtr_data.cli.annotate import annotate_app

    root = typer.Typer()
    root.add_typer(annotate_app, name="annotate")
    return root


def studio_for(srv: FakeServer) -> Studio:
    return Studio(LOCAL, sdk=FakeSDK(srv))


def verdict(choice: str | None, reason: str = "", fix: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if choice:
        out.append({"from_name": "verdict", "to_name": "video", "type": "choices", "value": {"choices": [choice]}})
    for name, text in (("reason", reason), ("fix", fix)):
        if text:
            out.append({"from_name": name, "to_name": "video", "type": "textarea", "value": {"text": [text]}})
    return out


# ----------------------------------------------------------------------------------------------------------------
# the annotator page: drafts listed, never pre-filled; one click picks any draft
# ----------------------------------------------------------------------------------------------------------------
def test_random_drafts_are_listed_under_a_plain_note():
    assert labeling.drafts_block([]) == labeling.NO_DRAFTS
    assert labeling.drafts_block(["a b", "c d"]) == "1. a b\n2. c d"
    assert labeling.drafts_block(["a b"], random_weights=True) == f"{labeling.RANDOM_DRAFTS_NOTE}\n1. a b"
    assert "noise" in labeling.RANDOM_DRAFTS_NOTE


def test_start_from_choices_name_drafts_one_to_five():
    assert [labeling.start_slot(f"draft {n}") for n in (1, 2, 5)] == [0, 1, 4]
    assert [labeling.start_slot(x) for x in ("draft 0", "draft 6", "draft x", "usable", "draft ")] == [None] * 5


def test_picked_drafts_come_from_the_task_list_or_its_numbered_block():
    data = {"draft_texts": ["first one", "second one", "third one"]}
    assert picked_drafts(data, ["draft 3", "draft 1"]) == ["first one", "third one"]  # draft order, not click order
    assert picked_drafts(data, ["draft 4", "usable"]) == []  # no fourth draft: ignored
    old_task = {"drafts": "1. first one\n2. second. with a dot"}  # pushed before draft_texts existed
    assert picked_drafts(old_task, ["draft 2"]) == ["second. with a dot"]
    noted = {"drafts": f"{labeling.RANDOM_DRAFTS_NOTE}\n1. only"}
    assert picked_drafts(noted, ["draft 1"]) == ["only"]


def _rows(result: list[dict[str, Any]], drafts: list[str]) -> list[dict[str, Any]]:
    task = {"id": 5, "data": {"clip_id": "c1", "draft_texts": drafts}}
    ann = {"id": 11, "result": result, "completed_by": 1, "created_at": "2026-01-01T00:00:00Z"}
    return annotation_rows(task, ann, project_id=3, areas=1, emails={1: "a@x.org"}, guideline=lambda _: "1", min_words=3)


def test_a_picked_draft_is_the_starting_point_and_an_empty_box_takes_it_unchanged():
    drafts = ["two cars drive along a road", "a boat crosses the lake slowly"]
    typed = _rows(caption_result("a white boat crosses the lake", start=["draft 2"]), drafts)[0]
    assert typed["text"] == "a white boat crosses the lake" and typed["draft_shown"] == drafts[1]
    # "a boat crosses the lake slowly" -> "a white boat crosses the lake": insert "white " (6), delete " slowly" (7)
    assert typed["edit_distance"] == 13
    left_empty = _rows([{"from_name": "start_from", "to_name": "video", "type": "choices",
                         "value": {"choices": ["draft 1"]}}], drafts)[0]
    assert left_empty["text"] == drafts[0] and "unchanged_draft" in left_empty["flags"]
    nothing = _rows(caption_result("a red car parks near a house"), drafts)[0]
    assert nothing["draft_shown"] is None and nothing["edit_distance"] is None  # no draft was pre-filled or picked


def test_the_managed_server_turns_off_sentry_and_call_outs_whatever_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SENTRY_DSN", "https://key@o1.ingest.sentry.io/1")
    monkeypatch.setenv("LABEL_STUDIO_FRONTEND_SENTRY_DSN", "https://key@o1.ingest.sentry.io/2")
    monkeypatch.setenv("HEARTEX_COLLECT_ANALYTICS", "true")
    env = server._server_env(server.ServerPaths(tmp_path), tmp_path, None)
    for prefix in ("LABEL_STUDIO_", "HEARTEX_", ""):
        assert env[prefix + "SENTRY_DSN"] == "" and env[prefix + "FRONTEND_SENTRY_DSN"] == ""
        assert env[prefix + "COLLECT_ANALYTICS"] == "false" and env[prefix + "LATEST_VERSION_CHECK"] == "false"


# ----------------------------------------------------------------------------------------------------------------
# review verdicts and the join
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("result", "want"),
    [
        (verdict("accept"), ("accepted", None)),
        (verdict("reject", reason="wrong count"), ("rejected", None)),
        (verdict("reject"), ("rejected", "no reason for its rejection")),
        (verdict("fix", fix="two boats at a pier"), ("fixed", None)),
        (verdict(None, fix="two boats at a pier"), ("fixed", None)),  # a fixed text is a fix
        (verdict("fix", reason="count"), ("fixed", "no text for its fix")),
        (verdict(None), (None, "no verdict")),
    ],
)
def test_review_verdicts(result, want):
    status, _, _, missing = review_verdict(result)
    assert (status, missing) == want


def _t(minute: int) -> datetime:
    return datetime(2026, 1, 1, 0, minute, tzinfo=UTC)


def test_the_latest_review_decides_and_unreviewed_captions_keep_their_own_verdict():
    names = schema_of("captions").schema.names
    base = dict.fromkeys(names)
    caps = [
        {**base, "caption_id": "a", "clip_id": "c1", "text": "t", "origin": "human", "status": "submitted", "accepted": True, "writer": "annotate"},
        {**base, "caption_id": "b", "clip_id": "c1", "text": "t", "origin": "human", "status": "submitted", "accepted": False, "writer": "annotate"},
        {**base, "caption_id": "c", "clip_id": "c2", "text": "t", "origin": "human", "status": "submitted", "accepted": True, "writer": "annotate"},
        {**base, "caption_id": "d", "clip_id": "c2", "text": "t", "origin": "human", "status": "skipped", "accepted": False, "writer": "annotate"},
    ]
    captions = pa.Table.from_pylist(caps, schema=schema_of("captions").schema)
    rv = dict.fromkeys(schema_of("reviews").schema.names)
    reviews = pa.Table.from_pylist([
        {**rv, "review_id": "r1", "caption_id": "a", "clip_id": "c1", "status": "accepted", "reviewer": "x", "updated_at": _t(1)},
        {**rv, "review_id": "r2", "caption_id": "a", "clip_id": "c1", "status": "rejected", "reviewer": "y", "updated_at": _t(2)},
        {**rv, "review_id": "r3", "caption_id": "b", "clip_id": "c1", "status": "accepted", "reviewer": "x", "updated_at": _t(1)},
        {**rv, "review_id": "r4", "caption_id": "d", "clip_id": "c2", "status": "accepted", "reviewer": "x", "updated_at": _t(1)},
    ], schema=schema_of("reviews").schema)
    # a: rejected by its latest review (minute 2); b: accepted by review though its checks blocked it; c: no
    # review, keeps True; d: skipped, so a stray acceptance does not count
    assert reviewed.apply_reviews(captions, reviews).column("accepted").to_pylist() == [False, True, True, False]
    assert accepted_caption_counts(captions) == {"c1": 1, "c2": 1}
    assert accepted_caption_counts(captions, reviews) == {"c1": 1, "c2": 1}  # c1: a out, b in
    assert accepted_caption_counts(captions, reviews.slice(0, 1)) == {"c1": 1, "c2": 1}  # a accepted, b own False
    assert accepted_caption_counts(captions, reviews.slice(1, 1)) == {"c2": 1}  # a rejected, b own False


# ----------------------------------------------------------------------------------------------------------------
# the review round trip on the stand-in server
# ----------------------------------------------------------------------------------------------------------------
def _captioned(tmp_path) -> tuple[Any, FakeServer, dict[str, dict[str, Any]]]:
    ds = make_dataset(tmp_path / "ds", n_clips=2)
    srv = FakeServer()
    for uid in (AUTHOR, REVIEWER, OTHER):
        srv.users[uid] = {"id": uid, "email": f"user{uid}@example.org"}
    push(ds.root, LOCAL, studio=studio_for(srv))
    texts = ["two red cars cross a long bridge", "three boats float near a wooden pier"]
    for task, text in zip(sorted(srv.tasks), texts, strict=True):
        FakeSDK(srv).annotations.create(task, result=caption_result(text), completed_by=AUTHOR, lead_time=20.0)
    pull(ds.root, LOCAL, studio=studio_for(srv), min_words=3)
    return ds, srv, {r["text"]: r for r in ds.read_table("captions").to_pylist()}


def _review(srv: FakeServer, caption_id: str, result: list[dict[str, Any]], who: int) -> int:
    pid = max(srv.projects)  # the review project is the newest
    tid = next(t["id"] for t in srv.tasks.values() if t["project"] == pid and t["data"]["caption_id"] == caption_id)
    return FakeSDK(srv).annotations.create(tid, result=result, completed_by=who)["id"]


def test_review_push_makes_one_task_per_submitted_caption_with_its_author_once(tmp_path):
    ds, srv, caps = _captioned(tmp_path)
    first = review_push(ds.root, LOCAL, studio=studio_for(srv))
    assert first.project_created and (first.candidates, first.tasks_created) == (2, 2)
    project = srv.projects[first.project_id]
    assert project["show_collab_predictions"] is False and "dvtr-review-of:" in project["description"]
    data = [t["data"] for t in srv.tasks.values() if t["project"] == first.project_id]
    assert {d["caption"] for d in data} == set(caps) and {d["author"] for d in data} == {f"user{AUTHOR}@example.org"}
    assert all(d["video"].startswith("/data/local-files/?d=clips/") for d in data)
    again = review_push(ds.root, LOCAL, studio=studio_for(srv))
    assert (again.project_id, again.project_created, again.tasks_created, again.tasks_existing) == (first.project_id, False, 0, 2)
    # the captions project is still the one `annotate pull` finds
    assert pull(ds.root, LOCAL, studio=studio_for(srv), min_words=3).project_id != first.project_id


def test_review_pull_records_verdicts_fixes_and_refuses_self_reviews(tmp_path):
    ds, srv, caps = _captioned(tmp_path)
    good, wrong = caps["two red cars cross a long bridge"], caps["three boats float near a wooden pier"]
    review_push(ds.root, LOCAL, studio=studio_for(srv))
    _review(srv, good["caption_id"], verdict("accept"), REVIEWER)
    _review(srv, good["caption_id"], verdict("accept"), AUTHOR)  # self-review: refused
    _review(srv, wrong["caption_id"], verdict("reject"), OTHER)  # no reason: left out
    aid = _review(srv, wrong["caption_id"], verdict("fix", reason="two boats", fix="two boats float near a wooden pier"), REVIEWER)
    report = review_pull(ds.root, LOCAL, studio=studio_for(srv), min_words=3)
    assert report.by_status == {"accepted": 1, "fixed": 1} and report.reviews == 2
    assert report.self_reviews == [(good["caption_id"], f"user{AUTHOR}@example.org")]
    assert report.incomplete == [(wrong["caption_id"], "no reason for its rejection")]
    assert (report.fixes, report.fixes_accepted) == (1, 1)

    reviews = {r["caption_id"]: r for r in ds.read_table("reviews").to_pylist()}
    assert set(reviews) == {good["caption_id"], wrong["caption_id"]}
    assert reviews[good["caption_id"]]["reviewer"] == f"user{REVIEWER}@example.org"
    fix_id = reviews[wrong["caption_id"]]["fixed_caption_id"]
    assert fix_id == f"rv-p{report.project_id}-a{aid}-fix" and reviews[wrong["caption_id"]]["reason"] == "two boats"
    rows = {r["caption_id"]: r for r in ds.read_table("captions").to_pylist()}
    fix = rows[fix_id]
    assert (fix["writer"], fix["clip_id"], fix["draft_shown"]) == (FIX_WRITER, wrong["clip_id"], wrong["text"])
    assert fix["edit_distance"] == 4  # "three" -> "two": substitute t,h,r... by hand: thr[ee] vs tw[o] = 4 edits
    assert rows[wrong["caption_id"]] == wrong  # the caption fixed is never changed

    # split: clip of `good` keeps it (accepted), the other clip counts the fix instead of the caption it replaced
    counts = accepted_caption_counts(ds.read_table("captions"), ds.read_table("reviews"))
    assert counts == {good["clip_id"]: 1, wrong["clip_id"]: 1}
    st = annotation_status(ds.root)
    by = {a.annotator: a for a in st.annotators}
    author = by[f"user{AUTHOR}@example.org"]
    assert (author.reviewed, author.review_accepted, author.acceptance_rate, author.accepted) == (2, 1, 0.5, 1)
    assert by[f"user{REVIEWER}@example.org"].acceptance_rate is None  # their fix has not been reviewed

    shown = CliRunner().invoke(_cli(), ["annotate", "status", "--dataset", str(ds.root)], env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    assert re.search(rf"user{AUTHOR}@example\.org\s+2\s+1\s+50%", shown.output), shown.output  # review acceptance

    again = review_pull(ds.root, LOCAL, studio=studio_for(srv), min_words=3)
    assert again.reviews == 2 and ds.read_table("reviews").num_rows == 2  # re-pull replaces, never duplicates
    del srv.annotations[aid]  # the fix deleted in Label Studio: its verdict and fix row are withdrawn
    review_pull(ds.root, LOCAL, studio=studio_for(srv), min_words=3)
    assert fix_id not in set(ds.read_table("captions").column("caption_id").to_pylist())
    assert accepted_caption_counts(ds.read_table("captions"), ds.read_table("reviews")) == {good["clip_id"]: 1, wrong["clip_id"]: 1}


def test_a_fix_identical_to_the_caption_is_flagged_and_not_accepted(tmp_path):
    ds, srv, caps = _captioned(tmp_path)
    good = caps["two red cars cross a long bridge"]
    review_push(ds.root, LOCAL, studio=studio_for(srv))
    _review(srv, good["caption_id"], verdict("fix", fix=good["text"]), REVIEWER)
    report = review_pull(ds.root, LOCAL, studio=studio_for(srv), min_words=3)
    assert (report.fixes, report.fixes_accepted) == (1, 0)
    fix = [r for r in ds.read_table("captions").to_pylist() if r["writer"] == FIX_WRITER][0]
    assert "unchanged_draft" in fix["flags"]
    # the caption was "fixed" into itself: its review says fixed, so neither counts
    assert accepted_caption_counts(ds.read_table("captions"), ds.read_table("reviews")).get(good["clip_id"], 0) == 0


def test_review_pull_without_a_review_project_says_to_push_first(tmp_path):
    from dvtr_data.errors import ServiceError

    ds, srv, _ = _captioned(tmp_path)
    with pytest.raises(ServiceError, match="review push"):
        review_pull(ds.root, LOCAL, studio=studio_for(srv))
