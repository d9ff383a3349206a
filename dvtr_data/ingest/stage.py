"""`ingest`: raw flights -> ``flights.parquet``, ``clips.parquet`` and frame-exact clip files.

Per flight (in a worker process, `ingest_flight`): hash, probe, one decode pass for shots and QC signals
(`scan.py`), windows (`windows.py`), QC verdicts (`qc.py`), telemetry summaries, then one more decode pass that
re-encodes the windows (`cutting.py`). The worker returns rows; it shares nothing with the parent.

In the parent (`ingest`): discovery, resume, the executor, and the commit protocol that makes a killed run safe:
each finished flight is committed as a part file under ``.work/ingest/`` (clips part first, flight part last,
each written atomically), and the dataset tables are rebuilt from all parts. A flight whose part exists with the
same file (path, size, mtime) and the same settings is skipped on the next run; anything else is redone, and a
redone flight overwrites its own clip files (ids are deterministic) and removes files it no longer produces.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dvtr_data import __version__
from dvtr_data.dataset import Dataset, atomic_write_bytes, write_parquet
from dvtr_data.engine import Executor, Outcome, make_executor
from dvtr_data.errors import DatasetError, InputError, UsageError
from dvtr_data.hashing import sha256_file
from dvtr_data.ingest.cutting import ClipSpec, EncoderSettings, cut_clips, output_size, remove_stale_files
from dvtr_data.ingest.discover import FlightSource, discover
from dvtr_data.ingest.probe import probe_video
from dvtr_data.ingest.qc import QcThresholds, assess
from dvtr_data.ingest.scan import scan_flight
from dvtr_data.ingest.shots import DETECTORS, shots_from_boundaries
from dvtr_data.ingest.transitions import TransitionRule
from dvtr_data.ingest.windows import WindowRule, find_gaps, make_windows, typical_rate
from dvtr_data.lineage import record_lineage
from dvtr_data.reporting import Reporter, Sink, as_reporter
from dvtr_data.runlog import RunLog
from dvtr_data.schemas import validate
from dvtr_data.schemas.records import ClipRow, FlightRow
from dvtr_data.telemetry import (
    TelemetryLimits,
    TelemetrySummary,
    detect_events,
    match_sidecar,
    parse_srt,
    read_embedded,
    summarize_clips,
)

PARTS_DIR = "ingest"
STALL_TIMEOUT = 120.0  # seconds a flight's worker may go without progress before it counts as hung
WRITER = "ingest"  # the writer of this stage's clip rows (clips.parquet is shared with `import`)


@dataclass(frozen=True)
class IngestConfig:
    """Every setting of the ingest stage; its hash decides whether an ingested flight is up to date."""

    detector: str = "adaptive"
    min_shot_s: float = 0.6
    window: WindowRule = field(default_factory=WindowRule)
    split_at_events: bool = False
    qc: QcThresholds = field(default_factory=QcThresholds)
    cut: bool = True
    cut_rejected: bool = False
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    transitions: TransitionRule = field(default_factory=TransitionRule)  # fades and dissolves are boundaries
    telemetry: TelemetryLimits = field(default_factory=TelemetryLimits)  # plausibility and sidecar tolerance
    trust_sidecar: bool = False  # attach a sidecar's values even when it does not match its video

    def check(self) -> None:
        if self.detector not in DETECTORS:
            raise UsageError(f"unknown shot detector {self.detector!r}; choose from {', '.join(DETECTORS)}")
        self.window.check()
        self.transitions.check()
        self.qc.check()
        self.encoder.check()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def settings_hash(self) -> str:
        blob = json.dumps({"config": self.as_dict(), "schema": "clips/1"}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class FlightMeta:
    """What the user says about the flights of a run; not a processing setting, so changing it re-ingests nothing."""

    licence: str | None = None
    owner: str | None = None
    location_private: bool = False

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        row.update(licence=self.licence, owner=self.owner, location_private=self.location_private)
        return row

    def differs(self, row: dict[str, Any]) -> bool:
        return (row.get("licence"), row.get("owner"), bool(row.get("location_private"))) != (
            self.licence, self.owner, self.location_private)


@dataclass(frozen=True)
class FlightJob:
    """One unit of work: everything a worker needs, picklable."""

    video: str
    sidecar: str | None
    dataset_root: str
    config: IngestConfig
    size_bytes: int
    mtime_ns: int


@dataclass
class IngestReport:
    flights_total: int = 0
    flights_done: int = 0
    flights_skipped: int = 0
    flights_failed: int = 0
    duplicates: int = 0
    clips_new: int = 0
    clips_moved: int = 0  # earlier clips whose boundaries moved: their captions follow (clip_lineage)
    captions_orphaned: int = 0  # captions whose clip is gone with no clip covering its span
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # every failure: input problems and failed flights
    input_problems: list[str] = field(default_factory=list)  # inputs that were not videos or did not exist
    log_path: Path | None = None
    dataset: Path | None = None

    @property
    def ok(self) -> bool:
        return self.flights_failed == 0 and not self.errors


# --------------------------------------------------------------------------------------------------------------
# the stage function (runs in a worker)
# --------------------------------------------------------------------------------------------------------------
def flight_id_from_hash(content_hash: str) -> str:
    return "f" + content_hash[:16]


def clip_id_of(flight_id: str, start: int, end: int) -> str:
    return f"{flight_id}-{start:07d}-{end:07d}"


def _now() -> datetime:
    return datetime.now(UTC)


def _flight_row(job: FlightJob, **values: Any) -> dict[str, Any]:
    path = Path(job.video)
    base: dict[str, Any] = dict(
        flight_id="",
        status="ok",
        warnings=[],
        source_path=str(path),
        file_name=path.name,
        size_bytes=job.size_bytes,
        mtime_ns=job.mtime_ns,
        telemetry_path=job.sidecar,
        settings_hash=job.config.settings_hash(),
        ingested_at=_now(),
        location_private=False,
    )
    return FlightRow(**{**base, **values}).as_dict()



def _load_telemetry(sidecar: str | None, fps: float, warnings: list[str], *, video: Path, duration_s: float,
                    n_frames: int, cfg: IngestConfig, beat: Callable[[], None] | None = None):
    """The flight's telemetry: the sidecar when it belongs to the video, else what the video embeds.

    A sidecar whose duration, start or frame count does not match the video within the tolerance of
    ``cfg.telemetry`` (`match_sidecar`) is a flight warning of one line, and its values are left out unless
    ``cfg.trust_sidecar``. Without a sidecar, GoPro GPMF telemetry in the file itself is read
    (`read_embedded`); a DJI embedded track is noted, not read.
    """
    if not sidecar:
        return _embedded_telemetry(video, warnings)
    name = Path(sidecar).name
    try:
        # beats while parsing: a huge sidecar takes a while, and that is no stalled decoder (issue 11, item 8)
        tel = parse_srt(Path(sidecar), fps=fps, progress=(lambda _d, _t: beat()) if beat else None)
    except Exception as exc:  # a malformed sidecar is a warning on the flight, never a failure
        warnings.append(f"sidecar {name}: unreadable ({' '.join(str(exc).split())[:160]})")
        return None
    for w in tel.warnings[:5]:
        warnings.append(f"sidecar {name}: {w}")
    if not tel.cues:
        warnings.append(f"sidecar {name}: no telemetry cues found")
        return None
    match = match_sidecar(tel, duration_s, n_frames=n_frames, fps=fps, name=name, limits=cfg.telemetry)
    if match.verdict == "mismatch":
        if not cfg.trust_sidecar:
            warnings.append(match.message)
            return None
        warnings.append(f"sidecar {name} does not match its video: {'; '.join(match.problems)} (tolerance "
                        f"{match.tolerance_s:.1f} s); attached anyway, as --trust-sidecar asks")
    return tel


def _embedded_telemetry(video: Path, warnings: list[str]):
    try:
        found = read_embedded(video)
    except Exception as exc:  # embedded telemetry is a bonus: never fail the flight for it
        warnings.append(f"embedded telemetry unreadable ({' '.join(str(exc).split())[:160]})")
        return None
    warnings.extend(f"embedded telemetry: {note}" for note in found.notes[:5])
    tel = found.telemetry
    if tel is None or not tel.cues:
        return None
    return tel


KEEP_ALIVE_S = 1.0  # seconds between the heartbeats `keep_alive` sends


@contextmanager
def keep_alive(beat: Callable[[], None] | None) -> Iterator[Callable[[], None] | None]:
    """Heartbeats every `KEEP_ALIVE_S` from a helper thread while the block runs; yields the beat, locked.

    The stall watchdog is there for hung decoders. Telemetry work (parsing a sidecar of hundreds of MB, its
    plausibility check over millions of cues) reads no video and always ends, yet it can outlast a short
    ``--stall-timeout``: a 565 MB sidecar failed its flight as "hung decoder" (issue 11, item 8). Its time is
    taken out of the stall clock this way. The lock keeps the helper and the block (``progress`` of
    `parse_srt`) from sending on the worker's pipe at the same time.
    """
    if beat is None:
        yield None
        return
    lock = threading.Lock()
    stop = threading.Event()

    def locked() -> None:
        with lock:
            beat()

    def run() -> None:
        while not stop.wait(KEEP_ALIVE_S):
            locked()

    helper = threading.Thread(target=run, name="telemetry-keep-alive", daemon=True)
    helper.start()
    try:
        yield locked
    finally:
        stop.set()
        helper.join()


def error_flight_id(path: str | Path) -> str:
    """Failed flights are keyed by path, not content: two broken files with the same bytes are two errors."""
    return "e" + hashlib.sha256(str(path).encode()).hexdigest()[:16]


def ingest_flight(job: FlightJob, heartbeat: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Stage function: one flight in, ``{"flight": row, "clips": [rows]}`` out. Errors become the row's status."""
    result = _ingest_flight(job, heartbeat)
    if result["flight"]["status"] != "ok":
        result["flight"]["flight_id"] = error_flight_id(job.video)
        result["clips"] = []
    return result


def _ingest_flight(job: FlightJob, heartbeat: Callable[[int, int], None] | None) -> dict[str, Any]:
    cfg = job.config
    path = Path(job.video)
    warnings: list[str] = []
    try:
        content_hash = sha256_file(path)
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc)
        return {"flight": _flight_row(job, flight_id=error_flight_id(path), status="error", error=f"{path}: cannot read the file ({reason})"), "clips": []}
    flight_id = flight_id_from_hash(content_hash)
    try:
        probe = probe_video(path)
    except InputError as exc:
        return {"flight": _flight_row(job, flight_id=flight_id, content_hash=content_hash, status="error", error=str(exc)), "clips": []}

    base = dict(
        flight_id=flight_id,
        content_hash=content_hash,
        duration_s=probe.duration_s,
        n_frames=probe.n_frames,
        fps=probe.fps,
        fps_variable=probe.fps_variable,
        width=probe.width,
        height=probe.height,
        rotation=probe.rotation,
        codec=probe.codec,
        pix_fmt=probe.pix_fmt,
        bit_rate=probe.bit_rate,
        has_audio=probe.has_audio,
        recorded_at=_parse_time(probe.creation_time),
        platform=probe.platform,
    )
    if probe.fps_variable:
        warnings.append("variable frame rate: clip times follow the source timestamps; clip files are re-timed to constant frame rate")
    if probe.rotation:
        warnings.append(f"rotated {probe.rotation} degrees: clip files are turned upright")
    if probe.video_streams > 1:
        warnings.append(f"{probe.video_streams} video streams: the longest, largest one (stream "
                        f"{probe.stream_index}, {probe.width}x{probe.height}, {probe.duration_s:.1f} s) is used, "
                        "the others are ignored")
    fps = probe.fps_fraction
    total_work = probe.n_frames * (2 if cfg.cut else 1)

    def beat_scan(done: int, total: int) -> None:
        if heartbeat:
            heartbeat(done, total_work)

    try:
        scan = scan_flight(path, fps, probe.n_frames, cfg.detector, cfg.min_shot_s, beat_scan,
                           transitions=cfg.transitions)
    except InputError as exc:
        return {"flight": _flight_row(job, **base, status="error", error=str(exc), warnings=warnings), "clips": []}
    if scan.decode_error:
        warnings.append(f"{scan.decode_error}; the {scan.n_frames} frames before it were used (truncated file?)")
    elif scan.n_frames < probe.n_frames:
        # Frame-threaded H.264 decoding drops the error on a partial last packet silently: compare counts.
        warnings.append(f"only {scan.n_frames} of {probe.n_frames} frames decode (truncated file?)")
    if scan.n_frames < 2:
        return {
            "flight": _flight_row(job, **{**base, "n_frames": scan.n_frames}, status="error", warnings=warnings,
                                  error=f"{path}: only {scan.n_frames} decodable frame(s); too short to make a clip"),
            "clips": [],
        }
    base["n_frames"] = scan.n_frames
    if probe.fps_variable:  # clip files and the last frame's length use the recording's own rate, gaps aside
        fps = typical_rate(scan.times, find_gaps(scan.times, cfg.window.gap_factor), fps)
    base["duration_s"] = float(scan.times[-1] + 1.0 / float(fps))

    duration_s = cast(float, base["duration_s"])
    scanned = (lambda: heartbeat(probe.n_frames, total_work)) if heartbeat else None
    events: list[tuple[int, str]] = []
    with keep_alive(scanned) as beat:  # telemetry work is no decoding: never a stall (issue 11, item 8)
        tel = _load_telemetry(job.sidecar, probe.fps, warnings, video=path, duration_s=duration_s,
                              n_frames=scan.n_frames, cfg=cfg, beat=beat)
        if tel is not None and cfg.split_at_events:
            try:
                for ev in detect_events(tel):
                    events.append((int(np.searchsorted(scan.times, ev.time_s)), ev.kind))
            except Exception as exc:  # events are optional; never fail the flight for them
                warnings.append(f"telemetry events unavailable ({exc})")

    shots = shots_from_boundaries(scan.cuts, scan.transitions, scan.n_frames)
    transition_ends = {t.start_frame: f"transition:{t.kind}" for t in scan.transitions}
    windows = make_windows(shots, fps, cfg.window, events, n_frames=scan.n_frames, times=scan.times)
    gaps = find_gaps(scan.times, cfg.window.gap_factor)
    if gaps:
        where = ", ".join(f"{scan.times[g - 1]:.2f}-{scan.times[g]:.2f} s" for g in gaps[:5])
        warnings.append(f"{len(gaps)} recording gap(s) ({where}{', ...' if len(gaps) > 5 else ''}): no clip spans them")
    if not windows:
        warnings.append(f"no clip: every shot is shorter than the minimum clip length ({cfg.window.min_s} s)")

    with keep_alive(scanned):
        summaries = _summaries(tel, windows, shots, scan, duration_s, cfg, warnings)
    clips_dir = Path(job.dataset_root) / "clips" / flight_id
    rows: list[dict[str, Any]] = []
    specs: list[ClipSpec] = []
    for k, w in enumerate(windows):
        cid = clip_id_of(flight_id, w.start_frame, w.end_frame)
        sel = slice(w.start_frame, w.end_frame)
        sharp_sel = (scan.sharp_frames >= w.start_frame) & (scan.sharp_frames < w.end_frame)
        motion_sel = slice(min(w.start_frame + scan.motion_baseline, w.end_frame), w.end_frame)
        q = assess(scan.motion[motion_sel], scan.luma[sel], scan.dark[sel], scan.bright[sel], scan.sharpness[sharp_sel], cfg.qc)
        start_s, end_s = w.start_s, w.end_s  # from the frame times: exact for VFR, a gap ends a window
        row = ClipRow(
            writer=WRITER,
            clip_id=cid,
            flight_id=flight_id,
            status="ok",
            shot_index=w.shot_index,
            window_index=w.window_index,
            start_frame=w.start_frame,
            end_frame=w.end_frame,
            start_s=start_s,
            end_s=end_s,
            duration_s=end_s - start_s,
            split_reason=_reason(w, transition_ends),
            motion=None if np.isnan(q.motion) else q.motion,
            motion_kind=None if q.motion_kind == "unknown" else q.motion_kind,
            sharpness=None if np.isnan(q.sharpness) else q.sharpness,
            exposure=q.exposure,
            clipped_dark=q.clipped_dark,
            clipped_bright=q.clipped_bright,
            qc_verdict=q.verdict,
            qc_reasons=q.reasons,
            keyframe_paths=[],
        ).as_dict()
        if summaries is not None:
            _add_telemetry(row, summaries[k])
        rows.append(row)
        if cfg.cut and (q.verdict == "pass" or cfg.cut_rejected):
            keys = tuple(clips_dir / f"{cid}_k{k}.jpg" for k in range(cfg.encoder.keyframes))
            specs.append(ClipSpec(cid, w.start_frame, w.end_frame, clips_dir / f"{cid}.mp4", keys, start_s, end_s))

    if specs:
        def beat_cut(done: int, total: int) -> None:
            if heartbeat:
                heartbeat(probe.n_frames + done, total_work)

        written, cut_error = cut_clips(path, specs, fps, (probe.width, probe.height), probe.rotation, cfg.encoder, beat_cut,
                                       times=scan.times)
        out_w, out_h = output_size(probe.width, probe.height, cfg.encoder.max_height)
        by_id = {s.clip_id: s for s in specs}
        root = Path(job.dataset_root)
        for row in rows:
            spec = by_id.get(row["clip_id"])
            if spec is None:
                continue
            n = written.get(spec.clip_id)
            if n is None:
                row.update(status="error", error=f"{path}: clip frames {spec.start_frame}-{spec.end_frame} not written: {cut_error}")
                continue
            row.update(
                clip_path=str(spec.path.relative_to(root)),
                keyframe_paths=[str(p.relative_to(root)) for p in spec.keyframe_paths if p.exists()],
                fps=float(fps),
                width=out_w,
                height=out_h,
                n_frames=n,
            )
    base["recorded_at"] = base["recorded_at"] or _tel_start(tel)
    flight = _flight_row(
        job,
        **base,
        warnings=warnings,
        n_shots=len(shots),
        n_clips=len(rows),
        telemetry_format=getattr(tel, "layout", None),
        telemetry_cues=len(tel.cues) if tel is not None else None,
    )
    return {"flight": flight, "clips": rows}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _tel_start(tel: Any) -> datetime | None:
    start = getattr(tel, "start_time", None) if tel is not None else None
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)  # DJI writes local time without a zone; recorded as given
    return start


def _reason(w: Any, transition_ends: dict[int, str]) -> str:
    """A shot that ends where a fade or dissolve starts ends with ``transition:<kind>``, not ``cut``."""
    return transition_ends.get(w.end_frame, "cut") if w.split_reason == "cut" else w.split_reason


def _summaries(tel: Any, windows: list, shots: list, scan: Any, duration_s: float, cfg: IngestConfig,
               warnings: list[str]) -> list[TelemetrySummary] | None:
    """Every window's telemetry summary, none across a shot cut or a transition edge (`summarize_clips`).

    The boundaries are the times where a shot starts or ends inside the flight: hard cuts and both edges of
    every fade and dissolve. Every frame inside a transition is a boundary too: no clip uses its telemetry,
    and the place changes somewhere inside it, which judged as one stretch would read as a position jump.
    The plausibility check's lines (impossible values left out) go to the flight.
    """
    if tel is None:
        return None

    def at(frame: int) -> float:
        return float(scan.times[frame]) if frame < scan.n_frames else duration_s

    edges = {at(s.start_frame) for s in shots if s.start_frame > 0}
    edges |= {at(s.end_frame) for s in shots if s.end_frame < scan.n_frames}
    edges |= {at(f) for t in scan.transitions for f in range(t.start_frame, t.end_frame)}
    summaries, check = summarize_clips(tel, [(w.start_s, w.end_s) for w in windows], limits=cfg.telemetry,
                                       boundaries=sorted(edges))
    warnings.extend(check.warnings())
    return summaries


def _add_telemetry(row: dict[str, Any], s: TelemetrySummary) -> None:
    """The summary's values, and its flags (values left out, a span over a boundary) as informational QC
    reasons: the verdict is the picture's, not the telemetry's."""
    row["qc_reasons"] = [*(row.get("qc_reasons") or []), *s.flags]
    row.update(
        lat=s.lat,
        lon=s.lon,
        altitude_m=s.altitude_m,
        altitude_kind=s.altitude_kind,
        gimbal_pitch=s.gimbal_pitch,
        speed_mps=s.speed_mps,
        telemetry_cues=s.n_cues,
    )


# --------------------------------------------------------------------------------------------------------------
# the parent: resume, commit, merge
# --------------------------------------------------------------------------------------------------------------
class PartStore:
    """Committed per-flight results under ``<dataset>/.work/ingest/``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dir = dataset.work_dir / PARTS_DIR
        self.dataset = dataset

    def _paths(self, flight_id: str) -> tuple[Path, Path]:
        return self.dir / f"{flight_id}.clips.parquet", self.dir / f"{flight_id}.flight.parquet"

    def flights(self) -> list[dict[str, Any]]:
        if not self.dir.is_dir():
            return []
        rows = []
        for p in sorted(self.dir.glob("*.flight.parquet")):
            rows.extend(pq.read_table(p).to_pylist())
        return rows

    def commit(self, result: dict[str, Any]) -> None:
        flight = result["flight"]
        clips_path, flight_path = self._paths(flight["flight_id"])
        write_parquet(clips_path, validate("clips", result["clips"]))
        write_parquet(flight_path, validate("flights", [flight]))  # last: its presence marks the commit

    def update_flight(self, row: dict[str, Any]) -> None:
        write_parquet(self._paths(row["flight_id"])[1], validate("flights", [row]))

    def drop(self, flight_id: str) -> None:
        for p in reversed(self._paths(flight_id)):
            p.unlink(missing_ok=True)

    def merged(self) -> tuple[pa.Table, pa.Table]:
        flights, clips = [], []
        if self.dir.is_dir():
            for fp in sorted(self.dir.glob("*.flight.parquet")):
                cp = fp.with_name(fp.name.replace(".flight.parquet", ".clips.parquet"))
                flights.append(pq.read_table(fp))
                if cp.exists():
                    clips.append(pq.read_table(cp))
        f = pa.concat_tables(flights) if flights else None
        c = pa.concat_tables(clips) if clips else None
        return f, c


def check_run_options(workers: int | None, stall_timeout: float) -> None:
    """How the flights run, checked before any work: a bad value is exit 2, not a failure per flight."""
    if workers is not None and workers < 0:
        raise UsageError(f"--workers must be 0 (in-process) or more, not {workers}")
    if not stall_timeout > 0:  # NaN fails this too; infinity (never stop a flight) is allowed
        raise UsageError(f"--stall-timeout must be a positive number of seconds, not {stall_timeout}")


def ingest(
    inputs: list[Path],
    dataset_dir: Path,
    config: IngestConfig | None = None,
    *,
    workers: int | None = None,
    executor: Executor | None = None,
    stall_timeout: float = STALL_TIMEOUT,
    reporter: Reporter | Sink | None = None,
    force: bool = False,
    meta: FlightMeta | None = None,
) -> IngestReport:
    """Ingest flight videos (files or folders) into the dataset at ``dataset_dir``.

    ``reporter`` receives the count of flights, each running flight's frames, and a notice per warning, duplicate
    and failed flight. ``executor`` runs the flights (default: ``workers`` local processes; a `RayExecutor` runs
    them on a cluster, the tables are still written here).
    """
    config = config or IngestConfig()
    meta = meta or FlightMeta()
    config.check()
    check_run_options(workers, stall_timeout)
    notes: list[str] = []  # dataset folders among the inputs, skipped (issue 11, item 4)
    sources, problems = discover([Path(p) for p in inputs], exclude=[Path(dataset_dir)], notes=notes)
    if not sources and problems:
        raise UsageError("; ".join([*problems, *notes]))
    if not sources:
        found = f"no video files found in {', '.join(map(str, inputs))}"
        raise UsageError(found + "".join(f"; {n}" for n in notes))
    try:
        dataset = Dataset(dataset_dir).create()
        with dataset.writing(WRITER):
            return _ingest_locked(dataset, sources, problems, inputs, config, meta, workers, executor,
                                  stall_timeout, as_reporter(reporter, "ingest"), force, notes)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise disk_full_error(Path(dataset_dir), exc) from None
        raise


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full_error(dataset_dir: Path, exc: OSError) -> DatasetError:
    """One line naming the full disk (exit 4), for a write that failed for want of space.

    Without it a full disk was an internal error (exit 70), and the run log's own write failing on the way out
    made it two (issue 11, item 10). What was committed before stays: re-running resumes.
    """
    where = Path(exc.filename) if exc.filename else dataset_dir
    mount = where if where.is_dir() else where.parent
    while not mount.exists() and mount != mount.parent:
        mount = mount.parent
    free = ""
    try:
        free = f", {shutil.disk_usage(mount).free / 1e6:.0f} MB free"
    except OSError:
        pass
    what = "disk quota exceeded" if exc.errno == errno.EDQUOT else "disk full"
    return DatasetError(f"{what}: no space left to write {where} (the disk holding {mount}{free}); "
                        "free some space and run the same command again: it resumes")


def _ingest_locked(
    dataset: Dataset,
    sources: list[FlightSource],
    problems: list[str],
    inputs: list[Path],
    config: IngestConfig,
    meta: FlightMeta,
    workers: int | None,
    executor: Executor | None,
    stall_timeout: float,
    rep: Reporter,
    force: bool,
    notes: list[str] | None = None,
) -> IngestReport:
    store = PartStore(dataset)
    report = IngestReport(flights_total=len(sources), errors=list(problems), input_problems=list(problems), dataset=dataset.root)
    settings = config.settings_hash()
    log = RunLog(dataset.logs_dir, "ingest")
    report.log_path = log.path
    log.write("start", inputs=[str(p) for p in inputs], settings=config.as_dict(), settings_hash=settings, tool_version=__version__)
    for problem in problems:
        log.write("input_error", error=problem)
    for note in notes or []:
        report.warnings.append(note)
        log.write("input_skipped", note=note)
        rep.warning(note)

    committed = {row["source_path"]: row for row in store.flights()}
    stats: dict[Path, tuple[int, int]] = {}
    for src in sources:
        try:
            st = src.video.stat()
        except OSError as exc:
            st = None
            log.write("stat_error", path=str(src.video), error=str(exc))
        stats[src.video] = (st.st_size, st.st_mtime_ns) if st else (0, 0)
    holders = _content_holders(store, committed, sources, stats, log)
    jobs: list[FlightJob] = []
    job_sources: list[FlightSource] = []
    for src in sources:
        size, mtime = stats[src.video]
        holder = holders.get(src.video)
        if holder is not None:  # same bytes as a flight already ingested or ingested first: never re-cut
            msg = f"{src.video}: same content as {holder}; ingested once"
            report.warnings.append(msg)
            report.duplicates += 1
            log.write("duplicate", path=str(src.video), same_as=str(holder))
            rep.warning(msg)
            continue
        prev = committed.get(str(src.video))
        if (
            not force
            and prev is not None
            and prev["status"] == "ok"
            and prev["settings_hash"] == settings
            and prev["size_bytes"] == size
            and prev["mtime_ns"] == mtime
        ):
            report.flights_skipped += 1
            if meta.differs(prev):
                store.update_flight(meta.apply(dict(prev)))
            log.write("skip", path=str(src.video), flight_id=prev["flight_id"], reason="already ingested with these settings")
            continue
        jobs.append(FlightJob(str(src.video), str(src.sidecar) if src.sidecar else None, str(dataset.root), config, size, mtime))
        job_sources.append(src)
    counter = rep.counter("flights", len(sources), "flights", done=report.flights_skipped + report.duplicates)

    executor = executor or make_executor(workers, stall_timeout)
    seen_ids: dict[str, str] = {}
    try:
        for outcome in executor.run(
            ingest_flight, jobs,
            lambda p: rep.progress(job_sources[p.index].video.name, p.done, p.total, "frames", transient=True),
        ):
            rep.progress(job_sources[outcome.index].video.name, 1, 1, "frames", transient=True)  # its bar goes
            counter.advance()
            result = _result_of(outcome)
            flight = result["flight"]
            fid = flight["flight_id"]
            if fid in seen_ids and seen_ids[fid] != flight["source_path"]:
                msg = f"{flight['source_path']}: same content as {seen_ids[fid]}; ingested once"
                report.warnings.append(msg)
                report.duplicates += 1
                log.write("duplicate", path=flight["source_path"], flight_id=fid, same_as=seen_ids[fid])
                rep.warning(msg)
                continue
            seen_ids[fid] = flight["source_path"]
            meta.apply(flight)
            # the same path may hold an older version of the file: drop that flight's part
            old = committed.get(flight["source_path"])
            if old is not None and old["flight_id"] != fid:
                store.drop(old["flight_id"])
                remove_stale_files(dataset.clips_dir / old["flight_id"], set())
            store.commit(result)
            keep = {dataset.root / r["clip_path"] for r in result["clips"] if r["clip_path"]}
            keep |= {dataset.root / k for r in result["clips"] for k in (r["keyframe_paths"] or [])}
            remove_stale_files(dataset.clips_dir / fid, keep)
            if flight["status"] == "ok":
                report.flights_done += 1
                report.clips_new += len(result["clips"])
                for w in flight["warnings"] or []:
                    report.warnings.append(f"{flight['source_path']}: {w}")
                log.write("done", path=flight["source_path"], flight_id=fid, clips=len(result["clips"]),
                          shots=flight["n_shots"], warnings=flight["warnings"],
                          clip_errors=[c["error"] for c in result["clips"] if c["status"] == "error"])
                for w in flight["warnings"] or []:
                    rep.warning(f"{Path(flight['source_path']).name}: {w}")
            else:
                report.flights_failed += 1
                report.errors.append(flight["error"])
                log.write("error", path=flight["source_path"], flight_id=fid, error=flight["error"])
                rep.error(flight["error"])
        flights, clips = store.merged()
        if flights is not None:
            dataset.write_table("flights", flights)
        if clips is not None:
            _record_lineage(dataset, clips, report, rep, log)
            dataset.replace_rows("clips", WRITER, clips)
        dataset.record_stage("ingest", {"settings": config.as_dict(), "settings_hash": settings})
        log.write("summary", **{k: v for k, v in asdict(report).items() if k not in ("log_path", "dataset")})
    finally:
        log.close()
    return report


HASHES_FILE = "hashes.json"  # under the parts folder: (size, mtime) -> content hash of files hashed here


def _content_holders(store: PartStore, committed: dict[str, dict[str, Any]], sources: list[FlightSource],
                     stats: dict[Path, tuple[int, int]], log: RunLog) -> dict[Path, Path]:
    """Every source that is a duplicate (same bytes as another file), mapped to the file holding its flight.

    Resume is keyed by path, but a flight is its content: without this, a second name of an ingested file was
    re-ingested and re-cut on every run and the flight's ``source_path`` flipped between the names (issue 11,
    item 3). The holder is the name already ingested (when that file is still there, unchanged), else the
    first name in discovery order, so the answer is the same on every run. Only files whose size equals another
    source's or an ingested flight's are hashed here; their hashes are kept in ``hashes.json`` keyed by (size,
    mtime), so a later run reads no file twice.
    """
    ok = [r for r in committed.values() if r["status"] == "ok" and r.get("content_hash")]
    size_of = {str(r["source_path"]): int(r["size_bytes"] or 0) for r in ok}  # one entry per path
    size_of.update((str(path), size) for path, (size, _) in stats.items())
    shared = {size for size, n in Counter(size_of.values()).items() if size and n > 1}
    cache_path = store.dir / HASHES_FILE
    try:
        cache: dict[str, list] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    fresh: dict[str, list] = {}

    def content_of(path: Path, size: int, mtime: int) -> str | None:
        prev = committed.get(str(path))
        if (prev is not None and prev["status"] == "ok" and prev.get("content_hash")
                and (prev["size_bytes"], prev["mtime_ns"]) == (size, mtime)):
            return str(prev["content_hash"])
        if size not in shared:
            return None
        hit = cache.get(str(path))
        if hit and hit[0] == size and hit[1] == mtime:
            fresh[str(path)] = hit
            return str(hit[2])
        try:
            digest = sha256_file(path)
        except OSError:
            return None  # the worker reports the unreadable file
        fresh[str(path)] = [size, mtime, digest]
        return digest

    holder_of: dict[str, Path] = {}
    for row in ok:  # the ingested name keeps its flight while that file is there, unchanged
        path = Path(row["source_path"])
        try:
            st = path.stat()
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) == (row["size_bytes"], row["mtime_ns"]):
            holder_of.setdefault(str(row["content_hash"]), path)
    duplicates: dict[Path, Path] = {}
    for src in sources:
        digest = content_of(src.video, *stats[src.video])
        if digest is None:
            continue
        holder = holder_of.setdefault(digest, src.video)
        if holder != src.video:
            duplicates[src.video] = holder
    if fresh != cache:
        try:
            store.dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache_path, json.dumps(fresh, sort_keys=True).encode())
        except OSError as exc:  # a cache: losing it costs a re-hash next run, nothing else
            log.write("hash_cache_error", error=str(exc))
    return duplicates


def _record_lineage(dataset: Dataset, clips: pa.Table, report: IngestReport, rep: Reporter, log: RunLog) -> None:
    """Before ingest's clip rows are replaced: record which new clip covers each vanished clip (captions
    follow it; ingest never rewrites caption rows) and report the captions left without a clip."""
    cols = ["clip_id", "flight_id", "start_frame", "end_frame"]
    old = dataset.rows_of("clips", WRITER).select(cols).to_pylist()
    update = record_lineage(dataset, old, clips.select(cols).to_pylist())
    report.clips_moved = update.moved
    report.captions_orphaned = update.captions_orphaned
    if update.message:
        report.warnings.append(update.message)
        rep.warning(update.message)
        log.write("lineage", moved=update.moved, orphaned=update.orphaned, captions_carried=update.captions_carried,
                  captions_orphaned=update.captions_orphaned)


def _result_of(outcome: Outcome) -> dict[str, Any]:
    """A worker's record, or an error row when the worker itself failed (crash, hang, bug)."""
    if outcome.error is None:
        return outcome.record
    job: FlightJob = outcome.item
    row = _flight_row(job, flight_id=error_flight_id(job.video), status="error", error=f"{job.video}: {outcome.error}")
    return {"flight": row, "clips": []}
