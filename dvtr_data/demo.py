"""The demo: the whole flow on a generated sample of flights. Each stage that exists adds its step here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dvtr_data.ingest import IngestConfig, ingest


@dataclass
class DemoResult:
    flights_dir: Path
    dataset: Path
    failed: int


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
    return DemoResult(flights_dir, dataset_dir, report.flights_failed)
