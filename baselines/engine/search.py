"""Text search over every clip of a dataset with a trained MSAM run (msam.md §8).

For one query the fusion head's learned gate cancels (``β = 1``, ``u = 2v``), so the model's exact score is

    score(q, clip) = scale · (α · s) / sqrt(αᵀ G α),   s = F̂ q,  α = softmax(s / τ)

with ``F̂`` the clip's unit post-temporal frame embeddings ``[F, C]``, ``G = F̂ F̂ᵀ`` its frame Gram matrix and
``scale = 0.4 · exp(logit_scale)``. Everything but ``s`` is query-independent and precomputed once per clip
(:class:`SearchIndex`); a query then costs one pass over the stored frame embeddings (``s`` for every frame of
every clip as one matrix-vector product) plus ``O(F²)`` per clip. The naive path (:func:`naive_scores`) runs
the model's own head on the query and every clip in chunks; the two agree to float32 rounding.

Mean-pooling baselines (CLIP4Clip) store one pooled vector per clip instead.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dvtr_data.baselines.msam import MSAM, frame_gram, mean_pooled_video
from dvtr_data.dataset import Dataset, atomic_path
from dvtr_data.errors import ModelError, UsageError

from .backbone import clip_autocast, convert_to_fp16, tokenize
from .cache import FeatureCache
from .checkpoint import load_checkpoint, load_state_or_fail
from .config import BaselineConfig
from .data import ClipRecord, dataset_clips
from .runs import RunFolder, open_run
from .train import Encoder, Progress, build_model, feature_cache, load_model_state, resolve_device

INDEX_FORMAT = 1
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class SearchIndex:
    """Per-clip query-independent state of one model, and the fast exact scorer over it.

    Attributes:
        frames: unit post-temporal frame embeddings ``[N, F, C]`` (``fusion`` kind), in ``store_dtype``.
        gram: their Gram matrices ``[N, F, F]`` in float32 (computed from the float32 embeddings).
        pooled: unit mean-pooled clip vectors ``[N, C]`` (``mean`` kind).
        mask: ``[N, F]`` valid frames, only when the model masks padding in its head (a deviation).
        scale: the multiplier turning the head's cosine into the model's logit.
    """

    kind: str
    clip_ids: list[str]
    flight_ids: list[str | None]
    spans: list[tuple[float | None, float | None]]
    tau: float
    scale: float
    frames: Tensor | None = None
    gram: Tensor | None = None
    pooled: Tensor | None = None
    mask: Tensor | None = None
    fingerprint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.clip_ids)

    @property
    def store_dtype(self) -> torch.dtype:
        return (self.frames if self.frames is not None else self.pooled).dtype  # type: ignore[union-attr]

    def scores(self, query: Tensor) -> Tensor:
        """The model's single-query logit of every clip, ``[N]``, for a unit query vector ``[C]``."""
        if self.kind == "mean":
            assert self.pooled is not None
            return self.scale * (self.pooled @ query.to(self.pooled.dtype)).float()
        assert self.frames is not None and self.gram is not None
        n, f, c = self.frames.shape
        s = (self.frames.view(n * f, c) @ query.to(self.frames.dtype)).view(n, f).float()
        logits = s if self.mask is None else s.masked_fill(~self.mask, float("-inf"))
        alpha = torch.softmax(logits / self.tau, dim=1)
        numerator = (alpha * s).sum(1)
        norm_sq = torch.bmm(self.gram, alpha.unsqueeze(2)).squeeze(2).mul_(alpha).sum(1)
        return numerator.div_(norm_sq.clamp_min_(torch.finfo(norm_sq.dtype).tiny).sqrt_()).mul_(self.scale)

    def top(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """``(scores, clip positions)`` of the ``k`` best clips, best first."""
        scores = self.scores(query)
        k = min(k, scores.shape[0])
        return torch.topk(scores, k)

    def to_state(self) -> dict[str, Any]:
        return {
            "format": INDEX_FORMAT, "kind": self.kind, "clip_ids": self.clip_ids,
            "flight_ids": [x or "" for x in self.flight_ids],
            "spans": [[float("nan") if a is None else a, float("nan") if b is None else b] for a, b in self.spans],
            "tau": self.tau, "scale": self.scale, "frames": self.frames, "gram": self.gram, "pooled": self.pooled,
            "mask": self.mask, "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SearchIndex:
        def opt(x: float) -> float | None:
            return None if x != x else x

        return cls(
            kind=state["kind"], clip_ids=list(state["clip_ids"]), flight_ids=[x or None for x in state["flight_ids"]],
            spans=[(opt(a), opt(b)) for a, b in state["spans"]], tau=state["tau"], scale=state["scale"],
            frames=state["frames"], gram=state["gram"], pooled=state["pooled"], mask=state["mask"],
            fingerprint=state["fingerprint"],
        )


@torch.no_grad()
def build_index(
    model: MSAM,
    clips: list[ClipRecord],
    frame_cls: Tensor,
    video_mask: Tensor,
    *,
    store_dtype: torch.dtype = torch.float32,
    chunk: int = 4096,
) -> SearchIndex:
    """Precompute the query-independent state of every clip (temporal transformer, norms, Gram matrices)."""
    model.eval()
    o = model.options
    scale_logit = float(model.logit_scale.exp())
    frames, grams, pooled = [], [], []
    for start in range(0, frame_cls.shape[0], chunk):
        fc, vm = frame_cls[start : start + chunk], video_mask[start : start + chunk]
        unit = model.frame_embeddings(fc, vm)
        if o.similarity == "mean":
            pooled.append(mean_pooled_video(unit, vm).to(store_dtype))
        else:
            frames.append(unit.to(store_dtype))
            grams.append(frame_gram(unit))
    common = {
        "clip_ids": [c.clip_id for c in clips],
        "flight_ids": [c.flight_id for c in clips],
        "spans": [(c.start_s, c.end_s) for c in clips],
        "tau": o.tau,
        "fingerprint": clips_fingerprint(clips),
    }
    if o.similarity == "mean":
        return SearchIndex(kind="mean", scale=scale_logit, pooled=torch.cat(pooled), **common)
    return SearchIndex(
        kind="fusion", scale=o.head_scale * scale_logit, frames=torch.cat(frames), gram=torch.cat(grams),
        mask=video_mask.bool() if o.mask_padding_in_head else None, **common,
    )


@torch.no_grad()
def naive_scores(model: MSAM, query: Tensor, frames: Tensor, video_mask: Tensor, *, chunk: int = 2048) -> Tensor:
    """The model's own similarity head on ``query`` alone against every clip, in chunks: ``[N]`` logits.

    ``frames`` are unit post-temporal embeddings (``model.frame_embeddings``); the reference for the fast path.
    """
    model.eval()
    head_mask = video_mask if model.options.mask_padding_in_head else None
    out = []
    for start in range(0, frames.shape[0], chunk):
        part = frames[start : start + chunk].float()
        m = None if head_mask is None else head_mask[start : start + chunk]
        if model.options.similarity == "mean":
            s = query[None, :] @ mean_pooled_video(part, video_mask[start : start + chunk]).T
        else:
            s = model.head(query[None, :].float(), part, m)
        out.append(s[0])
    return model.logit_scale.exp() * torch.cat(out)


def clips_fingerprint(clips: list[ClipRecord]) -> str:
    h = hashlib.sha256()
    for c in clips:
        h.update(c.file_key().encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- runs
def load_run_model(ds: Dataset, run_id: str, device: torch.device) -> tuple[RunFolder, BaselineConfig, MSAM]:
    """A run's model with its selected weights (``best.pt``; an untrained model for zero-shot runs)."""
    run = open_run(ds, run_id)
    saved = run.config()
    cfg = BaselineConfig.from_dict(saved["baseline"], source=str(run.config_path))
    status = run.metrics().get("status")
    if status != "finished":
        raise UsageError(f"run {run_id} has not finished (status {status or 'unknown'})", hint=f"resume it with: dvtr-data baseline resume {run_id}")
    if cfg.family != "msam":
        raise UsageError(
            f"run {run_id} is a {cfg.family} run; search indexes MSAM-family runs (MSAM, its ablations, CLIP4Clip)",
            hint="pick an MSAM-family run id (dvtr-data baseline table lists them with their family)",
        )
    model = build_model(cfg)
    if cfg.backbone.mode == "reference" and not cfg.zero_shot:
        convert_to_fp16(model.encoders.clip)
    if run.best_path.is_file():
        best = load_checkpoint(run.best_path, "cpu")
        load_state_or_fail(run.best_path,
                           lambda: load_model_state(model, best["model"], frozen=cfg.backbone.mode == "frozen"))
    elif not cfg.zero_shot:
        raise ModelError(f"run {run_id} has no best.pt")
    return run, cfg, model.to(device).eval()


def _run_features(ds: Dataset, run: RunFolder, cfg: BaselineConfig, model: MSAM, encoder: Encoder) -> FeatureCache:
    """Frozen backbone: the dataset's cache; trained backbone: a cache of this run's own CLIP."""
    if cfg.backbone.mode == "frozen" or cfg.zero_shot:
        return feature_cache(ds, cfg, encoder.size)
    digest = hashlib.sha256(run.best_path.read_bytes()).hexdigest()[:12]
    identity = {"run": run.run_id, "best": digest, "data": cfg.data.__dict__}
    return FeatureCache(run.root / "search", identity, f"features-{digest}")


@dataclass
class SearchHit:
    rank: int
    clip_id: str
    flight_id: str | None
    start_s: float | None
    end_s: float | None
    score: float
    file_name: str | None = None  # the flight's source file (what a person knows it by), when the dataset has it


def flight_file_names(ds: Dataset) -> dict[str, str]:
    """``flight_id -> file_name`` from the flights table: a hash alone does not tell a person which video it is."""
    t = ds.read_table("flights")  # absent: an empty table
    if not t.num_rows:
        return {}
    return {
        f: n
        for f, n in zip(t.column("flight_id").to_pylist(), t.column("file_name").to_pylist(), strict=True)
        if n
    }


@dataclass
class SearchResult:
    query: str
    hits: list[SearchHit]
    clips: int
    seconds: float  # scoring time of this query, index already loaded
    index_path: Path


def open_index(
    dataset: str | Path,
    run_id: str,
    *,
    device: str = "cpu",
    store_dtype: str = "float32",
    progress: Progress | None = None,
) -> tuple[MSAM, BaselineConfig, SearchIndex, Path]:
    """The run's model and its search index over every clip of the dataset (built and saved on first use)."""
    ds = Dataset(dataset).require()
    if store_dtype not in STORE_DTYPES:
        raise UsageError(f"unknown store dtype {store_dtype!r}", hint=f"choose {', '.join(STORE_DTYPES)}")
    dev = resolve_device(device)
    run, cfg, model = load_run_model(ds, run_id, dev)
    clips = dataset_clips(ds)
    if not clips:
        raise UsageError(f"{ds.root} has no clip files to search")
    path = run.root / "search" / f"index-{store_dtype}.pt"
    fingerprint = clips_fingerprint(clips)
    if path.is_file():
        try:  # the index is derived data: a damaged one is rebuilt, never trusted or loaded unsafely
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            state = {}
        if isinstance(state, dict) and state.get("format") == INDEX_FORMAT and state.get("fingerprint") == fingerprint:
            return model, cfg, _to(SearchIndex.from_state(state), dev), path
    with ds.writing("search"):  # the first search of a run writes its feature cache and index into the dataset
        encoder = Encoder(model, cfg, dev)
        cache = _run_features(ds, run, cfg, model, encoder)
        frame_cls, mask = cache.frame_features(clips, encoder.clips, progress=progress)
        index = build_index(model, clips, frame_cls.to(dev), mask.to(dev), store_dtype=STORE_DTYPES[store_dtype])
        index = _to(index, torch.device("cpu"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(index.to_state(), tmp)
    return model, cfg, _to(index, dev), path


def _to(index: SearchIndex, device: torch.device) -> SearchIndex:
    for name in ("frames", "gram", "pooled", "mask"):
        t = getattr(index, name)
        if t is not None:
            setattr(index, name, t.to(device))
    return index


@torch.no_grad()
def encode_query(model: MSAM, cfg: BaselineConfig, text: str) -> Tensor:
    """The unit sentence vector of a query, as the model encodes captions."""
    if not text.strip():
        raise UsageError("the search query is empty")
    dev = model.logit_scale.device
    ids = tokenize([text], cfg.data.max_words).to(dev)
    with clip_autocast(dev, cfg.backbone.mode == "reference" or cfg.backbone.precision == "fp16"):
        sentence, _ = model.encode_text(ids)
    return F.normalize(sentence.float(), dim=-1)[0]


def search(
    dataset: str | Path,
    run_id: str,
    query: str,
    *,
    top: int = 10,
    device: str = "cpu",
    store_dtype: str = "float32",
    progress: Progress | None = None,
) -> SearchResult:
    """The ``top`` clips of the dataset for ``query`` under run ``run_id``'s model, best first."""
    if top < 1:
        raise UsageError("--top must be >= 1")
    model, cfg, index, path = open_index(dataset, run_id, device=device, store_dtype=store_dtype, progress=progress)
    q = encode_query(model, cfg, query)
    t0 = time.perf_counter()
    scores, pos = index.top(q, top)
    if q.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    hits = []
    names = flight_file_names(Dataset(dataset))
    for rank, (score, p) in enumerate(zip(scores.tolist(), pos.tolist(), strict=True), start=1):
        a, b = index.spans[p]
        flight = index.flight_ids[p]
        hits.append(SearchHit(rank, index.clip_ids[p], flight, a, b, float(score), names.get(flight or "")))
    return SearchResult(query, hits, len(index), seconds, path)
