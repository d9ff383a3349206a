"""Sizes and behaviour switches of MCSAN, with the paper's open choices stated as defaults.

Every default that the paper (methods.md §1) does not fix is marked "ours" in the field comment; the package
README lists them with the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from dvtr_data.errors import UsageError

ALL_LEVELS: tuple[str, ...] = ("global", "entity", "action", "relation")
Fusion = Literal["learned", "equal"]


@dataclass(frozen=True)
class MCSANSizes:
    """Shapes of the modules on top of the (frozen) CLIP features.

    ``feature_dim`` is CLIP's joint width (taken from the backbone); ``attributes`` the vocabulary size per
    attribute level (taken from the mined vocabulary). The global level's attribute head predicts the
    concatenation of the three vocabularies (ours: the global embedding should carry every attribute).
    """

    feature_dim: int = 512
    embed_dim: int = 512  # common space of every level (ours; HGR uses 1,024 with 2,048-d ResNet inputs)
    gru_hidden: int = 256  # per direction (ours; HANet 1,024 over 300-d GloVe)
    attention_hidden: int = 256  # additive attention pooling (ours)
    attributes: tuple[int, int, int] = (
        1024,
        512,
        512,
    )  # entity, action, relation (HANet's 1,024 / 512; ours 512)

    def __post_init__(self) -> None:
        for f in ("feature_dim", "embed_dim", "gru_hidden", "attention_hidden"):
            if getattr(self, f) < 1:
                raise UsageError(f"MCSAN size {f} must be >= 1, got {getattr(self, f)}")
        if len(self.attributes) != 3 or any(k < 0 for k in self.attributes):
            raise UsageError(
                f"attributes must be three sizes >= 0 (entity, action, relation), got {self.attributes}"
            )


@dataclass(frozen=True)
class MCSANOptions:
    """Behaviour switches (ablations) and loss weights.

    Attributes:
        levels: which semantic levels form the similarity (and get attribute heads).
        fusion: ``learned`` level weights (softmax of learnable logits, equal at start) or ``equal``
        1/|levels|.
        margin, negatives: the ranking hinge (HANet/HGR: Δ = 0.2, hardest negatives).
        kl_weight, fbce_weight: λ1 and λ2 of ``L = L_rank + λ1 Σ_l KL_l + λ2 Σ_l FBCE_l`` (unknown in the
            paper; ours 1.0 and 1.0).
        fbce_alpha, fbce_gamma: the focal weights (Lin et al.'s defaults; MCSAN's are unverified).
        kl_direction: ``text_to_video`` = KL(q_t || q_v) as methods.md writes it, or ``symmetric``.
        text_roles: pool the text entity/action/relation embeddings over the words of that role (mined by the
            tagger); ``False`` pools every level over all words with its own attention (no role guidance).
        global_attributes: give the global level an attribute head over all three vocabularies.
    """

    levels: tuple[str, ...] = ALL_LEVELS
    fusion: Fusion = "learned"
    margin: float = 0.2
    negatives: Literal["hardest", "all"] = "hardest"
    kl_weight: float = 1.0
    fbce_weight: float = 1.0
    fbce_alpha: float = 0.25
    fbce_gamma: float = 2.0
    kl_direction: Literal["text_to_video", "symmetric"] = "text_to_video"
    text_roles: bool = True
    global_attributes: bool = True

    def __post_init__(self) -> None:
        if (
            not self.levels
            or any(lv not in ALL_LEVELS for lv in self.levels)
            or len(set(self.levels)) != len(self.levels)
        ):
            raise UsageError(f"levels must be distinct names from {', '.join(ALL_LEVELS)}, got {self.levels}")
        if self.fusion not in ("learned", "equal"):
            raise UsageError(f"fusion must be learned or equal, got {self.fusion!r}")
        if self.negatives not in ("hardest", "all"):
            raise UsageError(f"negatives must be hardest or all, got {self.negatives!r}")
        if self.kl_direction not in ("text_to_video", "symmetric"):
            raise UsageError(f"kl_direction must be text_to_video or symmetric, got {self.kl_direction!r}")
        if self.margin < 0 or self.kl_weight < 0 or self.fbce_weight < 0:
            raise UsageError("margin and loss weights must be >= 0")
        if not 0.0 <= self.fbce_alpha <= 1.0 or self.fbce_gamma < 0:
            raise UsageError("fbce_alpha must be in [0, 1] and fbce_gamma >= 0")

    @property
    def uses_attributes(self) -> bool:
        return self.kl_weight > 0 or self.fbce_weight > 0

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> MCSANOptions:
        """An ablation preset (:data:`PRESETS`) with field overrides on top."""
        if name not in PRESETS:
            raise UsageError(f"unknown MCSAN preset {name!r}", hint=f"presets: {', '.join(sorted(PRESETS))}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UsageError(
                f"unknown MCSAN option(s) {', '.join(unknown)}", hint=f"valid: {', '.join(sorted(known))}"
            )
        if "levels" in overrides and isinstance(overrides["levels"], list):
            overrides = {**overrides, "levels": tuple(overrides["levels"])}
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, MCSANOptions] = {
    "full": MCSANOptions(),
    "global_only": MCSANOptions(levels=("global",)),
    "no_relation": MCSANOptions(levels=("global", "entity", "action")),
    "rank_only": MCSANOptions(kl_weight=0.0, fbce_weight=0.0),
    "no_kl": MCSANOptions(kl_weight=0.0),
    "plain_bce": MCSANOptions(fbce_alpha=0.5, fbce_gamma=0.0),
    "equal_fusion": MCSANOptions(fusion="equal"),
}
