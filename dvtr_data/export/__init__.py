"""`export`: the splits in the layouts other tools read unchanged (Parquet, CLIP4Clip/MSVD, QVHighlights, AMFMN).

Each format is one module with one ``write(view, stage, media=...)`` function, registered in `EXPORTERS` with its
default media mode. `export_dataset` builds the shared view, writes into a staging folder, adds the manifest, and
renames the folder into place (`manifest.staged_folder`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.export.amfmn import write_amfmn
from dvtr_data.export.clip4clip import write_clip4clip
from dvtr_data.export.manifest import earlier_export_problem, staged_folder, verify_export, write_manifest
from dvtr_data.export.parquet import write_parquet_export
from dvtr_data.export.qvhighlights import write_qvhighlights
from dvtr_data.export.view import ID_MODES, build_view
from dvtr_data.importers.common import MEDIA_MODES
from dvtr_data.reporting import Counter, Reporter, Sink, as_reporter
from dvtr_data.splits.assign import SPLIT_NAMES


@dataclass(frozen=True)
class Exporter:
    """A format: its writer and how it places media by default (videos are large; some formats need them)."""

    name: str
    write: Callable[..., dict[str, Any]]
    default_media: str
    description: str
    unique_ids: str = "export"  # "split" when every split has its own files


EXPORTERS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter(
            "parquet",
            write_parquet_export,
            "none",
            "one Parquet file per split, captions as list columns",
            "split",
        ),
        Exporter(
            "clip4clip", write_clip4clip, "link", "raw-captions.pkl, <split>_list.txt, Videos/<id>.mp4 (MSAM)"
        ),
        Exporter(
            "qvhighlights",
            write_qvhighlights,
            "none",
            "highlight_<split>_release.jsonl for moment retrieval",
            "split",
        ),
        Exporter(
            "amfmn", write_amfmn, "link", "<split>_caps.txt, <split>_filename.txt, images/ (AMFMN precomp)"
        ),
    )
}


@dataclass
class ExportResult:
    out: Path
    format: str
    counts: dict[str, Any]
    skipped: dict[str, int]
    notes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


def export_dataset(
    dataset: Dataset | str | Path,
    fmt: str = "parquet",
    out: str | Path | None = None,
    *,
    splits: tuple[str, ...] = SPLIT_NAMES,
    media: str | None = None,
    ids: str = "source",
    force: bool = False,
    drop_gps: bool = False,
    hash_media: bool = True,
    reporter: Reporter | Sink | None = None,
    features: Any = None,
) -> ExportResult:
    """Export ``splits`` of ``dataset`` as ``fmt`` into ``out`` (default ``<dataset>/exports/<fmt>``).

    ``reporter`` follows the three steps: the view of the splits, the files (media placed), the manifest.

    ``media``: copy, link (hard link; copy across file systems), symlink or none; default per format.
    ``features``: qvhighlights only, a `moment_features.FeatureOptions`: also write clip and query features.
    """
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    if fmt not in EXPORTERS:
        raise UsageError(f"unknown export format {fmt!r}; choose from {', '.join(EXPORTERS)}")
    exporter = EXPORTERS[fmt]
    media = media or exporter.default_media
    if media not in MEDIA_MODES:
        raise UsageError(f"--media must be one of {', '.join(MEDIA_MODES)}; got {media!r}")
    if ids not in ID_MODES:
        raise UsageError(f"--ids must be one of {', '.join(ID_MODES)}; got {ids!r}")
    if features is not None and fmt != "qvhighlights":
        raise UsageError("--features goes with --format qvhighlights (moment retrieval features)")
    splits = tuple(dict.fromkeys(splits))
    ds.require()
    target = Path(out).expanduser().absolute() if out else ds.root / "exports" / fmt
    _check_target(ds, target, force)
    with ds.writing("export"):
        return _export_locked(ds, fmt, exporter, target, splits, media, ids, force, drop_gps, hash_media,
                              as_reporter(reporter, "export").counter(f"export {fmt}", 3, "steps"), features)


def _export_locked(
    ds: Dataset,
    fmt: str,
    exporter: Exporter,
    target: Path,
    splits: tuple[str, ...],
    media: str,
    ids: str,
    force: bool,
    drop_gps: bool,
    hash_media: bool,
    steps: Counter,
    features: Any = None,
) -> ExportResult:
    # qvhighlights: annotated moments need no captions (they take the split of their flight's clips)
    view = build_view(ds, splits, ids, exporter.unique_ids, captions_required=fmt != "qvhighlights")
    steps.advance()
    writer: Callable[..., dict[str, Any]] = exporter.write
    if fmt == "parquet":
        writer = functools.partial(writer, drop_gps=drop_gps)
    if features is not None:
        writer = functools.partial(writer, features=features)
    with staged_folder(target, force=force) as stage:
        info = writer(view, stage, media=media)
        steps.advance()
        if info.get("written", 1) == 0:
            raise DatasetError(f"nothing to export as {fmt}: {info.get('empty_reason', 'no rows')}")
        counts = view.counts()
        for split, extra in (info.get("counts") or {}).items():
            counts[split].update(extra)
        options = {"media": media, "ids": ids, "drop_gps": drop_gps, "hash_media": hash_media}
        manifest = write_manifest(
            stage,
            ds=ds,
            name=view.name,
            fmt=fmt,
            splits=splits,
            counts=counts,
            options=options,
            notes=info.get("notes", []),
            skipped=info.get("skipped", {}),
            hash_media=hash_media,
            extra=info.get("extra"),
        )
    steps.advance()
    return ExportResult(
        out=target,
        format=fmt,
        counts=counts,
        skipped=info.get("skipped", {}),
        notes=info.get("notes", []),
        manifest=manifest,
    )


def _check_target(ds: Dataset, target: Path, force: bool) -> None:
    """Refuse targets whose replacement would destroy something that is not an earlier export."""
    root = ds.root
    resolved = target.resolve()
    if resolved == root or root.is_relative_to(resolved):
        raise UsageError(
            f"--out {target} would hold the dataset itself; choose a folder outside it or under exports/"
        )
    if resolved.exists() and force:
        if not resolved.is_dir():
            raise UsageError(f"{target} exists and is not a folder")
        problem = earlier_export_problem(resolved) if any(resolved.iterdir()) else None
        if problem:
            raise UsageError(f"{target} exists and {problem}; not replacing it", hint="choose another --out")


__all__ = ["EXPORTERS", "ExportResult", "Exporter", "build_view", "export_dataset", "verify_export"]
