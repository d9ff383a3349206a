"""Any draft one click to start from, in a real Label Studio 1.23.2 and real Chromium.

Drafts of a trained model (the model name is not ``<config>/random-s<seed>``): on each clip the annotator sees an
empty box and a ``draft i`` choice per draft. One click on ``draft i`` swaps in a box holding draft i's text;
the annotator edits it and submits, and `annotate pull` stores the edited text with draft i as its starting
point. A draft submitted as it was is flagged ``unchanged_draft`` and counted in the unchanged-draft share.
Noise drafts (random weights) offer no choice at all: tests/test_annotate_server.py's page test covers them.
One server for the module (cold start 45-130 s on two cores); skips when the server or Chromium cannot run here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dvtr_data.annotation import server
from dvtr_data.annotation.client import Connection, Studio, resolve_connection
from dvtr_data.annotation.pull import pull
from dvtr_data.annotation.push import push
from dvtr_data.annotation.status import annotation_status
from dvtr_data.dataset import Dataset
from dvtr_data.testing.browser import CHROMIUM, free_port, require_browser_and_labelstudio

pytestmark = [pytest.mark.labelstudio, pytest.mark.browser, pytest.mark.timeout(900)]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
MODEL = "ViT-B-32/openai"  # a trained model's name: its drafts are offered to start from
HOSTILE = 'Houses <img src=x onerror="window.__xss=1"> & "roads" </textarea><script>window.__xss=2</script>'


@dataclass
class Live:
    dataset: Dataset
    conn: Connection
    project_id: int
    drafts: dict[str, list[str]]  # clip id -> its drafts, best first
    tasks: dict[str, int]  # clip id -> task id


def _write_drafts(ds: Dataset) -> dict[str, list[str]]:
    import dvtr_data.schemas.precaption_tables  # noqa: F401

    out: dict[str, list[str]] = {}
    rows = []
    for i, clip in enumerate(sorted(ds.read_table("clips").to_pylist(), key=lambda c: c["clip_id"])):
        texts = [f"Clip {i} draft 1: two cars drive along a road between houses.",
                 HOSTILE if i == 0 else f"Clip {i} draft 2: a white van parks beside a row of trees.",
                 f"Clip {i} draft 3: a narrow river runs past a field."]
        out[clip["clip_id"]] = texts
        rows += [dict(clip_id=clip["clip_id"], rank=r, text=t, score=0.3 - r / 100, model=MODEL, bank="builtin@feed",
                      bank_index=r) for r, t in enumerate(texts, 1)]
    ds.write_table("precaptions", rows)
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    require_browser_and_labelstudio()
    from dvtr_data.ingest import IngestConfig, ingest
    from dvtr_data.ingest.windows import WindowRule
    from dvtr_data.synth import generate

    root = tmp_path_factory.mktemp("annotate-drafts")
    generate(root / "flights", preset="tiny", seed=0)
    report = ingest([root / "flights"], root / "ds", IngestConfig(window=WindowRule(2.0, 1.0, 4.0, "merge")), workers=1)
    assert report.ok
    ds = Dataset(root / "ds")
    drafts = _write_drafts(ds)
    info, proc = server.start_server(ds.root, port=free_port(), timeout_s=300.0)
    assert proc is not None
    try:
        conn = resolve_connection(ds)
        pushed = push(ds.root, conn)
        assert pushed.tasks_created >= 2 and not pushed.random_drafts
        tasks = {t["data"]["clip_id"]: int(t["id"]) for t in Studio(conn).tasks(pushed.project_id)}
        yield Live(ds, conn, pushed.project_id, drafts, tasks)
    finally:
        server.stop_server(ds.root)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and server._pid_alive(info.pid):
            time.sleep(0.2)


BOXES_JS = """() => Array.from(document.querySelectorAll('textarea')).filter(t => t.offsetWidth || t.offsetHeight)
                .map(t => ({name: t.name, value: t.value, readOnly: t.readOnly, disabled: t.disabled}))"""


def _shown_boxes(page: Any) -> list[dict[str, Any]]:
    """The caption boxes on screen (the hidden draft boxes are in the page too, display: none)."""
    return list(page.evaluate(BOXES_JS))


def _open_task(page: Any, live: Live, clip_id: str) -> None:
    page.goto(f"{live.conn.url}/projects/{live.project_id}/data?task={live.tasks[clip_id]}")
    page.wait_for_selector("textarea", state="attached")
    page.wait_for_load_state("networkidle")


def _click_draft(page: Any, n: int) -> None:
    page.click(f"label:has(input[name='draft {n}'])")
    page.wait_for_timeout(200)  # the swap is a re-render; _shown_boxes reads the DOM after it


def _submit(page: Any, live: Live, clip_id: str) -> None:
    page.click("[data-testid=bottombar-submit-button]")
    studio = Studio(live.conn)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if [t for t in studio.tasks(live.project_id, with_annotations=True)
                if t["data"]["clip_id"] == clip_id and t["annotations"]]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the annotation of {clip_id} never reached the server")


def test_a_click_on_any_draft_fills_the_box_the_edit_is_pulled_and_an_unchanged_draft_is_flagged(live: Live):
    from playwright.sync_api import sync_playwright

    edited_clip, unchanged_clip = sorted(live.tasks)[:2]
    drafts_a, drafts_b = live.drafts[edited_clip], live.drafts[unchanged_clip]
    added = " Edited: three cars, not two."
    creds = server.read_credentials(server.ServerPaths.of(live.dataset).credentials)
    assert creds is not None
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                     args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
            page.set_default_timeout(60_000)
            page.goto(live.conn.url + "/user/login/")
            page.fill("input[name=email]", creds.username)
            page.fill("input[name=password]", creds.password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")

            _open_task(page, live, edited_clip)
            # an empty box, and one choice per draft of this clip (three), none beyond
            assert [(b["name"], b["value"]) for b in _shown_boxes(page)] == [("caption_1", "")]
            offered = page.evaluate("() => Array.from(document.querySelectorAll('input')).map(i => i.name)"
                                    ".filter(n => n.startsWith('draft '))")
            assert offered == ["draft 1", "draft 2", "draft 3"]
            bottoms = page.evaluate("""() => [...Array.from(document.querySelectorAll("input[name^='draft ']"))
                                        .map(i => i.closest('label').getBoundingClientRect().bottom),
                                      document.querySelector("textarea[name='caption_1']").getBoundingClientRect().bottom]""")
            assert max(bottoms) <= 1000, bottoms  # the draft choices and the box need no scrolling
            # one click on draft 3 puts draft 3 in the box; one click on draft 2 swaps it for draft 2
            _click_draft(page, 3)
            assert [(b["name"], b["value"]) for b in _shown_boxes(page)] == [("caption_1_draft_3", drafts_a[2])]
            _click_draft(page, 2)
            boxes = _shown_boxes(page)
            assert [(b["name"], b["value"]) for b in boxes] == [("caption_1_draft_2", drafts_a[1])]  # byte for byte
            assert not boxes[0]["readOnly"] and not boxes[0]["disabled"]
            assert page.evaluate("() => window.__xss") is None  # the hostile draft is text in the box, never run
            area = page.locator("textarea[name='caption_1_draft_2']")
            area.click()
            area.press("Control+End")  # the end of the text (End alone stops at a wrapped line's end)
            area.type(added)
            assert _shown_boxes(page)[0]["value"] == drafts_a[1] + added
            page.click("label:has(input[name='usable'])")
            page.screenshot(path=str(ARTIFACTS / "annotate-browser-drafts.png"))
            _submit(page, live, edited_clip)

            _open_task(page, live, unchanged_clip)
            _click_draft(page, 1)
            assert [(b["name"], b["value"]) for b in _shown_boxes(page)] == [("caption_1_draft_1", drafts_b[0])]
            _click_draft(page, 1)  # a second click on the same draft brings the empty box back
            assert [(b["name"], b["value"]) for b in _shown_boxes(page)] == [("caption_1", "")]
            _click_draft(page, 1)
            assert [(b["name"], b["value"]) for b in _shown_boxes(page)] == [("caption_1_draft_1", drafts_b[0])]
            _submit(page, live, unchanged_clip)  # the draft as it is
        finally:
            browser.close()

    report = pull(live.dataset.root, live.conn)
    assert report.rows_new == 2
    rows = {r["clip_id"]: r for r in live.dataset.read_table("captions").to_pylist()}
    edited, unchanged = rows[edited_clip], rows[unchanged_clip]
    assert edited["text"] == drafts_a[1] + added and edited["draft_shown"] == drafts_a[1]
    assert edited["edit_distance"] == len(added) and edited["flags"] == [] and edited["accepted"]
    assert edited["qc_choices"] == ["usable"] and edited["origin"] == "human"
    assert unchanged["text"] == drafts_b[0] and unchanged["draft_shown"] == drafts_b[0]
    assert unchanged["edit_distance"] == 0 and unchanged["flags"] == ["unchanged_draft"] and not unchanged["accepted"]
    # two submitted captions, each started from a draft, one of them unchanged
    assert annotation_status(live.dataset.root).quality.unchanged_draft_share == pytest.approx(0.5)
