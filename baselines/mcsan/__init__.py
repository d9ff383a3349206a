"""MCSAN (Nian et al., Mathematics 2022, 10(18):3346), implemented from the paper as methods.md §1 reads it.

No code was released; ``README.md`` beside this file lists every choice the paper leaves open. Quickstart::

    from dvtr_data.baselines.mcsan import MCSAN, MCSANSizes, mine_vocabulary, tag_captions, role_masks
    tagged = tag_captions(train_texts)                       # heuristic tagger, or make_tagger("spacy")
    vocab = mine_vocabulary(tagged)                          # training captions only
    model = MCSAN(sizes=MCSANSizes(feature_dim=512, attributes=tuple(vocab.sizes().values())))
    sim = model.similarity_from_features(sentence, tokens, ids, frame_cls, video_mask, role_masks(tagged))
"""

from __future__ import annotations

from .attributes import (
    LEVELS,
    AttributeVocabulary,
    HeuristicTagger,
    Relation,
    SpacyTagger,
    TaggedCaption,
    Word,
    clean_caption,
    make_tagger,
    mine_vocabulary,
    role_masks,
    role_positions,
    tag_captions,
)
from .config import ALL_LEVELS, PRESETS, MCSANOptions, MCSANSizes
from .losses import attribute_kl, focal_bce, ranking_loss
from .model import MCSAN, AttentionPool, FrameGraph, LevelEmbeddings, MCSANTrace

__all__ = [
    "ALL_LEVELS",
    "LEVELS",
    "MCSAN",
    "PRESETS",
    "AttentionPool",
    "AttributeVocabulary",
    "FrameGraph",
    "HeuristicTagger",
    "LevelEmbeddings",
    "MCSANOptions",
    "MCSANSizes",
    "MCSANTrace",
    "Relation",
    "SpacyTagger",
    "TaggedCaption",
    "Word",
    "attribute_kl",
    "clean_caption",
    "focal_bce",
    "make_tagger",
    "mine_vocabulary",
    "ranking_loss",
    "role_masks",
    "role_positions",
    "tag_captions",
]
