"""Shared pieces of the annotation tests: a hand-made dataset and an in-memory fake of the SDK surface we use.

The fake mimics label-studio-sdk 2.x as observed against a real 1.23.2 server (shapes of tasks, predictions,
annotations and the JSON export), so push/pull/simulate logic is tested in milliseconds; the same flows run
against a real server in test_annotate_server.py. No tests live here.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from label_studio_sdk.core.api_error import ApiError

from dvtr_data.dataset import Dataset
from dvtr_data.schemas import schema_of

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# ----------------------------------------------------------------------------------------------------------------
# a dataset without video: tables written through the schema, clip files as placeholders
# ----------------------------------------------------------------------------------------------------------------
def make_dataset(root: Path, n_clips: int = 3, *, rejected: int = 0, files: bool = True) -> Dataset:
    ds = Dataset(root).create(name="unit")
    flight_id = "f0123456789abcdef"
    flight: dict[str, Any] = dict.fromkeys(schema_of("flights").schema.names)
    flight.update(flight_id=flight_id, status="ok", source_path=str(root / "src" / "flight one.mp4"), file_name="flight one.mp4",
                  size_bytes=1, settings_hash="x", ingested_at=T0, fps=30.0, duration_s=60.0, warnings=[])
    ds.write_table("flights", [flight])
    clips = []
    for i in range(n_clips + rejected):
        start, end = i * 150, (i + 1) * 150
        cid = f"{flight_id}-{start:07d}-{end:07d}"
        row: dict[str, Any] = dict.fromkeys(schema_of("clips").schema.names)
        row.update(writer="ingest", clip_id=cid, flight_id=flight_id, status="ok", shot_index=0, window_index=i,
                   start_frame=start,
                   end_frame=end, start_s=start / 30, end_s=end / 30, duration_s=5.0, fps=30.0, n_frames=150,
                   clip_path=f"clips/{flight_id}/{cid}.mp4", keyframe_paths=[], qc_reasons=[],
                   qc_verdict="pass" if i < n_clips else "reject", altitude_m=40.0 + i, altitude_kind="relative")
        clips.append(row)
        if files:
            path = root / row["clip_path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\0")
    ds.write_table("clips", clips)
    return ds


def write_precaptions(ds: Dataset, model: str = "ViT-S-32-alt/random-s0", suffix: str = "", per_clip: int = 3) -> None:
    import dvtr_data.schemas.precaption_tables  # noqa: F401

    rows = []
    for clip in ds.read_table("clips").to_pylist():
        for rank in range(1, per_clip + 1):
            rows.append(dict(clip_id=clip["clip_id"], rank=rank, text=f"draft {rank}: two cars drive along a road{suffix}",
                             score=0.3 - rank / 100, model=model, bank="builtin@0123", bank_index=rank))
    ds.write_table("precaptions", rows)


# ----------------------------------------------------------------------------------------------------------------
# the fake server
# ----------------------------------------------------------------------------------------------------------------
class Model(dict):
    """A dict that also answers attribute access and model_dump, like the SDK's pydantic models."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def model_dump(self) -> dict[str, Any]:
        return json.loads(json.dumps(self, default=str))


def _now(server: FakeServer) -> str:
    server.clock += timedelta(seconds=1)
    return server.clock.isoformat().replace("+00:00", "Z")


class FakeServer:
    """Projects, tasks, predictions, annotations and users in memory; ``fail_after`` simulates a dying server."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.clock = T0
        self.projects: dict[int, Model] = {}
        self.tasks: dict[int, Model] = {}
        self.predictions: dict[int, Model] = {}
        self.annotations: dict[int, Model] = {}
        self.storages: list[Model] = []
        self.users: dict[int, Model] = {1: Model(id=1, email="admin@dvtr.local", username="")}
        self.fail_after: int | None = None  # requests until the connection drops
        self.calls = 0
        self.bad_key = False

    def tick(self, **kw: Any) -> None:
        kw.pop("request_options", None)
        self.calls += 1
        if self.bad_key:
            raise ApiError(status_code=401, body={"detail": "Invalid token."})
        if self.fail_after is not None:
            if self.fail_after <= 0:
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
            self.fail_after -= 1

    def new_id(self) -> int:
        return next(self.ids)


class FakeSDK:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.users = SimpleNamespace(whoami=self._whoami, list=self._users, create=self._create_user)
        self.projects = SimpleNamespace(
            list=self._projects, get=self._project, create=self._create_project, update=self._update_project,
            import_tasks=self._import_tasks, import_predictions=self._import_predictions,
            exports=SimpleNamespace(download_sync=self._export),
        )
        self.tasks = SimpleNamespace(list=self._tasks, update=self._update_task, delete=self._delete_task)
        self.predictions = SimpleNamespace(list=self._predictions, update=self._update_prediction, delete=self._delete_prediction)
        self.annotations = SimpleNamespace(create=self._create_annotation, update=self._update_annotation)
        self.import_storage = SimpleNamespace(local=SimpleNamespace(list=self._storages, create=self._create_storage))

    # users
    def _whoami(self, **_: Any) -> Model:
        self.server.tick()
        return self.server.users[1]

    def _users(self, **_: Any) -> list[Model]:
        self.server.tick()
        return list(self.server.users.values())

    def _create_user(self, *, username: str, email: str, **kw: Any) -> Model:
        self.server.tick()
        kw.pop("request_options", None)
        uid = self.server.new_id() + 1000
        self.server.users[uid] = Model(id=uid, email=email, username=username, **kw)
        return self.server.users[uid]

    # projects
    def _projects(self, **_: Any) -> list[Model]:
        self.server.tick()
        return list(self.server.projects.values())

    def _project(self, pid: int, **_: Any) -> Model:
        self.server.tick()
        if pid not in self.server.projects:
            raise ApiError(status_code=404, body={"detail": "Not found."})
        return self.server.projects[pid]

    def _create_project(self, **kw: Any) -> Model:
        self.server.tick()
        kw.pop("request_options", None)
        pid = self.server.new_id()
        self.server.projects[pid] = Model(id=pid, model_version="", **kw)
        return self.server.projects[pid]

    def _update_project(self, pid: int, **kw: Any) -> Model:
        self.server.tick()
        if "model_version" in kw and not any(
            p["model_version"] == kw["model_version"] for p in self.server.predictions.values() if p["project"] == pid
        ):
            raise ApiError(status_code=400, body={"detail": "Validation error", "validation_errors": {"model_version": ["no such version"]}})
        self.server.projects[pid].update(kw)
        return self.server.projects[pid]

    def _import_tasks(self, pid: int, *, request: list[dict[str, Any]], **_: Any) -> Model:
        self.server.tick()
        ids = []
        for item in request:
            tid = self.server.new_id()
            self.server.tasks[tid] = Model(id=tid, project=pid, data=dict(item["data"]))
            for pred in item.get("predictions", []):
                self._add_prediction(pid, tid, pred)
            ids.append(tid)
        return Model(task_count=len(ids), task_ids=ids)

    def _add_prediction(self, pid: int, tid: int, pred: dict[str, Any]) -> Model:
        prid = self.server.new_id()
        self.server.predictions[prid] = Model(id=prid, task=tid, project=pid, model_version=pred.get("model_version"),
                                              result=pred["result"], score=pred.get("score"), created_at=_now(self.server))
        return self.server.predictions[prid]

    def _import_predictions(self, pid: int, *, request: list[dict[str, Any]], **_: Any) -> Model:
        self.server.tick()
        for pred in request:
            self._add_prediction(pid, pred["task"], pred)
        return Model(created=len(request))

    # tasks
    def _tasks(self, *, project: int, fields: str | None = None, **_: Any) -> list[Model]:
        self.server.tick()
        out = []
        for t in self.server.tasks.values():
            if t["project"] != project:
                continue
            item = Model(t)
            if fields == "all":
                item["annotations"] = [a for a in self.server.annotations.values() if a["task"] == t["id"]]
                item["predictions"] = [p for p in self.server.predictions.values() if p["task"] == t["id"]]
            out.append(item)
        return out

    def _update_task(self, tid: str, *, data: dict[str, Any], **_: Any) -> Model:
        self.server.tick()
        self.server.tasks[int(tid)]["data"] = data
        return self.server.tasks[int(tid)]

    def _delete_task(self, tid: str, **_: Any) -> None:
        self.server.tick()
        del self.server.tasks[int(tid)]
        for aid in [a for a, v in self.server.annotations.items() if v["task"] == int(tid)]:
            del self.server.annotations[aid]

    # predictions
    def _predictions(self, *, project: int, **_: Any) -> list[Model]:
        self.server.tick()
        return [p for p in self.server.predictions.values() if p["project"] == project]

    def _update_prediction(self, prid: int, **kw: Any) -> Model:
        self.server.tick()
        self.server.predictions[prid].update(kw)
        return self.server.predictions[prid]

    def _delete_prediction(self, prid: int, **_: Any) -> None:
        self.server.tick()
        del self.server.predictions[prid]

    # annotations
    def _create_annotation(self, tid: int, *, result: list[dict[str, Any]], completed_by: int = 1, lead_time: float | None = None,
                           was_cancelled: bool = False, parent_prediction: int | None = None, **_: Any) -> Model:
        self.server.tick()
        task = self.server.tasks[tid]
        project = self.server.projects[task["project"]]
        shown = [p for p in self.server.predictions.values() if p["task"] == tid and p["model_version"] == project["model_version"]]
        aid = self.server.new_id()
        now = _now(self.server)
        self.server.annotations[aid] = Model(
            id=aid, task=tid, project=task["project"], result=result, completed_by=completed_by, lead_time=lead_time,
            was_cancelled=was_cancelled, created_at=now, updated_at=now, parent_prediction=parent_prediction,
            prediction=dict(shown[0]) if shown else {},
        )
        return self.server.annotations[aid]

    def _update_annotation(self, aid: int, *, result: list[dict[str, Any]], **_: Any) -> Model:
        self.server.tick()
        self.server.annotations[aid].update(result=result, updated_at=_now(self.server))
        return self.server.annotations[aid]

    # storage
    def _storages(self, *, project: int, **_: Any) -> list[Model]:
        self.server.tick()
        return [s for s in self.server.storages if s["project"] == project]

    def _create_storage(self, *, project: int, path: str, **kw: Any) -> Model:
        self.server.tick()
        kw.pop("request_options", None)
        self.server.storages.append(Model(id=len(self.server.storages) + 1, project=project, path=path, **kw))
        return self.server.storages[-1]

    # export
    def _export(self, pid: int, **_: Any) -> list[bytes]:
        self.server.tick()
        tasks = []
        for t in self.server.tasks.values():
            if t["project"] != pid:
                continue
            anns = [dict(a) for a in self.server.annotations.values() if a["task"] == t["id"]]
            tasks.append({"id": t["id"], "data": t["data"], "annotations": anns,
                          "predictions": [p["id"] for p in self.server.predictions.values() if p["task"] == t["id"]]})
        return [json.dumps(tasks).encode()]


def caption_result(
    *texts: str, qc: list[str] | None = None, category: str | None = None, start: list[str] | None = None,
) -> list[dict[str, Any]]:
    """An annotation's result as Label Studio sends it; ``start`` picks drafts to start from ("draft 2", ...)."""
    out = [{"from_name": f"caption_{i}", "to_name": "video", "type": "textarea", "value": {"text": [t]}} for i, t in enumerate(texts, 1)]
    if start:
        out.append({"from_name": "start_from", "to_name": "video", "type": "choices", "value": {"choices": start}})
    if qc:
        out.append({"from_name": "qc", "to_name": "video", "type": "choices", "value": {"choices": qc}})
    if category:
        out.append({"from_name": "category", "to_name": "video", "type": "choices", "value": {"choices": [category]}})
    return out


# ----------------------------------------------------------------------------------------------------------------
# a constructed caption set whose quality figures are worked out by hand below
# ----------------------------------------------------------------------------------------------------------------
HAND_CASE = {
    "A": ["two red cars cross bridge", "two red cars cross bridge slowly"],  # a1 is a2 minus its last word
    "B": ["boats float near pier", "people walk across field"],  # no word in common with anything
}


def hand_figures() -> dict[str, float]:
    """The figures of HAND_CASE, derived by hand (leave-one-out: each caption against its clip's other one).

    BLEU-4 (corpus): clipped n-gram matches / hypothesis n-grams, summed over the four pairs.
      a1 vs a2 matches everything: 5/5, 4/4, 3/3, 2/2; a2 vs a1 misses the n-grams with "slowly": 5/6, 4/5, 3/4, 2/3;
      the B pairs match nothing (0/4, 0/3, 0/2, 0/1 each). Closest reference lengths 6 + 5 + 4 + 4 = 19 equal the
      hypothesis lengths, so no brevity penalty.
    CIDEr-D: 4 items, so idf = log 4 - log df. A's shared n-grams occur in both of A's reference sets (df 2, idf
      log 2), the "slowly" n-grams in one (idf 2 log 2); B's n-grams never meet a match. Cosine per n between a1 and
      a2 (unit weights in log 2): n=1: 5 / (sqrt 5 * sqrt(5 + 4)), n=2: 4 / (2 * sqrt(4 + 4)), n=3: 3 / (sqrt 3 *
      sqrt(3 + 4)), n=4: 2 / (sqrt 2 * sqrt(2 + 4)); the same both ways (clipping keeps the shared terms only). The
      Gaussian length penalty exp(-delta^2 / 72) uses coco-caption's length, which counts bigrams: 4 vs 5, delta 1.
      Each A pair scores 10 * mean(cosines) * exp(-1/72); B pairs 0; CIDEr-D is the mean over the 4 pairs.
    self-BLEU: sentence BLEU-4 of each caption against the 3 others: a1 is inside a2 (1.0); a2 against a1 is
      (5/6 * 4/5 * 3/4 * 2/3) ** (1/4) = (1/3) ** (1/4); the B captions match nothing (0).
    distinct-n: 14 unique of 19 unigrams; 11 unique of 15 bigrams.
    """
    import math

    cosines = [5 / (math.sqrt(5) * 3), 4 / (2 * math.sqrt(8)), 3 / (math.sqrt(3) * math.sqrt(7)), 2 / (math.sqrt(2) * math.sqrt(6))]
    return {
        "bleu4": (10 / 19 * 8 / 15 * 6 / 11 * 4 / 7) ** 0.25,
        "cider_d": 2 * (10 * sum(cosines) / 4 * math.exp(-1 / 72)) / 4,
        "self_bleu4": (1 + (1 / 3) ** 0.25 + 0 + 0) / 4,
        "distinct_1": 14 / 19,
        "distinct_2": 11 / 15,
        "mean_words": 19 / 4,
        "vocabulary": 14,
    }
