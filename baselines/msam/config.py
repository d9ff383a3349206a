"""Sizes and behaviour switches of the MSAM port.

Two kinds of settings are kept apart on purpose:

* :class:`MSAMSizes` are shapes. They are read from a checkpoint (see ``convert.py``) or chosen when a fresh
  model is built around an open_clip backbone; they never change the computation, only its dimensions.
* :class:`MSAMOptions` are behaviour: the quirks of the authors' code (reproduced by default), their corrected
  variants, and the ablation switches a training engine registers. The defaults reproduce the authors' code
  path exactly (``huangjh98/ASLVT`` at 386181c, see ``shared/design/msam.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

from dvtr_data.errors import UsageError

SimilarityMode = Literal["fusion", "fusion_no_gate", "mean"]
SIMILARITY_MODES: tuple[str, ...] = ("fusion", "fusion_no_gate", "mean")


@dataclass(frozen=True)
class MSAMSizes:
    """Shapes of the MSAM modules that sit on top of CLIP.

    The joint width (CLIP's embedding size) is not listed: every MSAM module works at that width, so it is
    taken from the backbone. ``None`` means "derive from the joint width" the way the authors' defaults do
    (their code hard-codes 512 and 512 // 2 = 256).
    """

    temporal_layers: int = 4
    temporal_mlp_ratio: float = 4.0
    frame_positions: int | None = None  # rows of the frame position table; None: CLIP's text context length
    num_slots: int = 7
    pie_hidden: int | None = None  # additive slot attention hidden size; None: width // 2
    gate_hidden: int | None = None  # fusion gate MLP hidden size; None: width // 2
    mean_hidden: tuple[int, ...] = (256, 256)
    std_hidden: tuple[int, ...] = (64,)

    def __post_init__(self) -> None:
        if self.temporal_layers < 0:
            raise UsageError(f"temporal_layers must be >= 0, got {self.temporal_layers}")
        if self.num_slots < 1:
            raise UsageError(f"num_slots must be >= 1, got {self.num_slots}")
        for name in ("frame_positions", "pie_hidden", "gate_hidden"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name} must be >= 1 or None, got {value}")

    def resolved(self, width: int, context_length: int) -> MSAMSizes:
        """Return a copy with every ``None`` replaced by its derived value."""
        return replace(
            self,
            frame_positions=self.frame_positions or context_length,
            pie_hidden=self.pie_hidden or width // 2,
            gate_hidden=self.gate_hidden or width // 2,
        )


@dataclass(frozen=True)
class MSAMOptions:
    """Behaviour of the port. Defaults = the authors' code, quirks included.

    Attributes:
        similarity: ``"fusion"`` is the paper's gated fusion pooling head; ``"fusion_no_gate"`` drops the gate
            MLP (``u = v + ṽ``, the authors' ``_bidirectional_attention_pooling``); ``"mean"`` is CLIP4Clip's
            parameter-free cosine against the masked mean of the (post-temporal) frames.
        use_temporal: run the 4-layer temporal transformer (seqTransf). ``False`` with ``similarity="mean"``
            is CLIP4Clip meanP.
        mask_padding_in_head: the authors' head lets padded frames take part in the frame softmax; ``True``
            excludes them (a deviation, for ablations only).
        mask_padding_in_pienet: the authors' PIENets attend over padded frames and over SOT/post-EOT tokens;
            ``True`` masks padded frames and the positions after EOT (a deviation).
        kl_weight: weight of the distribution (KL) term; 0 skips it (ablation "no KL").
        diversity_weight: weight of the slot-diversity term; 0 skips it (ablation "no diversity").
        pie_dropout: PIENet gate dropout, active in ``train()`` mode only (the fixture uses ``eval()``).
        tau: temperature of both softmaxes of the head (fixed, not learned, in the authors' code).
        head_scale: constant multiplier on the head's cosine (the authors' ``temperature1``).
        gate_divisor: the gate is ``sigmoid(.) / gate_divisor`` (the authors' ``alpha``).
        temporal_mask_value: additive key-mask value on padded frames in the temporal transformer.
    """

    similarity: SimilarityMode = "fusion"
    use_temporal: bool = True
    mask_padding_in_head: bool = False
    mask_padding_in_pienet: bool = False
    kl_weight: float = 1.0
    diversity_weight: float = 0.01
    pie_dropout: float = 0.2
    tau: float = 0.01
    head_scale: float = 0.4
    gate_divisor: float = 0.7
    temporal_mask_value: float = -1e6

    def __post_init__(self) -> None:
        if self.similarity not in SIMILARITY_MODES:
            raise UsageError(
                f"unknown similarity mode {self.similarity!r}",
                hint=f"choose one of {', '.join(SIMILARITY_MODES)}",
            )
        if self.kl_weight < 0 or self.diversity_weight < 0:
            raise UsageError("loss weights must be >= 0")
        if not 0.0 <= self.pie_dropout < 1.0:
            raise UsageError(f"pie_dropout must be in [0, 1), got {self.pie_dropout}")
        if self.tau <= 0 or self.gate_divisor <= 0:
            raise UsageError("tau and gate_divisor must be > 0")

    @property
    def uses_semantic_branch(self) -> bool:
        """Whether the auxiliary multi-semantic branch (PIENets, mean/std heads) has to run at all."""
        return self.kl_weight > 0 or self.diversity_weight > 0

    @classmethod
    def preset(cls, name: str, **overrides: object) -> MSAMOptions:
        """Options of a named ablation (see :data:`ABLATIONS`), with optional field overrides."""
        if name not in ABLATIONS:
            raise UsageError(f"unknown MSAM ablation {name!r}", hint=f"choose one of {', '.join(ABLATIONS)}")
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise UsageError(f"unknown MSAM option(s): {', '.join(sorted(unknown))}")
        return cls(**{**ABLATIONS[name], **overrides})  # type: ignore[arg-type]


# The ablation rows suggested by the commented-out alternatives in the authors' code (msam.md §11).
ABLATIONS: dict[str, dict[str, object]] = {
    "full": {},
    "no_gate": {"similarity": "fusion_no_gate"},
    "mean_pool": {"similarity": "mean"},
    "clip4clip_meanp": {
        "similarity": "mean",
        "use_temporal": False,
        "kl_weight": 0.0,
        "diversity_weight": 0.0,
    },
    "contrastive_only": {"kl_weight": 0.0, "diversity_weight": 0.0},
    "no_kl": {"kl_weight": 0.0},
    "no_diversity": {"diversity_weight": 0.0},
    "masked_padding": {"mask_padding_in_head": True, "mask_padding_in_pienet": True},
}
