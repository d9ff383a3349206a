"""`audit`: what a caption set hides, measured on any dataset (our own or an imported published one).

Published drone caption sets repeat captions word for word across their train and test lists, describe several
test videos with one sentence (text-to-video R@1 then has no single right answer), and carry ids that differ only
by a trailing space. The audit counts each of these from the tables alone, so it can run before a split is made or
on a set someone else made:

* text leakage per pair of splits (`dvtr_data.splits.text_leakage`): identical after normalisation,
  near-identical, and captions shared by several clips inside one split. The splits are the published ones
  (``imports.source_split``) when the dataset holds an import with published splits, else the ``splits`` table.
  Only accepted captions count here, as an export would carry;
* ids (``imports.source_id``, else the clip ids): ids equal once whitespace is removed and case folded, ids with
  leading or trailing whitespace, and ids that are another id plus a space-separated suffix (``"X "``, ``"X 1"``);
* with ``compare``, what changed between two frozen releases, or a release and the dataset now
  (`dvtr_data.splits.releases.compare`): clips added, removed and moved per split; captions added, changed and
  removed;
* every submitted caption: empty after normalisation, very short (fewer than ``SHORT_WORDS`` words), very long
  (more than ``LONG_WORDS``); and clips with fewer captions than most clips have.

The result is one JSON document (``audit.json`` in the dataset folder) and a table for people (`render`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dvtr_data import __version__
from dvtr_data.dataset import Dataset, atomic_write_bytes
from dvtr_data.lineage import captions_on_current_clips
from dvtr_data.splits.text_leakage import NEAR_THRESHOLD, SPLIT_ORDER, caption_rows, text_leakage
from dvtr_data.text import normalise, tokenize

AUDIT_NAME = "audit.json"
AUDIT_FORMAT = "dvtr-audit/1"
SHORT_WORDS = 3
LONG_WORDS = 60
MAX_EXAMPLES = 5


def audit_dataset(
    dataset: Dataset | str | Path,
    *,
    write: bool = True,
    threshold: float = NEAR_THRESHOLD,
    compare: str | None = None,
    compare_to: str | None = None,
) -> dict[str, Any]:
    """Audit ``dataset``; with ``write``, also write ``audit.json`` beside its tables (atomically).

    ``compare`` names a frozen release: the report's ``releases`` section says what changed from it to release
    ``compare_to`` (default: the dataset now). Names are checked before any other work.
    """
    from dvtr_data.splits import releases

    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    ds.require()
    changes = releases.compare(ds, compare, compare_to) if compare else None
    captions = captions_on_current_clips(ds)  # current clips, accepted as reviewed
    imports = ds.read_table("imports") if ds.has_table("imports") else None
    clips = ds.read_table("clips") if ds.has_table("clips") else None

    split_of, splits_from = _splits(ds, imports)
    accepted = caption_rows(captions, accepted_only=True)
    report: dict[str, Any] = {
        "format": AUDIT_FORMAT,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tool_version": __version__,
        "dataset": ds.config().get("name", ds.root.name),
        "splits_from": splits_from,
        "uniqueness": _uniqueness(accepted, split_of),
        "text": text_leakage(accepted, split_of, threshold=threshold) if split_of else None,
        "ids": _ids(imports, clips, split_of),
        "captions": _caption_checks(captions),
        "captions_per_clip": _per_clip(captions, clips),
        "releases": changes,
    }
    if write:
        with ds.writing("audit"):  # audit.json is written into the dataset: under its one write lock
            atomic_write_bytes(
                ds.root / AUDIT_NAME, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode()
            )
    return report


def read_audit(dataset: Dataset) -> dict[str, Any] | None:
    """The audit written beside the tables, or None when there is none (or it cannot be read)."""
    path = dataset.root / AUDIT_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("format") == AUDIT_FORMAT else None


def _splits(ds: Dataset, imports: Any) -> tuple[dict[str, str], str | None]:
    if imports is not None and imports.num_rows:
        pub = {
            c: s
            for c, s in zip(
                imports.column("clip_id").to_pylist(), imports.column("source_split").to_pylist(), strict=True
            )
            if s in SPLIT_ORDER
        }
        if pub:
            return pub, "published"
    if ds.has_table("splits"):
        t = ds.read_table("splits")
        own = {
            c: s
            for c, s in zip(t.column("clip_id").to_pylist(), t.column("split").to_pylist(), strict=True)
            if s in SPLIT_ORDER
        }
        if own:
            return own, "splits"
    return {}, None


def _uniqueness(rows: list[Any], split_of: dict[str, str]) -> dict[str, Any]:
    """Distinct texts over captions, raw and normalised, in all and per split (USRD: 68.5% raw)."""

    def one(texts: list[str]) -> dict[str, Any]:
        n = len(texts)
        raw = len(set(texts))
        norm = len({normalise(t) for t in texts})
        return {
            "captions": n,
            "distinct_raw": raw,
            "distinct_normalised": norm,
            "unique_share_raw": round(raw / n, 4) if n else None,
            "unique_share_normalised": round(norm / n, 4) if n else None,
        }

    out = {"all": one([r.text for r in rows])}
    for s in SPLIT_ORDER:
        texts = [r.text for r in rows if split_of.get(r.clip_id) == s]
        if texts:
            out[s] = one(texts)
    return out


def _ids(imports: Any, clips: Any, split_of: dict[str, str]) -> dict[str, Any]:
    if imports is not None and imports.num_rows:
        ids = imports.column("source_id").to_pylist()
        ours = imports.column("clip_id").to_pylist()
        source = "imports.source_id"
    elif clips is not None:
        ids = ours = clips.column("clip_id").to_pylist()
        source = "clips.clip_id"
    else:
        ids = ours = []
        source = "none"
    split_by_id = {i: split_of.get(c) for i, c in zip(ids, ours, strict=True)}
    folded: dict[str, set[str]] = defaultdict(set)
    for i in ids:
        folded["".join(i.split()).casefold()].add(i)
    variant_groups = sorted(sorted(v) for v in folded.values() if len(v) > 1)
    padded = sorted(i for i in ids if i != i.strip())
    stripped = {i.strip() for i in ids}
    families: list[list[str]] = []
    by_head: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        parts = i.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[0] in stripped:
            by_head[parts[0]].append(i)
    for head, tails in sorted(by_head.items()):
        families.append(sorted({j for j in ids if j.strip() == head} | set(tails)))
    straddling = sum(len({split_by_id.get(i) for i in f} - {None}) > 1 for f in families)
    return {
        "source": source,
        "count": len(ids),
        "whitespace_or_case_variants": {
            "groups": len(variant_groups),
            "ids": sum(len(g) for g in variant_groups),
            "examples": variant_groups[:MAX_EXAMPLES],
        },
        "leading_or_trailing_space": {"ids": len(padded), "examples": padded[:MAX_EXAMPLES]},
        "suffix_variants": {
            "families": len(families),
            "ids": sum(len(f) for f in families),
            "families_in_several_splits": straddling,
            "examples": families[:MAX_EXAMPLES],
        },
    }


def _caption_checks(captions: Any) -> dict[str, Any]:
    empty: list[dict[str, str]] = []
    short: list[dict[str, str]] = []
    long: list[dict[str, str]] = []
    n = 0
    for cid, clip, text, status in zip(
        captions.column("caption_id").to_pylist(),
        captions.column("clip_id").to_pylist(),
        captions.column("text").to_pylist(),
        captions.column("status").to_pylist(),
        strict=True,
    ):
        if status != "submitted":
            continue
        n += 1
        words = len(tokenize(text or ""))
        row = {"caption_id": cid, "clip_id": clip, "text": (text or "")[:200], "words": words}
        if words == 0:
            empty.append(row)
        elif words < SHORT_WORDS:
            short.append(row)
        elif words > LONG_WORDS:
            long.append(row)
    return {
        "submitted": n,
        "short_below_words": SHORT_WORDS,
        "long_above_words": LONG_WORDS,
        "empty": {"count": len(empty), "examples": empty[:MAX_EXAMPLES]},
        "short": {"count": len(short), "examples": short[:MAX_EXAMPLES]},
        "long": {"count": len(long), "examples": long[:MAX_EXAMPLES]},
    }


def _per_clip(captions: Any, clips: Any) -> dict[str, Any]:
    """Submitted captions per clip; clips (those in the clips table, with or without captions) below the mode."""
    counts: Counter[str] = Counter(
        c
        for c, s in zip(
            captions.column("clip_id").to_pylist(), captions.column("status").to_pylist(), strict=True
        )
        if s == "submitted"
    )
    ids = clips.column("clip_id").to_pylist() if clips is not None and clips.num_rows else sorted(counts)
    per = {c: counts.get(c, 0) for c in ids}
    histogram = Counter(per.values())
    mode = max(histogram.items(), key=lambda kv: (kv[1], kv[0]))[0] if histogram else 0
    fewer = sorted(c for c, k in per.items() if k < mode)
    return {
        "clips": len(per),
        "histogram": {str(k): v for k, v in sorted(histogram.items())},
        "usual": mode,
        "fewer_than_usual": {"clips": len(fewer), "examples": fewer[:MAX_EXAMPLES]},
    }
