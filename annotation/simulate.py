"""`annotate simulate`: submit the simulator's ground-truth captions through the API, as several annotators.

Only for generated flights (those with a ``.truth.json``): `make demo` and the tests run the real round trip
(push -> annotations in Label Studio -> pull) without a person. Everything it writes is marked: the annotators are
users ``simulated-<n>@simulated.dvtr.invalid`` named "Simulated annotator <n>" in the web UI, and pull gives their
captions ``origin = "simulated"``. Re-running submits only what is missing (one annotation per simulated user and
task), so it never duplicates.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvtr_data.annotation import labeling
from dvtr_data.annotation.client import AnnotationState, Connection, Studio, plain
from dvtr_data.annotation.pull import SIMULATED_DOMAIN, completed_by_id
from dvtr_data.annotation.push import find_project
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, ServiceError
from dvtr_data.runlog import RunLog
from dvtr_data.synth.simulated import simulated_captions

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class SimulateReport:
    url: str
    project_id: int
    annotators: int
    clips_with_truth: int = 0
    annotations_created: int = 0
    annotations_existing: int = 0
    captions_submitted: int = 0
    log_path: Path | None = None


def simulated_email(n: int) -> str:
    return f"simulated-{n}@{SIMULATED_DOMAIN}"


def ensure_simulated_users(studio: Studio, count: int) -> list[int]:
    """Ids of the users ``simulated-1`` .. ``simulated-<count>``, creating the missing ones."""
    by_email = {u.get("email"): int(u["id"]) for u in studio.users()}
    ids = []
    for n in range(1, count + 1):
        email = simulated_email(n)
        if email not in by_email:
            user = studio.once(
                "creating a simulated annotator", studio.sdk.users.create, username=f"simulated-{n}", email=email,
                first_name="Simulated", last_name=f"annotator {n}",
            )
            by_email[email] = int(plain(user)["id"])
        ids.append(by_email[email])
    return ids


def simulate(
    dataset_dir: Path, conn: Connection, *, annotators: int | None = None, clip_ids: list[str] | None = None, seed: int = 0,
    say: Say = _quiet, studio: Studio | None = None,
) -> SimulateReport:
    """Submit ground-truth captions for every task of a generated clip, or of ``clip_ids`` (see the module docstring)."""
    dataset = Dataset(dataset_dir).require()
    truth: dict[str, list[str]] = {}
    for row in simulated_captions(dataset, per_clip=10, only_passed=False):
        if clip_ids is None or row["clip_id"] in clip_ids:
            truth.setdefault(row["clip_id"], []).append(row["text"])
    if not truth:
        raise DatasetError(
            f"{dataset.root} has no clips of generated flights (no .truth.json beside its videos)",
            hint="`annotate simulate` stands in for annotators only in the demo and tests; real clips need people",
        )
    studio = studio or Studio(conn)
    studio.check()
    with dataset.lock("annotate"):
        state = AnnotationState(dataset)
        project = find_project(studio, dataset, state)
        if project is None:
            raise ServiceError(f"{conn.url} has no project for this dataset yet", hint="run `dvtr-data annotate push` first")
        pid = int(project["id"])
        k = labeling.captions_per_task_of(project.get("label_config") or "<View/>") or 1
        count = annotators or int(project.get("maximum_annotations") or 1)
        report = SimulateReport(conn.url, pid, count)
        log = RunLog(dataset.logs_dir, "annotate-simulate")
        report.log_path = log.path
        log.write("start", url=conn.url, project_id=pid, annotators=count, captions_per_task=k, origin="simulated")
        try:
            users = ensure_simulated_users(studio, count)
            rng = random.Random(seed)
            tasks = [t for t in studio.tasks(pid, with_annotations=True) if (t.get("data") or {}).get("clip_id") in truth]
            report.clips_with_truth = len(tasks)
            for task in tasks:
                texts = truth[task["data"]["clip_id"]]
                done_by = {completed_by_id(a) for a in task.get("annotations") or []}
                model_preds = [p for p in task.get("predictions") or [] if isinstance(p, dict)
                               and p.get("model_version") == project.get("model_version")]
                for n, user_id in enumerate(users):
                    chunk = texts[n * k : (n + 1) * k]
                    if not chunk:
                        break
                    if user_id in done_by:
                        report.annotations_existing += 1
                        continue
                    result = [
                        {"from_name": name, "to_name": labeling.VIDEO, "type": "textarea", "value": {"text": [text]}}
                        for name, text in zip(labeling.caption_names(k), chunk, strict=False)
                    ]
                    result.append({"from_name": labeling.QC, "to_name": labeling.VIDEO, "type": "choices",
                                   "value": {"choices": ["usable"]}})
                    extra: dict[str, Any] = {}
                    if model_preds:
                        extra["parent_prediction"] = int(model_preds[0]["id"])
                    annotation = studio.once(
                        "submitting a simulated annotation", studio.sdk.annotations.create, int(task["id"]), result=result,
                        completed_by=user_id, lead_time=round(rng.uniform(25.0, 90.0), 1), **extra,
                    )
                    report.annotations_created += 1
                    report.captions_submitted += len(chunk)
                    log.write("annotation", task_id=int(task["id"]), annotation_id=int(plain(annotation)["id"]),
                              annotator=simulated_email(n + 1), origin="simulated")
            say(f"simulated annotations: {report.annotations_created} submitted, {report.annotations_existing} already there")
        except ServiceError as exc:
            log.write("error", error=str(exc))
            raise
        finally:
            log.write("summary", created=report.annotations_created, existing=report.annotations_existing)
            log.close()
    return report
