"""The `dvtr-data` command line: thin commands over the library, behind one error boundary.

Exit codes: 0 success; 1 finished but some items failed; 2 usage error; 3 input error; 4 dataset error;
5 service error; 6 model error; 70 internal error (a bug); 130 interrupted. ``DVTR_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from dvtr_data import __version__
from dvtr_data.cli.common import (
    BoundaryGroup,
    DatasetOpt,
    ExecutorOpt,
    RayAddressOpt,
    WorkersOpt,
    err,
    out,
    progress_bars,
    reflow_help,
)
from dvtr_data.errors import EXIT_CODES, PartialFailure
from dvtr_data.ingest.stage import STALL_TIMEOUT, IngestConfig, check_run_options

# Option defaults are read from the library's config dataclasses, declared once there.
_INGEST = IngestConfig()

EXIT_HELP = "\n\n".join(f"{code}: {text}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="dvtr-data",
    help="Build drone video-text retrieval datasets from raw flights, and score retrieval models on them.\n\n"
    "Exit codes:\n\n" + EXIT_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
    cls=BoundaryGroup,  # the one error boundary, around every command
)
def command(name: str | None = None, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        return app.command(name, **kw)(fn)

    return deco


def _version(value: bool) -> None:
    if value:
        out.print(f"dvtr-data {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    pass


# ------------------------------------------------------------------------------------------------------------
@command("synth")
def synth_cmd(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the videos, .SRT sidecars and truth JSON to.")],
    preset: Annotated[str, typer.Option(help="tiny (tests), demo, or bench (1080p, 5+ minutes).")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    backdrop: Annotated[Path | None, typer.Option(help="Render over this aerial image (an orthophoto) instead of a procedural world.")] = None,
) -> None:
    """Generate simulated drone flights with known truth (cuts, objects, captions).

    Example: [bold]dvtr-data synth flights/ --preset demo --seed 0[/]
    """
    from dvtr_data.synth import generate

    with progress_bars("synth") as reporter:
        paths = generate(out_dir, preset=preset, seed=seed, backdrop=backdrop, progress=reporter.callback("frames"))
    out.print(f"wrote {len(paths)} simulated flights to {out_dir}", highlight=False, markup=False)
    for p in paths:
        out.print(f"  {p.name}", highlight=False, markup=False)


@command("ingest")
def ingest_cmd(
    flights: Annotated[list[Path], typer.Argument(help="Video files or folders (searched recursively).")],
    dataset: DatasetOpt,
    workers: WorkersOpt = None,
    detector: Annotated[str, typer.Option(help="Shot detector: adaptive, content, hash, histogram, threshold.")] = _INGEST.detector,
    target: Annotated[float, typer.Option("--target", help="Target clip length in seconds (measured on the frames' timestamps); shots are cut into windows of about this length.")] = _INGEST.window.target_s,
    min_len: Annotated[float, typer.Option("--min", help="Minimum clip length in seconds: a shot, or a tail that cannot merge, shorter than this is no clip.")] = _INGEST.window.min_s,
    max_len: Annotated[float, typer.Option("--max", help="Maximum clip length in seconds: a short tail merges into the previous clip only if the merged clip stays within it.")] = _INGEST.window.max_s,
    tail: Annotated[str, typer.Option(help="A shot's tail (what is left after whole --target windows). merge: a tail shorter than half of --target (or than --min) joins the previous clip when the merged clip stays within --max; a tail that does not merge is kept when at least --min long, else dropped. drop: never merge (a tail of at least --min still stands alone). keep: never merge, and keep shorter tails too.")] = _INGEST.window.tail,
    split_at_events: Annotated[bool, typer.Option("--split-at-events", help="Also split at telemetry events (hover start/stop, big yaw or altitude change).")] = _INGEST.split_at_events,
    cut: Annotated[bool, typer.Option("--cut/--no-cut", help="Write clip files, or only the catalog (spans inside flights).")] = _INGEST.cut,
    cut_rejected: Annotated[bool, typer.Option("--cut-rejected", help="Also write files for clips that failed QC.")] = _INGEST.cut_rejected,
    max_height: Annotated[int, typer.Option(help="Cap of the clip files' short side in pixels (0: source size).")] = _INGEST.encoder.max_height,
    crf: Annotated[int, typer.Option(help="libx264 quality of clip files (lower is better).")] = _INGEST.encoder.crf,
    preset: Annotated[str, typer.Option(help="libx264 preset of clip files.")] = _INGEST.encoder.preset,
    min_sharpness: Annotated[float, typer.Option(help="QC: reject clips blurrier than this (variance of the Laplacian).")] = _INGEST.qc.min_sharpness,
    stall_timeout: Annotated[float, typer.Option(help="Stop a flight's worker after this many seconds without progress (hung decoder).")] = STALL_TIMEOUT,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Re-ingest flights that are already up to date.")] = False,
    licence: Annotated[str | None, typer.Option(help="Licence of these flights' footage, recorded per flight.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner of these flights' footage, recorded per flight.")] = None,
    private_location: Annotated[bool, typer.Option("--private-location", help="Mark these flights' GPS as private (to drop before publishing).")] = False,
    trust_sidecar: Annotated[bool, typer.Option("--trust-sidecar", help="Attach a telemetry sidecar's values even when it does not match its video. A sidecar matches when its start, its duration (first cue to the end of the last) and, for one cue per frame, its cue count are within the larger of 1 s and 2% of the video's duration; a mismatch is a flight warning, and without this option its values are not attached.")] = _INGEST.trust_sidecar,
) -> None:
    """Cut raw flights into clips: probe, shots, windows, QC, telemetry, frame-exact clip files.

    Re-running skips flights already ingested with the same content and settings; a killed run resumes.

    Example: [bold]dvtr-data ingest ~/flights/2026-06 --dataset my-dataset --workers 2[/]
    """
    from dvtr_data.ingest import FlightMeta, IngestConfig, ingest
    from dvtr_data.ingest.cutting import EncoderSettings
    from dvtr_data.ingest.qc import QcThresholds
    from dvtr_data.ingest.windows import WindowRule

    config = IngestConfig(
        detector=detector,
        window=WindowRule(target, min_len, max_len, tail),  # type: ignore[arg-type]
        split_at_events=split_at_events,
        qc=QcThresholds(min_sharpness=min_sharpness),
        cut=cut,
        cut_rejected=cut_rejected,
        encoder=EncoderSettings(crf=crf, preset=preset, max_height=max_height),
        trust_sidecar=trust_sidecar,
    )
    config.check()  # every bad option is exit 2 before a cluster starts or a flight is decoded
    check_run_options(workers, stall_timeout)
    run_on = None
    if executor != "local":
        from dvtr_data.engine import make_executor

        run_on = make_executor(workers, stall_timeout, kind=executor, ray_address=ray_address)
    with progress_bars() as reporter:
        report = ingest(flights, dataset, config, workers=workers, executor=run_on, stall_timeout=stall_timeout, reporter=reporter, force=force,
                        meta=FlightMeta(licence, owner, private_location))
    for problem in report.input_problems:  # flight errors were printed as they happened
        err.print(f"failed: {problem}", highlight=False, markup=False, soft_wrap=True)
    out.print(
        f"ingested {report.flights_done} flight(s), skipped {report.flights_skipped} up to date, "
        f"{report.flights_failed} failed" + (f", {report.duplicates} duplicate(s)" if report.duplicates else "")
        + f"; {report.clips_new} clip(s) " + ("written" if cut else "catalogued (spans only, no files: --no-cut)")
        + f". Log: {report.log_path}",
        highlight=False, markup=False,
    )
    if not report.ok:
        raise PartialFailure(f"{len(report.errors)} input(s) failed; see {report.log_path}")


@command("info")
def info_cmd(dataset: DatasetOpt) -> None:
    """Print what a dataset holds: flights, clips, hours, QC verdicts and errors.

    Example: [bold]dvtr-data info --dataset my-dataset[/]
    """
    from dvtr_data.dataset import Dataset
    from dvtr_data.inventory import inventory

    inv = inventory(Dataset(dataset))
    print_inventory(inv)


def print_inventory(inv: Any) -> None:
    table = Table(title=Text(f"dataset {inv.name} ({inv.root})"), show_header=False)  # user text: never markup
    table.add_row("flights", f"{inv.flights} ({inv.flights_failed} failed), {inv.flight_hours * 60:.1f} min of video")
    table.add_row("clips", f"{inv.clips} ({inv.clips_with_file} with a file, {inv.clips_failed} failed), {inv.clip_hours * 60:.1f} min")
    table.add_row("QC", Text(", ".join(f"{k} {v}" for k, v in sorted(inv.qc.items())) or "-"))
    if inv.qc_reasons:
        table.add_row("rejected for", Text(", ".join(f"{k} {v}" for k, v in sorted(inv.qc_reasons.items()))))
    if inv.qc_flags:
        table.add_row("flagged, kept", Text(", ".join(f"{k} {v}" for k, v in sorted(inv.qc_flags.items()))))
    table.add_row("camera", Text(", ".join(f"{k} {v}" for k, v in sorted(inv.motion.items())) or "-"))
    table.add_row("clips with GPS", str(inv.with_telemetry))
    table.add_row("tables", Text(", ".join(f"{k} {v} rows" for k, v in inv.tables.items()) or "-"))
    table.add_row("flight warnings", str(inv.warnings))
    out.print(table)
    for name, error in inv.flight_errors:
        out.print(f"  failed flight {name}: {error}", highlight=False, markup=False, soft_wrap=True)


@command("demo")
def demo_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the generated flights and the dataset.")] = Path("demo-data"),
    seed: Annotated[int, typer.Option(help="Random seed of the simulated flights.")] = 0,
) -> None:
    """Run the whole flow on a generated sample of drone flights (what `make demo` runs).

    Example: [bold]dvtr-data demo --out demo-data[/]
    """
    from dvtr_data.dataset import Dataset
    from dvtr_data.demo import run_demo
    from dvtr_data.inventory import inventory

    def say(msg: str) -> None:
        out.print(Text.assemble(("==> ", "bold cyan"), msg), highlight=False)

    result = run_demo(out_dir, seed=seed, say=say)
    if result.annotation is not None:
        from dvtr_data.cli.annotate import print_status

        print_status(result.annotation.status)
    print_inventory(inventory(Dataset(result.dataset)))
    if result.failed:
        raise PartialFailure(f"{result.failed} flight(s) failed in the demo")


def _register_stage_commands() -> None:
    """Commands of the later stages live in their own modules (the boundary of `BoundaryGroup` covers them too)."""
    from dvtr_data.cli.annotate import annotate_app
    from dvtr_data.cli.audit import audit_cmd
    from dvtr_data.cli.baseline import baseline_app, search_cmd
    from dvtr_data.cli.clips import clips_cmd
    from dvtr_data.cli.dataset import card_cmd, export_cmd, import_cmd, split_cmd
    from dvtr_data.cli.precaption import precaption_app
    from dvtr_data.cli.release import release_app

    app.add_typer(precaption_app, name="precaption")
    app.add_typer(annotate_app, name="annotate")
    app.command("split")(split_cmd)
    app.command("export")(export_cmd)
    app.command("import")(import_cmd)
    app.command("card")(card_cmd)
    app.command("clips")(clips_cmd)
    app.add_typer(release_app, name="release")
    app.command("audit")(audit_cmd)
    app.add_typer(baseline_app, name="baseline")
    app.command("search")(search_cmd)


_register_stage_commands()
reflow_help(app)


def main() -> None:
    app()

