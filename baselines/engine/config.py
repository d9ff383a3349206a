"""Baseline configs: JSON files loaded into dataclasses, with defaults and valid ranges in one place.

A baseline is one JSON file (``configs/<name>.json``, or any file a user passes by path). Every field has a
default here, so a file states only what makes the baseline what it is. The defaults reproduce the authors'
training (msam.md §5-§7), quirks included; every corrected behaviour is a field a user can switch.

This module imports neither torch nor open_clip: ``dvtr-data baseline list`` must stay fast.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from dvtr_data.errors import InputError, UsageError

from .family import family_names

BackboneMode = Literal["frozen", "reference", "finetune"]
BACKBONE_MODES: tuple[str, ...] = get_args(BackboneMode)
Schedule = Literal["warmup_cosine", "warmup_linear", "warmup_constant", "none"]
Protocol = Literal["paper", "single"]
PROTOCOLS: tuple[str, ...] = get_args(Protocol)
METRIC_NAMES = ("R1", "R5", "R10", "MdR", "MnR")


@dataclass(frozen=True)
class ModelConfig:
    """Which MSAM variant: an ablation preset of ``dvtr_data.baselines.msam.ABLATIONS`` plus field overrides.

    ``options`` are ``MSAMOptions`` fields, ``sizes`` are ``MSAMSizes`` fields (checked when the model is built).
    """

    preset: str = "full"
    options: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneConfig:
    """The open_clip backbone and how it is trained.

    Attributes:
        model: open_clip model name. The authors use OpenAI ViT-B/32 with QuickGELU.
        pretrained: open_clip pretrained tag; ``None`` means random initialisation (tests, demo).
        checkpoint: a local weights file (open_clip/OpenAI state dict, or an OpenAI TorchScript archive);
            wins over ``pretrained``. This is how weights reach a machine without network.
        model_cfg: an inline open_clip CLIP config (``embed_dim``, ``vision_cfg``, ``text_cfg``,
            ``quick_gelu``) used instead of the named one: small random backbones for tests and the demo.
        init_seed: seed of the random initialisation when no weights are loaded (part of the cache key).
        mode: ``frozen`` encodes frames and captions once into a cache in the dataset folder and trains the
            heads on it (the authors' fp16 weights at lr 1e-7 do not move, msam.md §12-2); ``reference``
            keeps the CLIP weights in fp16 and updates them as the authors' optimiser does; ``finetune``
            trains fp32 CLIP weights at ``backbone_lr``.
        precision: CLIP forward precision in ``frozen`` mode: ``fp32`` (default, exact) or ``fp16`` (the
            authors' fp16 weights and autocast, as their GPU runs compute it). ``reference`` is always fp16.
        backbone_lr: learning rate of the CLIP parameters; default ``train.lr * train.coef_lr`` (1e-7, the
            authors'). It is never raised silently.
        freeze: ``authors`` freezes what the authors' freezing loop freezes (conv1, class and positional
            embeddings, ln_pre, token embedding); ``none`` trains every CLIP parameter.
    """

    model: str = "ViT-B-32-quickgelu"
    pretrained: str | None = "openai"
    checkpoint: str | None = None
    model_cfg: dict[str, Any] | None = None
    init_seed: int = 0
    mode: BackboneMode = "frozen"
    precision: Literal["fp32", "fp16"] = "fp32"
    backbone_lr: float | None = None
    freeze: Literal["authors", "none"] = "authors"


@dataclass(frozen=True)
class DataConfig:
    """Frame sampling and tokenisation as the authors' loaders do it (msam.md §1).

    Attributes:
        frame_rate: frames per second taken (``feature_framerate``): the first frame of each second.
        max_frames: at most this many frames, zero-padded (with a mask) when fewer.
        frame_pick: when more frames than ``max_frames``: ``uniform`` (``slice_framepos=2``, linspace cast
            to int), ``head`` or ``tail``.
        fps_rounding: ``truncate`` reads the frame rate as an integer like OpenCV's ``int(CAP_PROP_FPS)``
            (the authors' quirk: 23.976 fps counts as 23, so a 5 s clip yields 6 frames); ``exact`` samples
            at the true rate.
        max_words: token context (SOT + at most ``max_words - 2`` BPE tokens + EOT, padded with 0).
        image_size: crop size; ``None`` takes the backbone's input size (224 for ViT-B/32).
        decode_workers: processes decoding clips while CLIP encodes (0: decode in-process).
    """

    frame_rate: int = 1
    max_frames: int = 12
    frame_pick: Literal["uniform", "head", "tail"] = "uniform"
    fps_rounding: Literal["truncate", "exact"] = "truncate"
    max_words: int = 32
    image_size: int | None = None
    decode_workers: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """The authors' optimisation (msam.md §6): BertAdam without bias correction, warm-up then cosine.

    Attributes:
        epochs: 0 scores the untrained model (a zero-shot baseline).
        batch_size: captions per step; each caption brings its clip (duplicates are negatives, as authored).
        lr: learning rate of the MSAM modules; the backbone gets ``lr * coef_lr`` unless
            ``backbone.backbone_lr`` says otherwise.
        warmup_proportion, schedule: ``warmup_cosine`` on *total* progress (the authors': a small jump at the
            end of warm-up).
        weight_decay: decoupled, on every parameter whose name has no ``bias``.
        decay_norm_weights: the authors' no-decay list names ``LayerNorm.weight``, which matches no CLIP or
            MSAM name, so LayerNorm weights are decayed (quirk, default); ``False`` exempts them.
        bias_correction: Adam's bias correction; the authors' BertAdam has none.
        max_grad_norm: global gradient clipping before each step.
        per_tensor_clip: clipping of each tensor's gradient inside the optimiser step (the authors' BertAdam
            does both); 0 turns it off.
        logit_scale_max: clamp of CLIP's log temperature after every step (ln 100).
        drop_last: drop the last incomplete batch of an epoch.
        seed: shuffling, dropout and head initialisation.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-4
    coef_lr: float = 1e-3
    warmup_proportion: float = 0.1
    schedule: Schedule = "warmup_cosine"
    weight_decay: float = 0.2
    decay_norm_weights: bool = True
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    bias_correction: bool = False
    max_grad_norm: float = 1.0
    per_tensor_clip: float = 1.0
    logit_scale_max: float = math.log(100)
    drop_last: bool = True
    seed: int = 42


@dataclass(frozen=True)
class EvalConfig:
    """Scoring (msam.md §7).

    Attributes:
        chunk_size: captions scored together in the paper protocol (the authors' ``batch_size_val`` = 32).
            The head's softmax over texts makes every score depend on its chunk.
        video_chunk_size: videos per head call; bounds memory only (videos are independent).
        select_protocol, select_metric: model selection on the first evaluation split (the authors:
            paper-protocol text-to-video R@1; ties go to the later epoch, as in their ``>=``).
        protocols: what is reported: ``paper`` (32-caption chunks, video-to-text takes the best of a
            video's captions) and ``single`` (each caption scored alone, as a search engine sees it).
    """

    chunk_size: int = 32
    video_chunk_size: int | None = 256
    select_protocol: Protocol = "paper"
    select_metric: str = "t2v_R1"
    protocols: tuple[str, ...] = PROTOCOLS


@dataclass(frozen=True)
class BaselineConfig:
    """One registered (or user) baseline."""

    name: str
    description: str = ""
    family: str = "msam"  # which model family builds, trains and scores it (``family.py``)
    model: ModelConfig = field(default_factory=ModelConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check(self)

    @property
    def zero_shot(self) -> bool:
        return self.train.epochs == 0

    @property
    def backbone_lr(self) -> float:
        b = self.backbone.backbone_lr
        return self.train.lr * self.train.coef_lr if b is None else b

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> BaselineConfig:
        return _build(cls, data, source)

    def with_overrides(self, overrides: dict[str, Any], *, source: str = "overrides") -> BaselineConfig:
        """A copy with a (nested, partial) dict of field values applied on top."""
        return BaselineConfig.from_dict(deep_merge(self.to_dict(), overrides), source=source)


def check(cfg: BaselineConfig) -> None:
    """Valid ranges, checked once for files, CLI options and code alike."""
    b, d, t, e = cfg.backbone, cfg.data, cfg.train, cfg.eval
    if not cfg.name or any(c.isspace() for c in cfg.name):
        raise UsageError(f"baseline name {cfg.name!r} must be non-empty and without spaces")
    if cfg.family not in family_names():
        raise UsageError(f"unknown model family {cfg.family!r}", hint=f"choose one of {', '.join(family_names())}")
    if b.mode not in BACKBONE_MODES:
        raise UsageError(f"unknown backbone mode {b.mode!r}", hint=f"choose one of {', '.join(BACKBONE_MODES)}")
    if b.precision not in ("fp32", "fp16"):
        raise UsageError(f"backbone precision must be fp32 or fp16, got {b.precision!r}")
    if b.freeze not in ("authors", "none"):
        raise UsageError(f"backbone freeze must be 'authors' or 'none', got {b.freeze!r}")
    if b.backbone_lr is not None and b.backbone_lr < 0:
        raise UsageError("backbone_lr must be >= 0")
    if d.frame_rate < 1 or d.max_frames < 1:
        raise UsageError("frame_rate and max_frames must be >= 1")
    if d.frame_pick not in ("uniform", "head", "tail"):
        raise UsageError(f"frame_pick must be uniform, head or tail, got {d.frame_pick!r}")
    if d.fps_rounding not in ("truncate", "exact"):
        raise UsageError(f"fps_rounding must be truncate or exact, got {d.fps_rounding!r}")
    if d.max_words < 3:
        raise UsageError("max_words must be >= 3 (SOT, one token, EOT)")
    if d.image_size is not None and d.image_size < 16:
        raise UsageError("image_size must be >= 16")
    if d.decode_workers < 0:
        raise UsageError("decode_workers must be >= 0")
    if t.seed < 0 or b.init_seed < 0:  # as every command's --seed (split's generator refuses negatives)
        raise UsageError(f"seed and init_seed must be >= 0; got {t.seed} and {b.init_seed}")
    if t.epochs < 0 or t.batch_size < 2:
        raise UsageError("epochs must be >= 0 and batch_size >= 2 (the contrastive loss needs negatives)")
    if t.lr < 0 or t.coef_lr < 0 or t.weight_decay < 0 or t.eps <= 0:
        raise UsageError("lr, coef_lr and weight_decay must be >= 0, eps > 0")
    if not 0.0 <= t.warmup_proportion < 1.0:
        raise UsageError("warmup_proportion must be in [0, 1)")
    if t.schedule not in get_args(Schedule):
        raise UsageError(f"unknown schedule {t.schedule!r}", hint=f"choose one of {', '.join(get_args(Schedule))}")
    if len(t.betas) != 2 or not all(0.0 <= x < 1.0 for x in t.betas):
        raise UsageError("betas must be two numbers in [0, 1)")
    if t.max_grad_norm < 0 or t.per_tensor_clip < 0:
        raise UsageError("gradient clipping norms must be >= 0 (0 turns clipping off)")
    if e.chunk_size < 1 or (e.video_chunk_size is not None and e.video_chunk_size < 1):
        raise UsageError("chunk sizes must be >= 1")
    if e.select_protocol not in PROTOCOLS:
        raise UsageError(f"select_protocol must be one of {', '.join(PROTOCOLS)}")
    if not e.protocols or any(p not in PROTOCOLS for p in e.protocols):
        raise UsageError(f"protocols must be a non-empty subset of {', '.join(PROTOCOLS)}")
    direction, _, metric = e.select_metric.partition("_")
    if e.select_metric != "mR" and (direction not in ("t2v", "v2t") or metric not in METRIC_NAMES):
        raise UsageError(
            f"unknown select_metric {e.select_metric!r}", hint="e.g. t2v_R1, v2t_R5, t2v_MdR (t2v|v2t _ R1|R5|R10|MdR|MnR)"
        )


def _build(cls: type, data: Any, where: str) -> Any:
    """Strictly build a (nested) dataclass from a dict: unknown keys are errors that name the valid ones."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}", hint=f"valid keys: {', '.join(sorted(known))}"
        )
    kwargs: dict[str, Any] = {}
    nested = {
        "model": ModelConfig,
        "backbone": BackboneConfig,
        "data": DataConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
    }
    for key, value in data.items():
        if cls is BaselineConfig and key in nested:
            kwargs[key] = _build(nested[key], value, f"{where}: {key}")
        elif key in ("betas", "protocols") and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = copy.deepcopy(value)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"{where}: {exc}") from None


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, recursing into objects; ``options``/``sizes``/``model_cfg`` merge too."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_assignment(text: str) -> dict[str, Any]:
    """``train.epochs=3`` -> ``{"train": {"epochs": 3}}``; the value is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set takes KEY=VALUE (e.g. train.epochs=3), got {text!r}")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    node: dict[str, Any] = {}
    parts = key.strip().split(".")
    cursor = node
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return node


def read_config_file(path: Path) -> dict[str, Any]:
    """A user config file (JSON) as a dict."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object")
    return data


def config_fields_help() -> dict[str, list[str]]:
    """Field names per section, for error messages and docs."""
    sections = {"model": ModelConfig, "backbone": BackboneConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}
    return {name: [f.name for f in fields(cls)] for name, cls in sections.items() if is_dataclass(cls)}
