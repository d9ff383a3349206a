"""The rating round (`annotate push/simulate/pull --task ratings`) against the in-memory Label Studio fake, and the
QVHighlights export's three ratings from three distinct raters.

Expected values come from the hand-made truth in `dvtr_data.testing.moments` (who writes which query, which objects
are in view when) and from the documented noise rule (``random.Random(f"{seed}|{rater}|{moment_id}")`` choosing
from -1, 0, 0, +1 per cell), recomputed here, not from the code under test.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from dvtr_data.annotation import moments as M
from dvtr_data.annotation import ratings as R
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.export import export_dataset
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
from dvtr_data.testing.moments import add_captions_and_splits, make_moments_dataset

LOCAL = Connection("http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567", local=True)
A1, B2 = "f00000000000000a1", "f00000000000000b2"
ORBIT = "the camera orbits a white farmhouse"  # a1 6-26 s, the 2nd maneuver of segment 0-100: written by simulated-2


def sim(n: int) -> str:
    return f"simulated-{n}@simulated.dvtr.invalid"


def expected_scores(truth: list[int], rater: str, moment_id: str, seed: int = 0) -> list[int]:
    rng = random.Random(f"{seed}|{rater}|{moment_id}")
    return [min(4, max(0, s + rng.choice((-1, 0, 0, 1)))) for s in truth]


@pytest.fixture
def rated(tmp_path):
    ds = make_moments_dataset(tmp_path / "ds")
    srv = FakeServer()
    studio = Studio(LOCAL, sdk=FakeSDK(srv))
    M.push_moments(ds.root, LOCAL, studio=studio)
    M.simulate_moments(ds.root, LOCAL, studio=studio)
    M.pull_moments(ds.root, LOCAL, studio=studio)
    pushed = R.push_ratings(ds.root, LOCAL, studio=studio)
    simulated = R.simulate_ratings(ds.root, LOCAL, studio=studio)
    pulled = R.pull_ratings(ds.root, LOCAL, studio=studio)
    return ds, srv, studio, pushed, simulated, pulled


def test_config_shows_the_query_windows_and_the_same_rating_labels():
    root = ET.fromstring(R.render_ratings_config())
    timelines = {el.get("name"): el for el in root.iter("TimelineLabels")}
    assert set(timelines) == {"windows"}  # one tag: Label Studio 1.23 draws only with a video's first TimelineLabels
    assert [lab.get("value") for lab in timelines["windows"].iter("Label")] == [R.WINDOW_LABEL, *M.SALIENCY_LABELS]
    assert {h.get("value") for h in root.iter("Header")} >= {"$header", "$query", "$windows_text"}
    assert R.windows_text([[6.0, 26.0], [70.5, 80.0]]) == "windows: 0:06.0-0:26.0, 1:10.5-1:20.0"


def test_push_makes_a_task_per_moment_with_its_windows_drawn(rated):
    ds, srv, studio, pushed, _, _ = rated
    assert (pushed.moments, pushed.tasks_created) == (7, 7)
    project = srv.projects[pushed.project_id]
    assert project["maximum_annotations"] == 2 and project["model_version"] == R.PREFILL_VERSION
    assert R.PROJECT_MARKER in project["description"]
    task = next(t for t in srv.tasks.values() if t["project"] == pushed.project_id and t["data"]["query"] == ORBIT)
    assert task["data"]["windows"] == [[6.0, 26.0]] and task["data"]["author"] == sim(2)
    (pred,) = [p for p in srv.predictions.values() if p["task"] == task["id"]]
    # 6-26 s at 10 fps: frames 61-260, on the windows timeline
    assert pred["result"] == [{"from_name": "windows", "to_name": "video", "type": "timelinelabels",
                               "value": {"ranges": [{"start": 61, "end": 260}], "timelinelabels": ["query window"]}}]
    again = R.push_ratings(ds.root, LOCAL, studio=studio)
    assert (again.tasks_created, again.tasks_existing) == (0, 7)


def test_simulated_raters_are_never_the_author_and_follow_truth_plus_their_noise(rated):
    ds, _, _, _, simulated, pulled = rated
    assert simulated.annotations_created == 14 and pulled.rows_new == 14 and pulled.accepted == 14
    moments = {m["query"]: m for m in ds.read_table("moments").to_pylist()}
    rows = ds.read_table("moment_ratings").to_pylist()
    for m in moments.values():
        raters = sorted(r["rater"] for r in rows if r["moment_id"] == m["moment_id"])
        assert m["annotator"] not in raters and len(raters) == 2
    orbit = moments[ORBIT]
    truth = [4] * 5 + [1] * 5  # a building in view 6-16 s of the 6-26 s window
    got = {r["rater"]: r for r in rows if r["moment_id"] == orbit["moment_id"]}
    assert set(got) == {sim(1), sim(3)}  # the first two simulated annotators who are not simulated-2
    for rater, row in got.items():
        assert row["saliency_clip_ids"] == list(range(3, 13))
        assert row["saliency_scores"] == expected_scores(truth, rater, orbit["moment_id"])
    again = R.simulate_ratings(ds.root, LOCAL, studio=rated[2])
    assert (again.annotations_created, again.annotations_existing) == (0, 14)


def test_export_takes_three_distinct_raters_author_first(rated, tmp_path):
    ds = rated[0]
    add_captions_and_splits(ds, {A1: "train", B2: "test"})
    r = export_dataset(ds, "qvhighlights", tmp_path / "qv")
    lines = [json.loads(ln) for s in ("train", "test")
             for ln in (tmp_path / "qv" / f"highlight_{s}_release.jsonl").read_text().splitlines()]
    assert len(lines) == 7 and all(q["saliency_raters"] == 3 and not q["saliency_filled"] for q in lines)
    orbit = next(q for q in lines if q["query"] == ORBIT)
    truth = [4] * 5 + [1] * 5
    r1, r3 = expected_scores(truth, sim(1), orbit["moment_id"]), expected_scores(truth, sim(3), orbit["moment_id"])
    # columns: the author (simulated-2, the truth itself), then simulated-1 (submitted first), then simulated-3
    assert orbit["saliency_scores"] == [[t, a, b] for t, a, b in zip(truth, r1, r3, strict=True)]
    assert r1 != truth or r3 != truth  # the noise is real: not three copies of one column
    assert r.manifest["saliency"]["moments_filled"] == 0 and r.manifest["saliency"]["moments_with_rating_round"] == 7
    assert not any("fewer than three raters" in n for n in r.notes)


def test_without_a_rating_round_the_export_fills_and_marks(tmp_path):
    ds = make_moments_dataset(tmp_path / "ds")
    studio = Studio(LOCAL, sdk=FakeSDK(FakeServer()))
    M.push_moments(ds.root, LOCAL, studio=studio)
    M.simulate_moments(ds.root, LOCAL, studio=studio)
    M.pull_moments(ds.root, LOCAL, studio=studio)
    add_captions_and_splits(ds, {A1: "train", B2: "test"})
    r = export_dataset(ds, "qvhighlights", tmp_path / "qv")
    lines = [json.loads(ln) for ln in (tmp_path / "qv" / "highlight_train_release.jsonl").read_text().splitlines()]
    assert all(q["saliency_raters"] == 1 and q["saliency_filled"] for q in lines)
    assert r.manifest["saliency"]["moments_filled"] == 7
    assert any("7 moment(s) have fewer than three raters (their lines say saliency_filled: true)" in n for n in r.notes)


def test_own_query_and_a_second_submission_by_one_rater(rated):
    ds, srv, studio, pushed, _, _ = rated
    users = {u["email"]: int(u["id"]) for u in studio.users()}
    task = next(t for t in srv.tasks.values() if t["project"] == pushed.project_id and t["data"]["query"] == ORBIT)
    paint_all_4 = [{"from_name": "saliency", "to_name": "video", "type": "timelinelabels",
                    "value": {"ranges": [{"start": 61, "end": 260}], "timelinelabels": ["4 very good"]}}]
    studio.sdk.annotations.create(task["id"], result=paint_all_4, completed_by=users[sim(2)])  # the author
    studio.sdk.annotations.create(task["id"], result=paint_all_4, completed_by=users[sim(1)])  # again, later
    pulled = R.pull_ratings(ds.root, LOCAL, studio=studio)
    assert (pulled.rows_new, pulled.rows_updated, pulled.superseded) == (1, 14, 1)
    rows = {(r["moment_id"], r["rater"]): r for r in ds.read_table("moment_ratings").to_pylist()}
    mid = task["data"]["moment_id"]
    own = rows[(mid, sim(2))]
    assert own["flags"] == ["own_query"] and not own["accepted"]
    assert rows[(mid, sim(1))]["saliency_scores"] == [4] * 10  # the later submission replaced the first
    # one deleted annotation: kept, flagged, out of exports
    gone = next(a for a in srv.annotations.values() if a["task"] == task["id"] and a["completed_by"] == users[sim(3)])
    del srv.annotations[gone["id"]]
    pulled = R.pull_ratings(ds.root, LOCAL, studio=studio)
    assert pulled.kept_deleted == 1
    kept = {(r["moment_id"], r["rater"]): r for r in ds.read_table("moment_ratings").to_pylist()}[(mid, sim(3))]
    assert "deleted_in_labelstudio" in kept["flags"] and not kept["accepted"]


def test_rater_columns_skip_a_rater_already_counted():
    from dvtr_data.export.qvhighlights import rater_columns

    moment = {"saliency_clip_ids": [3, 4], "saliency_scores": [[4], [2]], "raters": ["a"]}
    extra = [{"rater": "a", "saliency_clip_ids": [3, 4], "saliency_scores": [0, 0]},
             {"rater": "b", "saliency_clip_ids": [3, 4], "saliency_scores": [3, None]},
             {"rater": "c", "saliency_clip_ids": [4, 3], "saliency_scores": [1, 2]},
             {"rater": "d", "saliency_clip_ids": [3, 4], "saliency_scores": [0, 0]}]
    assert rater_columns(moment, extra) == ([[4, 3, 2], [2, None, 1]], ["a", "b", "c"])


@pytest.mark.boundary
def test_cli_round_trip_and_errors(tmp_path, monkeypatch):
    import dvtr_data.annotation.moments as moments_mod
    import dvtr_data.annotation.ratings as ratings_mod
    import dvtr_data.cli.annotate as cli_annotate
    from dvtr_data.cli import app

    ds = make_moments_dataset(tmp_path / "ds")
    srv = FakeServer()
    monkeypatch.setattr(moments_mod, "Studio", lambda conn: Studio(conn, sdk=FakeSDK(srv)))
    monkeypatch.setattr(ratings_mod, "Studio", lambda conn: Studio(conn, sdk=FakeSDK(srv)))
    monkeypatch.setattr(cli_annotate, "_connection", lambda *_: LOCAL)
    cli = CliRunner()
    res = cli.invoke(app, ["annotate", "push", "--task", "ratings", "--dataset", str(ds.root)], env={"COLUMNS": "200"})
    assert res.exit_code != 0 and "no accepted moments to rate" in res.output
    for task in ("moments", "ratings"):
        for command in ("push", "simulate", "pull"):
            res = cli.invoke(app, ["annotate", command, "--task", task, "--dataset", str(ds.root)],
                             env={"COLUMNS": "200"})
            assert res.exit_code == 0, res.output
    assert "14 new" in res.output and "14 accepted" in res.output
    res = cli.invoke(app, ["annotate", "push", "--task", "rating", "--dataset", str(ds.root)], env={"COLUMNS": "200"})
    assert res.exit_code != 0 and "--task must be captions, moments or ratings" in res.output


OFFICIAL = os.environ.get("DVTR_MOMENT_DETR")  # a checkout of jayleicn/moment_detr
EVAL_PYTHON = os.environ.get("DVTR_EVAL_PYTHON", sys.executable)  # an interpreter with numpy and scikit-learn


@pytest.mark.skipif(not OFFICIAL, reason="set DVTR_MOMENT_DETR to a checkout of jayleicn/moment_detr")
def test_official_evaluator_scores_three_distinct_raters(rated, tmp_path):
    """The unmodified standalone_eval scores the export whose three rating columns differ (it reads each rater's
    column for the HL metrics): the exact windows give 100 on the moment metrics, and HL mAP is a real number."""
    ds = rated[0]
    add_captions_and_splits(ds, {A1: "train", B2: "test"})
    export_dataset(ds, "qvhighlights", tmp_path / "qv")
    gt_path = tmp_path / "qv" / "highlight_train_release.jsonl"
    gt = [json.loads(ln) for ln in gt_path.read_text().splitlines()]
    assert any(len(set(s)) > 1 for q in gt for s in q["saliency_scores"])  # the raters really differ somewhere
    preds = tmp_path / "preds.jsonl"
    lines = []
    for q in gt:
        sal = [0.0] * int(q["duration"] / 2)
        for k, s in zip(q["relevant_clip_ids"], q["saliency_scores"], strict=True):
            sal[k] = float(sum(s))
        lines.append(json.dumps({"qid": q["qid"], "pred_relevant_windows": [[*w, 1.0] for w in q["relevant_windows"]],
                                 "pred_saliency_scores": sal}) + "\n")
    preds.write_text("".join(lines))
    out = tmp_path / "metrics.json"
    subprocess.run([EVAL_PYTHON, "-m", "standalone_eval.eval", "--submission_path", str(preds), "--gt_path",
                    str(gt_path), "--save_path", str(out), "--not_verbose"], cwd=OFFICIAL, check=True,
                   capture_output=True, timeout=300)
    brief = json.loads(out.read_text())["brief"]
    assert brief["MR-full-R1@0.7"] == 100.0 and brief["MR-full-mAP"] == 100.0
    assert 0.0 < brief["HL-min-VeryGood-mAP"] <= 100.0
    from dvtr_data.baselines.ms_detr.qvh_eval import evaluate

    ours = evaluate([json.loads(ln) for ln in lines], gt)["brief"]  # dvtr's own evaluator agrees, rater by rater
    assert {k: round(ours[k], 2) for k in brief} == brief
