"""Configuration of the moment-retrieval baselines: one dataclass, defaults from the released training
scripts.

``ms-detr`` follows ``ms_detr/scripts/train.sh`` (``--use_dn --use_tgt --use_sf --use_decoder_neg --interm_neg
--use_interm --num_queries 20``); ``moment-detr`` follows jayleicn/moment_detr's ``train.sh`` (10 queries, one
joint encoder, vanilla DETR decoder, hinge saliency loss only).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from dvtr_data.errors import InputError, UsageError

VARIANTS = ("ms-detr", "moment-detr")
MOTION_SOURCES = ("difference", "features")


@dataclass
class MomentConfig:
    """Every knob of model, loss and training; valid ranges are checked in :meth:`validate`."""

    name: str = "ms-detr"
    variant: str = "ms-detr"
    description: str = ""
    # model
    hidden_dim: int = 256
    nheads: int = 8
    enc_layers: int = 2
    dec_layers: int = 2
    cross_enc_layers: int = 2
    dim_feedforward: int = 1024
    dropout: float = 0.1
    input_dropout: float = 0.5
    n_input_proj: int = 2
    num_queries: int = 20
    activation: str = "prelu"
    # MS-DETR switches (ignored by moment-detr)
    motion: str = "difference"
    use_dn: bool = True
    dn_groups: int = 10
    box_noise_scale: float = 0.5
    use_interm: bool = True
    interm_neg: bool = True
    use_decoder_neg: bool = True
    aux_loss: bool = True
    # losses and matching
    span_loss_coef: float = 10.0
    giou_loss_coef: float = 1.0
    label_loss_coef: float = 4.0
    lw_saliency: float = 1.0
    interm_loss_coef: float = 1.0
    eos_coef: float = 0.1
    saliency_margin: float = 0.2
    rank_tau: float = 0.5
    focal_alpha: float = 0.25
    set_cost_span: float = 10.0
    set_cost_giou: float = 1.0
    set_cost_class: float = 4.0
    # data
    max_v_l: int = 75
    max_q_l: int = 32
    clip_length: float = 2.0
    max_windows: int = 5
    normalize_features: bool = True
    # training
    lr: float = 1e-4
    weight_decay: float = 1e-4
    epochs: int = 200
    batch_size: int = 32
    grad_clip: float = 0.1
    lr_drop: int = 400
    eval_every: int = 5
    seed: int = 2018
    device: str = "auto"
    max_windows_out: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> MomentConfig:
        if self.variant not in VARIANTS:
            raise InputError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.motion not in MOTION_SOURCES:
            raise InputError(f"motion must be one of {', '.join(MOTION_SOURCES)}, got {self.motion!r}")
        if self.hidden_dim % self.nheads or self.hidden_dim % 4:
            raise InputError(
                f"hidden_dim {self.hidden_dim} must be a multiple of nheads ({self.nheads}) and of 4"
            )
        for name in (
            "enc_layers",
            "dec_layers",
            "num_queries",
            "n_input_proj",
            "max_v_l",
            "max_q_l",
            "batch_size",
            "epochs",
            "dn_groups",
            "eval_every",
        ):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.n_input_proj > 3:
            raise InputError("n_input_proj must be 1, 2 or 3 (as in the released code)")
        if not 0 <= self.dropout < 1 or not 0 <= self.input_dropout < 1:
            raise InputError("dropout and input_dropout must be in [0, 1)")
        if self.clip_length <= 0:
            raise InputError("clip_length must be positive")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> MomentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"base", "family"})
        if unknown:
            raise InputError(f"{source}: unknown field(s) {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known}).validate()

    def with_overrides(self, overrides: dict[str, Any]) -> MomentConfig:
        return MomentConfig.from_dict({**self.to_dict(), **overrides}, source="overrides")


def _config_folder() -> Any:
    return resources.files(__package__).joinpath("configs")


def registered_names() -> list[str]:
    return sorted(e.name[:-5] for e in _config_folder().iterdir() if e.name.endswith(".json"))


def load_config(name_or_path: str | Path, **overrides: Any) -> MomentConfig:
    """A registered config (``ms-detr``, ``moment-detr``, ...) or a JSON file, which may name a ``"base"``."""
    text = str(name_or_path)
    if text.endswith(".json") or "/" in text:
        path = Path(text)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read config {path}: {exc}") from None
        base = data.pop("base", None)
        if base is not None:
            data = {**load_config(str(base)).to_dict(), **data}
        data.setdefault("name", path.stem)
    else:
        entry = _config_folder().joinpath(f"{text}.json")
        if not entry.is_file():
            raise UsageError(
                f"unknown moment baseline {text!r}", hint=f"registered: {', '.join(registered_names())}"
            )
        data = json.loads(entry.read_text(encoding="utf-8"))
    return MomentConfig.from_dict({**data, **overrides}, source=text)
