"""The moments round trip against a real Label Studio 1.23.2 server: push (a task per segment, the flight videos
served from annotation_media/), simulated annotations with TimelineLabels results, pull. Skips only when the
server's environment cannot be created here. One cold start (45-130 s on two cores)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from dvtr_data.annotation import moments as M
from dvtr_data.annotation import server
from dvtr_data.annotation.client import Connection, Studio, resolve_connection
from dvtr_data.dataset import Dataset
from dvtr_data.testing.moments import FLIGHTS, make_moments_dataset

pytestmark = [pytest.mark.labelstudio, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dataset, Connection]]:
    try:
        server.ensure_venv()
    except Exception as exc:
        pytest.skip(f"the Label Studio server cannot run here: its environment could not be created ({exc})")
    ds = make_moments_dataset(tmp_path_factory.mktemp("moments-live") / "ds")
    info, proc = server.start_server(ds.root, port=_free_port(), timeout_s=300.0)
    assert proc is not None
    try:
        yield ds, resolve_connection(ds)
    finally:
        server.stop_server(ds.root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server._pid_alive(info.pid):
            time.sleep(0.2)


def test_moments_round_trip_on_a_real_server(live):
    ds, conn = live
    pushed = M.push_moments(ds.root, conn)
    assert (pushed.tasks_created, pushed.media_placed) == (3, 2)
    assert M.push_moments(ds.root, conn).tasks_existing == 3  # idempotent
    studio = Studio(conn)
    project = studio.project(pushed.project_id)
    assert project is not None and "TimelineLabels" in project["label_config"]
    task = next(iter(studio.tasks(pushed.project_id)))
    # the server plays the flight from the dataset folder (Local Files storage on annotation_media/flights)
    resp = httpx.get(conn.url + task["data"]["video"], headers={"Authorization": f"Token {conn.api_key}"}, timeout=30)
    assert resp.status_code == 200 and resp.content == b"\0" * 16

    simulated = M.simulate_moments(ds.root, conn)
    assert simulated.annotations_created == 7
    assert M.simulate_moments(ds.root, conn).annotations_existing == 7
    pulled = M.pull_moments(ds.root, conn)
    assert (pulled.rows_new, pulled.accepted) == (7, 7)
    expected = {c: [[a, b]] for fid in FLIGHTS for a, b, c, _ in FLIGHTS[fid][1]}
    rows = ds.read_table("moments").to_pylist()
    assert {r["query"]: r["windows"] for r in rows} == expected
    assert all(r["source"] == "simulated" and r["annotator"].endswith("@simulated.dvtr.invalid") for r in rows)
    orbit = next(r for r in rows if r["query"] == "the camera orbits a white farmhouse")
    assert orbit["saliency_scores"] == [[4]] * 5 + [[1]] * 5  # a building in view 6-16 s of the 6-26 s window


def test_ratings_round_trip_on_a_real_server(live):
    """After the moments round trip: a ratings project on the same server, two simulated raters per moment who are
    never its author, pulled into moment_ratings; the windows reach the task as a prediction the server keeps."""
    from dvtr_data.annotation import ratings as R

    ds, conn = live
    if not ds.read_table("moments").num_rows:  # run alone: the moments round trip first
        M.push_moments(ds.root, conn)
        M.simulate_moments(ds.root, conn)
        M.pull_moments(ds.root, conn)
    pushed = R.push_ratings(ds.root, conn)
    assert pushed.tasks_created == 7 and R.push_ratings(ds.root, conn).tasks_existing == 7
    studio = Studio(conn)
    project = studio.project(pushed.project_id)
    assert project is not None and project["maximum_annotations"] == 2
    assert project["model_version"] == R.PREFILL_VERSION
    preds = studio.predictions(pushed.project_id)
    assert len(preds) == 7 and all(p["result"][0]["from_name"] == "windows" for p in preds)
    simulated = R.simulate_ratings(ds.root, conn)
    assert simulated.annotations_created == 14
    pulled = R.pull_ratings(ds.root, conn)
    assert (pulled.rows_new, pulled.accepted) == (14, 14)
    moments = {m["moment_id"]: m for m in ds.read_table("moments").to_pylist()}
    rows = ds.read_table("moment_ratings").to_pylist()
    assert all(r["rater"] != moments[r["moment_id"]]["annotator"] for r in rows)
    orbit = next(m for m in moments.values() if m["query"] == "the camera orbits a white farmhouse")
    for r in (r for r in rows if r["moment_id"] == orbit["moment_id"]):
        # truth 4 while a building is in view (6-16 s), 1 after; the simulated noise moves a cell by at most 1
        truth = [4] * 5 + [1] * 5
        assert r["saliency_clip_ids"] == list(range(3, 13))
        assert all(abs(s - t) <= 1 for s, t in zip(r["saliency_scores"], truth, strict=True))
