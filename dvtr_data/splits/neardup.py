"""Near-duplicate clips: CLIP embedding cosine at or above a threshold, or keyframe perceptual hashes a few bits apart.

The rule is exact, the search is not quadratic. Candidate pairs come from faiss (exhaustive `IndexFlatIP` on
small sets; above `FLAT_MAX` vectors an inverted file on faiss k-means cells, searched cell by cell with matrix
products; a pigeonhole multi-hash `IndexBinaryMultiHash` for hashes), in blocks so that memory stays bounded, and
every candidate is scored again exactly before it becomes a pair: the index can only miss pairs, never invent
one. How many it misses is measured by ``benchmarks/split.py`` against the exhaustive search (`cosine_pairs`, kept
as the reference), and the leakage report does not rely on the index at all (`report.recount`).

Why faiss: it is the field's well-kept vector index (exact and IVF range search with inner product, binary
multi-hash range search, fast k-means, no server, wheels for every platform), and inverted-file cells train in
seconds at a million vectors on two cores, where graph indexes (HNSW) take many minutes to build.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator
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
FLAT_MAX = 10_000  # up to this many vectors the index is exhaustive (IndexFlatIP): exact, and still fast
QUERY_BATCH = 8192  # queries per range search: bounds the candidate lists held at once
MARGIN = 1e-3  # candidates are taken this far below the threshold, then scored exactly in float64
NPROBE = 8
TRAIN_PER_CELL = 39  # k-means sample per cell: cells only steer the search, exactness comes from re-scoring

ProgressFn = Callable[[int, int], None]


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


def read_embedding_file(path: Path, batch_rows: int = 65_536) -> ClipEmbeddings:
    """Read the ok rows' ``clip_id`` and pooled vector of one embeddings file (only those columns: the per-frame
    vectors beside them are many times larger), through precaption's own `clip_matrix` when it is importable.

    The file is read in row batches, each normalised into one growing float32 matrix: reading it whole and then
    filtering, flattening and normalising made four transient copies (8 GB at a million 512-d clips).
    """
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path} is not a readable Parquet file: {exc}") from exc
    col = _vector_column(schema)
    if "clip_id" not in schema.names or col is None:
        raise DatasetError(f"{path} has no clip_id and pooled embedding column")
    columns = ["clip_id", col] + [c for c in ("status", "model") if c in schema.names]
    try:
        from dvtr_data.precaption.embed import clip_matrix
    except ImportError:  # precaption not installed in this build: same logic, local
        clip_matrix = _clip_matrix
    model = path.stem
    ids: list[str] = []
    total = parquet.metadata.num_rows
    out: np.ndarray | None = None
    filled = 0
    for k, batch in enumerate(parquet.iter_batches(batch_size=batch_rows, columns=columns)):
        table = pa.Table.from_batches([batch])
        if "status" not in table.column_names:
            table = table.append_column("status", pa.array(["ok"] * table.num_rows, pa.string()))
        table = table.filter(pc.invert(pc.is_null(table.column(col))))
        if col != "clip_embedding":
            table = table.rename_columns(["clip_embedding" if c == col else c for c in table.column_names])
        if k == 0 and "model" in table.column_names and table.num_rows:
            model = str(table.column("model")[0].as_py())
        batch_ids, vectors = clip_matrix(table)
        if not batch_ids:
            continue
        if out is None:
            out = np.empty((total, vectors.shape[1]), dtype=np.float32)
        elif vectors.shape[1] != out.shape[1]:
            raise DatasetError("embedding vectors have different lengths")
        block = out[filled : filled + len(batch_ids)]
        block[:] = vectors
        block /= np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        ids.extend(batch_ids)
        filled += len(batch_ids)
    if out is None or not ids:
        return ClipEmbeddings([], np.zeros((0, 0), np.float32), model, path)
    return ClipEmbeddings(ids, out[:filled] if filled < total else out, model, path)


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
@dataclass
class PairSearch:
    """Pairs ``ii[k] < jj[k]`` that passed the exact rule, and how they were found (written into the report)."""

    ii: np.ndarray
    jj: np.ndarray
    info: dict[str, object]


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, np.int64), np.zeros(0, np.int64)


def _blocks(n: int, block: int) -> Iterator[tuple[int, int]]:
    for s in range(0, n, block):
        yield s, min(n, s + block)


def rescore_cosine(vectors: np.ndarray, ii: np.ndarray, jj: np.ndarray, chunk: int = 1 << 15) -> np.ndarray:
    """Cosine of each pair ``(ii[k], jj[k])`` in float64 from the stored unit rows.

    This is the one decision rule for "at or above the threshold": the index's float32 scores and the blocked
    matrix products only nominate candidates (``MARGIN`` below the threshold), so a pair exactly at the threshold is
    decided the same way whichever search found it.
    """
    out = np.empty(len(ii), dtype=np.float64)
    for s in range(0, len(ii), chunk):
        a = vectors[ii[s : s + chunk]].astype(np.float64)
        b = vectors[jj[s : s + chunk]].astype(np.float64)
        out[s : s + chunk] = np.einsum("ij,ij->i", a, b)
    return out


def cosine_pairs(
    vectors: np.ndarray, threshold: float, block: int = BLOCK
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All pairs ``i < j`` with cosine >= ``threshold``, per block, by exhaustive blocked products (quadratic).

    The reference the index search is measured against (tests, ``benchmarks/split.py``); `split` itself uses
    `index_cosine_pairs`.
    """
    n = len(vectors)
    for a0, a1 in _blocks(n, block):
        for b0, b1 in _blocks(n, block):
            if b1 <= a0:
                continue
            sims = vectors[a0:a1] @ vectors[b0:b1].T
            if b0 == a0:
                sims[np.tril_indices(a1 - a0)] = -np.inf
            ii, jj = np.nonzero(sims >= threshold - MARGIN)
            if ii.size:
                ii, jj = ii + a0, jj + b0
                ok = rescore_cosine(vectors, ii, jj) >= threshold
                if ok.any():
                    yield ii[ok], jj[ok]


def default_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 2 sqrt(n), so that training stays cheap (k-means on 40 points per
    list) and each probed list holds about sqrt(n) / 2 vectors."""
    return int(min(8192, max(16, round(2 * math.sqrt(n)))))


def index_cosine_pairs(
    vectors: np.ndarray,
    threshold: float,
    *,
    method: str = "auto",
    nlist: int | None = None,
    nprobe: int = NPROBE,
    batch: int = QUERY_BATCH,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> PairSearch:
    """Pairs ``i < j`` of unit rows with cosine >= ``threshold``: candidates from faiss, kept only when
    `rescore_cosine` confirms them.

    ``method`` "flat": a faiss `IndexFlatIP` range search, exhaustive (every pair is found). "ivf": an inverted
    file, ``nlist`` cells from faiss spherical k-means; each row probes its ``nprobe`` nearest cells (faiss
    `IndexFlatIP` over the centroids) and is compared with the rows that live there. "auto": flat up to `FLAT_MAX`
    rows. Every row is a query, so a pair is found when either of its clips probes the other's cell.

    The IVF search is run cell by cell rather than query by query (as `IndexIVFFlat.range_search` would): all
    queries probing a cell against that cell's rows is one matrix product, which BLAS does about eight times faster
    on two cores than faiss's per-query scan of 512-dimensional lists; the pairs are the same. Products go in
    blocks of ``batch`` queries, so memory holds, besides the vectors, the probe table (``nprobe`` integers a row)
    and one block. ``progress(done, total)`` is called per block (flat) or per cell (ivf).
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    if method == "auto":
        method = "flat" if n <= FLAT_MAX else "ivf"
    if method not in ("flat", "ivf"):
        raise UsageError(f"unknown near-duplicate index {method!r}; choose flat, ivf or auto")
    info: dict[str, object] = {
        "index": "IndexFlatIP" if method == "flat" else "IVF (faiss k-means)",
        "vectors": n,
    }
    if n < 2:
        if progress:
            progress(n, n)
        return PairSearch(*_empty(), {**info, "candidates": 0, "pairs": 0})
    found_i: list[np.ndarray] = []
    found_j: list[np.ndarray] = []
    candidates = 0

    def keep(a: np.ndarray, b: np.ndarray) -> None:
        nonlocal candidates
        other = a != b
        lo, hi = np.minimum(a[other], b[other]), np.maximum(a[other], b[other])
        candidates += int(lo.size)
        ok = rescore_cosine(x, lo, hi) >= threshold
        found_i.append(lo[ok])
        found_j.append(hi[ok])

    if method == "flat":
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        for q0, q1 in _blocks(n, batch):
            lims, _, ids = index.range_search(x[q0:q1], threshold - MARGIN)
            keep(
                np.repeat(np.arange(q0, q1, dtype=np.int64), np.diff(lims).astype(np.int64)),
                ids.astype(np.int64),
            )
            if progress:
                progress(q1, n)
    else:
        nlist = min(nlist or default_nlist(n), n)
        nprobe = max(1, min(nprobe, nlist))
        info.update(nlist=nlist, nprobe=nprobe)
        probes = _probes(x, nlist, nprobe, seed)
        cell = probes[:, 0]
        order = np.argsort(cell, kind="stable")
        starts = np.searchsorted(cell[order], np.arange(nlist + 1))
        flat = probes.ravel()
        porder = np.argsort(flat, kind="stable")
        pstarts = np.searchsorted(flat[porder], np.arange(nlist + 1))
        queries_of = porder // nprobe
        for c in range(nlist):
            m0, m1 = int(starts[c]), int(starts[c + 1])
            queries = queries_of[pstarts[c] : pstarts[c + 1]]
            for r0, r1 in _blocks(m1 - m0, 2048):  # a block: batch x 2048 float32 cosines, 64 MB at most
                rows = x[order[m0 + r0 : m0 + r1]]  # gathered per cell: no second copy of the vectors
                for q0, q1 in _blocks(len(queries), batch):
                    q = queries[q0:q1]
                    ii, jj = np.nonzero(x[q] @ rows.T >= threshold - MARGIN)
                    if ii.size:
                        keep(q[ii], order[m0 + r0 + jj])
            if progress:
                progress(c + 1, nlist)
    ii, jj = _unique_pairs(np.concatenate(found_i), np.concatenate(found_j), n)
    return PairSearch(ii, jj, {**info, "candidates": candidates, "pairs": int(ii.size)})


def _probes(x: np.ndarray, nlist: int, nprobe: int, seed: int) -> np.ndarray:
    """The ``nprobe`` nearest of ``nlist`` spherical k-means centroids of each row, nearest first (faiss)."""
    import faiss

    n, d = x.shape
    rng = np.random.default_rng(seed)
    sample = x[np.sort(rng.choice(n, size=min(n, TRAIN_PER_CELL * nlist), replace=False))]
    kmeans = faiss.Kmeans(
        d, nlist, niter=10, spherical=True, seed=seed, max_points_per_centroid=TRAIN_PER_CELL
    )
    kmeans.train(sample)
    if kmeans.centroids is None:  # faiss sets them in train(); None would be a faiss failure
        raise RuntimeError("faiss k-means training left no centroids")
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(kmeans.centroids)
    probes = np.empty((n, nprobe), dtype=np.int64)
    for q0, q1 in _blocks(n, 1 << 15):
        _, probes[q0:q1] = quantizer.search(x[q0:q1], nprobe)
    return probes


def _unique_pairs(ii: np.ndarray, jj: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if not ii.size:
        return _empty()
    key = np.unique(ii.astype(np.int64) * n + jj.astype(np.int64))
    return key // n, key % n


# ---------------------------------------------------------------------------------------------------------
# perceptual hashes of keyframes
# ---------------------------------------------------------------------------------------------------------
def phash(path: Path) -> int | None:
    """64-bit DCT perceptual hash (``imagehash.phash``: grey 32x32, low 8x8 frequencies above their median) as an
    integer, first row's bits highest; None when the file is not a readable image.

    A uniform black frame hashes to 0, which the searches read as "no hash": such frames are not near-duplicates
    of each other in any useful sense.
    """
    import imagehash
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            bits = np.asarray(imagehash.phash(img).hash, dtype=bool).ravel()
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


_CACHE_NAME = "split-imagehash.parquet"  # not the old hand-written hash's file: its values differ
_CACHE_SCHEMA = pa.schema(
    [("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("hash", pa.int64())]
)


def keyframe_hashes(dataset: Dataset, paths: list[str | None], workers: int | None = None) -> np.ndarray:
    """Hashes (as uint64, 0 = none) of the keyframes at ``paths`` (relative to the dataset), cached in ``.work``.

    A keyframe is re-hashed only when its size or modification time changed, so re-running `split` is cheap.
    """
    cache_path = dataset.work_dir / _CACHE_NAME
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


def hash_tables(n: int, max_distance: int) -> tuple[int, int] | None:
    """How to split 64-bit hashes for an exact search within ``max_distance`` bits: ``(tables, flips)``, or None
    when no split prunes enough and the exhaustive index is cheaper.

    Two hashes at most ``d`` bits apart, cut into ``t`` disjoint strings, differ in at most ``f`` bits on at least one
    string whenever ``t (f + 1) > d`` (pigeonhole). So probing each string's bucket and the buckets ``f`` flips
    away finds every pair. The choice minimises the work per query: bucket probes ``t * sum(C(b, k), k <= f)``
    (``b = 64 // t`` bits a string) times one plus the expected rows per bucket ``n / 2**b``. At four bits and a
    million hashes this is three 21-bit strings with one flip (98 operations a query), where five 12-bit strings
    without flips would visit about 1,200 candidates a query.
    """
    best: tuple[float, int, int] | None = None
    for flips in range(3):
        tables = -(-(max_distance + 1) // (flips + 1))
        bits = 64 // tables
        if bits < 1:
            continue
        probes = tables * sum(math.comb(bits, k) for k in range(flips + 1))
        cost = probes * (1 + n / 2.0**bits)
        if best is None or cost < best[0]:
            best = (cost, tables, flips)
    if best is None or best[0] >= n / 4:
        return None
    return best[1], best[2]


def hash_neighbours(
    values: np.ndarray,
    max_distance: int,
    *,
    tables: tuple[int, int] | None = None,
    batch: int = QUERY_BATCH,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``a < b`` of distinct 64-bit ``values`` at most ``max_distance`` bits apart, exactly.

    A faiss `IndexBinaryMultiHash` on disjoint bit strings with bucket flips as `hash_tables` chooses (or
    ``tables=(strings, flips)``), so that candidates come only from nearby buckets; the exhaustive
    `IndexBinaryFlat` when no split prunes. faiss checks each candidate's full distance in C++, and the distance is
    counted again here.
    """
    import faiss

    values = np.ascontiguousarray(values, dtype=np.uint64)
    m = len(values)
    if m < 2 or max_distance < 1:
        if progress:
            progress(m, m)
        return _empty()
    codes = values.view(np.uint8).reshape(m, 8)
    plan = tables or hash_tables(m, max_distance)
    index: faiss.IndexBinary
    if plan is None:
        index = faiss.IndexBinaryFlat(64)
    else:
        if plan[0] * (plan[1] + 1) <= max_distance:
            raise ValueError(
                f"{plan[0]} strings with {plan[1]} flips cannot find pairs {max_distance} bits apart"
            )
        multi = faiss.IndexBinaryMultiHash(64, plan[0], 64 // plan[0])
        multi.nflip = plan[1]
        index = multi
    index.add(codes)
    found_a: list[np.ndarray] = []
    found_b: list[np.ndarray] = []
    for q0, q1 in _blocks(m, batch):
        lims, _, ids = index.range_search(codes[q0:q1], max_distance + 1)  # faiss: distance < radius
        rows = np.repeat(np.arange(q0, q1, dtype=np.int64), np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        keep = rows < ids
        a, b = rows[keep], ids[keep]
        ok = np.bitwise_count(values[a] ^ values[b]) <= max_distance
        found_a.append(a[ok])
        found_b.append(b[ok])
        if progress:
            progress(q1, m)
    return _unique_pairs(np.concatenate(found_a), np.concatenate(found_b), m)


def _hash_search(
    hashes: np.ndarray, max_distance: int, expand: bool, batch: int, progress: ProgressFn | None
) -> tuple[np.ndarray, np.ndarray]:
    hashes = np.asarray(hashes, dtype=np.uint64)
    valid = np.flatnonzero(hashes != 0)
    if valid.size < 2 or max_distance < 0:
        return _empty()
    uniq, inverse = np.unique(hashes[valid], return_inverse=True)
    inverse = inverse.ravel()
    a, b = hash_neighbours(uniq, max_distance, batch=batch, progress=progress)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    members = [valid[order[starts[u] : starts[u + 1]]] for u in range(len(uniq))] if expand else []
    if expand:
        ii_parts: list[np.ndarray] = []
        jj_parts: list[np.ndarray] = []
        for mem in members:
            if len(mem) > 1:
                p, q = np.triu_indices(len(mem), 1)
                ii_parts.append(mem[p])
                jj_parts.append(mem[q])
        for u, v in zip(a.tolist(), b.tolist(), strict=True):
            p, q = np.meshgrid(members[u], members[v], indexing="ij")
            ii_parts.append(p.ravel())
            jj_parts.append(q.ravel())
        if not ii_parts:
            return _empty()
        ii, jj = np.concatenate(ii_parts), np.concatenate(jj_parts)
    else:
        first = valid[order[starts[:-1]]]  # one representative clip per distinct hash
        rep = first[inverse]
        same = rep != valid
        ii = np.concatenate([rep[same], first[a]])
        jj = np.concatenate([valid[same], first[b]])
    return _unique_pairs(np.minimum(ii, jj), np.maximum(ii, jj), len(hashes))


def hamming_pairs(
    hashes: np.ndarray, max_distance: int, *, batch: int = QUERY_BATCH, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of non-zero 64-bit hashes at most ``max_distance`` bits apart (exact).

    The full list grows with the square of each set of identical hashes; grouping needs only `hamming_links`.
    """
    return _hash_search(hashes, max_distance, True, batch, progress)


def hamming_links(
    hashes: np.ndarray, max_distance: int, *, batch: int = QUERY_BATCH, progress: ProgressFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Links that join exactly the same clips as `hamming_pairs`, at a cost linear in the clips.

    Identical hashes (a hovering drone, a static scene: thousands of clips in one bucket) are joined to one
    representative instead of pairwise, and only distinct hash values are searched, so a large bucket costs one
    entry, not its square.
    """
    return _hash_search(hashes, max_distance, False, batch, progress)
