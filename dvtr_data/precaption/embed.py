"""Batched, overlapped clip embedding, and the resumable store under ``embeddings/``.

Decoding runs on the worker engine (`decode_clips`) while the model runs here: decoded clips queue up (bounded) and
the model takes them in fixed batches of frames that span clips, so the last clip of one batch may finish in the
next. A fixed batch keeps the model at the speed it was measured at, whatever the clip boundaries.

Store: one Parquet file per model, ``embeddings/<model key>.parquet``, keyed by clip id and model identity, with
fixed-size list columns. Finished clips are committed as part files under ``.work/precaption/<model key>/`` every
few hundred clips and when the run stops for any reason (Ctrl-C included); the next run folds the parts into the
file. Clips already embedded with the same model config and sampling are skipped.
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dvtr_data.dataset import Dataset, write_parquet
from dvtr_data.engine import Executor
from dvtr_data.errors import DatasetError
from dvtr_data.precaption.sampling import (
    SampledFrames,
    SampleJob,
    decode_clips,
    decode_executor,
    default_workers,
    prefetch_for,
)
from dvtr_data.schemas import SCHEMA_METADATA_KEY, schema_of, validate
from dvtr_data.text import bounded

WORK_DIR = "precaption"


@dataclass(frozen=True)
class ClipSource:
    """Where one clip's frames are: its clip file, or its span inside an uncut flight."""

    clip_id: str
    path: str
    source: str = "clip"  # clip | flight
    start_frame: int | None = None
    end_frame: int | None = None
    n_frames: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class EmbedSettings:
    frames: int = 8  # sampled uniformly per clip
    batch_size: int = 64  # frames per model call
    workers: int | None = None  # decode processes; None: one beside a CPU model, more beside a GPU
    decode_timeout: float = 60.0  # seconds one clip may take to decode before its worker is killed
    decode_threads: int = 0  # per decoder; 0 lets the decoder choose
    overlap: bool = True  # decode while the model runs; off: decoders pause during each model call

    @property
    def sampling(self) -> str:
        return f"uniform:{self.frames}"


def _now() -> datetime:
    return datetime.now(UTC)


def _row(clip: ClipSource, identity: Any, sampling: str, **values: Any) -> dict[str, Any]:
    row = {
        "clip_id": clip.clip_id,
        "model": identity.name,
        "model_config": identity.config_hash,
        "checkpoint_sha256": identity.checkpoint_sha256,
        "precision": identity.precision,
        "sampling": sampling,
        "status": "ok",
        "error": None,
        "decoder": None,
        "source": clip.source,
        "frame_indices": None,
        "embed_dim": identity.embed_dim,
        "frame_embeddings": None,
        "clip_embedding": None,
        "embedded_at": _now(),
    }
    row.update(values)
    return row


def error_row(clip: ClipSource, identity: Any, sampling: str, error: str) -> dict[str, Any]:
    return _row(clip, identity, sampling, status="error", error=bounded(error))  # a row, never megabytes


def pool_frames(frame_vectors: np.ndarray) -> np.ndarray:
    """The clip embedding: mean of unit frame embeddings, back to unit length."""
    mean = frame_vectors.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def sample_jobs(clips: Sequence[ClipSource], settings: EmbedSettings) -> list[SampleJob]:
    """One decode job per clip; a job's key is the clip's position in ``clips``."""
    return [
        SampleJob(key=i, path=c.path, count=settings.frames, start_frame=c.start_frame, end_frame=c.end_frame,
                  n_frames=c.n_frames if c.source == "clip" else None, width=c.width, height=c.height,
                  threads=settings.decode_threads)
        for i, c in enumerate(clips)
    ]


def embed_clips(
    clips: Sequence[ClipSource],
    encoder: Any,
    settings: EmbedSettings,
    *,
    device: str = "cpu",
    executor: Executor | None = None,
    results: Iterator[SampledFrames] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one embeddings row per clip (in completion order): vectors, or an error.

    Decoding overlaps the model: beside a GPU the floor is the slower of the two. On a CPU both want every core;
    measured on 2 cores, overlapping still beat pausing the decoders during model calls (``overlap=False``), as
    it fills the cores that single-threaded stretches of decoding leave idle.
    """
    if not clips:
        return
    n = settings.frames
    workers = settings.workers or default_workers(device)
    sampling = settings.sampling
    identity = encoder.identity
    executor = executor or decode_executor(workers, settings.decode_timeout, prefetch_for(settings.batch_size, n, workers))
    if results is None:  # else: decoding of `sample_jobs(clips, settings)` already started on `executor`
        results = decode_clips(sample_jobs(clips, settings), encoder.geometry, executor)
    gate = getattr(executor, "gate", None)  # local workers can pause while the model runs; Ray's cannot
    overlap = settings.overlap
    waiting: collections.deque[tuple[int, np.ndarray, int]] = collections.deque()  # (key, frames, next frame)
    waiting_frames = 0
    vectors: dict[int, np.ndarray] = {}
    filled: dict[int, int] = {}
    sampled: dict[int, tuple[str | None, list[int]]] = {}  # key -> (decoder, frame indices)
    # a model behind an actor pool (`dvtr_data.engine.ray.ModelPool`) takes batches asynchronously
    submit = getattr(encoder, "submit_frames", None)
    depth = int(getattr(encoder, "pipeline_depth", 1))
    inflight: collections.deque[tuple[Any, list[tuple[int, int, int]]]] = collections.deque()

    def run_batch(limit: int) -> Iterator[dict[str, Any]]:
        nonlocal waiting_frames
        parts: list[np.ndarray] = []
        owners: list[tuple[int, int, int]] = []
        need = limit
        while need and waiting:
            key, frames, at = waiting[0]
            take = min(need, len(frames) - at)
            parts.append(frames[at:at + take])
            owners.append((key, at, take))
            need -= take
            if at + take == len(frames):
                waiting.popleft()
            else:
                waiting[0] = (key, frames, at + take)
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
        waiting_frames -= len(batch)
        if submit is not None:  # a model pool: keep `depth` batches in flight, finish the oldest first
            inflight.append((submit(batch), owners))
            while len(inflight) >= depth:
                yield from finish_oldest()
            return
        if not overlap and gate is not None:
            gate.clear()
        try:
            emb = encoder.encode_frames(batch)
        finally:
            if gate is not None:
                gate.set()
        yield from finish(emb, owners)

    def finish_oldest() -> Iterator[dict[str, Any]]:
        handle, owners = inflight.popleft()
        yield from finish(encoder.result(handle), owners)

    def finish(emb: np.ndarray, owners: list[tuple[int, int, int]]) -> Iterator[dict[str, Any]]:
        offset = 0
        for key, at, take in owners:
            vectors[key][at:at + take] = emb[offset:offset + take]
            offset += take
            filled[key] += take
            if filled[key] == n:
                frame_vecs = vectors.pop(key)
                del filled[key]
                decoder, indices = sampled.pop(key)
                yield _row(clips[key], identity, sampling, decoder=decoder, frame_indices=indices,
                           frame_embeddings=frame_vecs, clip_embedding=pool_frames(frame_vecs))

    try:
        for res in results:
            clip = clips[res.key]
            if res.error is not None or res.frames is None:
                yield error_row(clip, identity, sampling, f"{clip.path}: {res.error or 'no frames'}")
                continue
            if len(res.frames) != n:
                yield error_row(clip, identity, sampling, f"{clip.path}: decoder returned {len(res.frames)} of {n} frames")
                continue
            sampled[res.key] = (res.decoder, list(res.indices))
            vectors[res.key] = np.empty((n, identity.embed_dim), np.float32)
            filled[res.key] = 0
            waiting.append((res.key, res.frames, 0))
            waiting_frames += n
            while waiting_frames >= settings.batch_size:
                yield from run_batch(settings.batch_size)
        while waiting_frames:
            yield from run_batch(min(settings.batch_size, waiting_frames))
        while inflight:
            yield from finish_oldest()
    finally:
        close = getattr(results, "close", None)
        if close is not None:  # stop the decoders at once, on success, error or Ctrl-C
            close()


# ----------------------------------------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------------------------------------
def _vector_array(values: list[np.ndarray | None], shape: tuple[int, ...]) -> pa.Array:
    """A (nested) fixed-size list array of float32 with nulls where ``values`` has None."""
    size = int(np.prod(shape))
    flat = np.zeros((len(values), size), np.float32)
    mask = np.zeros(len(values), bool)
    for i, v in enumerate(values):
        if v is None:
            mask[i] = True
        else:
            flat[i] = np.asarray(v, np.float32).reshape(-1)
    arr: pa.Array = pa.array(flat.reshape(-1), pa.float32())
    for dim in reversed(shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, dim)
    return pa.FixedSizeListArray.from_arrays(arr, shape[0], mask=pa.array(mask))


def fixed_types(frames: int, dim: int) -> dict[str, pa.DataType]:
    inner = pa.list_(pa.float32(), dim)
    return {"frame_embeddings": pa.list_(inner, frames), "clip_embedding": inner}


def rows_to_table(rows: list[dict[str, Any]], frames: int, dim: int) -> pa.Table:
    """Validated embeddings table with fixed-size vector columns."""
    spec = schema_of("embeddings")
    scalar = [f.name for f in spec.schema if f.name not in ("frame_embeddings", "clip_embedding")]
    table = pa.Table.from_pylist([{k: r[k] for k in scalar} for r in rows], schema=pa.schema([spec.schema.field(k) for k in scalar]))
    table = table.append_column("frame_embeddings", _vector_array([r["frame_embeddings"] for r in rows], (frames, dim)))
    table = table.append_column("clip_embedding", _vector_array([r["clip_embedding"] for r in rows], (dim,)))
    return to_fixed(validate("embeddings", table), frames, dim)


def to_fixed(table: pa.Table, frames: int, dim: int) -> pa.Table:
    """Cast the vector columns of a validated table to fixed-size lists (keeping the schema tag)."""
    meta = table.schema.metadata
    types = fixed_types(frames, dim)
    fields = [pa.field(f.name, types.get(f.name, f.type), f.nullable) for f in table.schema]
    return table.cast(pa.schema(fields)).replace_schema_metadata(meta)


class EmbeddingStore:
    """Committed embeddings of one model: ``embeddings/<key>.parquet`` plus part files of unfinished runs."""

    def __init__(self, dataset: Dataset, identity: Any, frames: int) -> None:
        self.dataset = dataset
        self.identity = identity
        self.frames = frames
        self.path = dataset.root / "embeddings" / f"{identity.key}.parquet"
        self.parts_dir = dataset.work_dir / WORK_DIR / identity.key
        self._seq = 0

    def _parts(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def commit(self, rows: list[dict[str, Any]]) -> Path | None:
        """Write finished rows as one part file (atomically)."""
        if not rows:
            return None
        self._seq += 1
        path = self.parts_dir / f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:05d}.parquet"
        write_parquet(path, rows_to_table(rows, self.frames, self.identity.embed_dim))
        return path

    def load(self, columns: Sequence[str] | None = None) -> tuple[pa.Table, list[Path]]:
        """Every committed row of this model (the file, then the parts in order; a later row replaces an earlier
        one for the same clip), with variable-size vector columns, and the part files read. ``columns`` limits
        what is read (the vectors are most of the bytes)."""
        loose = schema_of("embeddings").with_metadata()
        names = list(columns) if columns else loose.names
        wanted = pa.schema([loose.field(n) for n in names])
        tables, parts = [], []
        for path in [self.path, *self._parts()]:
            if not path.is_file():
                continue
            try:
                table = _read(path, names)
            except DatasetError:
                if path == self.path:
                    raise
                parts.append(path)  # damaged from outside (parts are written atomically): its clips are redone,
                continue  # and `consolidate` removes it
            tables.append(table.select(names).cast(wanted))
            if path != self.path:
                parts.append(path)
        if not tables:
            return wanted.empty_table(), parts
        table = pa.concat_tables(tables)
        table = table.filter(pc.equal(table["model"], self.identity.name))
        order = pa.array(np.arange(table.num_rows))
        last = table.append_column("_row", order).group_by("clip_id").aggregate([("_row", "max")]).column("_row_max")
        return table.take(np.sort(last.to_numpy())), parts

    def current(self, table: pa.Table, sampling: str) -> pa.Table:
        """Rows made with this model config and sampling."""
        if not table.num_rows:
            return table
        mask = pc.and_(pc.equal(table["model_config"], self.identity.config_hash), pc.equal(table["sampling"], sampling))
        return table.filter(mask)

    def done_ids(self, sampling: str) -> set[str]:
        """Clips already embedded (status ok) with this model config and sampling."""
        table, _ = self.load(["clip_id", "model", "model_config", "sampling", "status"])
        cur = self.current(table, sampling)
        return set(cur.filter(pc.equal(cur["status"], "ok")).column("clip_id").to_pylist())

    def consolidate(self, sampling: str, keep: set[str] | None = None) -> pa.Table:
        """Fold the parts into the file (rows of other configs or samplings, and clips no longer in the dataset,
        are dropped), then remove the parts. Returns the table written."""
        table, parts = self.load()
        table = self.current(table, sampling)
        if keep is not None and table.num_rows:
            table = table.filter(pc.is_in(table["clip_id"], pa.array(sorted(keep), pa.string())))
        table = table.sort_by("clip_id")
        fixed = to_fixed(validate("embeddings", table), self.frames, self.identity.embed_dim)
        write_parquet(self.path, fixed)
        for part in parts:
            part.unlink(missing_ok=True)
        return fixed


def _read(path: Path, columns: list[str]) -> pa.Table:
    """Some columns of an embeddings file, after the schema-tag check `dataset.read_table_file` makes."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        table = pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path} is not a readable Parquet file: {exc}") from exc
    tag = meta.get(SCHEMA_METADATA_KEY, b"").decode()
    name, _, version = tag.partition("/")
    spec = schema_of("embeddings")
    if name != spec.name or int(version or 0) > spec.version:
        raise DatasetError(f"{path} holds {tag or 'an untagged table'}, not {spec.tag} (or older)")
    return table


def clip_matrix(table: pa.Table) -> tuple[list[str], np.ndarray]:
    """Clip ids and their pooled embeddings ``(n, D)`` for the ok rows of an embeddings table."""
    ok = table.filter(pc.equal(table["status"], "ok"))
    ids = ok.column("clip_id").to_pylist()
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    col = ok.column("clip_embedding").combine_chunks()
    dim = col.type.list_size if pa.types.is_fixed_size_list(col.type) else len(col[0].as_py())
    values = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return ids, values.reshape(len(ids), dim)

