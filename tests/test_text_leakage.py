"""Text-level leakage: identical and near-identical captions across splits, shared captions inside one, glue."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pyarrow as pa
import pytest
from rapidfuzz import fuzz

from dvtr_data.dataset import Dataset
from dvtr_data.schemas import schema_of
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.splits.text_leakage import CaptionRow, glue_pairs, near_pairs, text_leakage
from dvtr_data.testing.tables import write_generated_dataset
from dvtr_data.text import normalise, tokenize

WORDS = (
    "red blue green small large old new busy quiet wide narrow long short bright dark "
    "car truck boat tractor house barn bridge river road field forest tower crane ship train "
    "parked moving crossing beside under over along near behind between around through "
    "morning evening sunny cloudy harbour village city farm lake hill valley coast park"
).split()


def random_sentences(n: int, seed: int, length: int = 9) -> list[str]:
    """Distinct random sentences: two of them agreeing to fuzz.ratio >= 90 is practically impossible."""
    rng = np.random.default_rng(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add(" ".join(rng.choice(WORDS, size=length).tolist()))
    return sorted(out)


def typo(text: str) -> str:
    """One character changed in the middle of a word: fuzz.ratio stays well above 90 for 9-word sentences."""
    k = len(text) // 2
    while text[k] == " ":
        k += 1
    return text[:k] + ("x" if text[k] != "x" else "y") + text[k + 1 :]


# ---------------------------------------------------------------------------------------------------------
# near-identical pairs
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exact_max", [10_000, 0], ids=["exact", "minhash-lsh"])
def test_near_pairs_find_exactly_the_planted_ones(exact_max):
    base = random_sentences(300, seed=3)
    planted = {k: typo(base[k]) for k in range(0, 300, 25)}  # 12 near-identical variants
    texts = sorted(set(base) | set(planted.values()))
    pos = {t: i for i, t in enumerate(texts)}
    expected = {tuple(sorted((pos[base[k]], pos[v]))) for k, v in planted.items()}
    # the naive reference: every pair scored
    naive = {(i, j) for i, j in combinations(range(len(texts)), 2) if fuzz.ratio(texts[i], texts[j]) >= 90}
    assert naive == expected
    pairs, method = near_pairs(texts, 90.0, exact_max=exact_max)
    assert method == ("exact" if exact_max else "minhash-lsh")
    assert {(i, j) for i, j, _ in pairs} == expected
    assert all(s >= 90 for _, _, s in pairs)


def test_counts_on_a_hand_built_case():
    rows = [
        # train
        CaptionRow("a", "A red car on a road.", "human"),
        CaptionRow("a", "the blue river bends past the old mill", "human"),
        CaptionRow("b", "a red car on a road", "human"),  # same text on a second train clip
        CaptionRow("b", "boats moored in the small harbour today", "human"),
        # test
        CaptionRow("c", "a RED car, on a road!", "human"),  # identical to train after normalisation
        CaptionRow("c", "the blue river bends past the old mil", "human"),  # near (one letter dropped)
        CaptionRow("d", "a lonely tower on a windy hill at dusk", "human"),
        CaptionRow("d", "", "human"),  # empty: left out
        CaptionRow("x", "a red car on a road", "human"),  # clip in no split: left out
    ]
    rep = text_leakage(rows, {"a": "train", "b": "train", "c": "test", "d": "test"})
    assert rep["captions"] == {"train": 4, "val": 0, "test": 3}
    tt = rep["pairs"]["train-test"]
    assert tt["identical"]["texts"] == 1 and tt["identical"]["captions"] == 1
    assert tt["identical"]["share"] == round(1 / 3, 4)
    assert tt["near"]["texts"] == 1 and tt["near"]["captions"] == 1
    assert tt["near"]["examples"][0]["test"] == "the blue river bends past the old mil"
    assert rep["pairs"]["train-val"]["identical"]["captions"] == 0
    assert rep["shared_within"]["train"] == {
        "texts": 1,
        "clips": 2,
        "captions": 2,
        "largest": 2,
        "examples": [{"text": "a red car on a road", "clips": 2}],
    }
    assert rep["shared_within"]["test"]["texts"] == 0


def test_glue_links_human_captions_skips_templates_pinned_pairs_and_texts_over_the_cap():
    ids = [f"c{k}" for k in range(8)]
    rows = [
        CaptionRow("c0", "Same words here", "human"),
        CaptionRow("c1", "same words here.", "imported"),  # glued to c0
        CaptionRow("c2", "a template caption", "simulated"),
        CaptionRow("c3", "a template caption", "simulated"),  # templates never glue
        CaptionRow("c4", "both published", "imported"),
        CaptionRow("c5", "both published", "imported"),  # both pinned: not ours to glue
        CaptionRow("c5", "generic", "human"),
        CaptionRow("c6", "generic", "human"),
        CaptionRow("c7", "generic", "human"),  # 3 clips > cap 2: cut
    ]
    pinned = np.array([False, False, False, False, True, True, False, False])
    (ii, jj), info = glue_pairs(ids, rows, pinned, cap=2)
    assert list(zip(ii.tolist(), jj.tolist(), strict=True)) == [(0, 1)]
    assert info["texts_glued"] == 1 and info["links"] == 1
    assert info["texts_over_cap"] == 1 and info["clips_in_texts_over_cap"] == 3


# ---------------------------------------------------------------------------------------------------------
# split_dataset with planted human captions
# ---------------------------------------------------------------------------------------------------------
def write_human_captions(ds: Dataset, captions: dict[str, list[str]]) -> None:
    schema = schema_of("captions").schema
    clip_ids = [c for c, texts in captions.items() for _ in texts]
    texts = [t for ts in captions.values() for t in ts]
    n = len(texts)
    cols = {
        "caption_id": [f"h-{c}-{k}" for c, ts in captions.items() for k in range(len(ts))],
        "clip_id": clip_ids,
        "text": texts,
        "tokens": [tokenize(t) for t in texts],
        "origin": ["human"] * n,
        "status": ["submitted"] * n,
        "qc_choices": [[] for _ in texts],
        "flags": [[] for _ in texts],
        "accepted": [True] * n,
        "writer": ["annotate"] * n,
    }
    arrays = [pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(n, f.type) for f in schema]
    ds.write_table("captions", pa.Table.from_arrays(arrays, schema=schema))


def planted_dataset(tmp_path, n_shared: int = 6, n_near: int = 6):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=30, clips_per_flight=(3, 6), seed=2)
    clips = ds.read_table("clips")
    ids = clips.column("clip_id").to_pylist()
    flight = dict(zip(ids, clips.column("flight_id").to_pylist(), strict=True))
    pool = iter(random_sentences(5 * len(ids), seed=9))
    caps = {c: [next(pool) for _ in range(5)] for c in ids}
    rng = np.random.default_rng(4)
    shared: list[tuple[str, str]] = []  # clip pairs of different flights given one identical caption
    near: list[tuple[str, str]] = []  # ... given near-identical captions
    while len(shared) < n_shared or len(near) < n_near:
        a, b = rng.choice(len(ids), size=2, replace=False).tolist()
        ca, cb = ids[a], ids[b]
        if flight[ca] == flight[cb] or any(ca in p or cb in p for p in shared + near):
            continue
        if len(shared) < n_shared:
            caps[cb][0] = caps[ca][0].upper() + "."  # identical after normalisation
            shared.append((ca, cb))
        else:
            caps[cb][0] = typo(caps[ca][0])
            near.append((ca, cb))
    write_human_captions(ds, caps)
    return ds, caps, shared, near


def pair_key(a: str, b: str) -> str:
    order = ("train", "val", "test")
    x, y = sorted((a, b), key=order.index)
    return f"{x}-{y}"


def split_of(ds: Dataset) -> dict[str, str]:
    t = ds.read_table("splits")
    return dict(zip(t.column("clip_id").to_pylist(), t.column("split").to_pylist(), strict=True))


def test_split_glues_identical_human_captions_and_reports_planted_near_duplicates(tmp_path):
    ds, _caps, shared, near = planted_dataset(tmp_path)
    result = split_dataset(ds, SplitConfig(min_captions=5, tolerance=0.2))
    split = split_of(ds)
    assert all(split[a] == split[b] for a, b in shared), "glued clips straddle the split"
    text = result.report["leakage"]["text"]
    assert text["glue"]["texts_glued"] == len(shared) and text["glue"]["texts_over_cap"] == 0
    assert text["glue_recount"]["texts_straddling"] == 0
    assert all(p["identical"]["captions"] == 0 for p in text["pairs"].values())
    # near-identical captions do not glue: the report counts exactly the planted pairs that straddle
    expected = {"train-val": 0, "train-test": 0, "val-test": 0}
    for a, b in near:
        if split[a] != split[b]:
            expected[pair_key(split[a], split[b])] += 1
    assert {k: v["near"]["captions"] for k, v in text["pairs"].items()} == expected
    assert sum(expected.values()) > 0, "the seed should place some planted near pairs apart"
    # within each split: the glued pairs are the only shared texts
    within = sum(v["texts"] for v in text["shared_within"].values())
    assert within == len(shared)
    on_disk = json.loads(result.report_path.read_text())
    assert on_disk["leakage"]["text"]["glue_recount"]["texts_straddling"] == 0


def test_without_glue_identical_captions_are_counted_where_they_straddle(tmp_path):
    ds, _caps, shared, _near = planted_dataset(tmp_path, n_shared=10, n_near=0)
    result = split_dataset(ds, SplitConfig(min_captions=5, tolerance=0.2, caption_glue=False, seed=3))
    split = split_of(ds)
    expected = {"train-val": 0, "train-test": 0, "val-test": 0}
    for a, b in shared:
        if split[a] != split[b]:
            expected[pair_key(split[a], split[b])] += 1
    text = result.report["leakage"]["text"]
    assert sum(expected.values()) > 0
    assert {k: v["identical"]["texts"] for k, v in text["pairs"].items()} == expected
    assert text["glue"] is None and "glue_recount" not in text


def test_generated_template_captions_never_glue(tmp_path):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=20, clips_per_flight=4, seed=1)
    rows = ds.read_table("captions")
    assert set(rows.column("origin").to_pylist()) == {"simulated"}
    texts = [normalise(t) for t in rows.column("text").to_pylist()]
    assert len(set(texts)) < len(texts) / 5  # templates repeat: gluing them would merge nearly everything
    result = split_dataset(ds, SplitConfig(tolerance=0.2))
    text = result.report["leakage"]["text"]
    assert text["glue"]["texts_glued"] == 0 and text["glue"]["links"] == 0
    assert result.report["groups"]["links"]["near-duplicate:caption"] == 0
