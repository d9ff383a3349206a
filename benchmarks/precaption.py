"""Precaption throughput, as ratios against references measured in the same run on the same clips.

    .venv/bin/python benchmarks/precaption.py [--clips 96] [--size 1280x720] [--models ViT-S-32-alt,ViT-B-32]
                                              [--device cpu] [--batch-size 64] [--workers N]

For each model (random weights: speed does not depend on them), on the same generated clips:

    stage      the whole `precaption` call: model load, decode workers, embedding, retrieval from the built-in
               bank (its text embeddings cached, as on every run after a bank's first), tags, table writes;
    decode     sampling the same frames alone: the same worker engine (decord in worker processes), nothing else;
    model      the bare image encoder on the pre-decoded, pre-normalised tensors at the same batch size.

Printed: stage / (decode + model), the floor on a CPU where both use every core (aim: at most 1.1), and
stage / max(decode, model), the floor where the model runs on a GPU beside CPU decoding. With ``--rounds N`` the
three are measured N times, interleaved, and the best of each is used. The first (cold) bank embedding is timed
and printed on its own.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import av
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dvtr_data.dataset import Dataset
from dvtr_data.precaption.bank import builtin_bank, cached_text_embeddings
from dvtr_data.precaption.embed import EmbedSettings
from dvtr_data.precaption.encoder import ModelSpec, load_encoder
from dvtr_data.precaption.sampling import (
    SampleJob,
    decode_clips,
    decode_executor,
    default_workers,
    prefetch_for,
)
from dvtr_data.precaption.stage import PrecaptionConfig, bank_cache_dir, precaption
from dvtr_data.precaption.tags import load_class_list
from dvtr_data.schemas.records import ClipRow

FPS = 30


def write_clip(path: Path, seed: int, width: int, height: int, frames: int) -> None:
    """A drone-like pass over a blocky seeded landscape, encoded like ingest's clip files (libx264 veryfast)."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(40, 220, ((height + frames) // 16 + 2, (width + 2 * frames) // 16 + 2, 3), dtype=np.uint8)
    world = np.repeat(np.repeat(cells, 16, axis=0), 16, axis=1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for i in range(frames):
            img = np.ascontiguousarray(world[i // 2:i // 2 + height, 2 * i:2 * i + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_dataset(root: Path, n: int, width: int, height: int, frames: int) -> Dataset:
    ds = Dataset(root).create()
    rows = []
    folder = ds.root / "clips" / "f0000000000000001"
    folder.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max(1, (os.cpu_count() or 2))) as pool:
        futures = []
        for i in range(n):
            cid = f"f0000000000000001-{i * frames:07d}-{(i + 1) * frames:07d}"
            futures.append(pool.submit(write_clip, folder / f"{cid}.mp4", i, width, height, frames))
            row = ClipRow(writer="ingest", clip_id=cid, flight_id="f0000000000000001", status="ok", shot_index=0, window_index=i,
                       start_frame=i * frames, end_frame=(i + 1) * frames, start_s=i * frames / FPS,
                       end_s=(i + 1) * frames / FPS, duration_s=frames / FPS, fps=float(FPS), width=width,
                       height=height, n_frames=frames, clip_path=f"clips/f0000000000000001/{cid}.mp4",
                       keyframe_paths=[], qc_verdict="pass", qc_reasons=[]).as_dict()
            rows.append(row)
        for f in futures:
            f.result()
    ds.write_table("clips", rows)
    return ds


def time_decode(ds: Dataset, encoder, settings: EmbedSettings, workers: int) -> tuple[float, list[np.ndarray]]:
    clips = ds.read_table("clips").to_pylist()
    jobs = [SampleJob(i, str(ds.root / c["clip_path"]), settings.frames, n_frames=c["n_frames"], width=c["width"],
                      height=c["height"]) for i, c in enumerate(clips)]
    frames: list[np.ndarray | None] = [None] * len(jobs)
    start = time.perf_counter()
    executor = decode_executor(workers, settings.decode_timeout,
                               prefetch_for(settings.batch_size, settings.frames, workers))
    for res in decode_clips(jobs, encoder.geometry, executor):
        if res.error:
            raise SystemExit(f"decode failed: {res.error}")
        frames[res.key] = res.frames
    return time.perf_counter() - start, frames  # type: ignore[return-value]


def time_model(encoder, frames: list[np.ndarray], batch_size: int) -> float:
    import torch

    allf = np.concatenate(frames)
    with torch.inference_mode():
        batches = [encoder.frames_to_input(allf[i:i + batch_size]) for i in range(0, len(allf), batch_size)]
    encoder.encode_input(batches[0][:2])  # first-call setup is not the model's speed
    if encoder.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x in batches:
        encoder.encode_input(x)  # returns numpy: synchronises with the device
    return time.perf_counter() - start


def run_model(ds: Dataset, arch: str, args: argparse.Namespace) -> dict[str, float]:
    spec = ModelSpec(arch, None, device=args.device, precision=args.precision)
    encoder = load_encoder(spec)
    device = str(encoder.device)
    workers = args.workers or default_workers(device)
    settings = EmbedSettings(args.frames, args.batch_size, workers)

    # the bank's first embedding (then cached, as on every later run), and the tag prompts
    bank, classes = builtin_bank(), load_class_list("era")
    t = time.perf_counter()
    _, cached = cached_text_embeddings(bank.texts, bank.digest, encoder, bank_cache_dir(ds))
    cold_bank = time.perf_counter() - t
    cached_text_embeddings([p for _, p in classes.prompt_texts()], classes.digest, encoder, bank_cache_dir(ds))

    overlap = args.overlap == "on"
    config = PrecaptionConfig(model=spec, frames=args.frames, batch_size=args.batch_size, workers=workers,
                              overlap=overlap, force=True)
    times: dict[str, list[float]] = {"decode": [], "model": [], "stage": []}
    for _ in range(args.rounds):  # interleaved, so a slow spell of a shared machine hits all three alike
        decode_s, frames = time_decode(ds, encoder, settings, workers)
        times["decode"].append(decode_s)
        times["model"].append(time_model(encoder, frames, args.batch_size))
        del frames
        t = time.perf_counter()
        report = precaption(ds.root, config)
        times["stage"].append(time.perf_counter() - t)
        if not report.ok or not report.bank_cached:
            raise SystemExit(f"stage run not as expected: {report}")
    best = {k: min(v) for k, v in times.items()}
    return {**best, "all": times, "cold_bank": cold_bank if not cached else 0.0, "clips": report.clips_embedded,
            "workers": workers, "device": device, "stage_parts": report.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--size", default="1280x720", help="clip size, WxH (ingest's default cap is 720 lines)")
    ap.add_argument("--seconds", type=float, default=5.0, help="clip length")
    ap.add_argument("--models", default="ViT-S-32-alt,ViT-B-32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--overlap", choices=("on", "off"), default="on", help="decode while the model runs")
    ap.add_argument("--reuse", action="store_true", help="with --keep: use the clips already there")
    ap.add_argument("--rounds", type=int, default=1, help="measure each of the three this many times; print the best")
    ap.add_argument("--keep", type=Path, default=None, help="write the dataset here (default: a temporary folder)")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    frames = round(args.seconds * FPS)

    import torch

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {os.cpu_count()} cores "
          f"({len(os.sched_getaffinity(0))} usable), torch threads {torch.get_num_threads()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "ds"
        t = time.perf_counter()
        if args.reuse and args.keep and Dataset(root).has_table("clips"):
            ds = Dataset(root)
            print(f"reusing the clips in {root}", flush=True)
        else:
            ds = make_dataset(root, args.clips, width, height, frames)
        print(f"{ds.read_table('clips').num_rows} clips of {width}x{height}, {frames} frames, ready in "
              f"{time.perf_counter() - t:.1f} s; overlap {args.overlap}", flush=True)
        print(f"{'model':<14} {'device':<6} {'clips':>5} {'stage s':>8} {'decode s':>9} {'model s':>8} "
              f"{'stage/(dec+model)':>18} {'stage/max':>10} {'cold bank s':>11}")
        for arch in [m.strip() for m in args.models.split(",") if m.strip()]:
            r = run_model(ds, arch, args)
            ratio_sum = r["stage"] / (r["decode"] + r["model"])
            ratio_max = r["stage"] / max(r["decode"], r["model"])
            print(f"{arch:<14} {r['device']:<6} {r['clips']:>5} {r['stage']:>8.1f} {r['decode']:>9.1f} "
                  f"{r['model']:>8.1f} {ratio_sum:>18.2f} {ratio_max:>10.2f} {r['cold_bank']:>11.1f}", flush=True)
            parts = ", ".join(f"{k} {v:.1f}" for k, v in r["stage_parts"].items())
            every = "; ".join(f"{k} " + "/".join(f"{x:.1f}" for x in v) for k, v in r["all"].items())
            print(f"    last stage run (s): {parts}; decode workers {r['workers']}; every round (s): {every}", flush=True)


if __name__ == "__main__":
    main()
