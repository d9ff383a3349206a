"""`dvtr-data precaption`: the CLI over `dvtr_data.precaption` (registered in `dvtr_data.cli`).

The group's callback runs the stage when no subcommand is given; `show CLIP_ID` prints one clip's drafts and tags.
Both run inside the app's one error boundary (`dvtr_data.cli.common.BoundaryGroup`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dvtr_data.precaption.encoder import ModelSpec
from dvtr_data.precaption.stage import PrecaptionConfig

# Option defaults are read from the stage's config dataclasses, declared once there.
_DEFAULTS = PrecaptionConfig()
_MODEL = ModelSpec()

precaption_app = typer.Typer(
    name="precaption",
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

DatasetOpt = Annotated[Path | None, typer.Option("--dataset", "-d", help="Dataset folder (made by `dvtr-data ingest`).")]


def _consoles():
    from dvtr_data.cli.common import err, out

    return out, err


@precaption_app.callback(invoke_without_command=True)
def precaption_cmd(
    ctx: typer.Context,
    dataset: DatasetOpt = None,
    model: Annotated[str, typer.Option(help="open_clip model config, e.g. ViT-B-32, ViT-L-14 (open_clip.list_models()).")] = _MODEL.model,
    pretrained: Annotated[str, typer.Option(help="open_clip pretrained tag; 'none' for seeded random weights (tests). Ignored with --checkpoint.")] = str(_MODEL.pretrained),
    checkpoint: Annotated[Path | None, typer.Option(help="Local weights file for --model (RemoteCLIP, GeoRSCLIP, your own); loaded as tensors only.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = _MODEL.device,
    precision: Annotated[str, typer.Option(help="fp32, fp16 (GPU), bf16, amp or amp_bf16.")] = _MODEL.precision,
    frames: Annotated[int, typer.Option(help="Frames sampled uniformly per clip.")] = _DEFAULTS.frames,
    batch_size: Annotated[int, typer.Option(help="Frames per model call (batches span clips).")] = _DEFAULTS.batch_size,
    workers: Annotated[int | None, typer.Option("--workers", "-j", help="Decode processes (default: 1 beside a CPU model, up to 8 beside a GPU).")] = None,
    decode_timeout: Annotated[float, typer.Option(help="Seconds one clip may take to decode before its decoder is stopped and PyAV tried.")] = _DEFAULTS.decode_timeout,
    overlap: Annotated[bool, typer.Option("--overlap/--no-overlap", help="Decode while the model runs; --no-overlap pauses decoding during model calls.")] = _DEFAULTS.overlap,
    executor: Annotated[str, typer.Option("--executor", help="Where clips are decoded: local (worker processes) or ray (tasks on a Ray cluster).")] = "local",
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Ray cluster to join with --executor ray ('auto': the one `ray start` runs here; default: start a local one).")] = None,
    bank: Annotated[list[str] | None, typer.Option("--bank", help="Caption bank: 'builtin', or a file/folder (text, JSONL, JSON/CapERA, Parquet, CLIP4Clip raw-captions.pkl). Repeat to combine.")] = None,
    bank_format: Annotated[str, typer.Option(help="auto, text, jsonl, json, parquet or clip4clip.")] = _DEFAULTS.bank_format,
    text_column: Annotated[str | None, typer.Option(help="Caption column of a JSONL/JSON/Parquet bank (default: text, caption, sentence, ...).")] = None,
    max_caption_chars: Annotated[int, typer.Option(help="Skip bank captions longer than this (counted in the summary).")] = _DEFAULTS.max_caption_chars,
    top_k: Annotated[int, typer.Option(help="Draft captions per clip.")] = _DEFAULTS.top_k,
    dedupe: Annotated[float, typer.Option(help="Drafts this similar (0-1, characters) count as one; 1 keeps all but exact repeats.")] = _DEFAULTS.dedupe_threshold,
    tags: Annotated[str, typer.Option(help="Zero-shot class list: era, scenes, all, or a file (one 'tag' or 'tag: prompt; prompt' per line).")] = _DEFAULTS.tags,
    top_tags: Annotated[int, typer.Option(help="Tags stored per clip (0: no tagging).")] = _DEFAULTS.top_tags,
    include_rejected: Annotated[bool, typer.Option("--include-rejected", help="Also embed clips that failed QC (when they have a file).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Re-embed clips already embedded with this model and sampling.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of random weights (--pretrained none).")] = _MODEL.seed,
    cache_dir: Annotated[Path | None, typer.Option(help="open_clip's download cache for URL weights (default ~/.cache/clip).")] = None,
) -> None:
    """Embed every clip, draft captions by retrieval from a caption bank, and tag scenes zero-shot.

    Writes embeddings/<model>.parquet, precaptions.parquet and tags.parquet. Re-running skips clips already
    embedded with the same model and sampling; an interrupted run resumes. No weights are downloaded without
    network: name a tag whose weights are in the Hugging Face cache, or a file with --checkpoint.

    Example: [bold]dvtr-data precaption --dataset my-dataset --model ViT-B-32 --pretrained laion2b_s34b_b79k[/]
    """
    if ctx.invoked_subcommand is not None:
        return
    from dvtr_data.errors import PartialFailure, UsageError
    from dvtr_data.precaption.encoder import ModelSpec
    from dvtr_data.precaption.stage import PrecaptionConfig, precaption

    if dataset is None:
        raise UsageError("--dataset is required", hint="dvtr-data precaption --dataset DIR")
    out, err = _consoles()
    config = PrecaptionConfig(
        model=ModelSpec(model, pretrained, checkpoint, device, precision, seed, cache_dir),
        frames=frames, batch_size=batch_size, workers=workers, decode_timeout=decode_timeout, overlap=overlap,
        executor=executor, ray_address=ray_address,
        banks=tuple(bank or ("builtin",)), bank_format=bank_format, text_column=text_column,
        max_caption_chars=max_caption_chars, top_k=top_k, dedupe_threshold=dedupe, tags=tags, top_tags=top_tags,
        include_rejected=include_rejected, force=force,
    )
    from dvtr_data.cli.common import progress_bars

    with progress_bars() as reporter:
        report = precaption(dataset, config, reporter=reporter)
    if not err.is_terminal:
        for e in report.errors:
            err.print(f"failed: {e}", highlight=False, markup=False, soft_wrap=True)
    skipped = ", ".join(f"{n} {what}" for n, what in ((report.bank_skipped_empty, "empty"), (report.bank_skipped_huge, "huge"),
                                                       (report.bank_duplicates, "duplicate")) if n) or "none"
    out.print(
        f"embedded {report.clips_embedded} clip(s), skipped {report.clips_skipped} already embedded, "
        f"{report.clips_failed} failed ({report.clips_not_selected} not selected: failed in ingest or rejected by QC); "
        f"model {report.model}",
        highlight=False, markup=False, soft_wrap=True,
    )
    out.print(
        f"{report.precaptions} draft caption(s) from bank {report.bank} ({report.bank_size} captions"
        f"{', embeddings cached' if report.bank_cached else ''}; skipped captions: {skipped}); "
        f"{report.tagged} clip(s) tagged from {report.class_list or '-'}. Log: {report.log_path}",
        highlight=False, markup=False, soft_wrap=True,
    )
    if not report.ok:
        raise PartialFailure(f"{report.clips_failed} clip(s) failed; see {report.log_path}")


@precaption_app.command("show")
def show_cmd(
    clip_id: Annotated[str, typer.Argument(help="Clip id (as in clips.parquet).")],
    dataset: DatasetOpt = None,
) -> None:
    """Print one clip's draft captions, zero-shot tags and embedding status.

    Example: [bold]dvtr-data precaption show f0123456789abcdef-0000000-0000125 --dataset my-dataset[/]
    """
    from rich.table import Table
    from rich.text import Text

    from dvtr_data.errors import UsageError
    from dvtr_data.precaption.stage import show

    if dataset is None:
        raise UsageError("--dataset is required", hint="dvtr-data precaption show CLIP_ID --dataset DIR")
    out, _ = _consoles()
    info = show(dataset, clip_id)
    c = info.clip
    out.print(f"clip {info.clip_id}: {c['clip_path'] or '(no file)'}, {c['start_s']:.2f}-{c['end_s']:.2f} s of flight "
              f"{c['flight_id']}, QC {c['qc_verdict']}", highlight=False, markup=False, soft_wrap=True)
    for e in info.embeddings:
        state = e["status"] if e["status"] == "ok" else f"error: {e['error']}"
        out.print(f"  embedding {e['model']} ({e['sampling']}, {e['decoder'] or '-'}): {state}", highlight=False, markup=False, soft_wrap=True)
    if info.drafts:
        table = Table(title=Text(f"draft captions ({info.drafts[0]['model']}, bank {info.drafts[0]['bank']})"))
        table.add_column("#", justify="right")
        table.add_column("score", justify="right")
        table.add_column("caption")
        for d in info.drafts:
            table.add_row(str(d["rank"]), f"{d['score']:.3f}", Text(d["text"]))  # a bank caption is never markup
        out.print(table)
    else:
        out.print("  no draft captions (run `dvtr-data precaption --dataset DIR`)", highlight=False, markup=False)
    if info.tags:
        tags = ", ".join(f"{t['tag']} {t['score']:.2f}" for t in info.tags)
        out.print(f"tags ({info.tags[0]['class_list']}): {tags}", highlight=False, markup=False, soft_wrap=True)
