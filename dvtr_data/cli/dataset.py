"""CLI commands `split`, `export`, `import` and `card`: thin wrappers over `dvtr_data.splits`, `.export`,
`.importers` and `.card`, registered in `dvtr_data.cli` behind its error boundary.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from dvtr_data.cli.common import progress_bars
from dvtr_data.errors import UsageError
from dvtr_data.export.moment_features import FeatureOptions
from dvtr_data.splits.build import SplitConfig

out = Console(soft_wrap=True)

DatasetArg = Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder.")]
SplitsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--split", "-s", help="Split to export (repeat for several): train, val, test. Default: all three."
    ),
]
MediaOpt = Annotated[
    str | None,
    typer.Option(
        "--media",
        help="How video/image files go in: copy, link (hard link; copy across file systems), "
        "symlink, none. Default: link for clip4clip and amfmn, none for parquet and qvhighlights.",
    ),
]


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``70/10/20``, ``0.7,0.1,0.2`` or ``7:1:2`` -> three numbers (normalised later)."""
    parts = [p for p in re.split(r"[/,: ]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--ratios {text!r}: expected three numbers such as 70/10/20") from None
    if len(values) != 3:
        raise UsageError(f"--ratios {text!r}: expected three numbers (train/val/test) such as 70/10/20")
    return values  # (the length check above narrows it to three numbers)


# Option defaults are read from the split's config dataclass, declared once there.
_SPLIT = SplitConfig()
_FEATURES = FeatureOptions()
_RATIOS = "/".join(f"{share * 100:g}" for share in _SPLIT.ratios)


def split_cmd(
    dataset: DatasetArg,
    ratios: Annotated[
        str, typer.Option(help="Train/val/test shares of the clips, e.g. 70/10/20 or 0.8,0.1,0.1.")
    ] = _RATIOS,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed and data give the same splits.")] = _SPLIT.seed,
    group_by: Annotated[
        list[str] | None,
        typer.Option(
            "--group-by",
            help="Keep together clips of one: flight, location (grid cell). Repeat for both. Default: flight.",
        ),
    ] = None,
    cell_m: Annotated[
        float, typer.Option("--cell-m", help="Location grid cell size in metres (with --group-by location).")
    ] = _SPLIT.cell_m,
    near_duplicates: Annotated[
        bool,
        typer.Option(
            "--near-duplicates/--no-near-duplicates",
            help="Keep near-duplicate clips together (embeddings and keyframe hashes).",
        ),
    ] = _SPLIT.near_duplicates,
    threshold: Annotated[
        float, typer.Option(help="Cosine of CLIP embeddings at or above which two clips are near-duplicates.")
    ] = _SPLIT.threshold,
    max_hamming: Annotated[
        int,
        typer.Option(
            help="Keyframe perceptual hashes at most this many bits apart (of 64) are near-duplicates; -1: off."
        ),
    ] = _SPLIT.max_hamming,
    embeddings: Annotated[
        str | None,
        typer.Option(
            help="Embedding model to use when precaption ran with several (model name or file stem)."
        ),
    ] = None,
    stratify: Annotated[
        str, typer.Option(help="Balance the splits per: category, tag (zero-shot scene tag), none, auto.")
    ] = _SPLIT.stratify,
    min_captions: Annotated[
        int,
        typer.Option(
            help="Clips need this many accepted captions to be split; the rest are listed as excluded."
        ),
    ] = _SPLIT.min_captions,
    tolerance: Annotated[
        float, typer.Option(help="Largest allowed gap between a split's share of clips and its ratio.")
    ] = _SPLIT.tolerance,
    recheck: Annotated[
        bool | None,
        typer.Option(
            "--recheck/--no-recheck",
            help="Leakage report: compare every cross-split pair exactly whatever the size (default: exactly "
            "while the comparisons fit --recount-budget, about 110,000 clips, else a seeded sample of clips "
            "with a stated 95% bound). The recount never trusts the index's pairs.",
        ),
    ] = None,
    recount_budget: Annotated[
        int, typer.Option(help="Cross-split comparisons per kind the exact recount may make before it samples.")
    ] = _SPLIT.recount_budget,
    caption_glue: Annotated[
        bool,
        typer.Option(
            "--caption-glue/--no-caption-glue",
            help="Keep clips whose human or imported captions are identical (normalised) on one side of the split; "
            "generated template captions never glue.",
        ),
    ] = _SPLIT.caption_glue,
    glue_cap: Annotated[
        int, typer.Option(help="A caption on more clips than this glues none of them (the report says what it cut).")
    ] = _SPLIT.glue_cap,
    text_threshold: Annotated[
        float,
        typer.Option(help="rapidfuzz ratio (0-100) at or above which two normalised captions are near-identical."),
    ] = _SPLIT.text_threshold,
    freeze: Annotated[
        str | None,
        typer.Option(
            "--freeze",
            help="Freeze the result as release NAME (releases/NAME/: splits, accepted captions, a hashed manifest); "
            "later splits never move a frozen clip and place only new groups.",
        ),
    ] = None,
) -> None:
    """Make leakage-free train/val/test splits: whole flights, places and near-duplicate groups stay in one split.

    Writes splits.parquet and split_report.json (sizes in clips, captions, flights and hours, and an independent
    check that no pair of near-duplicates crosses splits).

    Example: [bold]dvtr-data split --dataset my-dataset --ratios 70/10/20 --group-by flight --group-by location[/]
    """
    from dvtr_data.splits import SPLIT_NAMES, SplitConfig, split_dataset

    config = SplitConfig(
        ratios=parse_ratios(ratios),
        seed=seed,
        group_by=tuple(group_by or ("flight",)),
        cell_m=cell_m,
        near_duplicates=near_duplicates,
        threshold=threshold,
        max_hamming=max_hamming,
        embeddings=embeddings,
        stratify=stratify,
        min_captions=min_captions,
        tolerance=tolerance,
        recheck=recheck,
        recount_budget=recount_budget,
        caption_glue=caption_glue,
        glue_cap=glue_cap,
        text_threshold=text_threshold,
    )
    with progress_bars("split") as reporter:
        result = split_dataset(dataset, config, progress=reporter.heartbeat("near-duplicates, recount"), freeze=freeze)
    rep = result.report
    table = Table(
        title=Text(f"splits of {rep['dataset']} ({result.groups} groups, stratified by {rep['stratified_by']})")
    )
    for col in ("split", "clips", "captions", "flights", "hours", "share"):
        table.add_column(col, justify="left" if col == "split" else "right")
    own_total = sum(v["clips"] for v in rep["sizes_own"].values())
    total = sum(result.sizes[name]["clips"] for name in SPLIT_NAMES) or 1
    for name in SPLIT_NAMES:
        s = result.sizes[name]
        share = rep["sizes_own"][name]["clips"] / own_total if own_total else s["clips"] / total
        table.add_row(
            name,
            str(s["clips"]),
            str(s["captions"]),
            str(rep["sizes_own"][name]["flights"]),
            f"{s['hours']:.2f}",
            f"{share:.1%}",
        )
    out.print(table)
    if rep["imported_clips"]:
        out.print(
            f"imported clips keep their published splits: {rep['imported_clips']} (shares above are of your own clips)",
            highlight=False, markup=False,
        )
    emb = rep["embeddings"]
    if rep.get("embeddings_skipped"):
        out.print(
            f"not used for near-duplicates: {', '.join(rep['embeddings_skipped'])} (random weights; name it with "
            "--embeddings to use it anyway)",
            highlight=False, markup=False,
        )
    if not near_duplicates:
        out.print("near-duplicates: off", highlight=False, markup=False)
    elif emb is None:
        out.print(
            "near-duplicates: no usable embeddings (run `dvtr-data precaption`); keyframe hashes only",
            highlight=False, markup=False,
        )
    else:
        out.print(
            f"near-duplicates: {emb['model']} on {emb['clips_with']} clip(s), {emb['clips_without']} without",
            highlight=False, markup=False,
        )
    out.print(f"leakage check: {result.leaks} cross-split pair(s) or straddling group(s)", highlight=False, markup=False)
    if result.excluded:
        reasons = ", ".join(f"{k} {v}" for k, v in result.excluded_reasons.items())
        out.print(f"excluded: {result.excluded} clip(s) ({reasons})", highlight=False, markup=False)
    text = (rep.get("leakage") or {}).get("text") or {}
    for pair, counts in (text.get("pairs") or {}).items():
        same, near = counts.get("identical", {}), counts.get("near", {})
        out.print(
            f"captions {pair}: {same.get('captions', 0)} identical ({same.get('share', 0):.1%}), "
            f"{near.get('captions', 0)} near-identical ({near.get('share', 0):.1%}) of the second split's captions",
            highlight=False, markup=False,
        )
    frozen = rep.get("frozen") or {}
    if frozen.get("releases"):
        out.print(
            f"frozen releases {', '.join(map(str, frozen['releases']))}: {frozen.get('clips_kept', 0)} clip(s) kept in "
            f"their split, {frozen.get('clips_gone_count', 0)} gone from the dataset; new clips placed: "
            f"{frozen.get('new_clips_placed', {})}",
            highlight=False, markup=False,
        )
    if result.release:
        out.print(f"froze release {freeze}: {result.release.get('counts', {})}", highlight=False, markup=False)
    out.print(f"report: {result.report_path}", highlight=False, markup=False)


def export_cmd(
    dataset: DatasetArg,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="parquet, clip4clip (MSVD layout for MSAM), qvhighlights, amfmn."
        ),
    ] = "parquet",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder to create (must not exist). Default: <dataset>/exports/<format>."
        ),
    ] = None,
    split: SplitsOpt = None,
    media: MediaOpt = None,
    ids: Annotated[
        str,
        typer.Option(
            help="Ids in the files: source (published ids, verbatim, for imported clips) or clean (our clip ids)."
        ),
    ] = "source",
    force: Annotated[bool, typer.Option("--force", help="Replace an earlier export at --out.")] = False,
    drop_gps: Annotated[
        bool,
        typer.Option(
            "--drop-gps", help="Leave positions out of the export (flights marked private never have them)."
        ),
    ] = False,
    hash_media: Annotated[
        bool,
        typer.Option(
            "--hash-media/--no-hash-media",
            help="Put sha256 of video/image files in the manifest (slow for big exports).",
        ),
    ] = True,
    features: Annotated[
        bool,
        typer.Option(
            "--features",
            help="qvhighlights only: also write CLIP video features per 2-s clip and text features per query, in "
            "the layout Moment-DETR and MS-DETR read.",
        ),
    ] = False,
    clip_model: Annotated[str, typer.Option(help="open_clip model of --features.")] = _FEATURES.model,
    clip_pretrained: Annotated[
        str, typer.Option(help="open_clip pretrained tag of --features; 'none' for random weights (tests).")
    ] = str(_FEATURES.pretrained),
    clip_checkpoint: Annotated[
        Path | None, typer.Option(help="Local weights file for --clip-model (wins over --clip-pretrained).")
    ] = None,
) -> None:
    """Export splits in a layout other tools read unchanged, with a manifest of counts and file hashes.

    The folder appears only when complete (written beside it, then renamed).

    Example: [bold]dvtr-data export --dataset my-dataset --split test --format clip4clip --out exports/test-c4c[/]
    """
    from dvtr_data.export import export_dataset
    from dvtr_data.splits import SPLIT_NAMES

    with progress_bars("export") as reporter:
        result = export_dataset(
            dataset,
            fmt,
            out_dir,
            splits=tuple(split or SPLIT_NAMES),
            media=media,
            ids=ids,
            force=force,
            drop_gps=drop_gps,
            hash_media=hash_media,
            reporter=reporter,
            features=FeatureOptions(
                model=clip_model,
                pretrained=None if clip_pretrained.lower() == "none" else clip_pretrained,
                checkpoint=clip_checkpoint,
            )
            if features
            else None,
        )
    for name, c in result.counts.items():
        extra = "".join(f", {v} {k}" for k, v in c.items() if k not in ("clips", "captions"))
        out.print(f"{name}: {c['clips']} clip(s), {c['captions']} caption(s){extra}", highlight=False, markup=False)
    skipped = {k: v for k, v in result.skipped.items() if v}
    if skipped:
        out.print(
            "skipped: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in skipped.items()), highlight=False, markup=False
        )
    for note in result.notes:
        out.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    out.print(
        f"exported {result.format} to {result.out} (manifest: {result.out / 'manifest.json'})",
        highlight=False, markup=False,
    )


def import_cmd(
    path: Annotated[Path, typer.Argument(help="The published set: a folder (or its caption file).")],
    dataset: DatasetArg,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="clip4clip (raw-captions.pkl + lists: USRD, UMCRD), capera (CapERA JSON), amfmn (precomp).",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(help="Short name of the source; prefixes its clip ids (default: the folder name)."),
    ] = None,
    media: Annotated[
        str,
        typer.Option("--media", help="Videos/images found beside the captions: copy, link, symlink, none."),
    ] = "copy",
    media_dir: Annotated[
        Path | None, typer.Option(help="Where the published videos/images are, if not beside the captions.")
    ] = None,
) -> None:
    """Import a published caption set (and its videos, when present) to compare and deduplicate against.

    Published ids are kept verbatim (captions.source_id, imports table); clip ids are clean. The published splits
    are kept. Pickles are read without running any code.

    Example: [bold]dvtr-data import ../shared/realdata/captions/huangjh98_ASLVT/USRD --format clip4clip --dataset my-dataset --name usrd[/]
    """
    from dvtr_data.importers import import_published

    with progress_bars("import") as reporter:
        r = import_published(fmt, path, dataset, name=name, media=media, media_dir=media_dir,
                             progress=reporter.heartbeat(f"import {fmt}"))
    splits = ", ".join(f"{k} {v}" for k, v in r.splits.items())
    out.print(
        f"imported {r.source} ({r.format}): {r.videos} video(s), {r.captions} caption(s); splits: {splits}",
        highlight=False, markup=False,
    )
    out.print(f"media: {r.media_found} found, {r.media_missing} missing", highlight=False, markup=False)
    for note in r.notes:
        out.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)


def card_cmd(
    dataset: DatasetArg,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for README.md, card.html and figures (default: <dataset>/card)."
        ),
    ] = None,
) -> None:
    """Write the dataset card: Markdown and a self-contained HTML page with plots, statistics and the leakage report.

    Example: [bold]dvtr-data card --dataset my-dataset[/]
    """
    from dvtr_data.card import write_card

    with progress_bars("card") as reporter:
        r = write_card(dataset, out_dir, reporter=reporter)
    t = r.stats["totals"]
    out.print(
        f"card of {r.stats['name']}: {t['clips']} clip(s), {t['captions']} caption(s), {len(r.figures)} figure(s)",
        highlight=False, markup=False,
    )
    out.print(f"  {r.markdown}\n  {r.html}", highlight=False, markup=False)
