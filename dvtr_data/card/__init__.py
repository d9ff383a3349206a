"""The dataset card: Markdown and a self-contained HTML page with figures, from the tables and the split report."""

from __future__ import annotations

from dvtr_data.card.render import CardResult, md_escape, write_card
from dvtr_data.card.stats import caption_stats, dataset_stats, distinct_n

__all__ = ["CardResult", "caption_stats", "dataset_stats", "distinct_n", "md_escape", "write_card"]
