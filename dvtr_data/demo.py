"""The demo: the whole flow on a generated sample of flights. Each stage that exists adds its step here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dvtr_data.ingest import IngestConfig, ingest


@dataclass
class DemoResult:
    flights_dir: Path
    dataset: Path
    failed: int
    annotation: Any = None  # the Label Studio round trip (annotation.roundtrip.RoundTrip), when it ran


def run_demo(out_dir: Path, *, seed: int = 0, say: Callable[[str], None] = print, workers: int | None = None) -> DemoResult:
    """Generate the demo flights (once), then run every stage on them. Re-running resumes."""
    from dvtr_data.synth import generate

    out_dir = Path(out_dir)
    flights_dir = out_dir / "flights"
    dataset_dir = out_dir / "dataset"
    marker = flights_dir / ".complete"
    if marker.exists():
        say(f"simulated flights already in {flights_dir}")
    else:
        say(f"generating simulated drone flights in {flights_dir} (seed {seed})")
        paths = generate(flights_dir, preset="demo", seed=seed)
        marker.write_text("\n".join(p.name for p in paths) + "\n")
        say(f"{len(paths)} flights written")
    say(f"ingest {flights_dir} -> {dataset_dir}")
    report = ingest([flights_dir], dataset_dir, IngestConfig(), workers=workers)
    say(
        f"ingest: {report.flights_done} flight(s) done, {report.flights_skipped} skipped (up to date), "
        f"{report.flights_failed} failed, {report.clips_new} new clip(s)"
    )
    for e in report.errors:
        say(f"failed: {e}")
    failed = report.flights_failed
    failed += _precaption_step(dataset_dir, say)
    trip = _annotate_step(dataset_dir, say)
    failed += trip is None
    _dataset_steps(dataset_dir, say)
    _baseline_step(dataset_dir, say)
    return DemoResult(flights_dir, dataset_dir, failed, trip)


def _baseline_step(dataset_dir: Path, say: Callable[[str], None]) -> None:
    """A small MSAM run (random-weight backbone: no weights can be downloaded here) and one search query."""
    from dvtr_data.baselines.engine.demo import run_demo_baseline

    run_demo_baseline(dataset_dir, say=say)


def _annotate_step(dataset_dir: Path, say: Callable[[str], None]) -> Any:
    """The real Label Studio round trip with simulated annotators: serve, push, simulate, pull, status, stop."""
    from dvtr_data.annotation.roundtrip import run_round_trip
    from dvtr_data.errors import DvtrError

    say("annotate: Label Studio round trip (serve, push, SIMULATED annotators from the simulator's truth, pull, status)")
    try:
        trip = run_round_trip(dataset_dir, captions_per_task=1, overlap=5, say=say)
    except DvtrError as exc:
        say(f"annotate failed: {exc}; the demo goes on with the simulated captions written locally")
        return None
    _drop_local_fallback_captions(dataset_dir, say)
    return trip


def _drop_local_fallback_captions(dataset_dir: Path, say: Callable[[str], None]) -> None:
    """A failed earlier demo may have written the simulator's captions locally; the round trip supersedes them."""

    from dvtr_data.dataset import Dataset
    from dvtr_data.synth.simulated import WRITER

    ds = Dataset(dataset_dir)
    with ds.writing("demo"):
        own = ds.rows_of("captions", WRITER)
        if own.num_rows:
            ds.replace_rows("captions", WRITER, [])  # only the demo's own rows: other writers' rows stay
            say(f"removed {own.num_rows} locally written simulated caption(s), superseded by the round trip")


def _dataset_steps(dataset_dir: Path, say: Callable[[str], None]) -> None:
    """Split, export every format, and write the dataset card."""
    from dvtr_data.card import write_card
    from dvtr_data.dataset import Dataset
    from dvtr_data.export import export_dataset
    from dvtr_data.splits import split_dataset
    from dvtr_data.synth.simulated import WRITER as SIMULATED_WRITER
    from dvtr_data.synth.simulated import simulated_captions

    ds = Dataset(dataset_dir)
    if not ds.read_table("captions").num_rows:
        say("captions: the simulator's ground truth, marked origin=simulated (written locally, not through Label Studio)")
        with ds.writing("demo"):
            ds.replace_rows("captions", SIMULATED_WRITER, simulated_captions(ds))
    result = split_dataset(ds)
    say("split: " + ", ".join(f"{k} {v['clips']}" for k, v in result.sizes.items()) + f" clips; {result.leaks} leaks")
    for fmt in ("parquet", "clip4clip", "qvhighlights", "amfmn"):
        say(f"export {fmt}: {export_dataset(ds, fmt, force=True).out}")
    say(f"card: {write_card(ds).html}")


def _precaption_step(dataset_dir: Path, say: Callable[[str], None]) -> int:
    """Draft captions with the default CLIP when its weights are on this machine, else a small random model."""
    from dvtr_data.errors import ModelError
    from dvtr_data.precaption import ModelSpec, PrecaptionConfig, precaption

    try:
        report = precaption(dataset_dir, PrecaptionConfig())
        say(f"precaption with {report.model}")
    except ModelError as exc:
        say(f"default CLIP weights unavailable ({exc.message}); using ViT-S-32-alt with random weights, so the drafts "
            "show the mechanics, not quality")
        report = precaption(dataset_dir, PrecaptionConfig(model=ModelSpec("ViT-S-32-alt", None)))
    say(f"precaption: {report.clips_embedded} clip(s) embedded, {report.clips_skipped} already done, "
        f"{report.clips_failed} failed; {report.precaptions} drafts from a bank of {report.bank_size} captions")
    return report.clips_failed
