"""Ingest throughput, as ratios against references measured in the same run on the same files.

    .venv/bin/python benchmarks/ingest.py [--preset bench] [--workers N] [--skip-scenedetect]

(a) `ingest --no-cut` time / one plain full decode of the same files (PyAV, threaded; the floor: shots, windows
    and QC share one decode pass).
(b) full `ingest` time / (plain decode + plain encode of the same clip spans with the same encoder settings).
(c) full `ingest` time / PySceneDetect's own CLI detecting and splitting the same files
    (`scenedetect -i FILE detect-adaptive split-video`, which needs ffmpeg: installed with apt when missing).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.ingest.cutting import EncoderSettings, output_size

ROOT = Path(__file__).resolve().parents[1]


def plain_decode(paths: list[Path]) -> int:
    frames = 0
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for _ in c.decode(s):
                frames += 1
    return frames


def plain_decode_encode(paths: list[Path], spans: dict[str, list[tuple[int, int]]], enc: EncoderSettings, out: Path) -> int:
    """Decode each file once and encode its clip spans, as the simplest correct script would."""
    written = 0
    for p in paths:
        wanted = sorted(spans.get(str(p), []))
        if not wanted:
            continue
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            fps = Fraction(s.average_rate)
            size = output_size(s.codec_context.width, s.codec_context.height, enc.max_height)
            k, oc, os_, n = 0, None, None, 0
            for i, frame in enumerate(c.decode(s)):
                if k >= len(wanted):
                    break
                a, b = wanted[k]
                if i < a:
                    continue
                if oc is None:
                    oc = av.open(str(out / f"{p.stem}_{a}.mp4"), "w")
                    os_ = oc.add_stream("libx264", rate=fps)
                    os_.width, os_.height = size
                    os_.pix_fmt = "yuv420p"
                    os_.options = {"crf": str(enc.crf), "preset": enc.preset}
                    n = 0
                f = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                f.pts, f.time_base = n, Fraction(1) / fps
                n += 1
                for pkt in os_.encode(f):
                    oc.mux(pkt)
                if i == b - 1:
                    for pkt in os_.encode(None):
                        oc.mux(pkt)
                    oc.close()
                    written += n
                    oc = None
                    k += 1
    return written


def ensure_ffmpeg() -> bool:
    if shutil.which("ffmpeg"):
        return True
    print("installing Debian's ffmpeg for PySceneDetect's split-video ...", flush=True)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "ffmpeg"], check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"could not install ffmpeg ({exc}); skipping (c)")
        return False
    return shutil.which("ffmpeg") is not None


def timed(fn, *args, **kw):
    t = time.perf_counter()
    result = fn(*args, **kw)
    return time.perf_counter() - t, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="bench", help="synth preset of the flights (bench: 1080p, 5+ minutes)")
    ap.add_argument("--flights", type=Path, help="use these videos instead of generated ones")
    ap.add_argument("--workers", type=int, default=None, help="ingest workers (default: CPU cores)")
    ap.add_argument("--skip-scenedetect", action="store_true")
    ap.add_argument("--cache", type=Path, default=ROOT / "bench-data")
    args = ap.parse_args()

    if args.flights:
        flights_dir = args.flights
    else:
        from dvtr_data.synth import generate

        flights_dir = args.cache / f"flights-{args.preset}"
        if not (flights_dir / ".complete").exists():
            print(f"generating the {args.preset} flights in {flights_dir} ...", flush=True)
            t, paths = timed(generate, flights_dir, preset=args.preset, seed=0)
            (flights_dir / ".complete").write_text("\n".join(p.name for p in paths))
            print(f"  generated in {t:.1f} s")
    paths = sorted(p for p in flights_dir.iterdir() if p.suffix.lower() == ".mp4")
    total_s = 0.0
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            total_s += float(s.frames / s.average_rate)
            res = f"{s.codec_context.width}x{s.codec_context.height}"
    print(f"{len(paths)} flights, {total_s / 60:.1f} min of video (e.g. {res}); workers={args.workers or 'auto'}")

    work = Path(tempfile.mkdtemp(prefix="dvtr-bench-"))
    try:
        t_decode, n = timed(plain_decode, paths)
        print(f"plain decode:                 {t_decode:7.2f} s  ({n / t_decode:.0f} frames/s)")
        cfg_nocut = IngestConfig(cut=False)
        t_nocut, rep = timed(ingest, paths, work / "nocut", cfg_nocut, workers=args.workers)
        assert rep.ok, rep.errors
        print(f"ingest --no-cut:              {t_nocut:7.2f} s")

        cfg = IngestConfig()
        t_full, rep = timed(ingest, paths, work / "full", cfg, workers=args.workers)
        assert rep.ok, rep.errors
        clips = Dataset(work / "full").read_table("clips").to_pylist()
        flights = {f["flight_id"]: f["source_path"] for f in Dataset(work / "full").read_table("flights").to_pylist()}
        spans: dict[str, list[tuple[int, int]]] = {}
        for c in clips:
            if c["clip_path"]:
                spans.setdefault(flights[c["flight_id"]], []).append((c["start_frame"], c["end_frame"]))
        print(f"ingest (full):                {t_full:7.2f} s  ({len(clips)} clips, {sum(map(len, spans.values()))} files)")
        (work / "plain").mkdir()
        t_de, _ = timed(plain_decode_encode, paths, spans, cfg.encoder, work / "plain")
        print(f"plain decode + encode spans:  {t_de:7.2f} s")

        print()
        print(f"(a) ingest --no-cut / plain decode          = {t_nocut / t_decode:.2f}  (aim <= 1.5)")
        print(f"(b) ingest / (plain decode + encode spans)  = {t_full / t_de:.2f}  (aim <= 1.3)")
        if not args.skip_scenedetect and ensure_ffmpeg():
            exe = Path(sys.executable).with_name("scenedetect")
            (work / "sd").mkdir()
            t0 = time.perf_counter()
            for p in paths:
                subprocess.run(
                    [str(exe), "-q", "-i", str(p), "-o", str(work / "sd"), "detect-adaptive", "split-video"],
                    check=True, capture_output=True,
                )
            t_sd = time.perf_counter() - t0
            print(f"    scenedetect CLI detect-adaptive split-video: {t_sd:.2f} s")
            print(f"(c) ingest / scenedetect CLI                = {t_full / t_sd:.2f}  (aim well below 1)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
