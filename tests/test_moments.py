"""Moment annotation (push / simulate / pull against the in-memory Label Studio fake), the v1 -> v2 migration of
``moments``, the QVHighlights export of moments, and its features.

Expected values come from the hand-made truth in `dvtr_data.testing.moments` (maneuver spans, objects in view), not from
the code under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dvtr_data.annotation import moments as M
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.baselines.ms_detr.qvh_eval import evaluate
from dvtr_data.dataset import write_parquet
from dvtr_data.export import export_dataset
from dvtr_data.export.qvhighlights import relevant_cells, stable_qid, three_ratings
from dvtr_data.schemas.tables import SCHEMA_METADATA_KEY
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
from dvtr_data.testing.moments import FLIGHTS, TINY_CLIP, add_captions_and_splits, make_moments_dataset

KEY = "0123456789abcdef0123456789abcdef01234567"
LOCAL = Connection("http://127.0.0.1:8080", KEY, local=True)
A1, B2 = "f00000000000000a1", "f00000000000000b2"


# ----------------------------------------------------------------------------------------------------------------
# the 2-s grid, segments, frames
# ----------------------------------------------------------------------------------------------------------------
def test_segments_are_at_most_150_s_on_the_grid():
    assert M.plan_segments(61.0) == [(0.0, 61.0)]
    assert M.plan_segments(150.0) == [(0.0, 150.0)]
    assert M.plan_segments(200.0) == [(0.0, 100.0), (100.0, 200.0)]
    # 301 s -> 3 segments of ceil(100.33 / 2) * 2 = 102 s, the last one shorter
    assert M.plan_segments(301.0) == [(0.0, 102.0), (102.0, 204.0), (204.0, 301.0)]
    assert M.segment_vid(A1, 102.0) == f"{A1}_s00102"


def test_frames_and_seconds_round_trip():
    assert M.seconds_to_frames(6.0, 26.0, 10.0) == (61, 260)
    assert M.frames_to_seconds(61, 260, 10.0) == (6.0, 26.0)


def test_odd_duration_has_no_partial_last_cell():
    # 61 s: the official mk_gt_scores sizes its array int(61 / 2) = 30, so cell 30 (60-61 s) must not appear
    assert M.relevant_cells([[50.0, 61.0]], 61.0) == [25, 26, 27, 28, 29]
    assert relevant_cells([[50.0, 61.0]], 61.0) == [25, 26, 27, 28, 29]  # the caption-derived export path too
    assert M.relevant_cells([[60.2, 60.8]], 61.0) == [29]


def test_cell_scores_take_the_rating_covering_most_of_each_cell():
    # segment at 100 s; window 100-106 -> cells 0, 1, 2; painted: 4 over 100-103, 1 over 103-106
    cells, scores = M.cell_scores([[100.0, 106.0]], [(100.0, 103.0, 4), (103.0, 106.0, 1)], 100.0, 200.0)
    assert cells == [0, 1, 2]
    assert scores == [4, 4, 1]  # cell 1 (102-104 s) has 1 s of each rating: the first painted wins the tie
    cells, scores = M.cell_scores([[100.0, 104.0]], [], 100.0, 200.0)
    assert scores == [None, None]


def test_three_ratings_fill_rule():
    assert three_ratings([[3], [None], [4, 1], [0, 1, 2, 3]]) == ([[3, 3, 3], [2, 2, 2], [4, 1, 4], [0, 1, 2]], 1)


def test_labeling_config_has_query_windows_and_ratings_on_the_video():
    import xml.etree.ElementTree as ET

    root = ET.fromstring(M.render_moments_config())
    timelines = {el.get("name"): el for el in root.iter("TimelineLabels")}
    # one tag for windows and ratings: Label Studio 1.23 draws only with the first TimelineLabels of a video
    assert set(timelines) == {"windows"} and timelines["windows"].get("toName") == "video"
    assert [lab.get("value") for lab in timelines["windows"].iter("Label")] == ["relevant", *M.SALIENCY_LABELS]
    assert next(root.iter("TextArea")).get("name") == "query" and next(root.iter("Video")).get("frameRate") == "$fps"


def test_a_project_made_with_the_two_tag_config_keeps_a_hidden_saliency_tag():
    """Label Studio refuses a config that drops a tag stored annotations use, so an old project keeps a hidden
    ``saliency`` tag, placed after the video so that the drawing tag stays the first."""
    import xml.etree.ElementTree as ET

    assert not M.has_legacy_saliency(None) and not M.has_legacy_saliency({"label_config": M.render_moments_config()})
    cfg = M.render_moments_config(legacy_saliency=True)
    assert M.has_legacy_saliency({"label_config": cfg})
    root = ET.fromstring(cfg)
    assert [el.get("name") for el in root.iter() if el.tag in ("TimelineLabels", "Video")] == ["windows", "video", "saliency"]
    (hidden,) = [v for v in root.iter("View") if v.get("style") == "display: none"]
    assert [lab.get("value") for lab in hidden.iter("Label")] == list(M.SALIENCY_LABELS)


def test_the_label_says_window_or_rating_whichever_tag_drew_it():
    """Frames 15-64 at 10 fps are 1.4-6.4 s (cells 1 and 2); a rating drawn with the windows tag is no window,
    and a rating under the old separate ``saliency`` tag is still read."""
    def span(name: str, start: int, end: int, label: str) -> dict:
        return {"from_name": name, "to_name": "video", "type": "timelinelabels",
                "value": {"ranges": [{"start": start, "end": end}], "timelinelabels": [label]}}

    task = {"id": 7, "data": {"fps": 10.0, "segment_start_s": 0.0, "segment_end_s": 40.0, "flight_id": "f1"}}
    result = [{"from_name": "query", "to_name": "video", "type": "textarea", "value": {"text": ["q"]}},
              span("windows", 15, 64, "relevant"), span("windows", 15, 40, "4 very good"),
              span("saliency", 41, 64, "2 fair")]
    row = M.moment_row(task, {"id": 3, "result": result, "completed_by": 1}, project_id=1, emails={1: "a@b.c"})
    assert row["windows"] == [[1.4, 6.4]] and row["saliency_clip_ids"] == [1, 2]
    assert row["saliency_scores"] == [[4], [2]] and row["flags"] == [] and row["accepted"]


# ----------------------------------------------------------------------------------------------------------------
# round trip on the fake server
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture
def annotated(tmp_path):
    ds = make_moments_dataset(tmp_path / "ds")
    srv = FakeServer()
    studio = Studio(LOCAL, sdk=FakeSDK(srv))
    pushed = M.push_moments(ds.root, LOCAL, studio=studio)
    simulated = M.simulate_moments(ds.root, LOCAL, studio=studio)
    pulled = M.pull_moments(ds.root, LOCAL, studio=studio)
    return ds, srv, studio, pushed, simulated, pulled


def test_push_makes_one_task_per_segment_and_serves_the_flights(annotated):
    ds, srv, studio, pushed, _, _ = annotated
    assert pushed.tasks_created == 3 and pushed.media_placed == 2  # a1: 0-100, 100-200; b2: 0-61
    spans = sorted((t["data"]["flight_id"], t["data"]["segment_start_s"], t["data"]["segment_end_s"])
                   for t in srv.tasks.values())
    assert spans == [(A1, 0.0, 100.0), (A1, 100.0, 200.0), (B2, 0.0, 61.0)]
    for t in srv.tasks.values():
        assert t["data"]["video"] == f"/data/local-files/?d=annotation_media/flights/{t['data']['flight_id']}.mp4"
        assert (ds.root / "annotation_media" / "flights" / f"{t['data']['flight_id']}.mp4").is_file()
    again = M.push_moments(ds.root, LOCAL, studio=studio)
    assert (again.tasks_created, again.tasks_existing, len(srv.tasks)) == (0, 3, 3)


def test_pull_writes_the_truth_windows_and_ratings(annotated):
    ds, _, _, _, simulated, pulled = annotated
    expected = {c: (a, b) for fid in FLIGHTS for a, b, c, _ in FLIGHTS[fid][1]}
    assert simulated.annotations_created == len(expected) == 7 and pulled.rows_new == 7
    rows = {r["query"]: r for r in ds.read_table("moments").to_pylist()}
    assert {q: tuple(r["windows"][0]) for q, r in rows.items()} == expected
    assert all(r["source"] == "simulated" and r["accepted"] and r["status"] == "submitted" for r in rows.values())
    orbit = rows["the camera orbits a white farmhouse"]  # 6-26 s; a building is in view 6-16 s only
    assert orbit["saliency_clip_ids"] == list(range(3, 13))
    assert orbit["saliency_scores"] == [[4]] * 5 + [[1]] * 5
    lake = rows["the drone descends toward a lake"]  # flight b2 (61 s), 12-61 s: the last whole cell is 29
    assert lake["saliency_clip_ids"] == list(range(6, 30))
    assert lake["saliency_scores"][-5:] == [[4]] * 5 and lake["saliency_scores"][0] == [1]  # boat from 50 s
    pass_ = rows["a long pass over a sports field"]  # second segment of a1: cells count from 100 s
    assert (pass_["segment_start_s"], pass_["saliency_clip_ids"][0], pass_["saliency_clip_ids"][-1]) == (100.0, 0, 19)
    forest = rows["the drone climbs above a forest"]  # no object counted: 3 everywhere
    assert forest["saliency_scores"] == [[3]] * 6


def test_rerun_and_deleted_annotation(annotated):
    ds, srv, studio, _, _, _ = annotated
    again = M.simulate_moments(ds.root, LOCAL, studio=studio)
    assert (again.annotations_created, again.annotations_existing) == (0, 7)
    gone = min(srv.annotations)
    del srv.annotations[gone]
    pulled = M.pull_moments(ds.root, LOCAL, studio=studio)
    assert (pulled.rows_new, pulled.rows_updated, pulled.kept_deleted) == (0, 6, 1)
    rows = {r["moment_id"]: r for r in ds.read_table("moments").to_pylist()}
    kept = next(r for r in rows.values() if r["ls_annotation_id"] == gone)
    assert "deleted_in_labelstudio" in kept["flags"] and not kept["accepted"] and len(rows) == 7


def test_human_annotation_without_window_is_not_accepted(tmp_path):
    ds = make_moments_dataset(tmp_path / "ds")
    srv = FakeServer()
    studio = Studio(LOCAL, sdk=FakeSDK(srv))
    M.push_moments(ds.root, LOCAL, studio=studio)
    tid = next(t["id"] for t in srv.tasks.values() if t["data"]["flight_id"] == B2)
    studio.sdk.annotations.create(tid, result=[
        {"from_name": "query", "to_name": "video", "type": "textarea", "value": {"text": ["boats on a lake"]}}])
    studio.sdk.annotations.create(tid, result=[
        {"from_name": "query", "to_name": "video", "type": "textarea", "value": {"text": ["a road"]}},
        {"from_name": "windows", "to_name": "video", "type": "timelinelabels",
         "value": {"ranges": [{"start": 1, "end": 30}, {"start": 21, "end": 50}, {"start": 500, "end": 900}],
                   "timelinelabels": ["relevant"]}},
    ])
    M.pull_moments(ds.root, LOCAL, studio=studio)
    rows = {r["query"]: r for r in ds.read_table("moments").to_pylist()}
    assert rows["boats on a lake"]["flags"] == ["no_window"] and not rows["boats on a lake"]["accepted"]
    # frames 1-30 and 21-50 overlap -> one window 0-5 s; 500-900 -> 49.9-90 s, clipped to the segment's 61 s
    assert rows["a road"]["windows"] == [[0.0, 5.0], [49.9, 61.0]]
    assert rows["a road"]["flags"] == ["unrated_cells"] and rows["a road"]["accepted"]
    assert rows["a road"]["source"] == "human"


# ----------------------------------------------------------------------------------------------------------------
# migration
# ----------------------------------------------------------------------------------------------------------------
def test_moments_v1_migrates_to_v2(tmp_path):
    ds = make_moments_dataset(tmp_path / "ds")
    add_captions_and_splits(ds, {A1: "train", B2: "test"})
    clip = f"{B2}-0000000-0000050"
    v1 = pa.schema([
        pa.field("caption_id", pa.string(), False), pa.field("clip_id", pa.string(), False),
        pa.field("flight_id", pa.string(), False), pa.field("windows", pa.list_(pa.list_(pa.float64())), False),
        pa.field("saliency_clip_ids", pa.list_(pa.int64())), pa.field("saliency_scores", pa.list_(pa.list_(pa.int32()))),
        pa.field("source", pa.string(), False),
    ], metadata={SCHEMA_METADATA_KEY: b"moments/1"})
    table = pa.Table.from_pylist([{"caption_id": f"c-{clip}", "clip_id": clip, "flight_id": B2,
                                   "windows": [[0.0, 4.0]], "saliency_clip_ids": [0, 1],
                                   "saliency_scores": [[4, 3, 4], [2, 2, 1]], "source": "human"}], schema=v1)
    write_parquet(ds.table_path("moments"), table)
    (row,) = ds.read_table("moments").to_pylist()
    assert row["moment_id"] == f"v1-c-{clip}" and row["query"] == "a drone video"
    assert (row["segment_start_s"], row["segment_end_s"]) == (0.0, 61.0)
    assert row["raters"] == ["v1-rater-1", "v1-rater-2", "v1-rater-3"] and row["accepted"]
    assert row["saliency_scores"] == [[4, 3, 4], [2, 2, 1]] and row["caption_id"] == f"c-{clip}"


# ----------------------------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------------------------
def _lines(folder: Path, split: str) -> list[dict]:
    return [json.loads(ln) for ln in (folder / f"highlight_{split}_release.jsonl").read_text().splitlines()]


def test_export_of_moments_has_segments_buckets_and_three_ratings(annotated, tmp_path):
    ds = annotated[0]
    add_captions_and_splits(ds, {A1: "train", B2: "test"})
    r = export_dataset(ds, "qvhighlights", tmp_path / "qv")
    train, test = _lines(tmp_path / "qv", "train"), _lines(tmp_path / "qv", "test")
    assert len(train) == 5 and len(test) == 2
    assert {q["vid"] for q in train} == {f"{A1}_s00000", f"{A1}_s00100"} and {q["duration"] for q in train} == {100.0}
    by_query = {q["query"]: q for q in train + test}
    assert by_query["a long pass over a sports field"]["relevant_windows"] == [[0.0, 40.0]]  # 100-140 s of the flight
    for q in train + test:
        assert q["duration"] <= 150 and q["qid"] == stable_qid(q["moment_id"]) and q["saliency_raters"] == 1
        assert all(len(s) == 3 and len(set(s)) == 1 for s in q["saliency_scores"])
        assert max(q["relevant_clip_ids"]) < int(q["duration"] / 2)
    # train: 6 s, 20 s, 36 s, 40 s, 10 s windows fill all three buckets; test: 12 s and 49 s leave "short" empty
    assert r.manifest["length_buckets"] == {"train": {"short": 2, "middle": 1, "long": 2}, "val": {"short": 0, "middle": 0, "long": 0},
                                            "test": {"short": 0, "middle": 1, "long": 1}}
    assert any(n.startswith("split test: no window in length bucket(s) short") for n in r.notes)
    assert not any(n.startswith("split train:") for n in r.notes)
    again = export_dataset(ds, "qvhighlights", tmp_path / "qv2")
    assert _lines(tmp_path / "qv2", "train") == train and again.manifest["length_buckets"] == r.manifest["length_buckets"]


def test_exact_predictions_score_100_and_shifted_ones_less(annotated, tmp_path):
    ds = annotated[0]
    add_captions_and_splits(ds, {A1: "train", B2: "test"})
    export_dataset(ds, "qvhighlights", tmp_path / "qv")
    gt = _lines(tmp_path / "qv", "train")
    exact = [{"qid": q["qid"], "pred_relevant_windows": [[*q["relevant_windows"][0], 1.0]],
              "pred_saliency_scores": _saliency(q)} for q in gt]
    shifted = [{"qid": q["qid"], "pred_relevant_windows": [[a + 4.0, b + 4.0, 1.0] for a, b in q["relevant_windows"]],
                "pred_saliency_scores": _saliency(q)} for q in gt]
    best, worse = evaluate(exact, gt)["brief"], evaluate(shifted, gt)["brief"]
    assert best["MR-full-R1@0.7"] == 100.0 and best["MR-full-mAP"] == 100.0 and best["MR-long-mAP"] == 100.0
    assert worse["MR-full-R1@0.7"] < 100.0 and worse["MR-full-mAP"] < 100.0


def _saliency(q: dict) -> list[float]:
    out = [0.0] * int(q["duration"] / 2)
    for k, s in zip(q["relevant_clip_ids"], q["saliency_scores"], strict=True):
        out[k] = float(sum(s))
    return out


OFFICIAL = os.environ.get("DVTR_MOMENT_DETR")  # a checkout of jayleicn/moment_detr
EVAL_PYTHON = os.environ.get("DVTR_EVAL_PYTHON", sys.executable)  # an interpreter with numpy and scikit-learn


@pytest.mark.skipif(not OFFICIAL, reason="set DVTR_MOMENT_DETR to a checkout of jayleicn/moment_detr")
def test_official_evaluator_scores_the_export(annotated, tmp_path):
    ds = annotated[0]
    add_captions_and_splits(ds, {A1: "train", B2: "test"})
    export_dataset(ds, "qvhighlights", tmp_path / "qv")
    gt_path = tmp_path / "qv" / "highlight_train_release.jsonl"
    gt = _lines(tmp_path / "qv", "train")
    results = {}
    for name, shift in (("exact", 0.0), ("shifted", 4.0)):
        preds = tmp_path / f"{name}.jsonl"
        preds.write_text("".join(json.dumps({
            "qid": q["qid"], "pred_relevant_windows": [[a + shift, b + shift, 1.0] for a, b in q["relevant_windows"]],
            "pred_saliency_scores": _saliency(q)}) + "\n" for q in gt))
        out = tmp_path / f"{name}_metrics.json"
        subprocess.run([EVAL_PYTHON, "-m", "standalone_eval.eval", "--submission_path", str(preds), "--gt_path",
                        str(gt_path), "--save_path", str(out), "--not_verbose"], cwd=OFFICIAL, check=True,
                       capture_output=True, timeout=300)
        results[name] = json.loads(out.read_text())["brief"]
    assert results["exact"]["MR-full-R1@0.7"] == 100.0 and results["exact"]["MR-full-mAP"] == 100.0
    assert results["shifted"]["MR-full-mAP"] < 100.0


# ----------------------------------------------------------------------------------------------------------------
# features
# ----------------------------------------------------------------------------------------------------------------
def _colour_video(path: Path, colours: list[tuple[int, int, int]], fps: int = 10, seconds_each: float = 2.0) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for colour in colours:
            for _ in range(int(fps * seconds_each)):
                img = np.zeros((48, 64, 3), np.uint8)
                img[:] = colour
                img[:, :16] = 255 - np.array(colour, np.uint8)  # not flat: the crop keeps some structure
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_features_one_row_per_cell_and_query_layout(tmp_path):
    from dvtr_data.export.moment_features import FeatureOptions, write_moment_features

    video = tmp_path / "v.mp4"
    # 2-s stretches: red, blue, red, green, red (10 s)
    _colour_video(video, [(200, 0, 0), (0, 0, 200), (200, 0, 0), (0, 200, 0), (200, 0, 0)])
    opts = FeatureOptions(model="tiny", model_cfg=TINY_CLIP)
    info = write_moment_features(tmp_path / "features", {"vA": (video, 2.0, 9.0)},
                                 {7: "a red roof", 8: "boats on a lake near a bridge"}, opts)
    with np.load(tmp_path / "features" / "clip" / "vA.npz") as f:
        feats = f["features"]
    # segment 2-9 s: ceil(7 / 2) = 4 cells, middles 3, 5, 7, 8.999 s -> blue, red, green, red
    assert feats.shape == (4, 32) and np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert np.allclose(feats[1], feats[3], atol=1e-3) and not np.allclose(feats[0], feats[1], atol=1e-2)
    assert not np.allclose(feats[1], feats[2], atol=1e-2)
    with np.load(tmp_path / "features" / "text" / "qid8.npz") as f:
        hidden, pooled = f["last_hidden_state"], f["pooler_output"]
    with np.load(tmp_path / "features" / "text" / "qid7.npz") as f:
        short = f["last_hidden_state"]
    assert hidden.shape[1] == 32 and pooled.shape == (32,) and len(short) < len(hidden) <= opts.max_words
    assert info["clip_rows"] == 4 and "SlowFast weights cannot be had" in info["slowfast"]
    assert float(np.abs(hidden).sum()) > 0
