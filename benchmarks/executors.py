"""The worker engine, as ratios measured in one run on the same files and cores.

    .venv/bin/python benchmarks/executors.py [--flights 12] [--seconds 30] [--clips 192] [--model ViT-S-32-alt]
                                             [--rounds 2] [--skip-ray] [--skip-scaling]

(a) Ray against local, the same stage on the same files with the same number of cores (2 by default):
    ``ingest`` of generated flights with ``--executor ray`` / ``--workers 2``, and ``precaption`` (open_clip
    ``--model`` with random weights, in the driver; clips decoded by Ray tasks / by local workers). Aim: at most
    1.15. The local Ray cluster's start is timed apart (a cluster is started once and serves many runs).
(b) Distribution: the same stage with 1 and then 2 workers, each worker pinned to its own core and its decoders to
    one thread, so the figure measures the engine and not threading: efficiency = t(1) / (2 t(2)), aim at least
    0.85. Stages: ingest (flights of equal length) and precaption's decoding (clips of equal length).

The defaults are sized so that a run's fixed costs (worker processes and the model actor starting, 1 to 4 s)
weigh about as little as on real footage: with the first defaults (8 flights of 6 s, 48 clips) they were a
quarter of every figure, and the ratios measured start-up, not the engine.

Items are made equal on purpose (flights of the same length and size, textures from different seeds, so no two
are duplicates): with unequal items the last one's tail would be measured, not the engine.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PARTS: dict[str, list[float]] = {}  # precaption's clip-embedding seconds per executor
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ----------------------------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------------------------
def write_flight(path: Path, seed: int, seconds: float, size: tuple[int, int] = (640, 360), fps: int = 30,
                 cut_every: float = 2.0) -> Path:
    """A textured pan with a hard cut every ``cut_every`` seconds: shots, windows and clip files to make."""
    rng = np.random.default_rng(seed)
    width, height = size
    n = round(seconds * fps)
    scenes = [rng.integers(0, 255, (height // 8, (width + n * 2) // 8, 3), dtype=np.uint8)
              for _ in range(int(seconds / cut_every) + 1)]
    scenes = [np.kron(s, np.ones((8, 8, 1), np.uint8)) for s in scenes]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(n):
            scene = scenes[int(i / fps / cut_every)]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scene[:height, 2 * i:2 * i + width]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_clips_dataset(root: Path, n: int, seconds: float = 2.0):
    """A dataset of ``n`` equal clips with files (what precaption reads), without running ingest."""
    from dvtr_data.dataset import Dataset
    from dvtr_data.schemas.records import ClipRow

    ds = Dataset(root).create()
    rows = []
    frames = round(seconds * 30)
    for i in range(n):
        cid = f"f0000000000000001-{i * frames:07d}-{(i + 1) * frames:07d}"
        rel = f"clips/f0000000000000001/{cid}.mp4"
        (ds.root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_flight(ds.root / rel, 1000 + i, seconds, cut_every=seconds * 2)
        rows.append(ClipRow(writer="ingest", clip_id=cid, flight_id="f0000000000000001", status="ok", shot_index=0,
                            window_index=i, start_frame=i * frames, end_frame=(i + 1) * frames, start_s=i * seconds,
                            end_s=(i + 1) * seconds, duration_s=seconds, fps=30.0, width=640, height=360,
                            n_frames=frames, clip_path=rel, keyframe_paths=[], qc_verdict="pass",
                            qc_reasons=[]).as_dict())
    ds.write_table("clips", rows)
    return ds


# ----------------------------------------------------------------------------------------------------------------
# pinning: each worker process claims its own core on its first item
# ----------------------------------------------------------------------------------------------------------------
def claim_core(slots: str) -> None:
    """Pin this process (and the decoder threads it starts later) to the first core no other worker claimed."""
    if getattr(claim_core, "done", False):
        return
    cores = sorted(os.sched_getaffinity(0))
    for k, core in enumerate(cores):
        try:
            os.close(os.open(os.path.join(slots, f"core-{k}"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        os.sched_setaffinity(0, {core})
        break
    claim_core.done = True  # type: ignore[attr-defined]


def pinned_stage(slots: str, fn, item, heartbeat):
    claim_core(slots)
    return fn(item, heartbeat)


def pinned_sample(slots: str, job, geometry):
    from dvtr_data.precaption.sampling import sample_frames

    claim_core(slots)
    return sample_frames(job, geometry)


class PinnedExecutor:
    """Local workers, one thread each, each pinned to its own core (a fresh slot folder per run)."""

    def __init__(self, workers: int, slots: Path) -> None:
        from dvtr_data.engine.local import ProcessExecutor

        self.inner = ProcessExecutor(workers=workers, stall_timeout=600, env=ONE_THREAD)
        self.slots = str(slots)

    def run(self, fn, items, on_progress=None):
        import executors  # this module by name, so that workers can import the wrapper

        return self.inner.run(functools.partial(executors.pinned_stage, self.slots, fn), items, on_progress)


# ----------------------------------------------------------------------------------------------------------------
def timed(fn, *args, **kw) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - t, result


def ingest_once(flights: Path, out: Path, executor) -> float:
    from dvtr_data.ingest import ingest

    seconds, report = timed(ingest, [flights], out, executor=executor)
    if report.flights_failed or not report.flights_done:  # type: ignore[attr-defined]
        raise SystemExit(f"ingest failed: {report.errors}")  # type: ignore[attr-defined]
    return seconds


def precaption_once(src: Path, out: Path, model: str, **config) -> float:
    """One precaption run in a fresh process, timed from its start to its exit, as a user runs the command: the
    local run imports torch and open_clip in its driver as the Ray run does in its model actor (a run inside this
    already-warm process would hand the local executor those seconds). A Ray run joins this process's cluster."""
    import json
    import shutil
    import subprocess

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    if config.get("executor") == "ray":
        import ray

        config["ray_address"] = ray.get_runtime_context().gcs_address
    job = json.dumps({"out": str(out), "model": model, "config": config})
    t = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--precaption-child", job], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if done.returncode:
        raise SystemExit(f"precaption failed: {done.stderr[-2000:]}")
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"    model load {parts['model_load']:.1f} s (on Ray: the actor's start), clips {parts['clip_embed']:.1f} s",
          flush=True)
    PARTS.setdefault(str(config.get("executor", "local")), []).append(parts["clip_embed"])
    return seconds


def precaption_child(job: str) -> None:
    import json

    from dvtr_data.precaption.encoder import ModelSpec
    from dvtr_data.precaption.stage import PrecaptionConfig, precaption

    spec = json.loads(job)
    cfg = PrecaptionConfig(model=ModelSpec(spec["model"], "none", device="cpu"), top_tags=0, force=True, **spec["config"])
    report = precaption(Path(spec["out"]), cfg)
    if not report.ok:  # type: ignore[attr-defined]
        raise SystemExit(f"precaption failed: {report.errors}")  # type: ignore[attr-defined]
    print(json.dumps(report.seconds), flush=True)  # type: ignore[attr-defined]


def decode_once(ds, workers: int, slots: Path, repeat: int) -> float:
    import executors

    from dvtr_data.engine.local import ProcessExecutor
    from dvtr_data.precaption.sampling import FrameGeometry, SampleJob, decode_clips

    clips = ds.read_table("clips").to_pylist()
    jobs = [SampleJob(k * len(clips) + i, str(ds.root / c["clip_path"]), 8, n_frames=c["n_frames"],
                      width=c["width"], height=c["height"], threads=1)
            for k in range(repeat) for i, c in enumerate(clips)]
    ex = ProcessExecutor(workers=workers, stall_timeout=600, env=ONE_THREAD)
    sample = functools.partial(executors.pinned_sample, str(slots))
    t = time.perf_counter()
    bad = [r.error for r in decode_clips(jobs, FrameGeometry((224, 224)), ex, sample_fn=sample) if r.error]
    if bad:
        raise SystemExit(f"decode failed: {bad[0]}")
    return time.perf_counter() - t


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--precaption-child":
        precaption_child(sys.argv[2])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flights", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each generated flight")
    ap.add_argument("--clips", type=int, default=192, help="clips for precaption and its decoding")
    ap.add_argument("--model", default="ViT-S-32-alt")
    ap.add_argument("--decode-repeat", type=int, default=4, help="(b): each clip decoded this many times")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="measure each this many times, interleaved; keep the best")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-precaption", action="store_true", help="(a) for ingest only")
    ap.add_argument("--skip-ingest", action="store_true", help="(a) for precaption only")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import executors` in main and in workers

    from dvtr_data.engine.local import ProcessExecutor

    usable = len(os.sched_getaffinity(0))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores ({usable} usable), load "
          f"{os.getloadavg()[0]:.1f} (a shared machine: other work runs beside this)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        flights = root / "flights"
        flights.mkdir()
        t, _ = timed(lambda: [write_flight(flights / f"flight_{i:02d}.mp4", i, args.seconds)
                              for i in range(args.flights)])
        ds_clips = make_clips_dataset(root / "clips-src", args.clips)
        print(f"{args.flights} flights of {args.seconds:g} s and {args.clips} clips of 2 s, 640x360, made in "
              f"{t:.1f} s", flush=True)
        if not args.skip_ray and not args.skip_precaption:  # the bank's text embeddings, cached in the source dataset: not what is measured
            from dvtr_data.precaption.encoder import ModelSpec
            from dvtr_data.precaption.stage import PrecaptionConfig, precaption

            t, _ = timed(precaption, ds_clips.root, PrecaptionConfig(model=ModelSpec(args.model, "none", device="cpu"),
                                                                     top_tags=0, workers=args.cores))
            print(f"warm-up precaption (bank embeddings cached): {t:.1f} s", flush=True)
        best: dict[str, float] = {}

        def keep(name: str, seconds: float) -> None:
            best[name] = min(best.get(name, float("inf")), seconds)
            print(f"  {name:<28} {seconds:7.1f} s", flush=True)

        run = 0
        for _ in range(args.rounds):
            if not args.skip_ray:
                from dvtr_data.engine.ray import RayExecutor, ensure_ray

                if "ray start" not in best:
                    keep("ray start", timed(ensure_ray, None, num_cpus=args.cores)[0])
                run += 1
                if not args.skip_ingest:
                    keep("ingest local", ingest_once(flights, root / f"ds-{run}-local",
                                                     ProcessExecutor(workers=args.cores)))
                    keep("ingest ray", ingest_once(flights, root / f"ds-{run}-ray",
                                                   RayExecutor(max_in_flight=2 * args.cores)))
                if not args.skip_precaption:
                    keep("precaption local", precaption_once(ds_clips.root, root / "pc-local", args.model,
                                                             workers=args.cores))
                    keep("precaption ray", precaption_once(ds_clips.root, root / "pc-ray", args.model,
                                                           workers=2 * args.cores, executor="ray"))
            if not args.skip_scaling:
                for workers in (1, 2):
                    run += 1
                    slots = root / f"slots-{run}"
                    slots.mkdir()
                    keep(f"ingest {workers} pinned", ingest_once(flights, root / f"ds-{run}-pinned",
                                                                 PinnedExecutor(workers, slots)))
                    slots = root / f"slots-{run}-decode"
                    slots.mkdir()
                    keep(f"decode {workers} pinned", decode_once(ds_clips, workers, slots, args.decode_repeat))

        print("\nratios (best of each, measured in this run):")
        if not args.skip_ray and not args.skip_ingest:
            print(f"  (a) ingest     ray / local   {best['ingest ray'] / best['ingest local']:.2f}   (aim <= 1.15)")
            print(f"      (Ray cluster start {best['ray start']:.1f} s, not included)")
        if not args.skip_ray and not args.skip_precaption:
            print(f"  (a) precaption ray / local   {best['precaption ray'] / best['precaption local']:.2f}   "
                  "(aim <= 1.15)")
            print(f"      of which embedding the clips: ray / local   {min(PARTS['ray']) / min(PARTS['local']):.2f}   "
                  "(the model actor's start left out)")
        if not args.skip_scaling:
            for stage in ("ingest", "decode"):
                eff = best[f"{stage} 1 pinned"] / (2 * best[f"{stage} 2 pinned"])
                print(f"  (b) {stage:<10} efficiency 1 -> 2 workers   {eff:.2f}   (aim >= 0.85)")


if __name__ == "__main__":
    main()
