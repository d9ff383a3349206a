"""Split and export at scale: a generated table of 100,000 clips with five captions each (no videos needed).

    .venv/bin/python benchmarks/export.py [--clips 100000] [--embed-dim 512] [--keep DIR]

Prints, per step, the wall time and the peak resident memory of a fresh process running only that step (so one
step's memory is not hidden by another's): `split` (with exact near-duplicate search over 512-d embeddings and the
independent leakage re-check), each export format, and reading the exported test split back. Two references are
measured in the same run, on the same data, to make the times meaningful on any machine:

- ``floor: all-pairs cosine``: one blocked matrix product over all embedding pairs with a threshold, the least
  work any exact near-duplicate search must do (`split` does it once, then the leakage check again across splits);
- ``reference: pandas join -> parquet``: the plain script a user would write (join captions to clips, aggregate to
  lists, ``to_parquet``), against `export --format parquet`.

Keyframes and clip files are stand-ins (hard links of one small file) so that `clip4clip` and `amfmn` place media
as they would for real; keyframe hashing is timed separately on distinct images, because identical stand-ins would
all be near-duplicates of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMATS = {"parquet": "none", "clip4clip": "link", "qvhighlights": "none", "amfmn": "link"}


def _rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss it does not carry the parent's over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(root: Path, clips: int, dim: int) -> dict:
    import numpy as np
    from PIL import Image

    from dvtr_data.testing.tables import write_generated_dataset

    per_flight = 50
    t0 = time.perf_counter()
    ds, truth = write_generated_dataset(
        root / "ds",
        n_flights=max(1, clips // per_flight),
        clips_per_flight=per_flight,
        n_sites=max(1, clips // 250),
        embed_dim=dim,
        dup_pairs=100,
        with_files=True,
        seed=0,
    )
    stand_ins: dict[str, Path] = {}  # one per flight: a file can have only so many hard links
    for row in ds.read_table("clips").select(["flight_id", "clip_path", "keyframe_paths"]).to_pylist():
        kf = ds.root / row["keyframe_paths"][0]
        kf.parent.mkdir(parents=True, exist_ok=True)
        if row["flight_id"] not in stand_ins:
            stand_ins[row["flight_id"]] = kf.parent / ".stand-in.jpg"
            Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(stand_ins[row["flight_id"]])
        os.link(stand_ins[row["flight_id"]], kf)
        os.link(stand_ins[row["flight_id"]], ds.root / row["clip_path"])
    return {"seconds": time.perf_counter() - t0, "dup_pairs": len(truth.dup_pairs)}


def step(name: str, root: Path) -> dict:
    """Run one step in this (fresh) process and measure it."""
    base = _rss_mb()
    from dvtr_data.dataset import Dataset

    ds = Dataset(root / "ds")
    info: dict = {}
    if name == "split":
        from dvtr_data.splits import SplitConfig, split_dataset

        t0 = time.perf_counter()
        r = split_dataset(ds, SplitConfig(max_hamming=-1))
        info = {
            "leaks": r.leaks,
            "groups": r.groups,
            "pairs_checked": r.report["leakage"]["embedding_pairs_checked"],
            "sizes": {k: v["clips"] for k, v in r.sizes.items()},
        }
    elif name == "floor":
        from dvtr_data.splits.neardup import load_clip_embeddings

        emb = load_clip_embeddings(ds)
        v = emb.vectors
        t0 = time.perf_counter()
        pairs = 0
        for a in range(0, len(v), 4096):
            for b in range(a, len(v), 4096):
                pairs += int((v[a : a + 4096] @ v[b : b + 4096].T >= 0.94).sum())
        info = {"pairs_at_threshold": pairs}
    elif name.startswith("export-"):
        from dvtr_data.export import export_dataset

        fmt = name.split("-", 1)[1]
        out = root / "exports" / fmt
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        r = export_dataset(ds, fmt, out, media=FORMATS[fmt])
        info = {"clips": sum(v["clips"] for v in r.counts.values()), "files": len(r.manifest["files"])}
    elif name == "reference-parquet":
        import pandas as pd

        t0 = time.perf_counter()
        clips = ds.read_table("clips").to_pandas()
        caps = ds.read_table("captions").to_pandas()
        splits = ds.read_table("splits").to_pandas()
        agg = caps.groupby("clip_id").agg(captions=("text", list), tokens=("tokens", list)).reset_index()
        joined = splits.merge(clips, on="clip_id").merge(agg, on="clip_id")
        out = root / "reference"
        out.mkdir(exist_ok=True)
        for split, part in joined.groupby("split"):
            part.to_parquet(out / f"{split}.parquet")
        info = {"rows": len(joined)}
    elif name == "read":
        import pandas as pd
        import pyarrow.parquet as pq

        path = root / "exports" / "parquet" / "test.parquet"
        t0 = time.perf_counter()
        t = pq.read_table(path)
        t_arrow = time.perf_counter() - t0
        df = pd.read_parquet(path)
        info = {"rows": t.num_rows, "captions": int(df["n_captions"].sum()), "pyarrow_s": round(t_arrow, 3)}
    elif name == "phash":
        import numpy as np
        from PIL import Image

        from dvtr_data.splits.neardup import keyframe_hashes

        folder = root / "phash"
        folder.mkdir(exist_ok=True)
        rng = np.random.default_rng(0)
        rel = []
        for k in range(2000):
            p = folder / f"{k}.jpg"
            Image.fromarray((rng.random((18, 32, 3)) * 255).astype(np.uint8)).resize((320, 180)).save(p)
            rel.append(
                str(p.relative_to(ds.root)) if p.is_relative_to(ds.root) else os.path.relpath(p, ds.root)
            )
        t0 = time.perf_counter()
        h = keyframe_hashes(ds, rel)
        info = {"keyframes": int((h != 0).sum())}
    else:
        raise SystemExit(f"unknown step {name}")
    seconds = time.perf_counter() - t0
    return {
        "step": name,
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(_rss_mb(), 1),
        "start_rss_mb": round(base, 1),
        **info,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=100_000)
    ap.add_argument("--embed-dim", type=int, default=512)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary folder)")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.prepare:
        print(json.dumps(prepare(args.root, args.clips, args.embed_dim)))
        return
    if args.step:
        print(json.dumps(step(args.step, args.root)))
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="dvtr-bench-export-"))
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"generating {args.clips} clips x 5 captions, {args.embed_dim}-d embeddings in {root} ...", flush=True
    )
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--prepare",
            "--root",
            str(root),
            "--clips",
            str(args.clips),
            "--embed-dim",
            str(args.embed_dim),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    prep = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  generated in {prep['seconds']:.1f} s ({prep['dup_pairs']} planted near-duplicate pairs)")
    steps = ["floor", "split", *(f"export-{f}" for f in FORMATS), "reference-parquet", "read", "phash"]
    results = {}
    for name in steps:
        proc = subprocess.run(
            [sys.executable, __file__, "--step", name, "--root", str(root)],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[name]
        extra = {k: v for k, v in r.items() if k not in ("step", "seconds", "peak_rss_mb", "start_rss_mb")}
        print(
            f"{name:20s} {r['seconds']:9.2f} s   peak RSS {r['peak_rss_mb']:8.1f} MB   {json.dumps(extra)}",
            flush=True,
        )
    if "split" in results and "floor" in results:
        print(f"split / all-pairs floor: {results['split']['seconds'] / results['floor']['seconds']:.2f}x")
    if "export-parquet" in results and "reference-parquet" in results:
        print(
            f"export parquet / pandas reference: "
            f"{results['export-parquet']['seconds'] / results['reference-parquet']['seconds']:.2f}x"
        )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
