"""The rows an export writes: the clips of the chosen splits with their accepted captions, in a stable order.

Every format reads this one view, so ordering and id rules are written once:

- clips imported from a published set come first, in the published order (their split list order, and their
  pickle order for the caption file), so that an import followed by an export gives back the published files;
  our own clips follow, by clip id;
- a clip's captions keep their order (caption ids compared with numbers as numbers: ``c2`` before ``c10``);
- the id written into the files is the published id, verbatim, for imported clips (USRD's trailing spaces
  included, as the MSAM loader expects them), and the clip id for ours (``ids="clean"`` uses clip ids throughout).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import dvtr_data.schemas.dataset_tables  # noqa: F401  (registers imports/moments)
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.lineage import captions_on_current_clips
from dvtr_data.splits.assign import SPLIT_NAMES
from dvtr_data.text import tokenize

ID_MODES = ("source", "clean")
_DIGITS = re.compile(r"(\d+)")
_BAD_ID = re.compile(r"[/\x00\n\r]")


@functools.lru_cache(maxsize=65536)
def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key comparing digit runs as numbers, so that ``c2`` comes before ``c10``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(text) if p)


def caption_key(caption_id: str, clip_id: str) -> tuple[str, tuple[tuple[int, int, str], ...]]:
    """Order of a clip's captions: caption ids usually embed the clip id, so only what follows it is compared
    naturally (cheap: a short suffix), after what precedes it (the origin's prefix)."""
    head, sep, tail = caption_id.partition(clip_id)
    if not sep:
        return ("", natural_key(caption_id))
    return (head, natural_key(tail))


class CaptionColumns:
    """The accepted captions of an export, sorted by clip and caption order, as Arrow and (lazily) as lists.

    Writers that need Python objects (a pickle, JSON lines) take the lists, converted once; the Parquet writer
    slices the Arrow table directly, which keeps 500,000 token lists out of Python.
    """

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._lists: dict[str, list[Any]] = {}

    def column(self, name: str) -> list[Any]:
        if name not in self._lists:
            values = self.table.column(name).to_pylist()
            if name == "tokens":
                texts = self.column("text")
                values = [t if t is not None else tokenize(x) for t, x in zip(values, texts, strict=True)]
            self._lists[name] = values
        return self._lists[name]


@dataclass
class ExportClip:
    """One clip as exports see it; its captions are rows ``cap_start:cap_end`` of the shared caption columns."""

    clip_id: str
    export_id: str
    split: str
    group_id: str
    clip: dict[str, Any]
    captions: CaptionColumns
    cap_start: int
    cap_end: int
    source: str | None = None
    source_id: str | None = None
    source_order: int | None = None
    list_order: int | None = None
    location_private: bool = False

    @property
    def n_captions(self) -> int:
        return self.cap_end - self.cap_start

    @property
    def caption_ids(self) -> list[str]:
        return self.captions.column("caption_id")[self.cap_start : self.cap_end]

    @property
    def texts(self) -> list[str]:
        return self.captions.column("text")[self.cap_start : self.cap_end]

    @property
    def tokens(self) -> list[list[str]]:
        return self.captions.column("tokens")[self.cap_start : self.cap_end]


@dataclass
class ExportView:
    """The clips of each chosen split in list order, and the dataset facts exports record."""

    dataset: Dataset
    name: str
    splits: tuple[str, ...]
    by_split: dict[str, list[ExportClip]]
    captions: CaptionColumns
    flights: dict[str, dict[str, Any]] = field(default_factory=dict)
    import_meta: dict[str, Any] = field(default_factory=dict)

    def all_clips(self) -> list[ExportClip]:
        return [c for s in self.splits for c in self.by_split[s]]

    def caption_order(self) -> list[ExportClip]:
        """Clips in the order of a combined caption file: published order first, then ours by clip id."""
        return sorted(self.all_clips(), key=_dict_key)

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            s: {"clips": len(v), "captions": sum(len(c.texts) for c in v)} for s, v in self.by_split.items()
        }


def _dict_key(c: ExportClip) -> tuple[Any, ...]:
    if c.source is not None:
        return (0, c.source, c.source_order if c.source_order is not None else 0, c.clip_id)
    return (1, "", 0, c.clip_id)


def _list_key(c: ExportClip) -> tuple[Any, ...]:
    if c.source is not None and c.list_order is not None:
        return (0, c.source, 0, c.list_order, c.clip_id)
    if c.source is not None:
        return (0, c.source, 1, c.source_order or 0, c.clip_id)
    return (1, "", 0, 0, c.clip_id)


CLIP_COLUMNS = (
    "flight_id",
    "start_frame",
    "end_frame",
    "start_s",
    "end_s",
    "duration_s",
    "fps",
    "width",
    "height",
    "n_frames",
    "clip_path",
    "keyframe_paths",
    "lat",
    "lon",
    "altitude_m",
    "altitude_kind",
    "gimbal_pitch",
    "speed_mps",
    "category",
    "category_source",
    "motion_kind",
    "qc_verdict",
)


def sort_captions(captions: pa.Table) -> pa.Table:
    """Captions grouped by clip, each clip's in natural caption-id order.

    Arrow sorts by (clip id, caption id) as strings. That is already the natural order for every clip whose caption
    ids share one shape (digits in the same places with the same widths: ``sim-<clip>-3``, ``<clip>-c03``), since
    equal-width digit runs compare as numbers; only clips mixing shapes are re-sorted in Python.
    """
    if not captions.num_rows:
        return captions
    captions = captions.take(
        pc.sort_indices(captions, [("clip_id", "ascending"), ("caption_id", "ascending")])
    )
    shape = pc.replace_substring_regex(captions.column("caption_id"), r"[0-9]", "0")
    shapes = pa.table({"clip_id": captions.column("clip_id"), "shape": shape})
    mixed = shapes.group_by("clip_id").aggregate([("shape", "count_distinct")])
    mixed = mixed.filter(pc.greater(mixed.column("shape_count_distinct"), 1)).column("clip_id")
    if not len(mixed):
        return captions
    clip_ids = captions.column("clip_id").to_pylist()
    cap_ids = captions.column("caption_id").to_pylist()
    order = list(range(len(clip_ids)))
    mixed_ids = set(mixed.to_pylist())
    for cid, (a, b) in _runs(clip_ids).items():
        if cid in mixed_ids:
            order[a:b] = sorted(range(a, b), key=lambda i: caption_key(cap_ids[i], cid))
    return captions.take(pa.array(order, pa.int64()))


def _runs(values: list[str]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            out[values[start]] = (start, i)
            start = i
    return out


def caption_ranges(captions: pa.Table) -> dict[str, tuple[int, int]]:
    """Row range of each clip's captions in a table sorted by clip id."""
    if not captions.num_rows:
        return {}
    ids = captions.column("clip_id").combine_chunks()
    starts = np.flatnonzero(pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)) + 1
    bounds = np.concatenate([[0], starts, [len(ids)]])
    firsts = ids.take(pa.array(bounds[:-1])).to_pylist()
    return {c: (int(a), int(b)) for c, a, b in zip(firsts, bounds[:-1], bounds[1:], strict=True)}


def build_view(
    dataset: Dataset, splits: tuple[str, ...] = SPLIT_NAMES, ids: str = "source", unique_ids: str = "export",
    captions_required: bool = True,
) -> ExportView:
    """Read splits, clips, captions and imports, and assemble the export view (see the module docstring).

    ``unique_ids``: "export" when one file or folder holds every split (a pickle, an image folder), "split" when
    each split has its own files (CapERA reuses ids across its train and test sets). ``captions_required=False``
    (the QVHighlights export of annotated moments): a dataset with clips and splits but no captions gives a view
    whose clips have none (moments take the split of their flight's clips).
    """
    ds = dataset.require()
    if ids not in ID_MODES:
        raise UsageError(f"--ids must be one of {', '.join(ID_MODES)}; got {ids!r}")
    bad = [s for s in splits if s not in SPLIT_NAMES]
    if bad or not splits:
        raise UsageError(f"--split: unknown split(s) {bad}; choose from {', '.join(SPLIT_NAMES)}")
    captions = captions_on_current_clips(ds)  # captions of clips whose boundaries a re-ingest moved follow them
    if not captions.num_rows and captions_required:
        raise DatasetError(
            f"{ds.root} has no captions yet; there is nothing to export",
            hint="annotate the clips or import a caption set, then run `dvtr-data split`",
        )
    split_t = ds.read_table("splits")
    if not split_t.num_rows:
        raise DatasetError(f"{ds.root} has no splits yet", hint="run `dvtr-data split --dataset DIR` first" + (
            "" if captions.num_rows else " (a dataset of moments only: `dvtr-data split --min-captions 0`)"))
    split_t = split_t.filter(pc.is_in(split_t.column("split"), value_set=pa.array(list(splits))))
    split_of = dict(
        zip(split_t.column("clip_id").to_pylist(), split_t.column("split").to_pylist(), strict=True)
    )
    group_of = dict(
        zip(split_t.column("clip_id").to_pylist(), split_t.column("group_id").to_pylist(), strict=True)
    )
    if not split_of:
        raise DatasetError(f"split(s) {', '.join(splits)} of {ds.root} hold no clips")
    wanted = pa.array(list(split_of), pa.string())

    clips = ds.read_table("clips")
    clips = clips.filter(pc.is_in(clips.column("clip_id"), value_set=wanted))
    clip_cols = {c: clips.column(c).to_pylist() for c in ("clip_id", *CLIP_COLUMNS)}
    clip_rows = {
        cid: {c: clip_cols[c][i] for c in CLIP_COLUMNS} for i, cid in enumerate(clip_cols["clip_id"])
    }
    missing = [c for c in split_of if c not in clip_rows]
    if missing:
        raise DatasetError(
            f"{len(missing)} clip(s) of the splits table are not in the clips table, e.g. {missing[0]!r}",
            hint="re-run `dvtr-data split`",
        )

    ok = pc.and_(
        pc.and_(
            pc.is_in(captions.column("clip_id"), value_set=wanted),
            pc.equal(captions.column("status"), "submitted"),
        ),
        pc.fill_null(captions.column("accepted"), False),
    )
    captions = sort_captions(captions.filter(ok).select(["caption_id", "clip_id", "text", "tokens"]))
    cap_range = caption_ranges(captions)
    columns = CaptionColumns(captions)

    imports = ds.read_table("imports")
    imp: dict[str, dict[str, Any]] = {}
    if imports.num_rows:
        for row in imports.select(
            ["clip_id", "source", "source_id", "source_split", "source_order", "list_order"]
        ).to_pylist():
            imp[row["clip_id"]] = row

    flights_t = ds.read_table("flights")
    flights = {}
    if flights_t.num_rows:
        for row in flights_t.select(
            ["flight_id", "duration_s", "source_path", "location_private", "fps"]
        ).to_pylist():
            flights[row["flight_id"]] = row

    by_split: dict[str, list[ExportClip]] = {s: [] for s in splits}
    for cid, split in split_of.items():
        start, end = cap_range.get(cid, (0, 0))
        info = imp.get(cid)
        src_id = info["source_id"] if info else None
        export_id = src_id if (ids == "source" and src_id is not None) else cid
        list_order = info["list_order"] if info and info["source_split"] == split else None
        row = clip_rows[cid]
        fl = flights.get(row["flight_id"])
        by_split[split].append(
            ExportClip(
                clip_id=cid,
                export_id=export_id,
                split=split,
                group_id=group_of[cid],
                clip=row,
                captions=columns,
                cap_start=start,
                cap_end=end,
                source=info["source"] if info else None,
                source_id=src_id,
                source_order=info["source_order"] if info else None,
                list_order=list_order,
                location_private=bool(fl and fl["location_private"]),
            )
        )
    for s in splits:
        by_split[s].sort(key=_list_key)
    view = ExportView(
        dataset=ds,
        name=ds.config().get("name", ds.root.name),
        splits=tuple(splits),
        by_split=by_split,
        captions=columns,
        flights=flights,
        import_meta=ds.config().get("stages", {}).get("import", {}),
    )
    _check_ids(view, unique_ids)
    return view


def _check_ids(view: ExportView, unique_ids: str) -> None:
    groups = [view.all_clips()] if unique_ids == "export" else [view.by_split[s] for s in view.splits]
    for clips in groups:
        ids = [c.export_id for c in clips]
        uniq, counts = np.unique(np.asarray(ids, dtype=object), return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1][0]
            where = sorted({c.split for c in clips if c.export_id == dup})
            raise UsageError(
                f"published id {dup!r} names several clips of this export ({', '.join(where)}), and this format "
                "keeps every split in one file or folder",
                hint="export with --ids clean, or one split at a time",
            )
    for i in (c.export_id for c in view.all_clips()):
        if _BAD_ID.search(i) or i in ("", ".", ".."):
            raise UsageError(f"id {i!r} cannot name a file or a list line", hint="export with --ids clean")
