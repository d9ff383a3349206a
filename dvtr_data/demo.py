"""The demo: the whole flow on a generated sample of flights. Each stage that exists adds its step here.

Moments run on the demo's own flights (12-30 s each, one segment per flight), not on the ``moments`` preset's long
flights: generating and ingesting those would add minutes. So the demo shows the moments mechanics (push, simulated
queries and ratings, pull, the export with features, a few steps of Moment-DETR) but its windows are all short
(maneuvers of 3-8 s): it does not fill the 10-30 s and 30-150 s length buckets, and its export says so.
"""

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
    _moments_baseline_step(dataset_dir, say)
    return DemoResult(flights_dir, dataset_dir, failed, trip)


def _baseline_step(dataset_dir: Path, say: Callable[[str], None]) -> None:
    """A small MSAM run (random-weight backbone: no weights can be downloaded here) and one search query."""
    from dvtr_data.baselines.engine.demo import run_demo_baseline

    run_demo_baseline(dataset_dir, say=say)


def _annotate_step(dataset_dir: Path, say: Callable[[str], None]) -> Any:
    """The real Label Studio round trip with simulated annotators: serve, push, simulate, pull, status, stop."""
    from dvtr_data.annotation import server
    from dvtr_data.annotation.roundtrip import run_round_trip
    from dvtr_data.annotation.status import annotation_status
    from dvtr_data.dataset import Dataset
    from dvtr_data.errors import DvtrError

    say("annotate: Label Studio round trip (serve, push, SIMULATED annotators from the simulator's truth, pull, status)")
    was_running = server.running_server(Dataset(dataset_dir)) is not None
    try:
        # the server stays up for the moments round trip (a second cold start would cost a minute or two)
        trip = run_round_trip(dataset_dir, captions_per_task=1, overlap=5, keep_server=True, say=say)
        _drop_local_fallback_captions(dataset_dir, say)
        _moments_round_trip(dataset_dir, say)
        trip.status = annotation_status(dataset_dir)  # the status the demo prints counts the moments too
    except DvtrError as exc:
        say(f"annotate failed: {exc}; the demo goes on with the simulated captions written locally")
        return None
    finally:
        if not was_running:
            server.stop_server(dataset_dir)
    return trip


def _moments_round_trip(dataset_dir: Path, say: Callable[[str], None]) -> None:
    """Moments and their rating round on the running server: push, SIMULATED annotators, pull (each --task)."""
    from dvtr_data.annotation import moments, ratings
    from dvtr_data.annotation.client import resolve_connection
    from dvtr_data.annotation.status import moments_status
    from dvtr_data.dataset import Dataset
    from dvtr_data.errors import DvtrError

    ds = Dataset(dataset_dir)
    conn = resolve_connection(ds)
    say("annotate --task moments, then --task ratings: queries, windows and 0-4 ratings by SIMULATED annotators")
    try:
        pushed = moments.push_moments(dataset_dir, conn)
        made = moments.simulate_moments(dataset_dir, conn)
        pulled = moments.pull_moments(dataset_dir, conn)
        say(f"moments: {pushed.segments} segment task(s), {made.annotations_created} simulated query(ies), "
            f"{pulled.accepted} accepted")
        rpushed = ratings.push_ratings(dataset_dir, conn)
        rmade = ratings.simulate_ratings(dataset_dir, conn)
        rpulled = ratings.pull_ratings(dataset_dir, conn)
        summary = moments_status(ds)
        done = f"; {summary.complete} of {summary.queries} query(ies) have 3 raters" if summary else ""
        say(f"ratings: {rpushed.tasks_created} task(s), {rmade.annotations_created} simulated rating(s), "
            f"{rpulled.accepted} accepted{done}")
    except DvtrError as exc:
        say(f"moments round trip failed: {exc}; the demo goes on without moments")


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


DEMO_MOMENT_MODEL = {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 64, "enc_layers": 1, "dec_layers": 1,
                     "num_queries": 5, "epochs": 2, "batch_size": 8, "eval_every": 1, "device": "cpu"}


def _moments_baseline_step(dataset_dir: Path, say: Callable[[str], None]) -> None:
    """QVHighlights export of the moments with CLIP features, and two epochs of a tiny Moment-DETR on them."""
    from dvtr_data.baselines.ms_detr.dataset_runs import run_moment_baseline
    from dvtr_data.dataset import Dataset
    from dvtr_data.errors import DvtrError, ModelError
    from dvtr_data.export import export_dataset
    from dvtr_data.export.moment_features import FeatureOptions
    from dvtr_data.precaption.encoder import resolve_tag_weights

    ds = Dataset(dataset_dir)
    if not any(r["accepted"] for r in ds.read_table("moments").to_pylist()):
        say("moments: none annotated, so no moment export or baseline")
        return
    opts = FeatureOptions()
    try:  # asked first: a failed load of the default weights costs tens of seconds offline
        resolve_tag_weights(opts.model, str(opts.pretrained))
    except ModelError as exc:
        say(f"default CLIP weights unavailable ({exc.message}); moment features from ViT-S-32-alt with random "
            "weights, so they show the mechanics, not quality")
        opts = FeatureOptions(model="ViT-S-32-alt", pretrained=None)
    result = export_dataset(ds, "qvhighlights", ds.root / "exports" / "qvhighlights-features", media="none",
                            features=opts, force=True)
    say(f"export qvhighlights with features ({opts.describe()}): {result.out}")
    for note in result.notes:
        say(f"  note: {note}")
    try:
        run = run_moment_baseline(dataset_dir, "moment-detr", features=opts, overrides=DEMO_MOMENT_MODEL,
                                  run_id=None)
    except DvtrError as exc:
        say(f"moment-detr: not run ({exc})")
        return
    scores = "; ".join(f"{split}: R1@0.5 {_num(brief.get('MR-full-R1@0.5'))}, HIT@1 "
                       f"{_num(brief.get('HL-min-VeryGood-Hit1'))}"
                       for split, brief in (run.metrics.get("final") or {}).items())
    say(f"baseline moment-detr (tiny, 2 epochs, random-weight features: mechanics, not quality): {run.run_dir}"
        + (f"; {scores}" if scores else ""))


def _num(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else "-"


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
