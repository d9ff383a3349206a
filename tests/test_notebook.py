"""The exploration notebook runs top to bottom on a generated dataset (and, slow, on rendered and ingested flights,
after the whole flow: split, every export format, card)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.tables import write_generated_dataset

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_dataset.ipynb"


def run_notebook(dataset_dir: Path, monkeypatch, workdir: Path) -> object:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("DVTR_DATASET", str(dataset_dir))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    return nb


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or json.dumps(out.get("data", {}).get("text/plain", "")))
    return "\n".join(parts)


def test_notebook_is_clean_and_uses_the_library():
    nb = json.loads(NOTEBOOK.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), (
        "commit the notebook without outputs"
    )
    for api in ("dataset_stats", "read_split_report", "export_dataset", "read_table"):
        assert api in code


def test_notebook_runs_on_a_generated_dataset(tmp_path, monkeypatch):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=30, clips_per_flight=(3, 6), embed_dim=16)
    split_dataset(ds, SplitConfig(tolerance=0.1))
    nb = run_notebook(ds.root, monkeypatch, tmp_path)
    text = outputs_text(nb)
    assert "cross-split leaks found by the independent check: 0" in text
    assert "flights in more than one split: 0" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.slow
def test_whole_flow_on_rendered_flights(tmp_path, monkeypatch):
    """synth -> ingest -> simulated captions -> split -> every export -> card -> notebook, on real video files."""
    from dvtr_data.card import write_card
    from dvtr_data.dataset import Dataset
    from dvtr_data.export import EXPORTERS, export_dataset, verify_export
    from dvtr_data.ingest import ingest
    from dvtr_data.synth import generate
    from dvtr_data.synth.simulated import simulated_captions

    generate(tmp_path / "flights", preset="tiny", seed=0)
    report = ingest([tmp_path / "flights"], tmp_path / "ds", workers=1)
    assert report.clips_new > 0
    ds = Dataset(tmp_path / "ds")
    ds.write_table("captions", simulated_captions(ds))
    clips = ds.read_table("clips")
    n_clips = clips.num_rows
    captioned = set(ds.read_table("captions").column("clip_id").to_pylist())
    flight_of = dict(
        zip(clips.column("clip_id").to_pylist(), clips.column("flight_id").to_pylist(), strict=True)
    )
    n_flights = len({flight_of[c] for c in captioned})
    # a tiny set has a handful of flights: let each split take one, whatever the shares (no val with two)
    ratios = (1, 1, 1) if n_flights >= 3 else (1, 0, 1)
    result = split_dataset(ds, SplitConfig(ratios=ratios, tolerance=1.0))
    assert result.leaks == 0
    assert result.report["leakage"]["keyframes_hashed"] > 0
    for fmt in EXPORTERS:
        r = export_dataset(
            ds, fmt, tmp_path / "exports" / fmt, media="copy" if fmt != "qvhighlights" else "none"
        )
        assert verify_export(r.out) == [], fmt
        assert sum(v["clips"] for v in r.counts.values()) <= n_clips
    c4c = tmp_path / "exports" / "clip4clip"
    assert len(list((c4c / "Videos").glob("*.mp4"))) == sum(
        len((c4c / f"{s}_list.txt").read_text().split()) for s in ("train", "val", "test")
    )
    card = write_card(ds)
    assert card.html.is_file() and "map" in card.figures
    nb = run_notebook(ds.root, monkeypatch, tmp_path)
    assert "cross-split leaks found by the independent check: 0" in outputs_text(nb)
