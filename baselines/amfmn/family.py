"""AMFMN as an engine family: one keyframe per clip, the caption's tokens, the paper's or the released loss.

Each clip is one image: the middle one of ``clips.keyframe_paths`` (ingest writes the middle frame when asked
for one keyframe), or, for a clip without a keyframe file, the clip's middle frame decoded from its file.
Images are resized to the input size (released evaluation: ``Resize((256, 256))``, aspect not kept); for
training with ``augment`` to 278/256 of it and randomly cropped (released: ``Resize((278, 278))`` +
``RandomCrop(256)``; its ``RandomRotation(0, 90)`` rotates by 0 degrees, so no rotation), then ImageNet
normalisation.

Scoring is AMFMN's protocol: every caption is scored alone against every image (``utils.acc_t2i2``), and an
image ranks all captions by its best own caption (``acc_i2t2``), which is the engine's ``single`` ranking; the
same numbers are stored under ``paper`` and ``single``.

Across processes (``--nproc N`` / torchrun) a run trains as one process does on the same global batch: each
process encodes its slice of the batch, the image and caption features are gathered (``distributed.gather_cat``)
and every process computes the hinge over the global ``[B, B]`` score matrix (every negative of the batch, and
the hardest one with ``max_violation``); the ResNet's BatchNorm layers take the global batch's statistics
(``distributed.GlobalBatchNorm2d``); and every random draw of a sample (its crop, its caption's dropout masks)
comes from a generator seeded by the step and the caption's position in the split (:func:`sample_seeds`), not
from the process's RNG stream, so two processes crop and drop exactly as one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from dvtr_data.baselines.engine import distributed as ddp
from dvtr_data.baselines.engine.config import BaselineConfig
from dvtr_data.baselines.engine.data import ClipRecord, SplitData, probe_clip
from dvtr_data.baselines.engine.family import ModelFamily
from dvtr_data.errors import InputError, UsageError

from .config import AMFMNOptions, AMFMNSizes, parse
from .losses import PriorSimilarity, dynamic_margin, triplet_loss
from .model import (
    AMFMN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    find_resnet18_weights,
    load_resnet18,
    load_skipthoughts,
)
from .text import Vocabulary, caption_tokens

TRAIN_RESIZE = 278 / 256  # released: Resize((278, 278)) then RandomCrop(256)
PAIR_ELEMENTS = 1 << 25  # scoring: at most this many elements in one [images, captions, embed] block (128 MiB)


@dataclass
class AMFMNInputs:
    images: Tensor  # uint8 [V, 3, H, W] (H = W = the input size, or the larger training size)
    ids: Tensor  # [T, L] token ids, 0 pads
    keywords: Tensor | None  # [V, K, Lk] keyword phrase ids of each clip, or None
    caption_clip: Tensor  # [T]
    prior: PriorSimilarity | None  # training split with the dynamic margin


def model_parts(cfg: BaselineConfig) -> tuple[str, AMFMNOptions, AMFMNSizes, int]:
    att, options, sizes = parse(cfg.model.preset, cfg.model.options, cfg.model.sizes)
    return att, options, sizes, cfg.data.image_size or 256


def pad_ids(rows: list[list[int]]) -> Tensor:
    out = torch.zeros(len(rows), max((len(r) for r in rows), default=1), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def clip_image(clip: ClipRecord) -> Image.Image:
    """The clip's keyframe (middle of its keyframe files), else its middle frame decoded from the clip file."""
    if clip.keyframe_paths:
        path = clip.keyframe_paths[len(clip.keyframe_paths) // 2]
        if path.is_file():
            with Image.open(path) as im:
                return im.convert("RGB")
    import av

    n = clip.n_frames or probe_clip(clip.path)[1]
    target = max(int(n) // 2, 0)
    try:
        with av.open(str(clip.path)) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i >= target:
                    return frame.to_image().convert("RGB")
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise InputError(f"cannot decode clip {clip.path}: {exc}") from exc
    raise InputError(f"clip {clip.clip_id}: no frame could be decoded from {clip.path}")


def load_images(clips: list[ClipRecord], side: int) -> Tensor:
    """``uint8 [V, 3, side, side]`` (bilinear resize, aspect not kept, as torchvision's ``Resize((s, s))``)."""
    out = torch.empty((len(clips), 3, side, side), dtype=torch.uint8)
    for i, clip in enumerate(clips):
        im = clip_image(clip).resize((side, side), Image.Resampling.BILINEAR)
        out[i] = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)
    return out


def normalise(images: Tensor) -> Tensor:
    x = images.float().div(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
    return (x - mean) / std


def sample_seeds(step_seed: int, captions: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(crop seeds, dropout seeds)``, one each per caption, from the step's seed and the caption's position in
    the training split alone (numpy's SeedSequence mixes the two), so a sample draws the same whether it is
    trained in one process or another, and whatever shares its batch."""
    crop, noise = [], []
    for c in captions:
        a, b = np.random.SeedSequence([step_seed, int(c)]).generate_state(2, dtype=np.uint64).tolist()
        crop.append(int(a))
        noise.append(int(b))
    return crop, noise


def step_seed() -> int:
    """One number per training step from torch's RNG. Every process seeds it alike (``train.seed``) and draws it
    alike (one draw per step, whatever its slice), and ``last.pt`` stores torch's RNG state, so the sequence
    depends on the seed, the epoch and the step only: resumed runs and runs over any number of processes see the
    same one."""
    return int(torch.randint(0, 2**62, (1,)).item())


def random_crop(images: Tensor, size: int, seeds: Sequence[int]) -> Tensor:
    """One random ``size`` crop per image, image ``i``'s offsets drawn from a generator seeded with ``seeds[i]``."""
    h, w = images.shape[-2:]
    if h == size and w == size:
        return images
    if len(seeds) != images.shape[0]:
        raise ValueError(f"{len(seeds)} crop seeds for {images.shape[0]} images")
    out = images.new_empty((images.shape[0], images.shape[1], size, size))
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        y = int(torch.randint(0, h - size + 1, (1,), generator=g))
        x = int(torch.randint(0, w - size + 1, (1,), generator=g))
        out[i] = images[i, :, y : y + size, x : x + size]
    return out


def keyword_phrases(category: str | None) -> list[str]:
    """Keyword phrases of a clip: its category split at commas and semicolons."""
    if not category:
        return []
    return [p.strip() for p in category.replace(";", ",").split(",") if p.strip()]


class AMFMNFamily(ModelFamily):
    name = "amfmn"
    title = "AMFMN (keyframe)"
    needs = frozenset({"keyframe", "tokens", "keywords"})
    protocols: ClassVar[dict[str, str]] = {
        "paper": "each caption alone; v2t ranks captions (AMFMN's own, = single)",
        "single": "each caption alone; v2t ranks captions",
    }
    ranking: ClassVar[dict[str, Literal["paper", "single"]]] = {"paper": "single", "single": "single"}
    gathers_across_processes = True  # features gathered, BatchNorm over the global batch, per-sample draws

    def similarity_key(self, protocol: str) -> str:
        return "all"  # both protocols score each caption alone: one matrix

    def validate(self, cfg: BaselineConfig) -> None:
        model_parts(cfg)
        if cfg.backbone.model != "resnet18":
            raise UsageError(f"AMFMN's backbone is resnet18, got {cfg.backbone.model!r}")
        if cfg.backbone.mode not in ("finetune", "frozen"):
            raise UsageError(f"AMFMN's backbone mode must be finetune or frozen, got {cfg.backbone.mode!r}")
        find_resnet18_weights(cfg.backbone.pretrained, cfg.backbone.checkpoint)

    def describe(self, cfg: BaselineConfig) -> dict[str, str]:
        row = super().describe(cfg)
        row["backbone"] = f"resnet18/{cfg.backbone.checkpoint and 'checkpoint' or cfg.backbone.pretrained or 'random'}"
        return row

    def build_model(self, cfg: BaselineConfig, train_texts: list[str]) -> nn.Module:
        att, options, sizes, image_size = model_parts(cfg)
        vocab = Vocabulary.load(options.vocab_path) if options.vocab_path else Vocabulary.build(
            train_texts, threshold=options.vocab_threshold
        )
        weights = find_resnet18_weights(cfg.backbone.pretrained, cfg.backbone.checkpoint)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train.seed)
            model = AMFMN(att, vocab.size, options=options, sizes=sizes, image_size=image_size)
        if weights is not None:
            load_resnet18(model, weights)
        if options.skipthoughts_dir:
            load_skipthoughts(model, options.skipthoughts_dir, vocab)
        if cfg.backbone.mode == "frozen":
            for p in model.extract_feature.resnet.parameters():
                p.requires_grad = False
        model.vocab = vocab  # type: ignore[assignment]
        return model

    def prepare(self, model: nn.Module, cfg: BaselineConfig, split: SplitData, *, train: bool,
                device: torch.device, progress: Any = None) -> AMFMNInputs:
        _, options, _, size = model_parts(cfg)
        vocab: Vocabulary = model.vocab  # type: ignore[assignment]
        side = round(size * TRAIN_RESIZE) if train and options.augment else size
        if progress:
            progress(f"loading {split.name} keyframes", 0, len(split.clips))
        images = load_images(split.clips, side)
        if progress:
            progress(f"loading {split.name} keyframes", len(split.clips), len(split.clips))
        ids = pad_ids([vocab.encode(c.text) for c in split.captions])
        keywords = None
        if options.keywords:
            unk = vocab.word2idx["<unk>"]
            phrases = [[[vocab.word2idx.get(t, unk) for t in caption_tokens(p)] for p in keyword_phrases(c.category)]
                       for c in split.clips]
            k = max((len(p) for p in phrases), default=0) or 1
            width = max((len(w) for p in phrases for w in p), default=0) or 1
            keywords = torch.zeros((len(phrases), k, width), dtype=torch.long)
            for i, clip_phrases in enumerate(phrases):
                for j, words in enumerate(clip_phrases):
                    keywords[i, j, : len(words)] = torch.tensor(words, dtype=torch.long)
        prior = None
        if train and options.loss == "dynamic":
            per_clip: list[list[str]] = [[] for _ in split.clips]
            for cap, v in zip(split.captions, split.caption_clip, strict=True):
                per_clip[v].append(cap.text)
            prior = PriorSimilarity(per_clip, [c.text for c in split.captions])
        return AMFMNInputs(images, ids, keywords, torch.tensor(split.caption_clip, dtype=torch.long), prior)

    def checkpoint_extra(self, model: nn.Module) -> dict[str, Any]:
        """The vocabulary (AMFMN's ``word2idx`` JSON layout): token ids mean nothing without it."""
        vocab: Vocabulary = model.vocab  # type: ignore[assignment]
        return {"word2idx": dict(vocab.word2idx)}

    def _device(self, model: nn.Module) -> torch.device:
        return next(model.parameters()).device

    def loss(self, model: nn.Module, inputs: AMFMNInputs, batch: list[int]) -> dict[str, Tensor]:
        """The hinge over the global batch's ``[B, B]`` scores; ``batch`` is this process's slice of it (the
        whole batch in one process). The released ``forward`` (``scores(encode_image, encode_text)``) split at
        the features, which are gathered across processes before the pairwise attention and cosine."""
        m: AMFMN = model  # type: ignore[assignment]
        _, options, _, size = self._parts(model)
        dev = self._device(model)
        crop_seeds, noise_seeds = sample_seeds(step_seed(), batch)
        idx = torch.tensor(batch, dtype=torch.long)
        clips = inputs.caption_clip[idx]
        images = inputs.images[clips]
        images = random_crop(images, size, crop_seeds) if options.augment else images
        visual = ddp.gather_cat(m.encode_image(normalise(images.to(dev))))
        text = ddp.gather_cat(m.encode_text(inputs.ids[idx].to(dev), noise_seeds))
        keywords = None
        if inputs.keywords is not None and options.keywords:
            kg, has = m.encode_keywords(inputs.keywords[clips].to(dev))
            keywords = ddp.gather_cat(kg), ddp.gather_cat(has.to(torch.uint8)).bool()
        scores = m.scores(visual, text, keywords)  # [B images, B captions] of the global batch
        if options.loss == "dynamic":
            if inputs.prior is None:
                raise UsageError("the dynamic margin needs the training split's prior similarities")
            everyone = ddp.gather_cat(torch.tensor(batch, dtype=torch.long, device=dev)).cpu()
            prior = inputs.prior.block(inputs.caption_clip[everyone].tolist(), everyone.tolist()).to(dev)
            margin: Tensor | float = dynamic_margin(prior, options.gamma, options.beta).to(scores.dtype)
        else:
            margin = options.margin
        loss = triplet_loss(scores, margin, max_violation=options.max_violation)
        return {"total": loss, "triplet": loss}

    def _parts(self, model: nn.Module) -> tuple[str, AMFMNOptions, AMFMNSizes, int]:
        m: AMFMN = model  # type: ignore[assignment]
        return m.cross_attention_s.att_type, m.options, m.sizes, m.image_size

    @torch.no_grad()
    def similarity(self, model: nn.Module, inputs: AMFMNInputs, protocol: str) -> Tensor:
        """``[captions, clips]`` cosine scores, every caption scored alone against every image."""
        m: AMFMN = model  # type: ignore[assignment]
        dev = self._device(model)
        visual = torch.cat([m.encode_image(normalise(part.to(dev))) for part in inputs.images.split(32)])
        text = torch.cat([m.encode_text(part.to(dev)) for part in inputs.ids.split(256)])
        rows = []
        step = max(1, min(256, PAIR_ELEMENTS // max(visual.shape[0] * visual.shape[1], 1)))  # [V, step, E] per chunk
        for start in range(0, text.shape[0], step):
            t = text[start : start + step]
            kw = None
            if inputs.keywords is not None and m.options.keywords:
                clips = inputs.caption_clip[start : start + step]
                kw = m.encode_keywords(inputs.keywords[clips].to(dev))
            rows.append(m.scores(visual, t, kw).T)
        return torch.cat(rows).float().cpu()

    def learning_rate(self, cfg: BaselineConfig, epoch: int) -> float:
        """Released ``adjust_learning_rate``: x ``lr_decay`` at the start of every epoch e with e % n == n - 1."""
        _, options, _, _ = model_parts(cfg)
        return cfg.train.lr * options.lr_decay ** ((epoch + 1) // options.lr_update_epoch)
