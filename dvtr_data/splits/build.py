"""`split`: leakage-free train/val/test splits of the clips that have enough accepted captions.

Steps: pick the eligible clips (and list the rest with a reason); link clips that must stay together (same flight,
same location cell, near-duplicate embeddings or keyframes, including against imported published clips); merge the
links into groups; place whole groups with `assign`; check the result from scratch (`report.leakage`); write the
``splits`` table and ``split_report.json``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import dvtr_data.schemas.dataset_tables  # noqa: F401  (registers imports/moments)
from dvtr_data import __version__
from dvtr_data.annotation.categories import annotated_categories
from dvtr_data.dataset import Dataset, atomic_write_bytes
from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.lineage import captions_on_current_clips
from dvtr_data.splits import neardup, releases, text_leakage
from dvtr_data.splits.assign import SPLIT_NAMES, Unit, assign
from dvtr_data.splits.groups import build_groups, location_cells
from dvtr_data.splits.report import RECOUNT_BUDGET, leakage, split_sizes

REPORT_NAME = "split_report.json"
REPORT_FORMAT = "dvtr-split-report/1"
GROUP_KINDS = ("flight", "location")
STRATIFY = ("auto", "category", "tag", "none")


@dataclass(frozen=True)
class SplitConfig:
    """Settings of `split`; defaults and valid ranges live here (the CLI shows them)."""

    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    group_by: tuple[str, ...] = ("flight",)
    cell_m: float = 250.0
    near_duplicates: bool = True
    threshold: float = 0.94
    max_hamming: int = 4
    embeddings: str | None = None
    stratify: str = "auto"
    min_captions: int = 5
    tolerance: float = 0.05
    recheck: bool | None = None  # report: True compares every cross-split pair; else exact within the budget
    recount_budget: int = RECOUNT_BUDGET  # report: cross-split comparisons per kind before it samples clips
    caption_glue: bool = True  # clips sharing a human/imported caption (normalised) stay on one side
    glue_cap: int = text_leakage.GLUE_CAP  # a caption on more clips than this glues none of them
    text_threshold: float = text_leakage.NEAR_THRESHOLD  # rapidfuzz ratio (0-100) of near-identical captions

    def check(self) -> SplitConfig:
        if (
            len(self.ratios) != 3
            or any(r < 0 or not math.isfinite(r) for r in self.ratios)
            or sum(self.ratios) <= 0
        ):
            raise UsageError(
                f"--ratios needs three non-negative numbers for train, val, test; got {self.ratios}"
            )
        bad = [g for g in self.group_by if g not in GROUP_KINDS]
        if bad:
            raise UsageError(f"--group-by: unknown kind(s) {bad}; choose from {', '.join(GROUP_KINDS)}")
        if not 0 < self.threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1]; got {self.threshold}")
        if self.cell_m <= 0:
            raise UsageError(f"--cell-m must be positive; got {self.cell_m}")
        if self.max_hamming > 32:
            raise UsageError(f"--max-hamming must be at most 32 of 64 bits; got {self.max_hamming}")
        if self.stratify not in STRATIFY:
            raise UsageError(f"--stratify must be one of {', '.join(STRATIFY)}; got {self.stratify!r}")
        if self.min_captions < 0:
            raise UsageError("--min-captions must be >= 0")
        if self.glue_cap < 2:
            raise UsageError(f"--glue-cap must be at least 2 clips; got {self.glue_cap}")
        if not 0 < self.text_threshold <= 100:
            raise UsageError(f"--text-threshold must be in (0, 100]; got {self.text_threshold}")
        if self.seed < 0:  # numpy's generators refuse negative seeds: one rule for every command's --seed
            raise UsageError(f"--seed must be >= 0; got {self.seed}")
        if not 0 <= self.tolerance <= 1:
            raise UsageError("--tolerance must be in [0, 1]")
        return self

    @property
    def normalised_ratios(self) -> tuple[float, float, float]:
        s = sum(self.ratios)
        return tuple(r / s for r in self.ratios)  # type: ignore[return-value]


@dataclass
class SplitResult:
    """What `split` did: sizes per split, the leakage numbers, the excluded clips, where the report is."""

    sizes: dict[str, dict[str, Any]]
    leaks: int
    excluded: int
    excluded_reasons: dict[str, int]
    groups: int
    report_path: Path
    report: dict[str, Any] = field(repr=False)
    release: dict[str, Any] | None = field(default=None, repr=False)  # the manifest, when frozen


@dataclass
class _Clips:
    ids: list[str]
    flights: list[str]
    status: list[str]
    qc: list[str]
    lat: np.ndarray
    lon: np.ndarray
    duration: np.ndarray
    keyframe: list[str | None]
    category: list[str | None]


def _read_clips(ds: Dataset) -> _Clips:
    t = ds.read_table("clips")
    col = lambda name: t.column(name).to_pylist()  # noqa: E731
    kf = [k[0] if k else None for k in col("keyframe_paths")]
    annotated = annotated_categories(ds)  # the annotators' majority (clip_categories) wins over clips.category
    return _Clips(
        ids=col("clip_id"),
        flights=col("flight_id"),
        status=col("status"),
        qc=col("qc_verdict"),
        lat=t.column("lat").to_numpy(zero_copy_only=False).astype(np.float64),
        lon=t.column("lon").to_numpy(zero_copy_only=False).astype(np.float64),
        duration=t.column("duration_s").to_numpy(zero_copy_only=False).astype(np.float64),
        keyframe=kf,
        category=[annotated.get(c) or k for c, k in zip(col("clip_id"), col("category"), strict=True)],
    )


def accepted_caption_counts(captions: pa.Table, reviews: pa.Table | None = None) -> dict[str, int]:
    """Accepted captions per clip: submitted and not blocked by a QC flag (``accepted``); where a caption has a
    review (``reviews``), the latest review's verdict decides instead (annotation/reviewed.py)."""
    if not captions.num_rows:
        return {}
    if reviews is not None and reviews.num_rows:
        from dvtr_data.annotation.reviewed import apply_reviews

        captions = apply_reviews(captions, reviews)
    ok = pc.and_(
        pc.equal(captions.column("status"), "submitted"), pc.fill_null(captions.column("accepted"), False)
    )
    t = captions.filter(ok).group_by("clip_id").aggregate([([], "count_all")])
    return dict(zip(t.column("clip_id").to_pylist(), t.column("count_all").to_pylist(), strict=True))


def top_tags(ds: Dataset) -> dict[str, str]:
    """The rank-1 zero-shot scene tag per clip, when precaption wrote a ``tags`` table (not from random weights)."""
    from dvtr_data.schemas import TABLES

    try:
        import dvtr_data.schemas.precaption_tables  # noqa: F401  (registers tags)
    except ImportError:
        pass
    if "tags" not in TABLES or not ds.has_table("tags"):
        return {}
    t = ds.read_table("tags")
    t = t.filter(pc.equal(t.column("rank"), 1))
    keep = [not neardup.is_random_model(m) for m in t.column("model").to_pylist()]
    t = t.filter(pa.array(keep, pa.bool_()))
    return dict(zip(t.column("clip_id").to_pylist(), t.column("tag").to_pylist(), strict=True))


WRITER = "split"


def split_dataset(
    dataset: Dataset | str | Path,
    config: SplitConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    freeze: str | None = None,
) -> SplitResult:
    """Compute and write the splits of ``dataset``; see the module docstring for the steps.

    ``progress(done, total)`` follows the long steps one after the other (the near-duplicate searches, then the
    report's recount), so ``total`` changes between steps. With ``freeze``, the splits just written are frozen
    as that release (`releases.freeze_locked`) under the same write lock, so no other writer comes between.
    Clips of earlier releases keep their frozen split in any case.
    """
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    ds.require()
    cfg = (config or SplitConfig()).check()
    if freeze is not None:
        releases.check_new_name(ds, freeze)  # before the long work, not after
    with ds.writing(WRITER):
        result = _split(ds, cfg, progress)
        if freeze is not None:
            result.release = releases.freeze_locked(ds, freeze)
        return result


def _split(ds: Dataset, cfg: SplitConfig, progress: Callable[[int, int], None] | None = None) -> SplitResult:
    clips = _read_clips(ds)
    if not clips.ids:
        raise DatasetError(
            f"{ds.root} has no clips yet", hint="run `dvtr-data ingest` or `dvtr-data import` first"
        )
    captions = captions_on_current_clips(ds)  # captions follow clips whose boundaries a re-ingest moved
    if not captions.num_rows and cfg.min_captions > 0:  # 0: a moments-only dataset splits its clips (by flight)
        raise DatasetError(
            f"{ds.root} has no captions yet, so no clip can be split",
            hint="annotate the clips (`dvtr-data annotate`) or import a caption set (`dvtr-data import`); "
            "a dataset of moments only: `dvtr-data split --min-captions 0`",
        )
    n_acc_map = accepted_caption_counts(captions, ds.read_table("reviews"))  # review-accepted where reviewed
    caption_rows = text_leakage.caption_rows(captions)
    n = len(clips.ids)
    n_acc = np.array([n_acc_map.get(c, 0) for c in clips.ids], dtype=np.int64)

    imports = ds.read_table("imports")
    # clips of a frozen release keep their split; an import's published split is pinned the same way
    frozen_of, frozen_from = releases.frozen_splits(ds)
    pinned_of = dict(frozen_of)
    imported_ids: set[str] = set(imports.column("clip_id").to_pylist())
    for cid, sp in zip(
        imports.column("clip_id").to_pylist(), imports.column("source_split").to_pylist(), strict=True
    ):
        if sp in SPLIT_NAMES:
            pinned_of[cid] = sp
    imported = np.array([c in imported_ids for c in clips.ids], dtype=bool)
    pinned = np.array([pinned_of.get(c, "") for c in clips.ids], dtype=object)
    frozen = np.array([c in frozen_of for c in clips.ids], dtype=bool)

    # eligibility -----------------------------------------------------------------------------------------------
    reason: list[str | None] = [None] * n
    for i in range(n):
        if pinned[i]:
            continue
        if clips.status[i] != "ok":
            reason[i] = "clip failed"
        elif clips.qc[i] != "pass":
            reason[i] = "rejected by QC"
        elif n_acc[i] < cfg.min_captions:
            reason[i] = f"{n_acc[i]} of {cfg.min_captions} accepted captions"
    part = np.array([r is None for r in reason], dtype=bool)
    own_part = part & ~(pinned != "")
    if not own_part.any() and not (pinned != "").any():
        raise DatasetError(
            f"no clip has {cfg.min_captions} accepted caption(s) (best: {int(n_acc.max())})",
            hint="annotate more clips or lower --min-captions",
        )
    idx = np.flatnonzero(part)
    sub_ids = [clips.ids[i] for i in idx]

    # near-duplicate links ----------------------------------------------------------------------------------------
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    emb_info: dict[str, Any] | None = None
    vectors = None
    rows_full: np.ndarray = np.full(n, -1, dtype=np.int64)
    hashes_full: np.ndarray | None = None
    skipped_models: list[str] = []
    if cfg.near_duplicates:
        emb = neardup.load_clip_embeddings(ds, cfg.embeddings, skipped_models)
        if emb is not None:
            row_of = {c: k for k, c in enumerate(emb.clip_ids)}
            rows_full = np.array([row_of.get(c, -1) for c in clips.ids], dtype=np.int64)
            vectors = emb.vectors
            sub_rows = rows_full[idx]
            have = np.flatnonzero(sub_rows >= 0)
            sel = sub_rows[have]  # no copy of the matrix when every row takes part, in order (the usual case)
            found = neardup.index_cosine_pairs(
                vectors if np.array_equal(sel, np.arange(len(vectors))) else vectors[sel],
                cfg.threshold,
                seed=cfg.seed,
                progress=progress,
            )
            pairs["cosine"] = (have[found.ii], have[found.jj])
            emb_info = {
                "model": emb.model,
                "file": str(emb.path.relative_to(ds.root)),
                "clips_with": int(len(have)),
                "clips_without": int(len(idx) - len(have)),
                "search": found.info,
            }
        if cfg.max_hamming >= 0:
            hashes_full = np.zeros(n, dtype=np.uint64)
            hashes_full[idx] = neardup.keyframe_hashes(ds, [clips.keyframe[i] for i in idx])
            pairs["phash"] = neardup.hamming_links(hashes_full[idx], cfg.max_hamming, progress=progress)

    glue_info: dict[str, Any] | None = None
    if cfg.caption_glue:  # identical human/imported captions: one side of the split (templates never glue)
        pairs["caption"], glue_info = text_leakage.glue_pairs(
            sub_ids, caption_rows, pinned[idx] != "", cap=cfg.glue_cap
        )

    cells_full = None
    cell_names: list[str] = []
    if "location" in cfg.group_by:
        cells_full, cell_names = location_cells(clips.lat, clips.lon, cfg.cell_m)
        cells_full = np.where(part & ~imported, cells_full, -1)
    groups = build_groups(
        sub_ids,
        [clips.flights[i] for i in idx],
        by_flight="flight" in cfg.group_by,
        cells=None if cells_full is None else cells_full[idx],
        cell_names=cell_names,
        pairs=pairs,
    )

    # strata --------------------------------------------------------------------------------------------------------
    strat_by, strat_of = _strata(ds, cfg, clips, idx)

    # units ---------------------------------------------------------------------------------------------------------
    units: list[Unit] = []
    conflicts: set[int] = set()
    for g, members in enumerate(groups.members):
        gl = idx[members]
        pins = sorted({pinned[i] for i in gl if pinned[i]}, key=SPLIT_NAMES.index)
        if len(pins) > 1:
            conflicts.add(g)
        size = int(sum(1 for i in gl if not imported[i] or not pinned[i]))
        strata = Counter(strat_of[i] for i in gl if not pinned[i]) or Counter(strat_of[i] for i in gl)
        stratum = min(strata.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        units.append(
            Unit(
                key=groups.group_ids[g],
                size=0 if g in conflicts else size,
                stratum=stratum,
                pinned=pins[-1] if pins else None,
            )
        )
    placed = assign(units, cfg.normalised_ratios, cfg.seed, cfg.tolerance)

    split = np.array(["excluded"] * n, dtype=object)
    group_id = np.array(clips.flights, dtype=object)
    group_kind = np.array([None] * n, dtype=object)
    for g, members in enumerate(groups.members):
        gl = idx[members]
        kind = groups.kinds[g]
        if any(pinned[i] for i in gl) and kind == "clip":
            kind = "frozen" if all(frozen[i] or not pinned[i] for i in gl) else "published"
        for i in gl:
            group_id[i] = groups.group_ids[g]
            group_kind[i] = kind
            if g in conflicts and not pinned[i]:
                reason[i] = "linked to published or frozen clips in several splits"
            else:
                split[i] = pinned[i] or placed[groups.group_ids[g]]

    # report ----------------------------------------------------------------------------------------------------------
    in_split = np.isin(split, SPLIT_NAMES)
    label_full = np.full(n, -1, dtype=np.int64)
    label_full[idx] = groups.label
    leak = leakage(
        split,
        imported,
        clips.flights,
        clips.ids,
        vectors=vectors,
        vector_rows=rows_full,
        threshold=cfg.threshold,
        hashes=hashes_full,
        max_hamming=cfg.max_hamming if cfg.near_duplicates else -1,
        cells=cells_full,
        exact=cfg.recheck is True,
        budget=cfg.recount_budget,
        seed=cfg.seed,
        progress=progress,
    )
    if "flight" in cfg.group_by:
        leak["leaks"] += leak["flights_straddling"]
    if "location" in cfg.group_by:
        leak["leaks"] += leak.get("cells_straddling", 0)
    leak["text"] = text_leakage.split_report(
        split,
        clips.ids,
        caption_rows,
        pinned != "",
        glue=glue_info,
        cap=cfg.glue_cap,
        threshold=cfg.text_threshold,
    )
    if glue_info is not None:
        leak["leaks"] += leak["text"]["glue_recount"]["texts_straddling"]
    n_cap = np.where(in_split, n_acc, 0)
    sizes = split_sizes(split, clips.flights, clips.duration, n_cap, label_full)
    own_sizes = split_sizes(np.where(imported, "", split), clips.flights, clips.duration, n_cap)
    excluded = [(clips.ids[i], reason[i]) for i in range(n) if split[i] == "excluded"]
    by_reason = Counter(_reason_kind(r) for _, r in excluded)
    total_own = sum(v["clips"] for v in own_sizes.values())
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool_version": __version__,
        "dataset": ds.config().get("name", ds.root.name),
        "settings": _settings(cfg),
        "embeddings": emb_info,
        "embeddings_skipped": skipped_models,
        "groups": {
            "count": groups.n_groups,
            "kinds": dict(Counter(groups.kinds)),
            "links": groups.links,
            "largest": int(max((len(m) for m in groups.members), default=0)),
        },
        "stratified_by": strat_by,
        "strata": _strata_shares(split, strat_of, imported),
        "ratios": {
            "target": dict(zip(SPLIT_NAMES, cfg.normalised_ratios, strict=True)),
            "achieved": {
                k: round(v["clips"] / total_own, 4) if total_own else 0.0 for k, v in own_sizes.items()
            },
        },
        "sizes": sizes,
        "sizes_own": own_sizes,
        "imported_clips": int(imported.sum()),
        "frozen": _frozen_summary(split, frozen, frozen_of, frozen_from, clips.ids),
        "leakage": leak,
        "excluded": {
            "count": len(excluded),
            "by_reason": dict(by_reason),
            "clips": [{"clip_id": c, "reason": r} for c, r in excluded],
        },
    }
    rows = pa.table(
        {
            "clip_id": clips.ids,
            "split": split.tolist(),
            "group_id": group_id.tolist(),
            "group_kind": group_kind.tolist(),
            "writer": [WRITER] * len(clips.ids),
        }
    )
    # a clip whose split another command wrote (an import's published split) keeps that row, untouched
    current = ds.read_table("splits")
    theirs = current.filter(pc.not_equal(current.column("writer"), WRITER)) if current.num_rows else current
    if theirs.num_rows:
        rows = rows.filter(pc.invert(pc.is_in(rows.column("clip_id"), value_set=theirs.column("clip_id"))))
    ds.replace_rows("splits", WRITER, rows)
    report_path = ds.root / REPORT_NAME
    atomic_write_bytes(report_path, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode())
    ds.record_stage("split", {**_settings(cfg), "groups": groups.n_groups, "leaks": leak["leaks"]})
    return SplitResult(
        sizes=sizes,
        leaks=leak["leaks"],
        excluded=len(excluded),
        excluded_reasons=dict(by_reason),
        groups=groups.n_groups,
        report_path=report_path,
        report=report,
    )


def _frozen_summary(
    split: np.ndarray,
    frozen: np.ndarray,
    frozen_of: dict[str, str],
    frozen_from: dict[str, str],
    clip_ids: list[str],
) -> dict[str, Any]:
    """Frozen clips kept (all of them, by construction: checked here from the result, not trusted), frozen clips
    no longer in the dataset, and the clips placed outside any release."""
    present = set(clip_ids)
    pairs = list(zip(clip_ids, split.tolist(), frozen.tolist(), strict=True))
    moved = [c for c, s, f in pairs if f and s != frozen_of[c]]
    if moved:
        raise DatasetError(
            f"internal: split moved {len(moved)} frozen clip(s), e.g. {moved[0]}; nothing written"
        )
    new = Counter(s for _c, s, f in pairs if not f and s in SPLIT_NAMES)
    return {
        "releases": sorted(set(frozen_from.values())),
        "clips_kept": int(frozen.sum()),
        "clips_gone": sorted(c for c in frozen_of if c not in present)[:20],
        "clips_gone_count": sum(1 for c in frozen_of if c not in present),
        "new_clips_placed": {s: int(new.get(s, 0)) for s in SPLIT_NAMES},
    }


def read_split_report(dataset: Dataset) -> dict[str, Any] | None:
    path = dataset.root / REPORT_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _reason_kind(reason: str | None) -> str:
    if reason and "accepted captions" in reason:
        return "too few accepted captions"
    return reason or "unknown"


def _settings(cfg: SplitConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["ratios"] = list(cfg.ratios)
    d["group_by"] = list(cfg.group_by)
    return d


def _strata(ds: Dataset, cfg: SplitConfig, clips: _Clips, idx: np.ndarray) -> tuple[str, list[str]]:
    """Which labels stratify the split (category, scene tag or none) and each clip's label ("-" when unknown)."""
    n = len(clips.ids)
    mode = cfg.stratify
    tags: dict[str, str] = {}
    if mode in ("auto", "tag"):
        tags = top_tags(ds)
    if mode == "auto":
        with_cat = sum(1 for i in idx if clips.category[i])
        if idx.size and with_cat >= 0.5 * idx.size:
            mode = "category"
        elif tags:
            mode = "tag"
        else:
            mode = "none"
    if mode == "category":
        return mode, [c or "-" for c in clips.category]
    if mode == "tag":
        return mode, [tags.get(c, "-") for c in clips.ids]
    return "none", ["-"] * n


def _strata_shares(split: np.ndarray, strat_of: list[str], imported: np.ndarray) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    counts: dict[str, Counter[str]] = {}
    for s, st, imp in zip(split.tolist(), strat_of, imported.tolist(), strict=True):
        if s in SPLIT_NAMES and not imp:
            counts.setdefault(st, Counter())[s] += 1
    for st in sorted(counts):
        c = counts[st]
        total = sum(c.values())
        out[st] = {"clips": total, **{k: round(c[k] / total, 4) for k in SPLIT_NAMES}}
    return out
