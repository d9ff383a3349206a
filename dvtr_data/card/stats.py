"""The numbers of a dataset card, computed from the tables (also what the notebook and tests read).

Caption diversity is measured the usual ways: vocabulary size (distinct tokens), unique-caption ratio (distinct
normalised captions / captions) and distinct-n (distinct n-grams / n-grams, over all captions).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow.compute as pc

import dvtr_data.schemas.dataset_tables  # noqa: F401  (registers imports/moments)
from dvtr_data.card.publishing import clip_categories, publishing_stats
from dvtr_data.dataset import Dataset
from dvtr_data.lineage import captions_on_current_clips
from dvtr_data.splits.assign import SPLIT_NAMES
from dvtr_data.splits.build import read_split_report
from dvtr_data.text import tokenize


def distinct_n(token_lists: list[list[str]], n: int) -> float:
    grams: Counter[tuple[str, ...]] = Counter()
    total = 0
    for toks in token_lists:
        for i in range(len(toks) - n + 1):
            grams[tuple(toks[i : i + n])] += 1
            total += 1
    return len(grams) / total if total else 0.0


def caption_stats(texts: list[str], tokens: list[list[str]]) -> dict[str, Any]:
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    normalised = [" ".join(t) for t in tokens]
    return {
        "captions": len(texts),
        "vocabulary": len({w for t in tokens for w in t}),
        "unique_caption_ratio": round(len(set(normalised)) / len(normalised), 4) if normalised else 0.0,
        "distinct_1": round(distinct_n(tokens, 1), 4),
        "distinct_2": round(distinct_n(tokens, 2), 4),
        "words_mean": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
        "words_median": float(np.median(lengths)) if len(lengths) else 0.0,
        "words_min": int(lengths.min()) if len(lengths) else 0,
        "words_max": int(lengths.max()) if len(lengths) else 0,
        "empty": int((lengths == 0).sum()),
    }


def dataset_stats(ds: Dataset) -> dict[str, Any]:
    """Everything the card shows, as plain data (lists for the plots, dicts for the tables)."""
    ds.require()
    cfg = ds.config()
    flights = ds.read_table("flights")
    clips = ds.read_table("clips")
    captions = captions_on_current_clips(ds)  # current clips, accepted as reviewed
    splits = ds.read_table("splits")
    imports = ds.read_table("imports")

    ok_flights = flights.filter(pc.equal(flights.column("status"), "ok")) if flights.num_rows else flights
    clip_ids = clips.column("clip_id").to_pylist()
    imported = set(imports.column("clip_id").to_pylist()) if imports.num_rows else set()
    durations = (
        clips.column("duration_s").to_numpy(zero_copy_only=False).astype(float)
        if clips.num_rows
        else np.zeros(0)
    )
    own = np.array([c not in imported for c in clip_ids], dtype=bool)
    verdicts = Counter(clips.column("qc_verdict").to_pylist())
    reasons = Counter(r.split(":")[0] for rs in clips.column("qc_reasons").to_pylist() for r in (rs or []))
    category_of, category_table = clip_categories(ds, clips)
    categories = Counter(c for c in category_of.values() if c)

    acc = captions
    if captions.num_rows:
        acc = captions.filter(
            pc.and_(
                pc.equal(captions.column("status"), "submitted"),
                pc.fill_null(captions.column("accepted"), False),
            )
        )
    texts = acc.column("text").to_pylist() if acc.num_rows else []
    toks_raw = acc.column("tokens").to_pylist() if acc.num_rows else []
    tokens = [t if t is not None else tokenize(x) for t, x in zip(toks_raw, texts, strict=True)]
    cap_clip = acc.column("clip_id").to_pylist() if acc.num_rows else []
    per_clip = Counter(cap_clip)
    origins = Counter(captions.column("origin").to_pylist()) if captions.num_rows else Counter()
    flags = Counter(
        f for fs in (captions.column("flags").to_pylist() if captions.num_rows else []) for f in (fs or [])
    )

    split_of = (
        dict(zip(splits.column("clip_id").to_pylist(), splits.column("split").to_pylist(), strict=True))
        if splits.num_rows
        else {}
    )
    dur_of = dict(zip(clip_ids, durations.tolist(), strict=True))
    flight_of = dict(zip(clip_ids, clips.column("flight_id").to_pylist(), strict=True))
    per_split: dict[str, dict[str, Any]] = {}
    for s in (*SPLIT_NAMES, "excluded") if split_of else ():
        members = [c for c, sp in split_of.items() if sp == s]
        if not members and s == "excluded":
            continue
        mset = set(members)
        s_idx = [i for i, c in enumerate(cap_clip) if c in mset]
        per_split[s] = {
            "clips": len(members),
            "captions": len(s_idx) if s != "excluded" else sum(per_clip.get(c, 0) for c in members),
            "flights": len({flight_of.get(c) for c in members if c not in imported}),
            "hours": round(sum(dur_of.get(c, 0.0) for c in members) / 3600, 4),
            "imported": sum(1 for c in members if c in imported),
            **(
                {}
                if s == "excluded"
                else {
                    k: v
                    for k, v in caption_stats([texts[i] for i in s_idx], [tokens[i] for i in s_idx]).items()
                    if k in ("vocabulary", "unique_caption_ratio", "words_mean")
                }
            ),
        }

    private = set()
    if ok_flights.num_rows:
        private = {
            f
            for f, p in zip(
                ok_flights.column("flight_id").to_pylist(),
                ok_flights.column("location_private").to_pylist(),
                strict=True,
            )
            if p
        }
    lat = clips.column("lat").to_pylist() if clips.num_rows else []
    lon = clips.column("lon").to_pylist() if clips.num_rows else []
    points = [
        (la, lo, split_of.get(c, "none"))
        for c, la, lo in zip(clip_ids, lat, lon, strict=True)
        if la is not None and lo is not None and not (la == 0 and lo == 0) and flight_of[c] not in private
    ]
    hidden = sum(1 for c, la in zip(clip_ids, lat, strict=True) if la is not None and flight_of[c] in private)

    sources: dict[str, dict[str, Any]] = {}
    for name, meta in (cfg.get("stages", {}).get("import", {}) or {}).items():
        sources[name] = {
            "format": meta.get("format"),
            "videos": meta.get("videos"),
            "captions": meta.get("captions"),
        }
    return {
        "name": cfg.get("name", ds.root.name),
        "created_at": cfg.get("created_at"),
        "tool_version": cfg.get("tool_version"),
        "stages": cfg.get("stages", {}),
        "totals": {
            "flights": int(ok_flights.num_rows),
            "flights_failed": int(flights.num_rows - ok_flights.num_rows),
            "flight_hours": round(
                float(np.nansum(ok_flights.column("duration_s").to_numpy(zero_copy_only=False).astype(float)))
                / 3600,
                4,
            )
            if ok_flights.num_rows
            else 0.0,
            "clips": len(clip_ids),
            "clips_own": int(own.sum()),
            "clips_imported": len(imported),
            "clip_hours": round(float(durations.sum()) / 3600, 4),
            "captions": len(texts),
            "captions_all": int(captions.num_rows),
            "clips_with_captions": len(per_clip),
        },
        "clip_lengths": durations[own & (durations > 0)].tolist(),
        "categories": dict(categories.most_common()),
        "captions_per_clip": dict(sorted(Counter(per_clip.get(c, 0) for c in clip_ids).items())),
        "caption_lengths": [len(t) for t in tokens],
        "text": caption_stats(texts, tokens),
        "origins": dict(origins),
        "caption_flags": dict(flags),
        "qc": {"verdicts": dict(verdicts), "reasons": dict(reasons.most_common())},
        "splits": per_split,
        "locations": points,
        "locations_hidden": hidden,
        "imports": sources,
        "split_report": read_split_report(ds),
        "examples": _examples(texts, cap_clip, split_of),
        "most_common_captions": Counter(" ".join(t) for t in tokens).most_common(5),
        "categories_from": category_table,
        "categories_missing": sum(1 for c in clip_ids if not category_of.get(c)),
        **publishing_stats(ds, flights, clips, captions, acc, imported, private, split_of),
    }


def _examples(
    texts: list[str], cap_clip: list[str], split_of: dict[str, str], k: int = 6
) -> list[dict[str, str]]:
    """A few captions to show, picked with a fixed seed so that the card is reproducible."""
    if not texts:
        return []
    rng = np.random.default_rng(0)
    idx = sorted(rng.choice(len(texts), size=min(k, len(texts)), replace=False).tolist())
    return [{"clip_id": cap_clip[i], "split": split_of.get(cap_clip[i], "-"), "text": texts[i]} for i in idx]
