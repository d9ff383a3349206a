"""AMFMN (Yuan et al., TGRS 2021; arXiv 2204.09868) ported from the released code (xiaoyuan1996/AMFMN).

Spec: ``shared/design/methods.md`` section 2. Quickstart::

    from dvtr_data.baselines.amfmn import AMFMN, Vocabulary, load_released_state_dict
    vocab = Vocabulary.load("vocab/rsitmd_splits_vocab.json")
    model = AMFMN("soft_att", vocab.size)
    load_released_state_dict(model, torch.load("AMFMN_best.pth.tar", weights_only=True)["model"])
    scores = model(images, token_ids)  # [images, captions] cosine

In the engine: ``"family": "amfmn"`` in a baseline config (``configs/amfmn*.json``), see ``family.py``.
"""

from __future__ import annotations

from .config import ATT_TYPES, AMFMNOptions, AMFMNSizes
from .losses import PriorSimilarity, dynamic_margin, prior_similarity, triplet_loss
from .model import AMFMN, AMFMNTrace, load_released_state_dict, load_resnet18, load_skipthoughts
from .text import Vocabulary, caption_tokens, stop_words

__all__ = [
    "AMFMN", "ATT_TYPES", "AMFMNOptions", "AMFMNSizes", "AMFMNTrace", "PriorSimilarity", "Vocabulary",
    "caption_tokens", "dynamic_margin", "load_released_state_dict", "load_resnet18", "load_skipthoughts",
    "prior_similarity", "stop_words", "triplet_loss",
]
