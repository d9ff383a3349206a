"""The one progress protocol: events from a reporter, the CLI's renderer, and what ingest reports through them."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from dvtr_data.cli.common import ProgressBars
from dvtr_data.reporting import Notice, ProgressEvent, Reporter, as_reporter


def test_reporter_adapters_emit_absolute_events_named_after_the_stage():
    events: list = []
    rep = as_reporter(events.append, "split")
    counter = rep.counter("groups", 3, "groups")
    counter.advance()
    counter.advance(2)
    rep.callback("captions")("epoch 1/2", 5, 10)
    rep.heartbeat("flight.mp4", "frames", transient=True)(7, 9)
    rep.warning("odd")
    assert events == [
        ProgressEvent("split", "groups", 0, 3, "groups"),
        ProgressEvent("split", "groups", 1, 3, "groups"),
        ProgressEvent("split", "groups", 3, 3, "groups"),
        ProgressEvent("split", "epoch 1/2", 5, 10, "captions"),
        ProgressEvent("split", "flight.mp4", 7, 9, "frames", transient=True),
        Notice("split", "odd", "warning"),
    ]
    assert events[2].finished and not events[1].finished
    Reporter().progress("nobody listens", 1, 2)  # no sink: silence, no error
    assert as_reporter(Reporter(events.append, "x"), "card").stage == "card"


def test_progress_bars_keep_one_bar_per_label_drop_finished_transient_bars_and_print_notices():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120)  # plain text: no colour codes
    progress = Progress(console=console, auto_refresh=False)
    bars = ProgressBars(progress)
    rep = bars.reporter("ingest")
    with bars:
        rep.progress("flights", 0, 2)
        rep.progress("a.mp4", 10, 100, "frames", transient=True)
        rep.progress("flights", 1, 2)
        assert [t.description for t in progress.tasks] == ["flights", "  a.mp4"]
        assert progress.tasks[0].completed == 1 and progress.tasks[0].total == 2
        rep.progress("a.mp4", 100, 100, "frames", transient=True)  # finished: its bar goes
        rep.progress("b.mp4", 1, 1, "frames", transient=True)  # finished before its first bar: none is made
        assert [t.description for t in progress.tasks] == ["flights"]
        rep.error("b.mp4: cannot read [the file]")
        rep.warning("c.mp4: rotated")
    text = buffer.getvalue()
    assert "failed: b.mp4: cannot read [the file]" in text  # user text is not taken as markup
    assert "warning: c.mp4: rotated" in text


def test_ingest_reports_flights_frames_and_failures(tmp_path):
    from dvtr_data.ingest import ingest
    from dvtr_data.synth import generate

    flights = generate(tmp_path / "flights", preset="tiny", seed=0)[:2]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in flights:
        shutil.copy(f, folder / f.name)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 50)
    events: list = []
    report = ingest([folder], tmp_path / "ds", workers=1, reporter=events.append)
    counts = [(e.done, e.total) for e in events if isinstance(e, ProgressEvent) and e.label == "flights"]
    assert counts == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert all(e.stage == "ingest" for e in events)
    frames = [e for e in events if isinstance(e, ProgressEvent) and e.unit == "frames"]
    names = {Path(f).name for f in flights}
    assert {e.label for e in frames} == names | {"broken.mp4"}
    for name in names:  # each good flight beat its frames, and its last event finishes its bar
        mine = [e for e in frames if e.label == name]
        assert len(mine) >= 2 and mine[-1].finished and all(e.transient for e in mine)
    errors = [e for e in events if isinstance(e, Notice) and e.level == "error"]
    assert len(errors) == 1 and "broken.mp4" in errors[0].text
    assert report.flights_failed == 1 and report.flights_done == 2
    # a second run skips both good flights: the count starts at 2 of 3
    events.clear()
    ingest([folder], tmp_path / "ds", workers=1, reporter=events.append)
    first = next(e for e in events if isinstance(e, ProgressEvent) and e.label == "flights")
    assert (first.done, first.total) == (2, 3)
