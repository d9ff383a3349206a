"""Training and scoring one baseline on a dataset: what ``dvtr-data baseline NAME`` runs.

The loop is the authors' (msam.md §6): captions shuffled per epoch (seeded by ``seed + epoch``), batches of 64
with ``drop_last``, global gradient clipping, BertAdam (per-tensor clipping, no bias correction, warm-up then
cosine on total progress), the ``logit_scale`` clamp after every step; at the end of every epoch a checkpoint
and an evaluation on the first evaluation split; the best epoch (paper-protocol text-to-video R@1, ties to
the later epoch) is reloaded and scored on every evaluation split in both protocols.

Backbone modes (``backbone.mode``):

* ``frozen``: CLIP features come from the dataset's feature cache (``cache.py``), computed once; only the
  MSAM modules train. Equivalent to the authors' run up to their CLIP LayerNorm drift (fp32 LayerNorm weights
  and ``logit_scale`` at lr 1e-7 move by ~1e-4 in total; the fp16 weights do not move, msam.md §12-2).
* ``reference``: CLIP's Linear/Conv/attention weights in fp16, updated in place by BertAdam at
  ``lr * coef_lr``, the authors' frozen embeddings frozen; forward under fp16 autocast.
* ``finetune``: fp32 CLIP trained at ``backbone.backbone_lr``.

A run is resumable: ``last.pt`` holds the end-of-epoch state and an interrupted epoch restarts from its start.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dvtr_data import __version__
from dvtr_data.baselines.msam import MSAM, MSAMOptions, MSAMSizes
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, ModelError, UsageError

from . import distributed as ddp
from . import draws
from .backbone import (
    clip_autocast,
    clip_tokenizer,
    convert_to_fp16,
    feature_identity,
    identity_key,
    image_size_of,
    load_clip,
    set_backbone_trainable,
    token_mask,
    tokenize,
)
from .cache import FeatureCache
from .checkpoint import load_checkpoint, load_state_or_fail
from .config import BaselineConfig
from .data import ClipRecord, SplitData, load_clip_pixels, load_split, normalise, pixel_loader
from .evaluate import SplitFeatures, evaluate_features
from .family import get_family
from .metrics import mean_recall
from .optim import BertAdam, authors_param_groups
from .runs import RunFolder, check_run_id, new_run_id, open_run, runs_dir, write_report

Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    best_epoch: int | None
    final: dict[str, Any]
    report: Path
    resumed: bool = False
    messages: list[str] = field(default_factory=list)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; a missing GPU is a usage error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for, but torch sees no CUDA device", hint="use --device cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"{name}: only {torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise UsageError(f"unknown device {name!r}", hint="use cpu, cuda or cuda:N")


def build_model(cfg: BaselineConfig) -> MSAM:
    """The MSAM variant of ``cfg`` around its open_clip backbone, initialised as the authors do (seeded)."""
    clip = load_clip(cfg.backbone)
    vocab = clip_tokenizer().vocab_size
    if clip.token_embedding.num_embeddings < vocab:
        raise ModelError(
            f"the backbone's vocabulary has {clip.token_embedding.num_embeddings} tokens, CLIP's tokenizer {vocab}"
        )
    options = MSAMOptions.preset(cfg.model.preset, **cfg.model.options)
    try:
        sizes = MSAMSizes(**cfg.model.sizes)
    except TypeError as exc:
        raise UsageError(f"model.sizes: {exc}") from None
    generator = torch.Generator().manual_seed(cfg.train.seed)
    return MSAM.from_clip(clip, sizes=sizes, options=options, generator=generator)


def heads_state(model: MSAM) -> dict[str, torch.Tensor]:
    """Everything but CLIP: what a frozen-backbone checkpoint stores."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("encoders.clip.")}


def load_model_state(model: MSAM, state: dict[str, torch.Tensor], *, frozen: bool) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if not (frozen and k.startswith("encoders.clip."))]
    if bad_missing or unexpected:
        raise ModelError(
            f"checkpoint does not fit the model: {len(bad_missing)} missing, {len(unexpected)} unexpected "
            f"(e.g. {(bad_missing or unexpected)[0]})"
        )


# ---------------------------------------------------------------------------------------------- encoding
class Encoder:
    """Runs the model's CLIP over clips and captions (for the cache, or per epoch when CLIP trains)."""

    def __init__(self, model: MSAM, cfg: BaselineConfig, device: torch.device) -> None:
        self.model, self.cfg, self.device = model, cfg, device
        self.size = cfg.data.image_size or image_size_of(model.encoders.clip)
        self.fp16 = cfg.backbone.mode == "reference" or cfg.backbone.precision == "fp16"
        cuda = device.type == "cuda"
        self.clip_batch = 32 if cuda else 8
        self.text_batch = 512 if cuda else 128

    def clips(self, clips: list[ClipRecord]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        loader = pixel_loader(clips, self.cfg.data, self.size, self.clip_batch)
        for idx, pixels, mask in loader:
            video = normalise(pixels.to(self.device), mask.to(self.device))
            with torch.no_grad(), clip_autocast(self.device, self.fp16):
                feats = self.model.encode_frames(video)
            yield idx.tolist(), feats.float().cpu(), mask

    def captions(self, texts: list[str]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]]:
        for start in range(0, len(texts), self.text_batch):
            part = texts[start : start + self.text_batch]
            ids = tokenize(part, self.cfg.data.max_words)
            with torch.no_grad(), clip_autocast(self.device, self.fp16):
                sentence, tokens = self.model.encode_text(ids.to(self.device))
            yield list(range(start, start + len(part))), sentence.float().cpu(), tokens.float().cpu(), ids

    def split_features(self, split: SplitData, progress: Progress | None = None) -> SplitFeatures:
        """Features of a split with the current CLIP (no cache): used when CLIP trains."""
        was = self.model.training
        self.model.eval()
        try:
            frames, masks = [], []
            done = 0
            for _, f, m in self.clips(split.clips):
                frames.append(f)
                masks.append(m)
                done += len(f)
                if progress:
                    progress(f"encoding {split.name} clips", done, len(split.clips))
            sentences = [s for _, s, _, _ in self.captions([c.text for c in split.captions])]
        finally:
            self.model.train(was)
        return SplitFeatures(
            torch.cat(sentences), torch.cat(frames), torch.cat(masks), torch.tensor(split.caption_clip, dtype=torch.long)
        )


def feature_cache(dataset: Dataset, cfg: BaselineConfig, image_size: int) -> FeatureCache:
    """The frozen-backbone cache of ``cfg``'s backbone identity under ``<dataset>/cache/``."""
    identity = feature_identity(cfg.backbone, cfg.data, image_size)
    label = f"{cfg.backbone.model}-{cfg.backbone.pretrained or ('checkpoint' if cfg.backbone.checkpoint else 'random')}"
    return FeatureCache(dataset.root / "cache", identity, identity_key(identity, label))


@dataclass
class CachedSplit:
    """A split's cached features, tokens included (the training set needs them for the text PIENet)."""

    feats: SplitFeatures
    tokens: torch.Tensor
    ids: torch.Tensor


def cached_split(cache: FeatureCache, encoder: Encoder, split: SplitData, progress: Progress | None) -> CachedSplit:
    frames, mask = cache.frame_features(split.clips, encoder.clips, progress=progress)
    sentence, tokens, ids = cache.caption_features([c.text for c in split.captions], encoder.captions, progress=progress)
    feats = SplitFeatures(sentence, frames, mask, torch.tensor(split.caption_clip, dtype=torch.long))
    return CachedSplit(feats, tokens, ids)


# ---------------------------------------------------------------------------------------------- training data
class CaptionPixels(torch.utils.data.Dataset):
    """Per caption: its clip's frames (decoded in DataLoader workers), as the authors' loader serves them."""

    def __init__(self, split: SplitData, cfg: BaselineConfig, size: int) -> None:
        self.split, self.cfg, self.size = split, cfg, size

    def __len__(self) -> int:
        return len(self.split.captions)

    def __getitem__(self, pos: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        clip = self.split.clips[self.split.caption_clip[pos]]
        pixels, n = load_clip_pixels(clip, self.cfg.data, self.size)
        mask = torch.zeros(self.cfg.data.max_frames, dtype=torch.long)
        mask[:n] = 1
        return pos, torch.from_numpy(pixels), mask


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The caption order of an epoch (``DistributedSampler``-like: a permutation seeded by seed + epoch)."""
    g = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(n, generator=g).tolist()


def resume_point(
    run: RunFolder,
    dev: torch.device,
    resumed: bool,
    metrics: dict[str, Any],
    say: Log,
    optimizer: torch.optim.Optimizer,
    load_model: Callable[[dict[str, Any]], Any],
) -> tuple[int, float | None, int]:
    """Where a run's training starts (every family's loop): the epoch, best score and best epoch of its last
    checkpoint when resumed (model, optimiser and RNG restored), else from the start."""
    if resumed and run.last_path.is_file():
        last = load_checkpoint(run.last_path, dev, keys=("model", "optimizer", "rng", "epoch"))

        def restore() -> None:
            load_model(last["model"])
            optimizer.load_state_dict(last["optimizer"])
            _set_rng_state(last["rng"], dev)

        load_state_or_fail(run.last_path, restore)
        start_epoch = int(last["epoch"])
        metrics["epochs"] = metrics.get("epochs", [])[:start_epoch]
        say(f"resuming {run.run_id} after epoch {start_epoch}")
        return start_epoch, last.get("best_score"), int(last.get("best_epoch", 0))
    if resumed:
        metrics["epochs"] = []
    return 0, None, 0


def epoch_steps(n_captions: int, batch: int, drop_last: bool) -> int:
    """Optimiser steps per epoch over ``n_captions`` (every family's loop); a split smaller than a batch is an error."""
    steps = len(batches_of(list(range(n_captions)), batch, drop_last))
    if steps == 0:
        raise DatasetError(
            f"the training split has {n_captions} captions, fewer than one batch of {batch}",
            hint="lower the batch size (--batch-size) or add captions",
        )
    ddp.check_batch(batch, last=n_captions % batch if not drop_last else 0)
    return steps


def batches_of(order: list[int], batch: int, drop_last: bool) -> list[list[int]]:
    out = [order[i : i + batch] for i in range(0, len(order), batch)]
    if drop_last and out and len(out[-1]) < batch:
        out.pop()
    return out


# ---------------------------------------------------------------------------------------------- the run
def _selection_value(result: dict[str, Any], protocol: str, metric: str) -> float:
    if metric == "mR":
        return mean_recall(result[protocol])
    direction, _, name = metric.partition("_")
    value = result[protocol][direction][name]
    return -value if name in ("MdR", "MnR") else value  # larger is better


def _metric_value(score: float | None, metric: str) -> float | None:
    """Undo the sign flip of :func:`_selection_value`."""
    if score is None:
        return None
    return -score if metric.endswith(("MdR", "MnR")) else score


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.random.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.random.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save(path: Path, obj: dict[str, Any]) -> None:
    """Checkpoint to ``path`` (rank 0 only across processes: every process holds the same state)."""
    from dvtr_data.dataset import atomic_path

    if not ddp.is_main():
        return
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def run_baseline(
    cfg: BaselineConfig,
    dataset: str | Path,
    *,
    split_train: str = "train",
    split_eval: tuple[str, ...] | list[str] = ("val", "test"),
    device: str = "auto",
    run_id: str | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
) -> RunResult:
    """Train ``cfg`` on ``split_train`` of ``dataset`` and score it on ``split_eval`` (first split selects).

    Writes ``<dataset>/runs/<run id>/``. With epochs = 0 it only scores (zero-shot).
    """
    ds = Dataset(dataset).require()
    split_eval = tuple(s.strip() for s in split_eval if s.strip())
    if not split_eval:
        raise UsageError("give at least one evaluation split (--split-eval val,test)")
    dev = ddp.init_from_env(resolve_device(device))  # under torchrun: joins the group (gloo / nccl)
    run_id = check_run_id(ddp.broadcast_object(run_id or new_run_id(cfg.name)))  # one clock for all processes
    run = ddp.follower_run(RunFolder(runs_dir(ds) / run_id))
    if run.exists():
        raise UsageError(f"run {run_id} already exists in {runs_dir(ds)}", hint=f"resume it with: dvtr-data baseline resume {run_id}")
    ddp.barrier()  # every process has checked before rank 0 makes the folder
    if not ddp.is_main():
        progress, log = None, None
    request = {
        "dataset": str(ds.root),
        "split_train": split_train,
        "split_eval": list(split_eval),
        "device": str(dev),
        "tool_version": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    family = get_family(cfg.family)
    with ddp.main_writing(ds):  # a run writes its folder and the feature cache into the dataset (rank 0 does)
        return family.execute(run, cfg, ds, request, dev, progress=progress, log=log, resumed=False)


def resume_run(
    dataset: str | Path, run_id: str, *, device: str | None = None, progress: Progress | None = None, log: Log | None = None
) -> RunResult:
    """Continue an interrupted run from its last finished epoch (a finished run is only reported)."""
    ds = Dataset(dataset).require()
    run = ddp.follower_run(open_run(ds, run_id))
    saved = run.config()
    cfg = BaselineConfig.from_dict(saved["baseline"], source=str(run.config_path))
    request = saved["request"]
    dev = ddp.init_from_env(resolve_device(device or request.get("device", "auto").split(":")[0]))
    if not ddp.is_main():
        progress, log = None, None
    if run.metrics().get("status") == "finished":
        m = run.metrics()
        return RunResult(run_id, run.root, "finished", m.get("best_epoch"), m.get("final", {}), run.report_path, resumed=True,
                         messages=["the run had already finished; nothing to do"])
    with ddp.main_writing(ds):
        return get_family(cfg.family).execute(run, cfg, ds, request, dev, progress=progress, log=log, resumed=True)


def _execute(
    run: RunFolder,
    cfg: BaselineConfig,
    ds: Dataset,
    request: dict[str, Any],
    dev: torch.device,
    *,
    progress: Progress | None,
    log: Log | None,
    resumed: bool,
) -> RunResult:
    say = log or (lambda _msg: None)
    mode = cfg.backbone.mode
    frozen = mode == "frozen" or cfg.zero_shot
    o = MSAMOptions.preset(cfg.model.preset, **cfg.model.options)
    heads_learn = o.use_temporal or o.similarity == "fusion" or o.uses_semantic_branch
    if not cfg.zero_shot and frozen and not heads_learn:
        raise UsageError(
            f"{cfg.name} has nothing to train with a frozen backbone",
            hint="use --backbone reference or finetune, or its zero-shot variant",
        )
    eval_splits = [load_split(ds, s) for s in request["split_eval"]]
    train_split = None if cfg.zero_shot else load_split(ds, request["split_train"])
    overlap = set()
    if train_split is not None:
        train_ids = {c.clip_id for c in train_split.clips}
        overlap = {c.clip_id for s in eval_splits for c in s.clips} & train_ids
        if overlap:
            say(f"warning: {len(overlap)} clip(s) are in both the training and an evaluation split")
    for s in ([train_split] if train_split else []) + eval_splits:
        say(f"split {s.summary()}" + (f" ({s.dropped_clips} clip(s) without captions left out)" if s.dropped_clips else ""))

    model = build_model(cfg).to(dev)
    ddp.broadcast_parameters(model)  # seeded alike already; rank 0's weights everywhere, as DDP starts
    if not resumed and ddp.is_main():  # the run folder appears once its inputs and its model are known to load
        run.root.mkdir(parents=True, exist_ok=True)
        run.write_json(
            run.config_path,
            {"run_id": run.run_id, "request": request, "baseline": cfg.to_dict(), "backbone_lr": cfg.backbone_lr},
        )
    encoder = Encoder(model, cfg, dev)
    if frozen:
        set_backbone_trainable(model.encoders.clip, trainable=False)
    else:
        if mode == "reference":
            convert_to_fp16(model.encoders.clip)
        set_backbone_trainable(model.encoders.clip, trainable=True, freeze=cfg.backbone.freeze)

    # Features: a cache for a frozen backbone, else computed with the current CLIP when needed.
    cached: dict[str, CachedSplit] = {}
    if frozen:
        cache = feature_cache(ds, cfg, encoder.size)
        say(f"feature cache {cache.folder}")
        model.eval()
        with ddp.main_first():  # rank 0 fills the cache, the others then read it
            for s in ([train_split] if train_split else []) + eval_splits:
                cached[s.name] = cached_split(cache, encoder, s, progress)

    def eval_features(split: SplitData) -> SplitFeatures:
        if frozen:
            return cached[split.name].feats.to(dev)
        return encoder.split_features(split, progress).to(dev)

    def evaluate(split: SplitData) -> dict[str, Any]:
        return evaluate_features(
            model, eval_features(split), protocols=cfg.eval.protocols, chunk_size=cfg.eval.chunk_size,
            video_chunk_size=cfg.eval.video_chunk_size,
        )

    metrics: dict[str, Any] = run.metrics() if resumed else {}
    metrics.update({"run_id": run.run_id, "baseline": cfg.name, "status": "running"})
    metrics.setdefault("epochs", [])
    all_splits = ([train_split] if train_split else []) + eval_splits
    metrics["data"] = {s.name: f"{len(s.clips)} clips / {len(s.captions)} captions" for s in all_splits}
    select_split = eval_splits[0].name
    metrics["selection"] = {"split": select_split, "protocol": cfg.eval.select_protocol, "metric": cfg.eval.select_metric}
    if len(eval_splits) == 1 and not cfg.zero_shot:
        metrics["selection"]["note"] = "the only evaluation split also selected the epoch: its numbers are optimistic"
    run.write_json(run.metrics_path, metrics)

    best_epoch: int | None = None
    if train_split is not None:
        best_epoch = _train(run, cfg, model, encoder, train_split, eval_splits[0], cached, evaluate, metrics, dev,
                            frozen=frozen, resumed=resumed, progress=progress, say=say)
        ddp.barrier()  # rank 0 has written best.pt
        best = load_checkpoint(run.best_path, dev)
        load_state_or_fail(run.best_path, lambda: load_model_state(model, best["model"], frozen=frozen))
        say(f"best epoch {best_epoch}; scoring {', '.join(s.name for s in eval_splits)}")
    final = {}
    for split in eval_splits:
        final[split.name] = evaluate(split)
    metrics["final"] = final
    metrics["best_epoch"] = best_epoch
    metrics["status"] = "finished"
    run.write_json(run.metrics_path, metrics)
    report = write_report(run) if ddp.is_main() else run.report_path
    return RunResult(run.run_id, run.root, "finished", best_epoch, final, report, resumed=resumed)


def _train(
    run: RunFolder,
    cfg: BaselineConfig,
    model: MSAM,
    encoder: Encoder,
    train_split: SplitData,
    select: SplitData,
    cached: dict[str, CachedSplit],
    evaluate: Callable[[SplitData], dict[str, Any]],
    metrics: dict[str, Any],
    dev: torch.device,
    *,
    frozen: bool,
    resumed: bool,
    progress: Progress | None,
    say: Log,
) -> int:
    t = cfg.train
    n_captions = len(train_split.captions)
    steps_per_epoch = epoch_steps(n_captions, t.batch_size, t.drop_last)
    t_total = steps_per_epoch * t.epochs
    groups = authors_param_groups(
        model, lr=t.lr, backbone_lr=cfg.backbone_lr, weight_decay=t.weight_decay, decay_norm_weights=t.decay_norm_weights
    )
    optimizer = BertAdam(
        groups, lr=t.lr, warmup=t.warmup_proportion, t_total=t_total, schedule=t.schedule, b1=t.betas[0], b2=t.betas[1],
        e=t.eps, weight_decay=t.weight_decay, max_grad_norm=t.per_tensor_clip, bias_correction=t.bias_correction,
    )
    torch.manual_seed(t.seed)
    start_epoch, best_score, best_epoch = resume_point(
        run, dev, resumed, metrics, say, optimizer, lambda state: load_model_state(model, state, frozen=frozen)
    )

    train_feats = cached.get(train_split.name)
    if train_feats is not None:
        sentence = train_feats.feats.sentence.to(dev)
        frames = train_feats.feats.frame_cls.to(dev)
        vmask = train_feats.feats.video_mask.to(dev)
        tokens = train_feats.tokens.to(dev)
        ids = train_feats.ids.to(dev)
    else:
        all_ids = tokenize([c.text for c in train_split.captions], cfg.data.max_words)
        pixel_set = CaptionPixels(train_split, cfg, encoder.size)
    caption_clip = torch.tensor(train_split.caption_clip, dtype=torch.long, device=dev)

    def step_batches(order: list[int]) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        # global batches as one process forms them; each process takes its slice (distributed.shard)
        batches = [ddp.shard(b) for b in batches_of(order, t.batch_size, t.drop_last)]
        if train_feats is not None:
            for b in batches:
                idx = torch.tensor(b, device=dev)
                clip_idx = caption_clip[idx]
                yield b, {
                    "sentence": sentence[idx], "tokens": tokens[idx], "ids": ids[idx],
                    "frames": frames[clip_idx], "mask": vmask[clip_idx],
                }
            return
        loader = torch.utils.data.DataLoader(
            pixel_set, batch_sampler=batches, num_workers=cfg.data.decode_workers, pin_memory=dev.type == "cuda"
        )
        for pos, pixels, mask in loader:
            yield pos.tolist(), {"pixels": pixels.to(dev, non_blocking=True), "mask": mask.to(dev), "ids": all_ids[pos].to(dev)}

    for epoch in range(start_epoch, t.epochs):
        model.train()
        if frozen:
            model.encoders.clip.eval()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        step_loss: list[float] = []
        order = epoch_order(n_captions, t.seed, epoch)
        for done, (rows, batch) in enumerate(step_batches(order), start=1):
            # PIENet dropout masks per caption (step seed, position, layer), not per process: N processes == 1
            with draws.per_sample(rows):
                if "pixels" in batch:
                    video = normalise(batch["pixels"], batch["mask"])
                    with clip_autocast(dev, cfg.backbone.mode == "reference"):
                        sent, toks = model.encode_text(batch["ids"])
                        feats = model.encode_frames(video)
                    losses = model.losses_from_features(sent, toks, feats, batch["mask"], token_mask=token_mask(batch["ids"]))
                else:
                    losses = model.losses_from_features(
                        batch["sentence"], batch["tokens"], batch["frames"], batch["mask"],
                        token_mask=token_mask(batch["ids"]),
                    )
            loss = losses["total"]
            values = ddp.mean_losses(losses)  # the global batch's terms, whatever the number of processes
            if not math.isfinite(values["total"]):
                raise ModelError(f"the loss became {values['total']} at epoch {epoch + 1}, step {done}", hint="lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ddp.average_gradients(model.parameters())
            if t.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], t.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(max=t.logit_scale_max)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            step_loss.append(values["total"])
            if progress:
                progress(f"epoch {epoch + 1}/{t.epochs}", done, steps_per_epoch)
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "steps": len(step_loss),
            "loss": {k: v / max(len(step_loss), 1) for k, v in sums.items()},
            "step_loss": step_loss,
            "lr": optimizer.current_lrs(),
            "seconds": seconds,
        }
        state = heads_state(model) if frozen else model.state_dict()
        result = evaluate(select)
        record["eval"] = {select.name: result}
        score = _selection_value(result, cfg.eval.select_protocol, cfg.eval.select_metric)
        if best_score is None or score >= best_score:  # the authors' `best_score <= R1`: ties go to the later epoch
            best_score, best_epoch = score, epoch + 1
            _save(run.best_path, {"epoch": epoch + 1, "model": state, "baseline": cfg.name})
        _save(
            run.last_path,
            {"epoch": epoch + 1, "model": state, "optimizer": optimizer.state_dict(), "rng": _rng_state(dev),
             "best_score": best_score, "best_epoch": best_epoch},
        )
        metrics["epochs"].append(record)
        metrics["selection"]["score"] = _metric_value(best_score, cfg.eval.select_metric)
        metrics["best_epoch"] = best_epoch
        run.write_json(run.metrics_path, metrics)
        if ddp.is_main():
            write_report(run, curves=False)
        r = result[cfg.eval.select_protocol]
        say(
            f"epoch {epoch + 1}/{t.epochs}: loss {record['loss'].get('total', 0):.4f}, {select.name} "
            f"t2v R@1 {r['t2v']['R1']:.1f}, v2t R@1 {r['v2t']['R1']:.1f} ({cfg.eval.select_protocol}), {seconds:.1f} s"
        )
    return best_epoch
