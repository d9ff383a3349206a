"""Versioned table schemas of the dataset folder, and their validation.

Every table a stage writes is checked here first (`validate`), so a bad row never reaches disk. The schema name and
version travel in the Parquet file metadata (``dvtr.schema`` = ``"clips/1"``), and readers refuse a file written by
a newer major version.
"""

from __future__ import annotations

import dvtr_data.schemas.dataset_tables
import dvtr_data.schemas.lineage_tables
import dvtr_data.schemas.precaption_tables  # embeddings, precaptions, tags
import dvtr_data.schemas.release_tables  # releases
import dvtr_data.schemas.review_tables  # noqa: F401  (reviews)
from dvtr_data.schemas.tables import (
    SCHEMA_METADATA_KEY,
    TABLES,
    TableSchema,
    empty_table,
    schema_of,
    validate,
)

__all__ = ["SCHEMA_METADATA_KEY", "TABLES", "TableSchema", "empty_table", "schema_of", "validate"]
