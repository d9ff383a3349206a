"""Near-duplicates at scale: the faiss candidates re-scored exactly, hashes with imagehash and a binary multi-hash
index, and the leakage report's recount, which must find leaks that the index missed.

Expected pairs come from naive references written here (full float64 cosine matrices, full popcount matrices,
components by a plain union-find), never from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from dvtr_data.splits import SplitConfig, UnionFind, neardup, split_dataset
from dvtr_data.splits.neardup import (
    hamming_links,
    hamming_pairs,
    index_cosine_pairs,
    phash,
)
from dvtr_data.splits.report import CONFIDENCE, cosine_test, hash_test, recount
from dvtr_data.testing.tables import write_generated_dataset

THRESHOLD = 0.94


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def at_cosine(a: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with unit ``a`` is exactly ``c`` (in float64)."""
    u = rng.normal(size=a.shape)
    u = unit(u - (u @ a) * a)
    return c * a + np.sqrt(1 - c * c) * u


def planted_vectors(seed: int = 0, n: int = 3000, dim: int = 32):
    """Clustered background plus planted pairs at cosines around the threshold; float32 unit rows."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(40, dim)))
    v = unit(centres[rng.integers(0, 40, n)] + rng.normal(scale=0.6, size=(n, dim)))
    cosines = [0.9995, 0.99, 0.97, 0.95, 0.9405, 0.9395, 0.93, 0.5]
    planted = {}
    for k, c in enumerate(cosines * 5):
        a, b = 2 * k, 2 * k + 1500
        v[b] = at_cosine(v[a], c, rng)
        planted[(a, b)] = c
    return v.astype(np.float32), planted


def naive_cosine_pairs(v: np.ndarray, t: float) -> set[tuple[int, int]]:
    x = v.astype(np.float64)
    s = x @ x.T
    ii, jj = np.nonzero(np.triu(s >= t, 1))
    return set(zip(ii.tolist(), jj.tolist(), strict=True))


def as_set(ii: np.ndarray, jj: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(ii.tolist(), jj.tolist(), strict=True))


# ---------------------------------------------------------------------------------------------------------
# cosine: index candidates, exact re-scoring
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "nlist", "nprobe"),
    [("flat", None, 1), ("ivf", 24, 24), ("ivf", None, neardup.NPROBE)],
)
def test_index_pairs_equal_the_exact_pairs(method, nlist, nprobe):
    v, planted = planted_vectors()
    want = naive_cosine_pairs(v, THRESHOLD)
    # the construction: every planted pair at or above the threshold is a pair, those below are not
    assert {p for p, c in planted.items() if c >= THRESHOLD} <= want
    assert not {p for p, c in planted.items() if c < THRESHOLD} & want
    seen: list[tuple[int, int]] = []
    got = index_cosine_pairs(
        v,
        THRESHOLD,
        method=method,
        nlist=nlist,
        nprobe=nprobe,
        batch=700,
        progress=lambda d, t: seen.append((d, t)),
    )
    pairs = as_set(got.ii, got.jj)
    assert pairs == want  # recall 1.0 and no false pair
    assert all(i < j for i, j in pairs)
    # the candidates included the pair 0.0005 below the threshold, which re-scoring turned away
    assert got.info["candidates"] > got.info["pairs"]
    if method == "flat":  # per block of queries
        assert [d for d, _ in seen] == [700, 1400, 2100, 2800, 3000] and {t for _, t in seen} == {3000}
    else:  # per cell
        cells = got.info["nlist"]
        assert [d for d, _ in seen] == list(range(1, cells + 1)) and {t for _, t in seen} == {cells}


def test_reference_search_agrees_with_naive_pairs():
    v, _ = planted_vectors(seed=3, n=2000)
    got: set[tuple[int, int]] = set()
    for ii, jj in neardup.cosine_pairs(v, THRESHOLD, block=300):
        got |= as_set(ii, jj)
    assert got == naive_cosine_pairs(v, THRESHOLD) and len(got) >= 20


def test_unknown_index_is_a_usage_error():
    from dvtr_data.errors import UsageError

    with pytest.raises(UsageError, match="unknown near-duplicate index"):
        index_cosine_pairs(np.eye(3, dtype=np.float32), 0.9, method="hnsw")


# ---------------------------------------------------------------------------------------------------------
# perceptual hashes
# ---------------------------------------------------------------------------------------------------------
def planted_hashes(seed: int = 2, n: int = 1500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(1, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    for k in range(0, 120, 2):  # pairs 0..9 bits apart
        flips = rng.choice(64, size=(k // 2) % 10, replace=False)
        h[k + 1] = h[k] ^ np.uint64(sum(1 << int(f) for f in flips))
    h[200:260] = h[199]  # a large bucket of identical hashes (a hovering drone)
    h[260] = h[199] ^ np.uint64(0b101)  # and one near it
    h[300:310] = 0  # no hash
    return h


def naive_hash_pairs(h: np.ndarray, d: int) -> set[tuple[int, int]]:
    x = np.array([int(a) for a in h], dtype=object)
    out = set()
    nz = [i for i in range(len(h)) if x[i] != 0]
    for ai, i in enumerate(nz):
        for j in nz[ai + 1 :]:
            if (x[i] ^ x[j]).bit_count() <= d:
                out.add((i, j))
    return out


def components(n: int, pairs) -> list[frozenset[int]]:
    uf = UnionFind(n)
    uf.union_pairs(pairs)
    roots = uf.roots()
    groups: dict[int, set[int]] = {}
    for i, r in enumerate(roots.tolist()):
        groups.setdefault(r, set()).add(i)
    return sorted((frozenset(g) for g in groups.values() if len(g) > 1), key=min)


@pytest.mark.parametrize("d", [0, 1, 4, 9])
def test_hamming_pairs_and_links_are_exact(d):
    h = planted_hashes()[:400]
    h = np.concatenate([h, planted_hashes()[199:262]])  # keep the identical bucket and its neighbour
    want = naive_hash_pairs(h, d)
    assert as_set(*hamming_pairs(h, d)) == want
    links = as_set(*hamming_links(h, d))
    assert links <= want  # every link is a real pair ...
    assert components(len(h), links) == components(len(h), want)  # ... and they join the same clips
    if d == 4:
        assert len(links) < len(want) / 10  # the 63 identical hashes: 62 links instead of 1953 pairs


def test_phash_is_imagehash_and_near_copies_are_close(tmp_path):
    import imagehash
    from PIL import Image

    rng = np.random.default_rng(0)
    base = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).resize((320, 240))
    base.save(tmp_path / "a.jpg", quality=95)
    base.save(tmp_path / "b.jpg", quality=50)
    Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(tmp_path / "c.jpg")
    a, b, c = (phash(tmp_path / f"{k}.jpg") for k in "abc")
    with Image.open(tmp_path / "a.jpg") as img:
        assert a == int(str(imagehash.phash(img)), 16)  # imagehash's own hex string, row by row
    assert (a ^ b).bit_count() <= 4 < (a ^ c).bit_count()
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert phash(tmp_path / "bad.jpg") is None


def write_keyframes(ds, copies: dict[str, str]) -> None:
    """A distinct noise keyframe per clip; each clip in ``copies`` gets a recompressed copy of another's."""
    from PIL import Image

    t = ds.read_table("clips")
    rng = np.random.default_rng(1)
    paths = dict(
        zip(
            t.column("clip_id").to_pylist(),
            (k[0] for k in t.column("keyframe_paths").to_pylist()),
            strict=True,
        )
    )
    for cid, rel in paths.items():
        if cid in copies:
            continue
        (ds.root / rel).parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((rng.random((24, 32)) * 255).astype(np.uint8)).resize((128, 96))
        img.save(ds.root / rel, quality=95)
    for cid, src in copies.items():
        with Image.open(ds.root / paths[src]) as img:
            img.save(ds.root / paths[cid], quality=60)


def test_split_keeps_keyframe_near_duplicates_together(tmp_path):
    ds, _ = write_generated_dataset(
        tmp_path / "ds", n_flights=40, clips_per_flight=3, seed=4, with_files=True
    )
    ids = ds.read_table("clips").column("clip_id").to_pylist()
    pairs = [(ids[0], ids[-1]), (ids[5], ids[60])]  # different flights
    write_keyframes(ds, {b: a for a, b in pairs})
    rep = split_dataset(ds, SplitConfig(tolerance=0.1)).report
    split = dict(
        zip(*(ds.read_table("splits").column(c).to_pylist() for c in ("clip_id", "split")), strict=True)
    )
    assert all(split[a] == split[b] for a, b in pairs)
    assert rep["groups"]["links"]["near-duplicate:phash"] == 2
    assert rep["leakage"]["keyframes_hashed"] == len(ids) and rep["leakage"]["phash_check"] == "exact"
    assert rep["leakage"]["leaks"] == 0


# ---------------------------------------------------------------------------------------------------------
# the report's recount does not trust the index
# ---------------------------------------------------------------------------------------------------------
def naive_cross(split: dict[str, str], ids: list[str], v: np.ndarray, t: float) -> int:
    return sum(split[ids[i]] != split[ids[j]] for i, j in naive_cosine_pairs(v, t))


def dataset_with_dups(tmp_path, seed=6):
    ds, truth = write_generated_dataset(
        tmp_path / "ds", n_flights=120, clips_per_flight=(2, 6), embed_dim=24, dup_pairs=40, seed=seed
    )
    import pyarrow.parquet as pq

    emb = pq.read_table(ds.root / "embeddings" / "generated.parquet")
    ids = emb.column("clip_id").to_pylist()
    v = unit(np.stack(emb.column("clip_embedding").to_numpy(zero_copy_only=False)).astype(np.float64))
    return ds, truth, ids, v.astype(np.float32)


def test_recount_finds_the_leak_when_the_index_finds_nothing(tmp_path, monkeypatch):
    ds, truth, ids, v = dataset_with_dups(tmp_path)

    def blind(vectors, threshold, **kw):  # an index that misses every pair
        return neardup.PairSearch(np.zeros(0, np.int64), np.zeros(0, np.int64), {"index": "blind"})

    monkeypatch.setattr(neardup, "index_cosine_pairs", blind)
    result = split_dataset(ds, SplitConfig(tolerance=0.1))
    split = dict(
        zip(*(ds.read_table("splits").column(c).to_pylist() for c in ("clip_id", "split")), strict=True)
    )
    crossing = naive_cross(split, ids, v, 0.94)
    assert crossing >= 5  # 40 planted pairs placed blindly: most cross
    leak = result.report["leakage"]
    assert leak["cosine_check"] == "exact"
    assert sum(leak["cosine_pairs"].values()) == crossing == result.leaks
    assert all(split[e["a"]] != split[e["b"]] and e["cosine"] >= 0.94 for e in leak["cosine_examples"])

    # sampled: a budget for about 40 clips (each meets the clips of the other two splits); what it finds is real,
    # never more than the truth
    sizes = [sum(s == name for s in split.values()) for name in ("train", "val", "test")]
    per_clip = 2 * (sizes[0] * sizes[1] + sizes[0] * sizes[2] + sizes[1] * sizes[2]) / sum(sizes)
    result = split_dataset(ds, SplitConfig(tolerance=0.1, recount_budget=int(40.5 * per_clip)))
    leak = result.report["leakage"]
    assert leak["cosine_check"] == "sampled" and leak["cosine_sample"]["clips"] == 40
    assert 0 <= sum(leak["cosine_pairs"].values()) <= crossing
    assert leak["cosine_sample"]["leaking_clip_share_below"] == pytest.approx(1 - 0.05 ** (1 / 40))

    # the grouping's own index (undisturbed) keeps them together, and the recount agrees
    monkeypatch.undo()
    result = split_dataset(ds, SplitConfig(tolerance=0.1))
    split = dict(
        zip(*(ds.read_table("splits").column(c).to_pylist() for c in ("clip_id", "split")), strict=True)
    )
    assert naive_cross(split, ids, v, 0.94) == 0 and result.leaks == 0
    row = {c: k for k, c in enumerate(ids)}
    still = [
        (a, b) for a, b in truth.dup_pairs if float(v[row[a]] @ v[row[b]]) >= 0.94
    ]  # later plants overwrite
    assert len(still) >= 30 and all(split[a] == split[b] for a, b in still)


def test_recount_finds_hash_leaks_the_index_missed(tmp_path, monkeypatch):
    ds, _ = write_generated_dataset(
        tmp_path / "ds", n_flights=40, clips_per_flight=3, seed=4, with_files=True
    )
    ids = ds.read_table("clips").column("clip_id").to_pylist()
    pairs = [(ids[k], ids[-1 - k]) for k in range(0, 30, 3)]
    write_keyframes(ds, {b: a for a, b in pairs})
    monkeypatch.setattr(
        neardup, "hamming_links", lambda h, d, **kw: (np.zeros(0, np.int64), np.zeros(0, np.int64))
    )
    rep = split_dataset(ds, SplitConfig(tolerance=0.1)).report
    split = dict(
        zip(*(ds.read_table("splits").column(c).to_pylist() for c in ("clip_id", "split")), strict=True)
    )
    crossing = sum(split[a] != split[b] for a, b in pairs)
    assert crossing >= 2
    assert sum(rep["leakage"]["phash_pairs"].values()) == crossing == rep["leakage"]["leaks"]


def test_recount_by_hand():
    """Six clips, two per split: one cross-split pair (train 0 - test 5), one inside val (2 - 3)."""
    rng = np.random.default_rng(0)
    v = unit(rng.normal(size=(6, 16)))
    v[3] = at_cosine(v[2], 0.99, rng)
    v[5] = at_cosine(v[0], 0.97, rng)
    v = v.astype(np.float32)
    split = np.array(["train", "train", "val", "val", "test", "test"], dtype=object)
    imported = np.zeros(6, dtype=bool)
    rows = np.arange(6)
    out = recount(split, imported, rows, cosine_test(v, THRESHOLD))
    assert out["method"] == "exact" and out["comparisons"] == 2 * 2 + 2 * 2 + 2 * 2
    assert out["ours"] == {"train-val": 0, "train-test": 1, "val-test": 0} and out["examples"] == [(0, 5)]
    assert out["best"]["train-test"] == pytest.approx(0.97, abs=1e-5)
    # both clips published: counted apart
    out = recount(split, np.array([1, 0, 0, 0, 0, 1], dtype=bool), rows, cosine_test(v, THRESHOLD))
    assert out["ours"]["train-test"] == 0 and out["published"]["train-test"] == 1
    # a clip without a vector is not compared
    out = recount(split, imported, np.array([-1, 1, 2, 3, 4, 5]), cosine_test(v, THRESHOLD))
    assert out["ours"]["train-test"] == 0 and out["comparisons"] == 2 + 2 + 4
    # budget of 11 comparisons (of 12): each clip meets the 4 clips of the other splits, so a sample of 2 clips
    out = recount(split, imported, rows, cosine_test(v, THRESHOLD), budget=11, seed=1)
    assert out["method"] == "sampled" and out["sample"]["clips"] == 2 and out["comparisons"] == 8
    assert out["sample"]["leaking_clip_share_below"] == pytest.approx(1 - 0.05**0.5)
    assert out["sample"]["confidence"] == CONFIDENCE
    # hashes: 3 bits apart across val-test, identical inside val
    h = np.array([1, 2, 0xF0, 0xF0, 0xF7, 0], dtype=np.uint64)
    out = recount(split, imported, np.array([0, 1, 2, 3, 4, -1]), hash_test(h, 3))
    assert out["ours"] == {"train-val": 0, "train-test": 0, "val-test": 2}


def test_split_through_the_ivf_search(tmp_path, monkeypatch):
    ds, _, ids, v = dataset_with_dups(tmp_path, seed=8)
    monkeypatch.setattr(neardup, "FLAT_MAX", 50)
    result = split_dataset(ds, SplitConfig(tolerance=0.1))
    rep = result.report
    assert rep["embeddings"]["search"]["index"] == "IVF (faiss k-means)"
    assert rep["groups"]["links"]["near-duplicate:cosine"] > 0
    split = dict(
        zip(*(ds.read_table("splits").column(c).to_pylist() for c in ("clip_id", "split")), strict=True)
    )
    assert naive_cross(split, ids, v, 0.94) == 0 and result.leaks == 0


@pytest.mark.parametrize(("d", "plan"), [(4, (5, 0)), (4, (3, 1)), (4, (2, 2)), (9, (4, 2)), (9, (5, 1))])
def test_every_table_plan_is_exact(d, plan):
    h = np.unique(planted_hashes()[:500])
    h = h[h != 0]
    want = naive_hash_pairs(h, d)
    assert len(want) >= 25
    assert as_set(*neardup.hash_neighbours(h, d, tables=plan)) == want
    with pytest.raises(ValueError, match="cannot find pairs"):
        neardup.hash_neighbours(h, d, tables=(plan[0], plan[1] - 1) if plan[1] else (plan[0] - 1, 0))


def test_embeddings_are_read_in_batches_like_whole(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    v = rng.normal(size=(50, 6)).astype(np.float32)
    status = ["ok"] * 50
    status[3] = status[40] = "error"
    vectors = [None if k in (7, 20) else row.tolist() for k, row in enumerate(v)]
    path = tmp_path / "m.parquet"
    pq.write_table(
        pa.table(
            {
                "clip_id": [f"c{k}" for k in range(50)],
                "model": ["m"] * 50,
                "status": status,
                "clip_embedding": pa.array(vectors, pa.list_(pa.float32())),
            }
        ),
        path,
    )
    keep = [k for k in range(50) if k not in (3, 7, 20, 40)]
    got = neardup.read_embedding_file(path, batch_rows=7)
    assert got.clip_ids == [f"c{k}" for k in keep] and got.model == "m"
    np.testing.assert_allclose(got.vectors, unit(v[keep].astype(np.float64)), rtol=1e-6)
