"""Small things a user hit (issue 13, item 6): R@K warnings on tiny evaluation splits, flight file names in search
results, piped output that never breaks a path, and `annotate status`'s annotator table at 80 columns."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from dvtr_data.baselines.engine.metrics import retrieval_metrics
from dvtr_data.baselines.engine.runs import RunFolder, trivial_recall_warnings, write_report
from dvtr_data.testing.tables import write_generated_dataset

runner = CliRunner()


# ---------------------------------------------------------------------------------------------------------
# R@K on an evaluation split with no more clips than K
# ---------------------------------------------------------------------------------------------------------
def test_recall_at_k_is_100_whatever_the_scores_when_clips_do_not_exceed_k():
    # the fact the warning states, checked on the real metric: 4 clips, 2 captions each, random scores
    torch.manual_seed(0)
    for _ in range(5):
        sim = torch.randn(8, 4)
        res = retrieval_metrics(sim, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), protocol="single")
        assert res["t2v"]["R5"] == 100.0 and res["t2v"]["R10"] == 100.0


def test_report_warns_about_splits_too_small_for_r_at_k(tmp_path):
    run = RunFolder(tmp_path / "run-1")
    run.root.mkdir()
    run.write_json(
        run.config_path,
        {"baseline": {"name": "toy"}, "request": {"split_train": "train", "split_eval": ["val", "test"]}},
    )
    run.write_json(
        run.metrics_path,
        {
            "status": "finished",
            "data": {
                "train": "100 clips / 500 captions",
                "val": "4 clips / 20 captions",
                "test": "1 clips / 3 captions",
            },
        },
    )
    text = write_report(run, curves=False).read_text()
    warnings = [line for line in text.splitlines() if "warning" in line]
    assert len(warnings) == 3
    assert "`val` has 4 clip(s): t2v R@5, R@10 is 100" in warnings[0]
    assert "`test` has 1 clip(s): t2v R@1, R@5, R@10 is 100" in warnings[1]
    assert "`test` has 3 caption(s): v2t R@5, R@10 is 100" in warnings[2]
    assert "train" not in " ".join(warnings)  # the training split is not evaluated
    assert trivial_recall_warnings({"test": "11 clips / 55 captions"}, ["test"]) == []
    assert len(trivial_recall_warnings({"test": "10 clips / 55 captions"}, ["test"])) == 1  # 10 <= K=10


# ---------------------------------------------------------------------------------------------------------
# search shows the flight's file name
# ---------------------------------------------------------------------------------------------------------
def test_flight_file_names_come_from_the_flights_table(tmp_path):
    from dvtr_data.baselines.engine.search import flight_file_names

    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=3, clips_per_flight=2, captions_per_clip=0)
    names = flight_file_names(ds)
    flights = ds.read_table("flights")
    assert names == {f: f"{f}.mp4" for f in flights.column("flight_id").to_pylist()}


def test_search_table_shows_the_file_name_and_fits_80_columns(monkeypatch, tmp_path):
    import dvtr_data.baselines.engine.search as search_mod
    from dvtr_data.cli.app import app

    flight = "f" + "0" * 15 + "1"
    hits = [
        search_mod.SearchHit(1, f"{flight}-0000000-0000150", flight, 0.0, 5.0, 0.91, "DJI_0042.MP4"),
        search_mod.SearchHit(2, "imported-clip", "import:usrd", None, None, 0.5),  # no file name: its id
    ]
    long_index = tmp_path / ("deep-folder-" * 8) / "index-float32.pt"

    def fake_search(dataset, run, query, **kw):
        return search_mod.SearchResult(query, hits, 2, 0.002, long_index)

    monkeypatch.setattr(search_mod, "search", fake_search)
    result = runner.invoke(app, ["search", "a boat", "-d", str(tmp_path), "--run", "r"])
    assert result.exit_code == 0, result.output
    assert "DJI_0042.MP4" in result.stdout and "import:usrd" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines())
    # piped: the index path (over 100 characters) stays on one line
    assert str(long_index) in result.stderr


# ---------------------------------------------------------------------------------------------------------
# piped output and the annotator table
# ---------------------------------------------------------------------------------------------------------
def test_piped_console_keeps_long_paths_on_one_line_and_tables_in_width():
    from rich.table import Table

    from dvtr_data.cli.common import _PipeConsole

    buf = io.StringIO()
    console = _PipeConsole(file=buf, width=60)
    assert not console.is_terminal
    path = "/data/" + "/".join(["a-rather-long-folder-name"] * 5) + "/report.md"
    console.print(f"report: {path}", highlight=False)
    table = Table()
    table.add_column("x")
    table.add_row("words " * 30)
    console.print(table)
    lines = buf.getvalue().splitlines()
    assert lines[0] == f"report: {path}"
    assert all(len(line) <= 60 for line in lines[1:])


def _status(names: list[str]) -> SimpleNamespace:
    people = [
        SimpleNamespace(
            annotator=n,
            origin="human",
            annotations=120 + k,
            captions=118,
            accepted=117,
            skipped=2,
            median_lead_s=31.4,
            annotations_per_hour=96.0,
            unchanged_draft_share=0.12,
            mean_words=11.3,
        )
        for k, n in enumerate(names)
    ]
    quality = SimpleNamespace(
        captions=350,
        clips_scored=70,
        bleu4_loo=0.21,
        cider_d_loo=0.8,
        distinct_1=0.3,
        distinct_2=0.6,
        self_bleu4=0.4,
        mean_words=11.0,
        vocabulary=900,
        unchanged_draft_share=0.1,
    )
    return SimpleNamespace(
        complete_clips=70,
        clips=80,
        target=5,
        progress={0: 5, 1: 2, 2: 1, 3: 1, 4: 1, 5: 70},
        by_origin={"human": 350},
        captions=360,
        accepted=350,
        by_status={"submitted": 360},
        flags={},
        qc_choices={"usable": 300},
        annotators=people,
        quality=quality,
    )


def test_annotator_table_is_readable_at_80_columns(monkeypatch):
    import dvtr_data.cli.annotate as annotate_cli
    from dvtr_data.cli.common import _PipeConsole

    buf = io.StringIO()
    monkeypatch.setattr(annotate_cli, "out", _PipeConsole(file=buf, width=80))
    long_name = "maria.annotator-with-a-long-address@example.org"  # 47 characters: must fold, never be cut
    annotate_cli.print_status(_status(["ana@example.org", long_name]))
    text = buf.getvalue()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if re.match(r"annotator\s", line))
    for col in ("annot.", "capt.", "acc.", "skip", "med s", "/hour", "kept", "words"):
        assert re.search(rf"(^|\s){re.escape(col)}(\s|$)", header), col  # every header whole, on one line
    row = next(line for line in lines if line.startswith("ana@example.org"))
    assert row.split()[1:] == ["120", "118", "117", "2", "31.4", "96", "12%", "11.3"]
    assert "…" not in text
    start = next(k for k, line in enumerate(lines) if line.startswith("maria"))
    folded = ""
    for line in lines[start:]:
        part = line.split()[0] if line.strip() else ""
        if not part or (folded and not long_name.startswith(folded + part)):
            break
        folded += part
    assert folded == long_name
    assert lines[start].split()[1:] == ["121", "118", "117", "2", "31.4", "96", "12%", "11.3"]


@pytest.mark.boundary
def test_audit_command_prints_the_written_path_whole_when_piped(tmp_path):
    from dvtr_data.cli.app import app

    root = tmp_path / ("a-long-dataset-folder-name-" * 4) / "ds"
    write_generated_dataset(root, n_flights=2, clips_per_flight=2)
    result = runner.invoke(app, ["audit", "--dataset", str(root)])
    assert result.exit_code == 0, result.output
    assert f"written: {root / 'audit.json'}" in result.stdout.splitlines()
    assert json.loads((Path(root) / "audit.json").read_text())["splits_from"] is None
