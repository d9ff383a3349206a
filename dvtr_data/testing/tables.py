"""Generated dataset tables (no videos) for tests and benchmarks of split, export and card at any scale.

Rendering and ingesting 100,000 clips would take hours, and the split/export logic never looks at pixels, so the
tables are written directly: flights at chosen sites, 5-second clips, five captions per clip from templates,
optional pooled embeddings with planted near-duplicates across flights (the truth the split must respect).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dvtr_data.dataset import Dataset
from dvtr_data.schemas import schema_of
from dvtr_data.text import tokenize

CATEGORIES = ("road", "river", "farmland", "harbour", "forest", "stadium", "residential", "construction")
_SUBJECTS = {
    "road": "cars drive along a straight road",
    "river": "a river bends past green fields",
    "farmland": "tractors work rows of farmland",
    "harbour": "boats are moored in a small harbour",
    "forest": "a dense forest with a dirt track",
    "stadium": "an empty stadium next to a car park",
    "residential": "houses with red roofs line the streets",
    "construction": "cranes stand over a construction site",
}
_VIEWS = (
    "seen from above",
    "filmed from a drone",
    "in an aerial view",
    "from a low oblique angle",
    "on a sunny day",
)


@dataclass
class GeneratedTruth:
    """What the generator planted: near-duplicate clip pairs across flights, and each flight's site."""

    dup_pairs: list[tuple[str, str]] = field(default_factory=list)
    site_of_flight: dict[str, int] = field(default_factory=dict)


def _table(name: str, columns: dict[str, object]) -> pa.Table:
    schema = schema_of(name).schema
    n = len(columns[schema.names[0]])  # type: ignore[arg-type]
    arrays = [
        pa.array(columns[f.name], type=f.type) if columns.get(f.name) is not None else pa.nulls(n, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_generated_dataset(
    root: str | Path,
    *,
    n_flights: int = 40,
    clips_per_flight: int | tuple[int, int] = 20,
    captions_per_clip: int = 5,
    n_sites: int | None = None,
    categories: tuple[str, ...] = CATEGORIES,
    embed_dim: int = 0,
    dup_pairs: int = 0,
    gps: bool = True,
    seed: int = 0,
    with_files: bool = False,
) -> tuple[Dataset, GeneratedTruth]:
    """Write flights, clips, captions (and ``embeddings/generated.parquet``) for a dataset without videos.

    ``clips_per_flight`` may be a (min, max) range. Each flight flies one site (``n_sites`` sites, shared by several
    flights when fewer than flights) and one category; clip embeddings are the flight's direction plus noise, so
    clips of one flight are similar and clips of different flights are not, except the ``dup_pairs`` planted ones.
    """
    rng = np.random.default_rng(seed)
    ds = Dataset(root).create(name=Path(root).name)
    truth = GeneratedTruth()
    n_sites = n_sites or n_flights
    site_xy = rng.uniform(-0.2, 0.2, size=(n_sites, 2)) + np.array([47.37, 8.54])
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fids = [f"f{k:016x}" for k in range(1, n_flights + 1)]
    lo, hi = clips_per_flight if isinstance(clips_per_flight, tuple) else (clips_per_flight, clips_per_flight)
    per_flight = rng.integers(lo, hi + 1, size=n_flights)
    site = rng.integers(0, n_sites, size=n_flights)
    cat_idx = rng.integers(0, len(categories), size=n_flights)
    fps = 30.0
    flights = _table(
        "flights",
        {
            "flight_id": fids,
            "status": ["ok"] * n_flights,
            "warnings": [[] for _ in fids],
            "source_path": [str(Path(root) / "sources" / f"{f}.mp4") for f in fids],
            "file_name": [f"{f}.mp4" for f in fids],
            "size_bytes": [1_000_000] * n_flights,
            "duration_s": (per_flight * 5.0).tolist(),
            "n_frames": (per_flight * 150).tolist(),
            "fps": [fps] * n_flights,
            "width": [1280] * n_flights,
            "height": [720] * n_flights,
            "settings_hash": ["generated"] * n_flights,
            "ingested_at": [now] * n_flights,
            "location_private": [False] * n_flights,
        },
    )
    ds.write_table("flights", flights)
    truth.site_of_flight = dict(zip(fids, site.tolist(), strict=True))

    total = int(per_flight.sum())
    flight_of = np.repeat(np.arange(n_flights), per_flight)
    window = np.concatenate([np.arange(k) for k in per_flight])
    start_f = window * 150
    clip_ids = [
        f"{fids[f]}-{s:07d}-{s + 150:07d}" for f, s in zip(flight_of.tolist(), start_f.tolist(), strict=True)
    ]
    jitter = rng.normal(0, 0.0003, size=(total, 2))
    lat = site_xy[site[flight_of], 0] + jitter[:, 0]
    lon = site_xy[site[flight_of], 1] + jitter[:, 1]
    cats = [categories[c] for c in cat_idx[flight_of].tolist()]
    files = {}
    if with_files:
        files = {
            "clip_path": [
                f"clips/{fids[f]}/{c}.mp4" for f, c in zip(flight_of.tolist(), clip_ids, strict=True)
            ],
            "keyframe_paths": [
                [f"clips/{fids[f]}/{c}_k0.jpg"] for f, c in zip(flight_of.tolist(), clip_ids, strict=True)
            ],
        }
    clips = _table(
        "clips",
        {
            "clip_id": clip_ids,
            "flight_id": [fids[f] for f in flight_of.tolist()],
            "status": ["ok"] * total,
            "shot_index": [0] * total,
            "window_index": window.tolist(),
            "start_frame": start_f.tolist(),
            "end_frame": (start_f + 150).tolist(),
            "start_s": (start_f / fps).tolist(),
            "end_s": ((start_f + 150) / fps).tolist(),
            "duration_s": [5.0] * total,
            "split_reason": ["window"] * total,
            "fps": [fps] * total,
            "width": [640] * total,
            "height": [360] * total,
            "n_frames": [150] * total,
            "keyframe_paths": files.get("keyframe_paths", [[] for _ in range(total)]),
            "clip_path": files.get("clip_path"),
            "qc_verdict": ["pass"] * total,
            "qc_reasons": [[] for _ in range(total)],
            "motion_kind": ["moving"] * total,
            "lat": lat.tolist() if gps else None,
            "lon": lon.tolist() if gps else None,
            "altitude_m": [80.0] * total if gps else None,
            "altitude_kind": ["relative"] * total if gps else None,
            "category": cats,
            "category_source": ["user"] * total,
            "writer": ["ingest"] * total,
        },
    )
    ds.write_table("clips", clips)

    if captions_per_clip:
        k = captions_per_clip
        rep_ids = np.repeat(np.asarray(clip_ids, dtype=object), k)
        which = np.tile(np.arange(k), total)
        texts = [
            f"{_SUBJECTS.get(c, c)} {_VIEWS[(w + j) % len(_VIEWS)]}"
            for c, w, j in zip(
                np.repeat(np.asarray(cats, dtype=object), k).tolist(),
                which.tolist(),
                np.repeat(window, k).tolist(),
                strict=True,
            )
        ]
        caps = _table(
            "captions",
            {
                "caption_id": [f"gen-{c}-{w}" for c, w in zip(rep_ids.tolist(), which.tolist(), strict=True)],
                "clip_id": rep_ids.tolist(),
                "text": texts,
                "tokens": [tokenize(t) for t in texts],
                "origin": ["simulated"] * len(texts),
                "status": ["submitted"] * len(texts),
                "qc_choices": [[] for _ in texts],
                "flags": [[] for _ in texts],
                "accepted": [True] * len(texts),
                "category": np.repeat(np.asarray(cats, dtype=object), k).tolist(),
                "writer": ["annotate"] * len(texts),
            },
        )
        ds.write_table("captions", caps)

    if embed_dim:
        base = rng.normal(size=(n_flights, embed_dim)).astype(np.float32)
        vec = base[flight_of] + rng.normal(scale=0.9, size=(total, embed_dim)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        for _ in range(dup_pairs):
            a, b = rng.choice(total, size=2, replace=False)
            if flight_of[a] == flight_of[b]:
                continue
            noisy = vec[a] + rng.normal(scale=0.05, size=embed_dim).astype(np.float32) / np.sqrt(embed_dim)
            vec[b] = noisy / np.linalg.norm(noisy)
            truth.dup_pairs.append((clip_ids[a], clip_ids[b]))
        write_embeddings(ds, clip_ids, vec, model="generated")
    return ds, truth


def write_embeddings(ds: Dataset, clip_ids: list[str], vectors: np.ndarray, model: str = "generated") -> Path:
    """A minimal embeddings file (clip_id, model, status, clip_embedding as a fixed-size list), as precaption writes."""
    dim = vectors.shape[1]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    table = pa.table(
        {
            "clip_id": clip_ids,
            "model": [model] * len(clip_ids),
            "status": ["ok"] * len(clip_ids),
            "clip_embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        }
    )
    path = ds.root / "embeddings" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', model)}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
