"""The moments page and the ratings page, driven in real Chromium against a real Label Studio 1.23.2.

Moments: the annotator opens the next task of the labeling stream (a 40 s flight at 10 fps), writes a query,
drags a "relevant" window and two ratings on the timeline with the mouse, submits; `pull_moments` stores the
query, the window in seconds and a rating per 2-s cell. Ratings: on a moment written by a simulated annotator, the
rater sees the query, its windows as text and drawn on the timeline (the prediction is the starting annotation),
paints two ratings, submits; `pull_ratings` stores the rating per cell. Expected seconds come from the frames the
mouse was pressed and released on: frame f (1-based, 10 fps) spans [(f - 1) / 10, f / 10] s.
One server for the module (cold start 45-130 s on two cores); skips when the server or Chromium cannot run here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dvtr_data.annotation import moments as M
from dvtr_data.annotation import ratings as R
from dvtr_data.annotation import server
from dvtr_data.annotation.client import Connection, Studio, resolve_connection
from dvtr_data.dataset import Dataset
from dvtr_data.testing.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    draw_span,
    drawn_frames,
    free_port,
    lifespans,
    log_in,
    make_browser_moments_dataset,
    rect,
    require_browser_and_labelstudio,
    timeline,
    wait_for_annotation,
)

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser, pytest.mark.timeout(900)]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
HUMAN_FLIGHT = "f0000000000000aa1"  # 40 s, no truth: only the browser annotator answers it
QUERY = "a grey square slowly brightens, then dims"
FOREST = "the drone climbs above a forest"  # bb2's first truth maneuver, 0-6 s, written by a simulated annotator


@dataclass
class Live:
    dataset: Dataset
    conn: Connection
    email: str
    password: str
    moments_project: int


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    require_browser_and_labelstudio()
    ds = make_browser_moments_dataset(tmp_path_factory.mktemp("moments-browser") / "ds")
    info, proc = server.start_server(ds.root, port=free_port(), timeout_s=300.0)
    assert proc is not None
    try:
        conn = resolve_connection(ds)
        pushed = M.push_moments(ds.root, conn)
        assert pushed.tasks_created == 2  # one segment per flight (both under 150 s)
        assert M.simulate_moments(ds.root, conn).annotations_created == 2  # bb2's two maneuvers; aa1 has no truth
        creds = server.read_credentials(server.ServerPaths.of(ds).credentials)
        assert creds is not None
        yield Live(ds, conn, creds.username, creds.password, pushed.project_id)
    finally:
        server.stop_server(ds.root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server._pid_alive(info.pid):
            time.sleep(0.2)


def _browser(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def _wait_for_video(page: Any) -> dict[str, Any]:
    page.wait_for_selector("video", state="attached")
    page.wait_for_load_state("networkidle")
    return dict(page.evaluate(
        """async () => { const sleep = ms => new Promise(r => setTimeout(r, ms)); const v = document.querySelector('video');
             for (let i = 0; i < 200 && v.readyState < 1; i++) await sleep(100);
             return {duration: v.duration, ready: v.readyState, src: v.currentSrc}; }"""
    ))


def test_an_annotator_writes_a_query_marks_a_window_and_rates_it_on_the_timeline(live: Live):
    from playwright.sync_api import sync_playwright

    studio = Studio(live.conn)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(60_000)
            log_in(page, live.conn.url, live.email, live.password)
            page.goto(f"{live.conn.url}/projects/{live.moments_project}/data?labeling=1")  # the labeling stream
            video = _wait_for_video(page)
            # the stream's next task is the flight nobody answered (bb2's was answered by the simulated annotators)
            assert f"Flight {HUMAN_FLIGHT}.webm" in page.inner_text("body")
            assert video["src"].endswith(f"{HUMAN_FLIGHT}.webm") and video["duration"] == pytest.approx(40.0, abs=0.2)
            # the query box, every label and the whole timeline are on screen, nothing to scroll
            height = page.evaluate("() => window.innerHeight")
            labels = page.evaluate("() => Array.from(document.querySelectorAll('.lsf-label__text')).map(e => e.innerText)")
            assert labels == [M.WINDOW_LABEL, *M.SALIENCY_LABELS]
            for sel in ("textarea[name=query]", ".lsf-labels", ".lsf-timeline-frames__scroll"):
                box = rect(page, sel)
                assert box and 0 <= box["top"] and box["bottom"] <= height, (sel, box, height)
            # the frame is painted on a canvas (the <video> element itself is kept off screen, at top -9999)
            shown = page.evaluate(
                """() => Array.from(document.querySelectorAll('canvas, video')).map(e => e.getBoundingClientRect())
                     .filter(r => r.width > 50 && r.height > 50).map(r => [r.top, r.bottom])""")
            assert shown and all(0 <= top and bottom <= height for top, bottom in shown), shown
            submit = rect(page, "[data-testid=bottombar-submit-button]")
            assert rect(page, ".lsf-timeline-frames__scroll")["bottom"] <= submit["top"]  # not under the bottom bar

            area = page.locator("textarea[name=query]")
            area.fill(QUERY)
            area.press("Shift+Enter")  # Label Studio's "Add": the query becomes the annotation's text
            assert timeline(page).scroll_left == 0 and timeline(page).step > 0
            # window: pressed on frame 15, released on frame 64 -> [1.4, 6.4] s; cells 2-4 s and 4-6 s are at
            # least half inside it (0-2 s holds 0.6 s of it, 6-8 s 0.4 s: out)
            draw_span(page, M.WINDOW_LABEL, 15, 64)
            draw_span(page, "4 very good", 15, 40)  # 1.4-4.0 s: covers the 2-4 s cell
            draw_span(page, "2 fair", 64, 41)  # dragged leftwards, 4.0-6.4 s: covers the 4-6 s cell
            assert drawn_frames(page) == [(15, 40), (15, 64), (41, 64)]
            page.screenshot(path=str(ARTIFACTS / "annotate-browser-moments.png"))
            task_id = int(page.evaluate("() => new URLSearchParams(location.search).get('task')") or 0) or next(
                int(t["id"]) for t in studio.tasks(live.moments_project) if t["data"]["flight_id"] == HUMAN_FLIGHT)
            page.click("[data-testid=bottombar-submit-button]")
            wait_for_annotation(studio, live.moments_project, task_id)
        finally:
            browser.close()

    pulled = M.pull_moments(live.dataset.root, live.conn)
    assert pulled.rows_new == 3  # the browser's moment and the two simulated ones
    row = next(r for r in live.dataset.read_table("moments").to_pylist() if r["flight_id"] == HUMAN_FLIGHT)
    assert row["query"] == QUERY and row["annotator"] == live.email and row["source"] == "human"
    assert len(row["windows"]) == 1
    assert row["windows"][0] == pytest.approx([1.4, 6.4], abs=0.2)  # within two frames of the frames driven
    assert row["windows"][0] == pytest.approx([1.4, 6.4], abs=1e-6)  # ... and in fact exact
    assert row["saliency_clip_ids"] == [1, 2] and row["saliency_scores"] == [[4], [2]]
    assert row["flags"] == [] and row["accepted"] and row["status"] == "submitted"
    assert (row["segment_start_s"], row["segment_end_s"]) == (0.0, 40.0)


def test_a_rater_sees_the_query_and_its_window_and_paints_ratings(live: Live):
    from playwright.sync_api import sync_playwright

    if not live.dataset.read_table("moments").num_rows:  # run alone: the simulated moments are enough here
        M.pull_moments(live.dataset.root, live.conn)
    pushed = R.push_ratings(live.dataset.root, live.conn, overlap=2)
    studio = Studio(live.conn)
    task = next(t for t in studio.tasks(pushed.project_id) if t["data"]["query"] == FOREST)
    assert task["data"]["author"] != live.email and task["data"]["author"].endswith("@simulated.dvtr.invalid")
    assert task["data"]["windows"] == [[0.0, 6.0]]
    with sync_playwright() as pw:
        browser = _browser(pw)
        try:
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(60_000)
            log_in(page, live.conn.url, live.email, live.password)
            page.goto(f"{live.conn.url}/projects/{pushed.project_id}/data?task={task['id']}")
            video = _wait_for_video(page)
            assert video["duration"] == pytest.approx(30.0, abs=0.2)
            page.wait_for_selector(".lsf-keypoints__lifespan")
            body = page.inner_text("body")
            assert FOREST in body and "windows: 0:00.0-0:06.0" in body
            # the window is drawn on the timeline: the prediction became the rater's starting annotation
            assert drawn_frames(page) == [(1, 60)]  # frames 1-60, i.e. 0-6 s
            assert R.WINDOW_LABEL in page.inner_text(".lsf-timeline-frames__scroll")
            height = page.evaluate("() => window.innerHeight")
            for sel in (".lsf-labels", ".lsf-timeline-frames__scroll"):
                assert rect(page, sel)["bottom"] <= height, sel

            draw_span(page, "3 good", 2, 40)  # 0.1-4.0 s: most of the 0-2 s cell and all of 2-4 s
            # the task list beside the page leaves about 55 frames on screen: the 4-6 s cell is painted in part,
            # 4.1-5.0 s, which is still the rating covering most of it (the only one)
            draw_span(page, "1 poor", 50, 42)
            assert len(lifespans(page)) == 3
            page.screenshot(path=str(ARTIFACTS / "annotate-browser-ratings.png"))
            page.click("[data-testid=bottombar-submit-button]")
            wait_for_annotation(studio, pushed.project_id, int(task["id"]))
        finally:
            browser.close()

    pulled = R.pull_ratings(live.dataset.root, live.conn)
    assert pulled.rows_new == 1
    (row,) = live.dataset.read_table("moment_ratings").to_pylist()
    assert row["moment_id"] == task["data"]["moment_id"] and row["rater"] == live.email
    assert row["saliency_clip_ids"] == [0, 1, 2] and row["saliency_scores"] == [3, 3, 1]
    assert row["flags"] == [] and row["accepted"] and row["source"] == "human"
