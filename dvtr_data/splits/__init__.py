"""Leakage-free splits: groups (flight, location cell, near-duplicates), stratified assignment, leakage report."""

from __future__ import annotations

from dvtr_data.splits.assign import SPLIT_NAMES, Unit, assign
from dvtr_data.splits.build import (
    REPORT_NAME,
    SplitConfig,
    SplitResult,
    accepted_caption_counts,
    read_split_report,
    split_dataset,
)
from dvtr_data.splits.groups import Groups, build_groups, location_cells
from dvtr_data.splits.neardup import ClipEmbeddings, hamming_pairs, load_clip_embeddings, phash
from dvtr_data.splits.unionfind import UnionFind

__all__ = [
    "REPORT_NAME",
    "SPLIT_NAMES",
    "ClipEmbeddings",
    "Groups",
    "SplitConfig",
    "SplitResult",
    "UnionFind",
    "Unit",
    "accepted_caption_counts",
    "assign",
    "build_groups",
    "hamming_pairs",
    "load_clip_embeddings",
    "location_cells",
    "phash",
    "read_split_report",
    "split_dataset",
]
