"""Schemas of the tables the `precaption` stage writes: embeddings, precaptions and tags.

Vector columns are declared here as variable-size lists so that `validate` can check them like any other column;
`dvtr_data.precaption.embed` writes them as fixed-size lists (``fixed_size_list<float32, dim>``, and for frames a
fixed-size list of those), because the dimension is a property of the model, known only when a run starts. Readers
get the fixed-size types back from the Parquet file's Arrow schema.
"""

from __future__ import annotations

import pyarrow as pa

from dvtr_data.schemas.tables import TABLES, TableSchema, _register

_STR = pa.string()
_F32 = pa.float32()
_F64 = pa.float64()
_I32 = pa.int32()
_I64 = pa.int64()
_TS = pa.timestamp("us", tz="UTC")


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


EMBEDDINGS = TableSchema(
    name="embeddings",
    version=1,
    owner="precaption",
    key=("clip_id", "model"),
    clean_ids=("clip_id",),
    schema=pa.schema(
        [
            _f("clip_id", _STR, False),
            _f("model", _STR, False),  # model identity: "<config>/<tag | ckpt-<sha16> | random-s<seed>>"
            _f("model_config", _STR, False),  # sha256 (16 hex) of the resolved open_clip model config
            _f("checkpoint_sha256", _STR),  # of the weights file, when weights came from a file
            _f("precision", _STR, False),  # fp32 | fp16 | bf16 | amp | amp_bf16
            _f("sampling", _STR, False),  # e.g. "uniform:8": frames per clip and how they were chosen
            _f("status", _STR, False),  # ok | error
            _f("error", _STR),
            _f("decoder", _STR),  # decord | pyav
            _f("source", _STR),  # clip (the clip file) | flight (the span inside the source video, --no-cut)
            _f("frame_indices", pa.list_(_I64)),  # decode-order frame numbers inside the source above
            _f("embed_dim", _I32),
            _f("frame_embeddings", pa.list_(pa.list_(_F32))),  # L2-normalised, one per sampled frame
            _f("clip_embedding", pa.list_(_F32)),  # mean of the frame embeddings, L2-normalised
            _f("embedded_at", _TS, False),
        ]
    ),
)

PRECAPTIONS = TableSchema(
    name="precaptions",
    version=1,
    owner="precaption",
    key=("clip_id", "rank"),
    clean_ids=("clip_id",),
    schema=pa.schema(
        [
            _f("clip_id", _STR, False),
            _f("rank", _I32, False),  # 1 = best
            _f("text", _STR, False),
            _f("score", _F64, False),  # cosine similarity of clip and caption embeddings
            _f("model", _STR, False),  # model identity, as in the embeddings table
            _f("bank", _STR, False),  # "<bank name>@<hash>": which caption bank the text came from
            _f("bank_index", _I64, False),  # position of the text in that bank
        ]
    ),
)

TAGS = TableSchema(
    name="tags",
    version=1,
    owner="precaption",
    key=("clip_id", "rank"),
    clean_ids=("clip_id",),
    schema=pa.schema(
        [
            _f("clip_id", _STR, False),
            _f("rank", _I32, False),  # 1 = most likely
            _f("tag", _STR, False),
            _f("score", _F64, False),  # softmax over the class list at the model's logit scale
            _f("similarity", _F64, False),  # cosine of the clip embedding and the class's prompt embedding
            _f("model", _STR, False),
            _f("class_list", _STR, False),  # "<list name>@<hash>"
            _f("source", _STR, False),  # always "zero-shot" here; clips.category_source uses the same word
        ]
    ),
)

for _table in (EMBEDDINGS, PRECAPTIONS, TAGS):
    if _table.name not in TABLES:
        _register(_table)
