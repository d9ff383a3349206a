"""Schema of ``releases`` (written by `split --freeze`): one row per frozen release of the splits.

A team publishes a test split and keeps ingesting flights. A release freezes the splits, the accepted captions of
the released clips and a manifest under ``releases/<name>/``; this table lists the releases with the hashes of
those files, so a later `split` knows which clips it must never move and `audit --compare` can say what changed.
Releases are never rewritten: a name is frozen once.
"""

from __future__ import annotations

import pyarrow as pa

from dvtr_data.schemas.tables import TABLES, TableSchema, _register

_STR = pa.string()
_I64 = pa.int64()
_TS = pa.timestamp("us", tz="UTC")


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


RELEASES = TableSchema(
    name="releases",
    version=1,
    owner="split",
    key=("release",),
    clean_ids=("release",),
    schema=pa.schema(
        [
            _f("release", _STR, False),  # the version name, e.g. "v1" (a clean id; also the folder name)
            _f("path", _STR, False),  # the release folder, relative to the dataset: releases/<release>
            _f("created_at", _TS, False),
            _f("tool_version", _STR, False),
            _f("previous", _STR),  # the release frozen just before this one (null for the first)
            _f("clips", _I64, False),  # clips in train + val + test
            _f("train_clips", _I64, False),
            _f("val_clips", _I64, False),
            _f("test_clips", _I64, False),
            _f("captions", _I64, False),  # accepted captions of the released clips
            _f("splits_sha256", _STR, False),  # of releases/<release>/splits.parquet
            _f("captions_sha256", _STR, False),  # of releases/<release>/captions.parquet
            _f("manifest_sha256", _STR, False),  # of releases/<release>/manifest.json
        ]
    ),
)

if RELEASES.name not in TABLES:
    _register(RELEASES)
