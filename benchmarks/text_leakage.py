"""Text leakage at 100,000 clips x 5 captions: time of the counts (identical, near-identical, shared) and the glue.

    .venv/bin/python benchmarks/text_leakage.py [--clips 100000] [--near 2000] [--shared 2000]

The tables come from `dvtr_data.testing.tables.write_generated_dataset` (flights, clips, captions). Its captions
are templates (40 distinct texts), which would make the near-identical search trivial, so every caption is
replaced by a sentence of 6 to 14 words drawn (Zipf frequencies) from a 3,000-word random vocabulary in one of
five shared sentence frames (as human drone captions share "a ... seen from above"), and ``--shared`` identical
and ``--near`` near-identical (one character changed) captions are planted on clips of other flights. Clips get a
random 70/10/20 split by flight. The run times `text_leakage` (all three counts; MinHash LSH above 4,000 distinct
texts) and `glue_pairs`, and counts how many planted near pairs that straddle splits the LSH found.

Measured 2026-12-05 (100,000 clips, 498,014 distinct texts): `text_leakage` 40.7 s of CPU (one thread; 314 s of
wall time on a machine at load 16 on 2 cores), `glue_pairs` 12 s wall, planted straddling near pairs found 936 of
937, peak resident memory 1.8 GB for the whole script.
Other agents share the 2 cores of the machine this was written on: wall times are upper bounds of a quiet
machine's; the CPU time (one thread) is the figure to compare.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dvtr_data.splits.text_leakage import CaptionRow, glue_pairs, text_leakage  # noqa: E402
from dvtr_data.testing.tables import write_generated_dataset  # noqa: E402
from dvtr_data.text import normalise  # noqa: E402

FRAMES = ("{} seen from above", "an aerial view of {}", "a drone flies over {}", "{}", "{} on a sunny day")


def sentences(n: int, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = sorted({"".join(rng.choice(letters, size=int(rng.integers(2, 10)))) for _ in range(3000)})
    zipf = 1.0 / np.arange(1, len(vocab) + 1)  # word frequencies as in text: a few words are everywhere
    lengths = rng.integers(6, 15, size=n)
    words = rng.choice(np.array(vocab), size=int(lengths.sum()), p=zipf / zipf.sum())
    cuts = np.concatenate([[0], np.cumsum(lengths)])
    frames = rng.integers(0, len(FRAMES), size=n)
    return [
        FRAMES[f].format(" ".join(words[a:b].tolist()))
        for f, a, b in zip(frames.tolist(), cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)
    ]


def typo(text: str) -> str:
    k = len(text) // 2
    while text[k] == " ":
        k += 1
    return text[:k] + ("x" if text[k] != "x" else "y") + text[k + 1 :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--near", type=int, default=2000)
    ap.add_argument("--shared", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ds, _ = write_generated_dataset(
            Path(tmp) / "ds", n_flights=args.clips // 20, clips_per_flight=20, seed=0
        )
        caps = ds.read_table("captions")
        clip_of = caps.column("clip_id").to_pylist()
        flights = ds.read_table("clips")
        flight_of = dict(
            zip(flights.column("clip_id").to_pylist(), flights.column("flight_id").to_pylist(), strict=True)
        )
        print(
            f"generated {len(flight_of)} clips, {len(clip_of)} captions in {time.perf_counter() - t0:.1f} s"
        )
    texts = sentences(len(clip_of), rng)
    fids = sorted(set(flight_of.values()))
    chosen = rng.choice(["train", "val", "test"], p=[0.7, 0.1, 0.2], size=len(fids)).tolist()
    fsplit = dict(zip(fids, chosen, strict=True))
    split_of = {c: fsplit[f] for c, f in flight_of.items()}
    near_planted: list[tuple[int, int]] = []
    for kind, count in (("shared", args.shared), ("near", args.near)):
        for _ in range(count):
            a, b = rng.choice(len(texts), size=2, replace=False).tolist()
            if flight_of[clip_of[a]] == flight_of[clip_of[b]]:
                continue
            texts[b] = texts[a] if kind == "shared" else typo(texts[a])
            if kind == "near":
                near_planted.append((a, b))
    rows = [CaptionRow(c, t, "human") for c, t in zip(clip_of, texts, strict=True)]

    t1, c1 = time.perf_counter(), time.process_time()
    rep = text_leakage(rows, split_of)
    t_counts, c_counts = time.perf_counter() - t1, time.process_time() - c1
    t2 = time.perf_counter()
    ids = sorted(flight_of)
    (ii, _), info = glue_pairs(ids, rows)
    t_glue = time.perf_counter() - t2
    print(
        f"text_leakage: {t_counts:.1f} s wall, {c_counts:.1f} s CPU ({rep['near_method']}, "
        f"{rep['distinct_texts']} distinct texts, "
        f"{rep['near_text_pairs']} near pairs)"
    )
    print(f"glue_pairs: {t_glue:.1f} s ({info['links']} links, {info['texts_over_cap']} texts over the cap)")
    for k, v in rep["pairs"].items():
        print(f"  {k}: identical {v['identical']['captions']}, near {v['near']['captions']}")
    # recall on the planted near pairs that straddle (and stayed near: a later plant may overwrite one side)
    found = want = 0
    from rapidfuzz import fuzz

    pos_pairs = []
    for a, b in near_planted:
        ta, tb = normalise(texts[a]), normalise(texts[b])
        sa, sb = split_of[clip_of[a]], split_of[clip_of[b]]
        if sa != sb and ta != tb and fuzz.ratio(ta, tb) >= 90:
            pos_pairs.append((ta, tb))
    from dvtr_data.splits.text_leakage import near_pairs

    distinct = sorted({normalise(t) for t in texts})
    index = {t: i for i, t in enumerate(distinct)}
    t3 = time.perf_counter()
    pairs, method = near_pairs(distinct, 90.0, exact_max=0)
    got = {(i, j) for i, j, _ in pairs}
    for ta, tb in pos_pairs:
        want += 1
        i, j = sorted((index[ta], index[tb]))
        found += (i, j) in got
    print(
        f"near_pairs again ({method}): {time.perf_counter() - t3:.1f} s; planted straddling near pairs found "
        f"{found} of {want}"
    )


if __name__ == "__main__":
    main()
