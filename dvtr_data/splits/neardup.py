"""Near-duplicate clips: CLIP embedding cosine above a threshold, or keyframe perceptual hashes a few bits apart.

Both searches are exact (no approximate index), because the leakage report must be able to say "zero pairs" and
mean it: cosine pairs come from blocked matrix products over all pairs, hash pairs from a pigeonhole multi-index
(two 64-bit hashes at most ``d`` bits apart agree exactly on at least one of ``d + 1`` disjoint bit chunks).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dvtr_data.dataset import Dataset, write_parquet
from dvtr_data.errors import DatasetError, UsageError

BLOCK = 4096


# ---------------------------------------------------------------------------------------------------------
# embeddings (written by `precaption`)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class ClipEmbeddings:
    """Pooled clip embeddings of one model, rows L2-normalised, in the order of ``clip_ids``."""

    clip_ids: list[str]
    vectors: np.ndarray
    model: str
    path: Path


def embedding_files(dataset: Dataset) -> list[Path]:
    folder = dataset.root / "embeddings"
    return (
        sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []
    )


def _vector_column(schema: pa.Schema) -> str | None:
    for name in ("clip_embedding", "embedding"):
        if name in schema.names:
            return name
    for fld in schema:
        typ = fld.type
        if (pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ)) and pa.types.is_floating(
            typ.value_type
        ):
            return fld.name
    return None


def read_embedding_file(path: Path) -> ClipEmbeddings:
    """Read the ok rows' ``clip_id`` and pooled vector of one embeddings file (only those columns: the per-frame
    vectors beside them are many times larger), through precaption's own `clip_matrix` when it is importable."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path} is not a readable Parquet file: {exc}") from exc
    col = _vector_column(schema)
    if "clip_id" not in schema.names or col is None:
        raise DatasetError(f"{path} has no clip_id and pooled embedding column")
    columns = ["clip_id", col] + [c for c in ("status", "model") if c in schema.names]
    table = pq.read_table(path, columns=columns)
    if "status" not in table.column_names:
        table = table.append_column("status", pa.array(["ok"] * table.num_rows, pa.string()))
    table = table.filter(pc.invert(pc.is_null(table.column(col))))
    if col != "clip_embedding":
        table = table.rename_columns(["clip_embedding" if c == col else c for c in table.column_names])
    model = path.stem
    if "model" in table.column_names and table.num_rows:
        model = str(table.column("model")[0].as_py())
    try:
        from dvtr_data.precaption.embed import clip_matrix
    except ImportError:  # precaption not installed in this build: same logic, local
        clip_matrix = _clip_matrix
    ids, vectors = clip_matrix(table)
    if not ids:
        return ClipEmbeddings([], np.zeros((0, 0), np.float32), model, path)
    vectors = np.array(vectors, dtype=np.float32, order="C")
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return ClipEmbeddings(ids, vectors, model, path)


def _clip_matrix(table: pa.Table) -> tuple[list[str], np.ndarray]:
    ok = table.filter(pc.equal(table["status"], "ok"))
    ids = ok.column("clip_id").to_pylist()
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    arr = ok.column("clip_embedding").combine_chunks()
    lengths = set(pc.list_value_length(arr).to_numpy(zero_copy_only=False).tolist())
    if len(lengths) != 1:
        raise DatasetError("embedding vectors have different lengths")
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return ids, flat.reshape(len(ids), lengths.pop())


_RANDOM_MODEL = re.compile(r"/random-s\d+$")


def is_random_model(model: str) -> bool:
    """Precaption names a model without trained weights ``<config>/random-s<seed>`` (tests, the offline demo)."""
    return bool(_RANDOM_MODEL.search(model))


def load_clip_embeddings(
    dataset: Dataset, model: str | None = None, skipped: list[str] | None = None
) -> ClipEmbeddings | None:
    """The pooled embeddings to deduplicate with, or None when precaption has not run.

    With several models on disk, ``model`` picks one (by model name or file stem); otherwise the file covering the
    most clips wins (ties: name order), so that the choice is deterministic and written in the report. Embeddings of
    a randomly initialised model are never picked by default: such a network maps every picture to nearly the same
    direction (cosines of 0.95 between unrelated clips), which would make the whole dataset one near-duplicate;
    their names are appended to ``skipped``.
    """
    files = embedding_files(dataset)
    if not files:
        if model:
            raise UsageError(
                f"no embeddings in {dataset.root / 'embeddings'}; run `dvtr-data precaption` first"
            )
        return None
    loaded = [read_embedding_file(p) for p in files]
    if model:
        chosen = [e for e in loaded if model in (e.model, e.path.stem)]
        if not chosen:
            raise UsageError(
                f"no embeddings of model {model!r}; found: {', '.join(sorted(e.model for e in loaded))}"
            )
        return chosen[0]
    if skipped is not None:
        skipped.extend(sorted(e.model for e in loaded if is_random_model(e.model)))
    loaded = [e for e in loaded if e.clip_ids and not is_random_model(e.model)]
    loaded.sort(key=lambda e: (-len(e.clip_ids), e.path.name))
    return loaded[0] if loaded else None


# ---------------------------------------------------------------------------------------------------------
# cosine pairs
# ---------------------------------------------------------------------------------------------------------
def _blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, block):
        yield s, min(n, s + block)


def cosine_pairs(
    vectors: np.ndarray, threshold: float, block: int = BLOCK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All pairs ``i < j`` with cosine >= ``threshold``, as index arrays per block (rows already normalised)."""
    n = len(vectors)
    for a0, a1 in _blocks(n, block):
        for b0, b1 in _blocks(n, block):
            if b1 <= a0:
                continue
            sims = vectors[a0:a1] @ vectors[b0:b1].T
            if b0 == a0:
                sims[np.tril_indices(a1 - a0)] = -np.inf
            ii, jj = np.nonzero(sims >= threshold)
            if ii.size:
                yield ii + a0, jj + b0


def cross_cosine(
    a: np.ndarray, b: np.ndarray, threshold: float, block: int = BLOCK
) -> tuple[int, float, list[tuple[int, int, float]]]:
    """Pairs between two sets at or above ``threshold``: (count, max cosine over all pairs, up to 20 examples)."""
    count, best, examples = 0, -1.0, []
    if not len(a) or not len(b):
        return 0, float("nan"), []
    for a0, a1 in _blocks(len(a), block):
        for b0, b1 in _blocks(len(b), block):
            sims = a[a0:a1] @ b[b0:b1].T
            best = max(best, float(sims.max()))
            ii, jj = np.nonzero(sims >= threshold)
            count += int(ii.size)
            for i, j in zip(ii[:20].tolist(), jj[:20].tolist(), strict=True):
                if len(examples) < 20:
                    examples.append((i + a0, j + b0, float(sims[i, j])))
    return count, best, examples


# ---------------------------------------------------------------------------------------------------------
# perceptual hashes of keyframes
# ---------------------------------------------------------------------------------------------------------
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float64)


_DCT32 = _dct_matrix(32)


def phash(path: Path) -> int | None:
    """64-bit DCT perceptual hash of an image (grey 32x32, low 8x8 frequencies above their median), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    px = np.asarray(grey, dtype=np.float64)
    low = (_DCT32 @ px @ _DCT32.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


_CACHE_SCHEMA = pa.schema(
    [("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("hash", pa.int64())]
)


def keyframe_hashes(dataset: Dataset, paths: list[str | None], workers: int | None = None) -> np.ndarray:
    """Hashes (as uint64, 0 = none) of the keyframes at ``paths`` (relative to the dataset), cached in ``.work``.

    A keyframe is re-hashed only when its size or modification time changed, so re-running `split` is cheap.
    """
    cache_path = dataset.work_dir / "split-phash.parquet"
    cache: dict[str, tuple[int, int, int]] = {}
    if cache_path.is_file():
        try:
            t = pq.read_table(cache_path)
            for p, s, m, h in zip(
                *(t.column(c).to_pylist() for c in ("path", "size", "mtime_ns", "hash")), strict=True
            ):
                cache[p] = (s, m, h)
        except (pa.ArrowInvalid, OSError, KeyError):
            cache = {}
    out = np.zeros(len(paths), dtype=np.uint64)
    todo: list[tuple[int, str, int, int]] = []
    for i, rel in enumerate(paths):
        if not rel:
            continue
        full = dataset.root / rel
        try:
            st = full.stat()
        except OSError:
            continue
        hit = cache.get(rel)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            out[i] = np.int64(hit[2]).astype(np.uint64)
        else:
            todo.append((i, rel, st.st_size, st.st_mtime_ns))
    if todo:
        with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
            hashes = list(pool.map(lambda t: phash(dataset.root / t[1]), todo))
        for (i, rel, size, mtime), h in zip(todo, hashes, strict=True):
            if h is None:
                continue
            out[i] = np.uint64(h)
            cache[rel] = (size, mtime, int(np.uint64(h).astype(np.int64)))
        rows = {
            "path": list(cache),
            "size": [v[0] for v in cache.values()],
            "mtime_ns": [v[1] for v in cache.values()],
            "hash": [v[2] for v in cache.values()],
        }
        write_parquet(cache_path, pa.table(rows, schema=_CACHE_SCHEMA))
    return out


def hamming_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact pairs ``i < j`` of non-zero 64-bit hashes at most ``max_distance`` bits apart (pigeonhole multi-index)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    valid = np.flatnonzero(hashes != 0)
    if valid.size < 2 or max_distance < 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    h = hashes[valid]
    n_chunks = min(max_distance + 1, 64)
    edges = np.linspace(0, 64, n_chunks + 1).astype(int)
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        width = int(hi - lo)
        mask = np.uint64((1 << width) - 1)
        vals = (h >> np.uint64(lo)) & mask
        order = np.argsort(vals, kind="stable")
        sv, sh = vals[order], h[order]
        k = 1
        while k < len(sv):
            same = np.flatnonzero(sv[k:] == sv[:-k])
            if not same.size:
                break
            close = np.bitwise_count(sh[same] ^ sh[same + k]) <= max_distance
            if close.any():
                a, b = order[same[close]], order[same[close] + k]
                found_i.append(np.minimum(a, b))
                found_j.append(np.maximum(a, b))
            k += 1
    if not found_i:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(found_i), np.concatenate(found_j)], axis=1), axis=0)
    return valid[pairs[:, 0]], valid[pairs[:, 1]]
