"""MCSAN as a model family of the baseline engine (``engine/family.py``): ``dvtr-data baseline run mcsan``.

What the engine gets from this family:

* **build_model**: the engine's open_clip backbone (``backbone.load_clip``, the one MSAM uses) wrapped by
  :meth:`MCSAN.from_clip`, with attribute vocabularies mined from the *training* split's captions (so a
  resumed run rebuilds the same model). Heads are seeded by ``train.seed``.
* **prepare**: CLIP features from the dataset's frozen-backbone feature cache (``train.cached_split``, shared
  with MSAM runs on the same backbone: a clip is encoded once for all of them; the family remembers the
  dataset in ``execute`` because ``prepare`` is not given it), the caption role masks, and
  for the training split the multi-hot labels (text: the caption's attributes; video: the union over the
  clip's captions).
* **loss** / **similarity**: :meth:`MCSAN.losses_from_features` on a caption batch (two captions of one clip
  are never each other's negatives), and the fused level similarity of every caption with every clip.

Config fields read (``configs/mcsan.json``): ``model.preset`` (a :data:`~.config.PRESETS` name),
``model.options`` (:class:`MCSANOptions` fields plus ``tagger`` = ``heuristic`` | ``spacy[:model]``,
``min_count`` and ``vocabulary_sizes`` = [entity, action, relation] caps), ``model.sizes`` (``embed_dim``,
``gru_hidden``, ``attention_hidden``), the backbone and data fields of the feature cache, ``train`` (epochs,
batch size, lr, weight decay, seed; optimiser Adam as HANet/HGR train) and ``eval``. Only a frozen backbone is
supported (``backbone.mode = frozen``): MCSAN trains on cached features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from dvtr_data.baselines.engine.family import ModelFamily
from dvtr_data.errors import UsageError

from .attributes import LEVELS, AttributeVocabulary, make_tagger, mine_vocabulary, role_masks, tag_captions
from .config import MCSANOptions, MCSANSizes
from .model import MCSAN

if TYPE_CHECKING:
    from dvtr_data.baselines.engine.config import BaselineConfig
    from dvtr_data.baselines.engine.data import SplitData
    from dvtr_data.dataset import Dataset

FAMILY_OPTIONS = ("tagger", "min_count", "vocabulary_sizes")
SIZE_FIELDS = ("embed_dim", "gru_hidden", "attention_hidden")


def split_options(cfg: BaselineConfig) -> tuple[MCSANOptions, dict[str, Any]]:
    """``model.options`` as (MCSAN options of the preset, the family's own vocabulary settings)."""
    raw = dict(cfg.model.options)
    own = {k: raw.pop(k) for k in FAMILY_OPTIONS if k in raw}
    own.setdefault("tagger", "heuristic")
    own.setdefault("min_count", 1)
    own.setdefault("vocabulary_sizes", [1024, 512, 512])
    sizes = own["vocabulary_sizes"]
    if (
        not isinstance(sizes, list | tuple)
        or len(sizes) != 3
        or any(not isinstance(v, int) or v < 1 for v in sizes)
    ):
        raise UsageError(f"model.options.vocabulary_sizes must be three integers >= 1, got {sizes!r}")
    if not isinstance(own["min_count"], int) or own["min_count"] < 1:
        raise UsageError("model.options.min_count must be an integer >= 1")
    return MCSANOptions.preset(cfg.model.preset, **raw), own


def model_sizes(cfg: BaselineConfig, feature_dim: int, vocabulary: AttributeVocabulary) -> MCSANSizes:
    extra = sorted(set(cfg.model.sizes) - set(SIZE_FIELDS))
    if extra:
        raise UsageError(
            f"model.sizes: unknown or derived field(s) {', '.join(extra)}",
            hint=f"valid: {', '.join(SIZE_FIELDS)}",
        )
    k = vocabulary.sizes()
    return MCSANSizes(
        feature_dim=feature_dim, attributes=(k["entity"], k["action"], k["relation"]), **cfg.model.sizes
    )


@dataclass
class MCSANInputs:
    """A split's CLIP features, caption role masks and (training split) attribute labels, on the device."""

    caption_clip: Tensor  # [T] index of each caption's clip
    sentence: Tensor  # [T, C]
    tokens: Tensor  # [T, L, C]
    ids: Tensor  # [T, L]
    frames: Tensor  # [V, F, C]
    video_mask: Tensor  # [V, F]
    roles: Tensor  # [T, 3, L]
    text_labels: dict[str, Tensor] | None = None  # level -> [T, K]
    video_labels: dict[str, Tensor] | None = None  # level -> [V, K]


def clip_labels(text_labels: dict[str, Tensor], caption_clip: Tensor, n_clips: int) -> dict[str, Tensor]:
    """A clip's labels: the union (element-wise max) of its captions' labels."""
    out = {}
    for lv, y in text_labels.items():
        v = torch.zeros((n_clips, y.shape[1]), dtype=y.dtype, device=y.device)
        index = caption_clip.to(y.device)[:, None].expand_as(y)
        v.scatter_reduce_(0, index, y, reduce="amax", include_self=True)
        out[lv] = v
    return out


class MCSANFamily(ModelFamily):
    """MCSAN on the engine's frozen CLIP features (see the module docstring)."""

    name = "mcsan"
    title = "MCSAN"
    needs = frozenset({"frames", "tokens"})
    protocols: ClassVar[dict[str, str]] = {
        "paper": "scores do not depend on the other captions; v2t = best caption of each video",
        "single": "each caption alone (same scores as paper); v2t ranks captions",
    }
    ranking: ClassVar[dict[str, Literal["paper", "single"]]] = {"paper": "paper", "single": "single"}
    gathers_across_processes = True  # its ranking loss gathers the global batch (model.trace_from_features)

    def __init__(self) -> None:
        self._dataset: Dataset | None = None

    def validate(self, cfg: BaselineConfig) -> None:
        _, own = split_options(cfg)
        if cfg.zero_shot:
            raise UsageError(
                f"{cfg.name}: MCSAN has no zero-shot form (its heads start random)",
                hint="set train.epochs >= 1",
            )
        if cfg.backbone.mode != "frozen":
            raise UsageError(
                f"{cfg.name}: MCSAN trains on frozen CLIP features only", hint="use backbone.mode = frozen"
            )
        make_tagger(own["tagger"])  # fails early when a spaCy model is asked for and missing

    def execute(
        self,
        run: Any,
        cfg: BaselineConfig,
        ds: Dataset,
        request: dict[str, Any],
        dev: torch.device,
        *,
        progress: Any,
        log: Any,
        resumed: bool,
    ) -> Any:
        """The engine's generic loop; the dataset is remembered so that ``prepare`` uses its feature cache."""
        self._dataset = ds
        try:
            return super().execute(run, cfg, ds, request, dev, progress=progress, log=log, resumed=resumed)
        finally:
            self._dataset = None

    def build_model(self, cfg: BaselineConfig, train_texts: list[str]) -> nn.Module:
        from dvtr_data.baselines.engine.backbone import load_clip
        from dvtr_data.baselines.msam.encoders import clip_embed_dim

        options, own = split_options(cfg)
        tagger = make_tagger(own["tagger"])
        caps = dict(zip(LEVELS, own["vocabulary_sizes"], strict=True))
        vocabulary = mine_vocabulary(
            tag_captions(train_texts, tagger), sizes=caps, min_count=own["min_count"], tagger=tagger.name
        )
        clip = load_clip(cfg.backbone)
        sizes = model_sizes(cfg, clip_embed_dim(clip), vocabulary)
        model = MCSAN.from_clip(clip, sizes=sizes, options=options, seed=cfg.train.seed)
        model.vocabulary = vocabulary
        model.tagger = tagger
        return model

    def prepare(
        self,
        model: nn.Module,
        cfg: BaselineConfig,
        split: SplitData,
        *,
        train: bool,
        device: torch.device,
        progress: Any = None,
    ) -> MCSANInputs:
        if not isinstance(model, MCSAN):
            raise TypeError(f"MCSANFamily.prepare needs an MCSAN, got {type(model).__name__}")
        sentence, tokens, ids, frames, video_mask = clip_features(
            model, cfg, split, device, self._dataset, progress
        )
        tagged = tag_captions([c.text for c in split.captions], model.tagger)
        caption_clip = torch.tensor(split.caption_clip, dtype=torch.long, device=device)
        inputs = MCSANInputs(
            caption_clip,
            sentence,
            tokens,
            ids,
            frames,
            video_mask,
            role_masks(tagged, ids.shape[1]).to(device),
        )
        if train:
            labels = {k: v.to(device) for k, v in model.vocabulary.labels(tagged).items()}
            inputs.text_labels = labels
            inputs.video_labels = clip_labels(labels, caption_clip, len(split.clips))
        return inputs

    def optimizer(self, model: nn.Module, cfg: BaselineConfig) -> torch.optim.Optimizer:
        """Adam over the MCSAN heads (HGR/HANet's optimiser); the frozen CLIP is not a module parameter."""
        t = cfg.train
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=t.lr, betas=t.betas, eps=t.eps, weight_decay=t.weight_decay)

    def loss(self, model: nn.Module, inputs: Any, batch: list[int]) -> dict[str, Tensor]:
        assert isinstance(model, MCSAN) and isinstance(inputs, MCSANInputs)
        if inputs.text_labels is None or inputs.video_labels is None:
            raise UsageError(
                "MCSAN's training inputs need labels: prepare the training split with train=True"
            )
        captions = torch.tensor(batch, dtype=torch.long, device=inputs.caption_clip.device)
        clip_idx = inputs.caption_clip[captions]
        return model.losses_from_features(
            inputs.sentence[captions],
            inputs.tokens[captions],
            inputs.ids[captions],
            inputs.frames[clip_idx],
            inputs.video_mask[clip_idx],
            roles=inputs.roles[captions],
            text_labels={k: v[captions] for k, v in inputs.text_labels.items()},
            video_labels={k: v[clip_idx] for k, v in inputs.video_labels.items()},
            clip_index=clip_idx,
        )

    def similarity(self, model: nn.Module, inputs: Any, protocol: str) -> Tensor:
        assert isinstance(model, MCSAN) and isinstance(inputs, MCSANInputs)
        return similarity_matrix(model, inputs)

    def similarity_key(self, protocol: str) -> str:
        return "late-interaction"  # one score matrix serves both protocols


def clip_features(
    model: MCSAN,
    cfg: BaselineConfig,
    split: SplitData,
    device: torch.device,
    dataset: Dataset | None,
    progress: Any,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(sentence, tokens, ids, frames, video_mask)`` of a split on ``device``, from the dataset's feature
    cache (the one MSAM runs on the same backbone fill) when a dataset is known, else encoded now."""
    from dvtr_data.baselines.engine.train import Encoder, cached_split, feature_cache

    model.encoders.to(device)
    encoder = Encoder(model, cfg, device)
    if dataset is not None:
        cached = cached_split(feature_cache(dataset, cfg, encoder.size), encoder, split, progress)
        sentence, tokens, ids = cached.feats.sentence, cached.tokens, cached.ids
        frames, mask = cached.feats.frame_cls, cached.feats.video_mask
    else:
        parts = list(encoder.captions([c.text for c in split.captions]))
        sentence, tokens, ids = (torch.cat([p[k] for p in parts]) for k in (1, 2, 3))
        clips = list(encoder.clips(split.clips))
        frames, mask = torch.cat([c[1] for c in clips]), torch.cat([c[2] for c in clips])
    return sentence.to(device), tokens.to(device), ids.to(device), frames.to(device), mask.to(device)


@torch.no_grad()
def similarity_matrix(model: MCSAN, inputs: MCSANInputs, *, chunk: int = 1024) -> Tensor:
    """``[T, V]`` fused scores; every level vector is computed once per caption and once per clip."""
    text_parts, video_parts = [], []
    for s in range(0, inputs.sentence.shape[0], chunk):
        sl = slice(s, s + chunk)
        text_parts.append(
            model.embed_text(inputs.sentence[sl], inputs.tokens[sl], inputs.ids[sl], inputs.roles[sl])
        )
    for s in range(0, inputs.frames.shape[0], chunk):
        sl = slice(s, s + chunk)
        video_parts.append(model.embed_video(inputs.frames[sl], inputs.video_mask[sl]))
    text = _cat(text_parts)
    video = _cat(video_parts)
    return model.similarity_from_embeddings(text, video)


def _cat(parts: list[Any]) -> Any:
    from .model import LevelEmbeddings

    return LevelEmbeddings({k: torch.cat([p.levels[k] for p in parts]) for k in parts[0].levels})


__all__ = ["MCSANFamily", "MCSANInputs", "clip_features", "clip_labels", "similarity_matrix", "split_options"]
