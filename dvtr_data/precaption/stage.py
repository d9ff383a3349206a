"""`precaption`: clips -> embeddings, draft captions retrieved from a caption bank, and zero-shot scene tags.

Order of work, cheapest failure first: the dataset and its clips, the caption bank and class list (a malformed
bank is one error before any model loads), the model (weights that are not on the machine fail at once), the bank
and class embeddings (cached per bank hash and model), then the clips that are not embedded yet, then retrieval
over every embedded clip. Retrieval is cheap, so ``precaptions.parquet`` and ``tags.parquet`` are rebuilt whole
on every run, always from one model and one bank.
"""

from __future__ import annotations

import difflib
import functools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

import dvtr_data.schemas.precaption_tables  # noqa: F401  (registers the embeddings, precaptions, tags schemas)
from dvtr_data import __version__
from dvtr_data.dataset import Dataset, read_table_file
from dvtr_data.engine import EXECUTORS, Executor, make_executor
from dvtr_data.errors import DatasetError, ModelError, UsageError
from dvtr_data.precaption.bank import MAX_CHARS, CaptionBank, cached_text_embeddings, load_banks
from dvtr_data.precaption.embed import (
    WORK_DIR,
    ClipSource,
    EmbeddingStore,
    EmbedSettings,
    clip_matrix,
    embed_clips,
    error_row,
    sample_jobs,
)
from dvtr_data.precaption.encoder import (
    Encoder,
    EncoderPlan,
    ModelSpec,
    build_encoder,
    build_planned_encoder,
    plan_encoder,
)
from dvtr_data.precaption.retrieval import distinct_top_k
from dvtr_data.precaption.sampling import Decoding, decode_executor, default_workers, prefetch_for
from dvtr_data.precaption.tags import ClassList, class_vectors, load_class_list, zero_shot
from dvtr_data.reporting import Reporter, Sink, as_reporter
from dvtr_data.runlog import RunLog


@dataclass(frozen=True)
class PrecaptionConfig:
    """Every setting of the stage, with its default."""

    model: ModelSpec = field(default_factory=ModelSpec)
    frames: int = 8
    batch_size: int = 64
    workers: int | None = None
    decode_timeout: float = 60.0
    overlap: bool = True  # decode while the model runs
    executor: str = "local"  # local | ray: where clips are decoded
    ray_address: str | None = None  # None: start a local Ray cluster
    banks: tuple[str, ...] = ("builtin",)
    bank_format: str = "auto"
    text_column: str | None = None
    max_caption_chars: int = MAX_CHARS
    top_k: int = 5
    dedupe_threshold: float = 0.9
    tags: str = "era"
    top_tags: int = 3
    include_rejected: bool = False
    force: bool = False
    commit_every: int = 256
    chunk: int = 8192

    def check(self) -> None:
        if not 1 <= self.frames <= 256:
            raise UsageError("--frames must be between 1 and 256")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        if self.workers is not None and self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.executor not in EXECUTORS:
            raise UsageError(f"unknown executor {self.executor!r}; choose from {', '.join(EXECUTORS)}")
        if self.decode_timeout <= 0:
            raise UsageError("--decode-timeout must be positive")
        if not 1 <= self.top_k <= 100:
            raise UsageError("--top-k must be between 1 and 100")
        if not 0 <= self.top_tags <= 100:
            raise UsageError("--top-tags must be between 0 and 100")
        if not 0.0 < self.dedupe_threshold <= 1.0:
            raise UsageError("--dedupe must be in (0, 1]")
        if self.max_caption_chars < 1:
            raise UsageError("--max-caption-chars must be at least 1")
        self.model.check()

    @property
    def embed(self) -> EmbedSettings:
        return EmbedSettings(self.frames, self.batch_size, self.workers, self.decode_timeout, overlap=self.overlap)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in d["model"].items()}
        return d


@dataclass
class PrecaptionReport:
    model: str = ""
    bank: str = ""
    bank_size: int = 0
    bank_skipped_empty: int = 0
    bank_skipped_huge: int = 0
    bank_duplicates: int = 0
    bank_cached: bool = False
    class_list: str = ""
    clips_selected: int = 0
    clips_not_selected: int = 0  # failed in ingest, rejected by QC (without --include-rejected)
    clips_skipped: int = 0  # already embedded with this model and sampling
    clips_embedded: int = 0
    clips_failed: int = 0
    precaptions: int = 0
    tagged: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    log_path: Path | None = None
    dataset: Path | None = None

    @property
    def ok(self) -> bool:
        return self.clips_failed == 0


def bank_cache_dir(dataset: Dataset) -> Path:
    """Cached text embeddings of banks and class lists, per model (see `bank.bank_cache_path`)."""
    return dataset.root / "embeddings" / "banks"


def _select(dataset: Dataset, include_rejected: bool) -> tuple[list[ClipSource], int, set[str]]:
    clips = dataset.read_table("clips")
    if not clips.num_rows:
        raise DatasetError(f"{dataset.root} has no clips", hint="run `dvtr-data ingest FLIGHTS --dataset DIR` first")
    flights = {r["flight_id"]: r["source_path"] for r in dataset.read_table("flights").select(["flight_id", "source_path"]).to_pylist()}
    chosen, skipped = [], 0
    for row in clips.to_pylist():
        if row["status"] != "ok" or (row["qc_verdict"] != "pass" and not include_rejected):
            skipped += 1
            continue
        if row["clip_path"]:
            chosen.append(ClipSource(row["clip_id"], str(dataset.root / row["clip_path"]), "clip", None, None,
                                     row["n_frames"], row["width"], row["height"]))
        elif flights.get(row["flight_id"]):
            chosen.append(ClipSource(row["clip_id"], flights[row["flight_id"]], "flight", row["start_frame"], row["end_frame"]))
        else:
            skipped += 1
    return chosen, skipped, set(clips.column("clip_id").to_pylist())


def precaption(
    dataset_dir: str | os.PathLike,
    config: PrecaptionConfig | None = None,
    *,
    encoder: Encoder | None = None,
    reporter: Reporter | Sink | None = None,
    executor: Executor | None = None,
) -> PrecaptionReport:
    """Embed the dataset's clips, draft captions from the bank, and tag clips zero-shot.

    ``encoder`` replaces the open_clip model named in the config (tests inject deterministic ones).
    ``reporter`` receives progress (bank captions, clips) and notices (the model, failed clips).
    ``executor`` decodes the clips (default: local worker processes, or Ray with ``config.executor == "ray"``).
    """
    config = config or PrecaptionConfig()
    config.check()
    emit = as_reporter(reporter, "precaption")
    t0 = time.perf_counter()
    dataset = Dataset(dataset_dir).require()
    with dataset.lock("precaption"):
        _sweep_temp_files(dataset)
        return _precaption_locked(dataset, config, encoder, emit, t0, executor)


def _sweep_temp_files(dataset: Dataset) -> None:
    """Remove temporary files a killed run of this stage left in its own folders."""
    emb = dataset.root / "embeddings"
    folders = [emb, *emb.glob("banks/*/"), *(dataset.work_dir / WORK_DIR).glob("*/")]
    for folder in folders:
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def _precaption_locked(dataset: Dataset, config: PrecaptionConfig, encoder: Encoder | None, emit: Reporter,
                       t0: float, executor: Executor | None = None) -> PrecaptionReport:
    report = PrecaptionReport(dataset=dataset.root)
    selected, report.clips_not_selected, all_ids = _select(dataset, config.include_rejected)
    report.clips_selected = len(selected)

    # decoding starts as soon as the clips to embed are known, and runs while the model loads
    if executor is None and config.executor == "ray":
        executor = make_executor(config.workers, config.decode_timeout, kind="ray", ray_address=config.ray_address)
    elif executor is None:
        workers = config.workers or default_workers(_device_hint(config, encoder))
        executor = decode_executor(workers, config.decode_timeout, prefetch_for(config.batch_size, config.frames, workers))
    pool = Decoding(executor)
    try:
        early = _early_model_pool(config, encoder, pool)
        return _run(dataset, config, encoder, emit, report, selected, all_ids, pool, t0, early)
    finally:
        pool.close()


def _early_model_pool(config: PrecaptionConfig, encoder: Encoder | None, pool: Decoding) -> Any:
    """On Ray, the model actors start first, before the banks load and the driver plans the model: an actor is a
    fresh process that imports torch and open_clip (measured: 7 s against the driver's 3.5 s), and its start is
    the one cost Ray adds to precaption. The actors plan the model themselves from the same spec (planning is
    deterministic); the driver still plans it too, so a missing weight file fails there with its clear message."""
    if config.executor != "ray" or encoder is not None:
        return None
    from dvtr_data.engine.ray import ModelPool

    model = ModelPool(functools.partial(build_planned_encoder, config.model), address=config.ray_address, wait=False)
    pool.on_close(model.close)
    return model


def _model(config: PrecaptionConfig, encoder: Encoder | None, plan: EncoderPlan | None, pool: Decoding) -> Encoder:
    """The model the clips go through: ``encoder`` or the planned one, here or in a Ray actor pool."""
    factory: Any
    if encoder is not None:
        factory = encoder
    elif plan is not None:
        factory = functools.partial(build_encoder, plan)
    else:
        raise ValueError("no model: neither an encoder nor a plan")  # unreachable: `_run` plans when none is given
    if config.executor == "ray":  # the model in an actor pool (a GPU each where the cluster has them)
        from dvtr_data.engine.ray import ModelPool

        model = ModelPool(factory, address=config.ray_address)
        pool.on_close(model.close)
        return model
    return encoder if encoder is not None else factory()


def _device_hint(config: PrecaptionConfig, encoder: Encoder | None) -> str:
    if encoder is not None:
        return str(getattr(encoder, "device", "cpu"))
    if config.model.device != "auto":
        return config.model.device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class _Todo:
    """The clips this run embeds, and their decoding, started before the model is built."""

    missing: list[ClipSource]
    present: list[ClipSource]
    results: Any = None  # iterator of SampledFrames, or None when nothing is to decode
    geometry: Any = None


def _plan_clips(dataset: Dataset, config: PrecaptionConfig, identity: Any, selected: list[ClipSource],
                report: PrecaptionReport) -> _Todo:
    store = EmbeddingStore(dataset, identity, config.frames)
    done = set() if config.force else store.done_ids(config.embed.sampling)
    todo = [c for c in selected if c.clip_id not in done]
    report.clips_skipped = len(selected) - len(todo)
    present = [c for c in todo if os.path.isfile(c.path)]
    return _Todo([c for c in todo if not os.path.isfile(c.path)], present)


def _run(dataset: Dataset, config: PrecaptionConfig, encoder: Encoder | None, emit: Reporter, report: PrecaptionReport,
         selected: list[ClipSource], all_ids: set[str], pool: Decoding, t0: float, early: Any = None) -> PrecaptionReport:
    bank = load_banks(config.banks, fmt=config.bank_format, text_column=config.text_column,
                      max_chars=config.max_caption_chars)
    classes = load_class_list(config.tags) if config.top_tags else None
    report.bank, report.bank_size = bank.label, len(bank)
    report.bank_skipped_empty, report.bank_skipped_huge, report.bank_duplicates = (
        bank.skipped_empty, bank.skipped_huge, bank.duplicates)
    report.class_list = classes.label if classes else ""
    report.seconds["bank_load"] = time.perf_counter() - t0

    # Plan the model (fails at once on missing weights), find the clips to embed, start decoding them, and only
    # then build the model: its loading time is spent decoding.
    t = time.perf_counter()
    plan: EncoderPlan | None = None
    if encoder is None:
        plan = plan_encoder(config.model)
        identity, geometry = plan.identity, plan.geometry
    else:
        identity, geometry = encoder.identity, encoder.geometry
    todo = _plan_clips(dataset, config, identity, selected, report)
    if todo.present:
        todo.geometry = geometry
        todo.results = pool.start(sample_jobs(todo.present, config.embed), todo.geometry)
    encoder = early.ready() if early is not None else _model(config, encoder, plan, pool)
    if early is not None and encoder.identity != identity:  # planned apart from the driver: never expected
        raise ModelError(f"the model actors built {encoder.identity.name}, the driver planned {identity.name}")
    if todo.results is not None and encoder.geometry != todo.geometry:  # open_clip resized: decode again
        pool.close_runs()
        todo.results = pool.start(sample_jobs(todo.present, config.embed), encoder.geometry)
    report.model = identity.name
    report.seconds["model_load"] = time.perf_counter() - t
    emit.notice(f"model {identity.name} on {getattr(encoder, 'device', 'cpu')}")

    log = RunLog(dataset.logs_dir, "precaption")
    report.log_path = log.path
    log.write("start", settings=config.as_dict(), model=identity.name, model_config=identity.config_hash,
              checkpoint_sha256=identity.checkpoint_sha256, bank=bank.label, tool_version=__version__)
    try:
        t = time.perf_counter()
        cache = bank_cache_dir(dataset)
        bank_vectors, report.bank_cached = cached_text_embeddings(
            bank.texts, bank.digest, encoder, cache, progress=emit.heartbeat("embedding bank captions", "captions"))
        class_matrix = None
        if classes is not None:
            prompts = [p for _, p in classes.prompt_texts()]
            prompt_vectors, _ = cached_text_embeddings(prompts, classes.digest, encoder, cache)
            class_matrix = class_vectors(classes, prompt_vectors)
        report.seconds["text_embed"] = time.perf_counter() - t

        t = time.perf_counter()
        _embed_missing(dataset, config, encoder, todo, report, log, emit, pool)
        report.seconds["clip_embed"] = time.perf_counter() - t

        t = time.perf_counter()
        store = EmbeddingStore(dataset, identity, config.frames)
        table = store.consolidate(config.embed.sampling, keep=all_ids)
        _write_drafts(dataset, config, encoder, table, bank, bank_vectors, classes, class_matrix, report, emit)
        report.seconds["retrieval"] = time.perf_counter() - t
        dataset.record_stage("precaption", {"settings": config.as_dict(), "model": identity.name,
                                            "model_config": identity.config_hash, "bank": bank.label,
                                            "class_list": report.class_list})
        report.seconds["total"] = time.perf_counter() - t0
        log.write("summary", **{k: v for k, v in asdict(report).items() if k not in ("log_path", "dataset")})
    except KeyboardInterrupt:
        log.write("interrupted")
        raise
    finally:
        log.close()
    return report


def _embed_missing(dataset: Dataset, config: PrecaptionConfig, encoder: Encoder, todo: _Todo,
                   report: PrecaptionReport, log: RunLog, emit: Reporter, pool: Decoding) -> None:
    settings = config.embed
    store = EmbeddingStore(dataset, encoder.identity, config.frames)
    pending: list[dict[str, Any]] = []
    last_commit = time.monotonic()
    clips = emit.counter("clips", report.clips_selected, "clips", done=report.clips_skipped)

    def record(row: dict[str, Any]) -> None:
        nonlocal last_commit
        pending.append(row)
        if row["status"] == "ok":
            report.clips_embedded += 1
        else:
            report.clips_failed += 1
            report.errors.append(f"{row['clip_id']}: {row['error']}")
            log.write("error", clip_id=row["clip_id"], error=row["error"])
        clips.advance()
        if row["status"] != "ok":
            emit.error(f"{row['clip_id']}: {row['error']}")
        if len(pending) >= config.commit_every or time.monotonic() - last_commit > 30:
            store.commit(pending)
            pending.clear()
            last_commit = time.monotonic()

    try:
        for clip in todo.missing:
            what = "clip file" if clip.source == "clip" else "source video of the flight"
            record(error_row(clip, encoder.identity, settings.sampling, f"{clip.path}: {what} is missing"))
        if todo.results is not None:
            device = str(getattr(encoder, "device", "cpu"))
            for row in embed_clips(todo.present, encoder, settings, device=device, executor=pool.executor,
                                   results=todo.results):
                record(row)
    finally:
        store.commit(pending)  # on success, error or Ctrl-C: finished clips are never lost


def _write_drafts(dataset: Dataset, config: PrecaptionConfig, encoder: Encoder, table: pa.Table, bank: CaptionBank,
                  bank_vectors: Any, classes: ClassList | None, class_matrix: Any, report: PrecaptionReport,
                  emit: Reporter) -> None:
    ids, clip_vectors = clip_matrix(table)
    model = encoder.identity.name
    drafts = distinct_top_k(clip_vectors, bank_vectors, bank.texts, config.top_k,
                            threshold=config.dedupe_threshold, chunk=config.chunk) if ids else []
    rows = [
        {"clip_id": cid, "rank": d.rank, "text": d.text, "score": d.score, "model": model, "bank": bank.label,
         "bank_index": d.index}
        for cid, ds in zip(ids, drafts, strict=True) for d in ds
    ]
    dataset.write_table("precaptions", rows)
    report.precaptions = len(rows)
    tag_rows: list[dict[str, Any]] = []
    if classes is not None and ids:
        for cid, tags in zip(ids, zero_shot(clip_vectors, class_matrix, classes.tags, encoder.logit_scale, config.top_tags),
                             strict=True):
            tag_rows.extend({"clip_id": cid, "rank": t.rank, "tag": t.tag, "score": t.score, "similarity": t.similarity,
                             "model": model, "class_list": classes.label, "source": "zero-shot"} for t in tags)
    dataset.write_table("tags", tag_rows)
    report.tagged = len({r["clip_id"] for r in tag_rows})


# ----------------------------------------------------------------------------------------------------------------
# show
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ClipDrafts:
    """Everything the stage knows about one clip, for `dvtr-data precaption show`."""

    clip_id: str
    clip: dict[str, Any]
    drafts: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    embeddings: list[dict[str, Any]]  # per model: status, error, decoder, frames


def show(dataset_dir: str | os.PathLike, clip_id: str) -> ClipDrafts:
    """A clip's draft captions, tags and embedding status; `UsageError` with suggestions for an unknown id."""
    dataset = Dataset(dataset_dir).require()
    clip_id = clip_id.strip()
    clips = dataset.read_table("clips")
    ids = clips.column("clip_id").to_pylist()
    if clip_id not in ids:
        close = difflib.get_close_matches(clip_id, ids, n=3, cutoff=0.6)
        raise UsageError(f"no clip {clip_id!r} in {dataset.root}",
                         hint=f"did you mean {', '.join(close)}?" if close else "list clip ids with `dvtr-data clips --dataset DIR`")
    clip = clips.filter(pc.equal(clips["clip_id"], clip_id)).to_pylist()[0]
    keep = ("clip_path", "flight_id", "start_s", "end_s", "duration_s", "qc_verdict", "qc_reasons", "status", "error")

    def rows(name: str) -> list[dict[str, Any]]:
        t = dataset.read_table(name)
        return sorted(t.filter(pc.equal(t["clip_id"], clip_id)).to_pylist(), key=lambda r: r["rank"]) if t.num_rows else []

    embeddings = []
    folder = dataset.root / "embeddings"
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        t = read_table_file(path, "embeddings").select(["clip_id", "model", "status", "error", "decoder", "sampling"])
        embeddings.extend(t.filter(pc.equal(t["clip_id"], clip_id)).to_pylist())
    return ClipDrafts(clip_id, {k: clip.get(k) for k in keep}, rows("precaptions"), rows("tags"), embeddings)
