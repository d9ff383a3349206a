"""MSAM (arXiv 2510.15470), ported from the authors' code (huangjh98/ASLVT) onto open_clip.

Spec: ``shared/design/msam.md``. Quickstart::

    from dvtr_data.baselines.msam import load_reference_state_dict
    model = load_reference_state_dict(state_dict)  # authors' key names; sizes inferred; eval mode
    sim = model.similarity(input_ids, attention_mask, video, video_mask)  # [texts, videos]
    terms = model.losses(input_ids, attention_mask, video, video_mask)  # contrastive, kl, diversity, total

For training from an open_clip backbone: ``MSAM.from_clip(open_clip.create_model(name, pretrained=tag))``.
"""

from __future__ import annotations

from .config import ABLATIONS, MSAMOptions, MSAMSizes
from .convert import (
    IGNORED_KEYS,
    StateDictError,
    infer_sizes,
    load_reference_state_dict,
    to_reference_state_dict,
)
from .encoders import ClipEncoders, ClipSizes
from .fusion_head import FusionPoolingHead, frame_gram, mean_pooled_video, single_query_scores
from .losses import gaussian_kl, slot_diversity, symmetric_cross_entropy
from .model import MSAM, MSAMTrace
from .precision import ieee_fp32
from .semantics import MultiSemanticBranch, PIENet, SemanticDistributions
from .temporal import TemporalTransformer

__all__ = [
    "ABLATIONS",
    "IGNORED_KEYS",
    "MSAM",
    "ClipEncoders",
    "ClipSizes",
    "FusionPoolingHead",
    "MSAMOptions",
    "MSAMSizes",
    "MSAMTrace",
    "MultiSemanticBranch",
    "PIENet",
    "SemanticDistributions",
    "StateDictError",
    "TemporalTransformer",
    "frame_gram",
    "gaussian_kl",
    "ieee_fp32",
    "infer_sizes",
    "load_reference_state_dict",
    "mean_pooled_video",
    "single_query_scores",
    "slot_diversity",
    "symmetric_cross_entropy",
    "to_reference_state_dict",
]
