"""Helpers of the real-browser tests of the moments and ratings pages (Label Studio 1.23.2 + Chromium).

A tiny dataset whose flights are real, playable videos (Label Studio's timeline takes its length from the video
the page decodes, so the placeholder bytes of `dvtr_data.testing.moments` cannot be driven), and the few steps
every browser test repeats: launching Chromium, logging in, reading a box's place on screen. No tests live here.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvtr_data.dataset import Dataset
from dvtr_data.schemas import schema_of
from dvtr_data.synth.simulated import TRUTH_FORMAT
from dvtr_data.testing.moments import T0

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
VIEWPORT = {"width": 1600, "height": 1000}
FPS = 10.0
# flight id -> (duration s, truth maneuvers (start s, end s, caption, objects) or None: no truth, a human's flight)
BROWSER_FLIGHTS: dict[str, tuple[float, list[tuple[float, float, str, dict[str, int]]] | None]] = {
    "f0000000000000aa1": (40.0, None),
    "f0000000000000bb2": (30.0, [
        (0.0, 6.0, "the drone climbs above a forest", {}),  # frames 1-60: on screen without scrolling the timeline
        (6.0, 30.0, "the camera circles a red barn", {"building": 1}),
    ]),
}


def write_webm(path: Path, *, seconds: float, fps: float = FPS) -> int:
    """A small VP8 WebM (160x90) whose brightness steps every second: Chromium plays it (it plays no MPEG-4
    part 2), and its frame count is exactly ``seconds * fps``. Returns the file size."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = 160, 90, "yuv420p"
        for i in range(int(round(seconds * fps))):
            img = np.full((90, 160, 3), 30 + 5 * (int(i // fps) % 40), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path.stat().st_size


def make_browser_moments_dataset(root: Path) -> Dataset:
    """Two flights with real WebM videos at 10 fps: ``aa1`` (40 s, no truth: the browser annotator's flight) and
    ``bb2`` (30 s, with a truth file: simulated annotators write its moments, which the browser rater rates)."""
    ds = Dataset(root).create(name="moments-browser")
    flights = []
    for fid, (duration, segs) in BROWSER_FLIGHTS.items():
        src = root / "src" / f"{fid}.webm"
        src.parent.mkdir(parents=True, exist_ok=True)
        size = write_webm(src, seconds=duration)
        if segs is not None:
            truth = {
                "format": TRUTH_FORMAT, "fps": FPS, "n_frames": int(duration * FPS),
                "segments": [{"index": i, "start_frame": int(a * FPS), "end_frame": int(b * FPS), "captions": [c],
                              "objects": o} for i, (a, b, c, o) in enumerate(segs)],
                "visible": [],
            }
            (root / "src" / f"{fid}.truth.json").write_text(json.dumps(truth))
        row = dict.fromkeys(schema_of("flights").schema.names)
        row.update(flight_id=fid, status="ok", source_path=str(src), file_name=f"{fid}.webm", size_bytes=size,
                   settings_hash="x", ingested_at=T0, fps=FPS, duration_s=duration, warnings=[])
        flights.append(row)
    ds.write_table("flights", flights)
    return ds


def free_port() -> int:
    """A port nothing listens on now (the browser tests each start their own server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_browser_and_labelstudio() -> None:
    """Skip (with the reason) unless Chromium, Playwright and Label Studio's environment are all here."""
    import pytest

    from dvtr_data.annotation import server

    if not CHROMIUM.is_file():
        pytest.skip("Chromium is not installed (run annotation/install_browser.sh)")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed in this environment")
    try:
        server.ensure_venv()
    except Exception as exc:  # any failure to build the env means the server cannot run here
        pytest.skip(f"the Label Studio server cannot run here: its environment could not be created ({exc})")


def log_in(page: Any, url: str, email: str, password: str) -> None:
    page.goto(url + "/user/login/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def rect(page: Any, selector: str) -> dict[str, float]:
    """The first match's bounding box on screen (top, bottom, left, right, width, height), in CSS pixels."""
    return dict(page.evaluate(
        """sel => { const e = document.querySelector(sel); if (!e) return null; const r = e.getBoundingClientRect();
             return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height}; }""",
        selector,
    ) or {})


def wait_for_annotation(studio: Any, project_id: int, task_id: int, *, timeout_s: float = 30.0) -> None:
    """Wait until the server holds an annotation of the task (Submit returns before the request lands)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if [t for t in studio.tasks(project_id, with_annotations=True) if int(t["id"]) == task_id and t["annotations"]]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the annotation of task {task_id} never reached the server")


# ----------------------------------------------------------------------------------------------------------------
# Label Studio 1.23's video timeline (web/libs/editor/src/components/Timeline/Views/Frames/Frames.tsx): a strip of
# frames ``--frame-size`` px wide after a 150 px column of row names; frame f (1-based) spans
# [left + 150 + (f - 1) * step - scrollLeft, ... + step). Each region is a 24 px row under a 25 px ruler; a press on
# an empty part of the strip (no region row under it) with a label picked draws a new region from the frame
# pressed to the frame released; a press on a region's row edits that region instead.
# ----------------------------------------------------------------------------------------------------------------
ROW_NAMES_PX = 150
RULER_PX = 25
ROW_PX = 24


@dataclass
class Timeline:
    left: float  # the strip's left edge on screen (the row names column included)
    top: float
    bottom: float
    right: float
    step: float  # px per frame
    scroll_left: float

    def x(self, frame: int) -> float:
        """The middle of ``frame`` on screen."""
        return self.left + ROW_NAMES_PX + (frame - 1) * self.step - self.scroll_left + self.step / 2

    def free_y(self, n_regions: int) -> float:
        """A height on the strip below every region row, even once the region drawn from there is added (new
        regions take the top row and push the others down): pressing there draws a new region, and the click
        that ends the drag lands on no row (on the new region's row it would select it, and the next label
        picked would then go to that region rather than to a new one)."""
        return self.top + RULER_PX + ROW_PX * (n_regions + 1) + ROW_PX / 2


def timeline(page: Any) -> Timeline:
    geo = page.evaluate(
        """() => { const f = document.querySelector('.lsf-timeline-frames');
             const s = f.querySelector('.lsf-timeline-frames__scroll'); const r = s.getBoundingClientRect();
             return {left: r.left, top: r.top, bottom: r.bottom, right: r.right, scroll: s.scrollLeft,
                     step: parseFloat(getComputedStyle(f).getPropertyValue('--frame-size'))}; }"""
    )
    return Timeline(geo["left"], geo["top"], geo["bottom"], geo["right"], geo["step"], geo["scroll"])


def lifespans(page: Any) -> list[dict[str, float]]:
    """The regions drawn on the timeline, top row first: left and width on screen."""
    return list(page.evaluate(
        """() => Array.from(document.querySelectorAll('.lsf-keypoints__lifespan')).map(e => {
             const r = e.getBoundingClientRect(); return {left: r.left, top: r.top, width: r.width}; })"""
    ))


def drawn_frames(page: Any) -> list[tuple[int, int]]:
    """(first, last) frame of every region on the timeline, sorted: a region's bar runs from the middle of its
    first frame to the middle of its last (measured: frames 21-60 at 16 px/frame give a bar 624 px wide)."""
    line = timeline(page)
    out = []
    for s in lifespans(page):
        first = (s["left"] - line.x(1)) / line.step + 1
        out.append((round(first), round(first + s["width"] / line.step)))
    return sorted(out)


def draw_span(page: Any, label: str, first: int, last: int) -> None:
    """Pick ``label`` and drag from frame ``first`` to frame ``last`` on an empty part of the timeline (below every
    region row, see `Timeline.free_y`), as an annotator does with the mouse."""
    page.keyboard.press("Escape")  # as an annotator would, to drop any selection first
    name = page.locator(".lsf-label__text", has_text=re.compile(f"^{re.escape(label)}$"))
    page.locator(".lsf-label:visible").filter(has=name).click()  # a hidden legacy tag has the same labels
    line = timeline(page)
    y = line.free_y(len(lifespans(page)))
    assert y < line.bottom, "no empty row left on the timeline to draw on"
    assert line.left + ROW_NAMES_PX < line.x(min(first, last)) and line.x(max(first, last)) < line.right, "frames off screen"
    page.mouse.move(line.x(first), y)
    page.mouse.down()
    page.mouse.move((line.x(first) + line.x(last)) / 2, y, steps=4)
    page.mouse.move(line.x(last), y, steps=4)
    page.mouse.up()
    page.wait_for_timeout(300)
