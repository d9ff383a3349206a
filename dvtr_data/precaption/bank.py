"""Caption banks: the built-in drone bank, user banks in the usual layouts, and cached bank embeddings.

A bank is a deduplicated tuple of caption texts with a content hash; the hash (with the model identity) keys the
cache of its text embeddings, so a bank is embedded once per model, however many runs use it.

User banks: a text file (one caption per line; also AMFMN/PE-RSITR ``*_caps.txt``), JSONL or Parquet with a text
column, JSON (CapERA's ``{"ERA_caption": [...]}`` or a list), and CLIP4Clip's ``raw-captions.pkl`` (USRD, UMCRD),
which is read with a restricted unpickler. A folder is searched for those files. Empty and huge captions are
skipped and counted; a bank with nothing usable, or a file that cannot be parsed, is one `InputError`.
"""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from dvtr_data.errors import InputError
from dvtr_data.precaption.taxonomy import ALL_CLASSES, MOTIONS, TIMES, VIEWS, SceneClass, expand
from dvtr_data.unpickle import caption_pickle

BUILTIN = "builtin"
BUILTIN_NAME = "builtin-drone-v1"
MAX_CHARS = 1000  # longer than any caption: a paragraph, a log line, or garbage
TEXT_COLUMNS = ("text", "caption", "sentence", "captions", "English_caption", "raw")


@dataclass(frozen=True)
class CaptionBank:
    """Deduplicated captions and what loading them skipped."""

    name: str
    texts: tuple[str, ...]
    skipped_empty: int = 0
    skipped_huge: int = 0
    duplicates: int = 0

    @cached_property
    def digest(self) -> str:
        h = hashlib.sha256()
        for text in self.texts:
            h.update(text.encode("utf-8"))
            h.update(b"\n")
        return h.hexdigest()

    @property
    def label(self) -> str:
        """What the precaptions table records as the bank: name and content hash."""
        return f"{self.name}@{self.digest[:12]}"

    def __len__(self) -> int:
        return len(self.texts)


def normalize_caption(text: str) -> str:
    """The comparison form of a caption: case-folded, single-spaced, without trailing punctuation."""
    return " ".join(text.casefold().split()).rstrip(" .!?;,")


class _Collector:
    """Cleans and deduplicates captions as they are read, counting what it drops."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.texts: list[str] = []
        self.seen: set[str] = set()
        self.empty = self.huge = self.dupes = 0

    def add(self, value: Any) -> None:
        if isinstance(value, (list, tuple)):  # CLIP4Clip token lists
            value = " ".join(str(v) for v in value)
        text = " ".join(str(value).split()) if value is not None else ""
        if not text:
            self.empty += 1
            return
        if len(text) > self.max_chars:
            self.huge += 1
            return
        key = normalize_caption(text)
        if not key:
            self.empty += 1
            return
        if key in self.seen:
            self.dupes += 1
            return
        self.seen.add(key)
        self.texts.append(text)

    def bank(self, name: str, source: str) -> CaptionBank:
        if not self.texts:
            found = f" ({self.empty} empty, {self.huge} over {self.max_chars} characters)" if self.empty or self.huge else ""
            raise InputError(f"caption bank {source} holds no usable captions{found}")
        return CaptionBank(name, tuple(self.texts), self.empty, self.huge, self.dupes)


# ----------------------------------------------------------------------------------------------------------------
# the built-in bank
# ----------------------------------------------------------------------------------------------------------------
def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] + "."


def _class_sentences(cls: SceneClass, quota: dict[str, int]) -> list[str]:
    """Sentences about one class, a fixed quota per pattern, chosen by a generator seeded with the class name."""
    rng = random.Random(zlib.crc32(cls.name.encode()))
    places = [(prep, np_) for prep, np in cls.places for np_ in expand(np)]
    clauses = [c for cl in cls.clauses for c in expand(cl)]
    features = [f for ft in cls.features for f in expand(ft)]
    nouns = [np_ for _, np_ in places]
    patterns = {
        "clause_place": [f"{c} {p} {n}" for c in clauses for p, n in places],
        "clause_place_time": [f"{c} {p} {n}{t}" for c in clauses for p, n in places for t in dict.fromkeys(TIMES) if t],
        "view_where": [f"{v} of {n} where {c}" for v in VIEWS for n in nouns for c in clauses],
        "motion_where": [f"{m} {n} where {c}" for m in MOTIONS for n in nouns for c in clauses],
        "view_with": [f"{v} of {n} with {a} and {b}" for v in VIEWS for n in nouns for a in features for b in features
                      if a != b],
        "view": [f"{v} of {n}" for v in VIEWS for n in nouns],
    }
    out: list[str] = []
    for pattern, candidates in patterns.items():
        k = min(quota[pattern], len(candidates))
        out.extend(_sentence(s) for s in rng.sample(candidates, k))
    return out


BUILTIN_QUOTA = {"clause_place": 24, "clause_place_time": 8, "view_where": 22, "motion_where": 18, "view_with": 14,
                 "view": 6}


def builtin_bank(quota: dict[str, int] | None = None) -> CaptionBank:
    """Several thousand sentences about drone footage of ERA events and remote-sensing scenes (deterministic)."""
    collector = _Collector(MAX_CHARS)
    for cls in ALL_CLASSES:
        for sentence in _class_sentences(cls, quota or BUILTIN_QUOTA):
            collector.add(sentence)
    return collector.bank(BUILTIN_NAME, "builtin")


# ----------------------------------------------------------------------------------------------------------------
# user banks
# ----------------------------------------------------------------------------------------------------------------
FORMATS = ("auto", "text", "jsonl", "json", "parquet", "clip4clip")


def _detect(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        return "clip4clip"
    if suffix == ".json":
        return "json"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return "text"


def _pick_column(names: Sequence[str], wanted: str | None, source: Path) -> str:
    if wanted:
        if wanted not in names:
            raise InputError(f"{source}: no column {wanted!r}; columns: {', '.join(names) or 'none'}")
        return wanted
    for name in TEXT_COLUMNS:
        if name in names:
            return name
    raise InputError(f"{source}: no text column (looked for {', '.join(TEXT_COLUMNS)}); columns: {', '.join(names) or 'none'}",
                     hint="name it with --text-column")


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if b"\x00" in data[:4096]:
        raise InputError(f"{path}: not a text file (binary content)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _from_text(path: Path, out: _Collector) -> None:
    for line in _read_text(path).splitlines():
        out.add(line)


def _from_object(obj: Any, column: str | None, out: _Collector, where: str) -> None:
    if isinstance(obj, str):
        out.add(obj)
    elif isinstance(obj, dict):
        key = column or next((c for c in TEXT_COLUMNS if c in obj), None)
        if key is None or key not in obj:
            raise InputError(f"{where}: no text field (looked for {column or ', '.join(TEXT_COLUMNS)})",
                             hint="name it with --text-column")
        value = obj[key]
        for v in value if isinstance(value, list) else [value]:
            out.add(v)
    else:
        raise InputError(f"{where}: expected a caption string or an object, got {type(obj).__name__}")


def _from_jsonl(path: Path, column: str | None, out: _Collector) -> None:
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {number} is not valid JSON ({exc.msg})") from exc
        _from_object(obj, column, out, f"{path}: line {number}")


def _from_json(path: Path, column: str | None, out: _Collector) -> None:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if isinstance(data, dict) and isinstance(data.get("ERA_caption"), list):  # CapERA
        for number, entry in enumerate(data["ERA_caption"]):
            caps = entry.get("annotation", {}).get("English_caption") if isinstance(entry, dict) else None
            if not isinstance(caps, list):
                raise InputError(f"{path}: ERA_caption[{number}] has no annotation.English_caption list")
            for cap in caps:
                out.add(cap)
    elif isinstance(data, list):
        for number, obj in enumerate(data):
            _from_object(obj, column, out, f"{path}: item {number}")
    elif isinstance(data, dict):  # id -> caption(s)
        for value in data.values():
            for v in value if isinstance(value, list) else [value]:
                _from_object(v, column, out, str(path))
    else:
        raise InputError(f"{path}: expected a list of captions or CapERA's {{'ERA_caption': [...]}}")


def _from_parquet(path: Path, column: str | None, out: _Collector) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    name = _pick_column(schema.names, column, path)
    typ = schema.field(name).type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)
            or (pa.types.is_list(typ) and pa.types.is_string(typ.value_type))):
        raise InputError(f"{path}: column {name!r} holds {typ}, not text")
    for value in pq.read_table(path, columns=[name]).column(name).to_pylist():
        for v in value if isinstance(value, list) else [value]:
            out.add(v)


def _from_clip4clip(path: Path, out: _Collector) -> None:
    """A CLIP4Clip pickle's captions, shape-checked and bounded before any token list is joined."""
    for caps in caption_pickle(path, allow_text=True).values():
        for cap in caps:
            out.add(cap)


def _files_in(folder: Path) -> list[Path]:
    """Caption files of the known layouts inside a dataset folder."""
    found = sorted(folder.glob("raw-captions.pkl")) or sorted(folder.glob("*_caps.txt"))
    found = found or sorted(folder.glob("CapERA*.json")) or sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".jsonl", ".ndjson", ".parquet", ".json", ".txt"))
    if not found:
        raise InputError(f"{folder}: no caption file found (raw-captions.pkl, *_caps.txt, *.json, *.jsonl, *.parquet, *.txt)")
    return found


def load_bank(source: str | Path, *, fmt: str = "auto", text_column: str | None = None,
              max_chars: int = MAX_CHARS) -> CaptionBank:
    """One bank: ``"builtin"`` or a file or folder of captions."""
    if str(source) == BUILTIN:
        return builtin_bank()
    if fmt not in FORMATS:
        raise InputError(f"unknown bank format {fmt!r}; choose from {', '.join(FORMATS)}")
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"caption bank {path} does not exist")
    files = _files_in(path) if path.is_dir() else [path]
    out = _Collector(max_chars)
    for file in files:
        kind = _detect(file) if fmt == "auto" else fmt
        if kind == "clip4clip":
            _from_clip4clip(file, out)
        elif kind == "json":
            _from_json(file, text_column, out)
        elif kind == "jsonl":
            _from_jsonl(file, text_column, out)
        elif kind == "parquet":
            _from_parquet(file, text_column, out)
        else:
            _from_text(file, out)
    name = path.name if path.is_dir() else (path.parent.name if path.name == "raw-captions.pkl" else path.stem)
    return out.bank(name or "bank", str(path))


def combine(banks: Sequence[CaptionBank]) -> CaptionBank:
    """Several banks as one (deduplicated across them); its name joins theirs."""
    if len(banks) == 1:
        return banks[0]
    out = _Collector(10**9)
    for bank in banks:
        for text in bank.texts:
            out.add(text)
    return CaptionBank(
        "+".join(b.name for b in banks), tuple(out.texts),
        skipped_empty=sum(b.skipped_empty for b in banks),
        skipped_huge=sum(b.skipped_huge for b in banks),
        duplicates=sum(b.duplicates for b in banks) + out.dupes,
    )


def load_banks(sources: Iterable[str | Path], *, fmt: str = "auto", text_column: str | None = None,
               max_chars: int = MAX_CHARS) -> CaptionBank:
    banks = [load_bank(s, fmt=fmt, text_column=text_column, max_chars=max_chars) for s in sources]
    if not banks:
        raise InputError("no caption bank given")
    return combine(banks)


# ----------------------------------------------------------------------------------------------------------------
# the embedding cache
# ----------------------------------------------------------------------------------------------------------------
def bank_cache_path(cache_dir: Path, identity: Any, digest: str) -> Path:
    """Where the embeddings of a bank (by content hash) under one model (by identity and config) are cached."""
    return Path(cache_dir) / identity.key / f"{identity.config_hash}-{digest[:32]}.npy"


BANK_CHUNK = 16384
"""Captions embedded, and cached, per chunk: a killed run over a million-line bank loses at most one chunk."""


def _load_vectors(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The matrix at ``path`` if it is readable and of ``shape``; None otherwise (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return vectors if vectors.shape == shape else None


def _save_vectors(path: Path, vectors: np.ndarray) -> None:
    from dvtr_data.dataset import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)


def cached_text_embeddings(
    texts: Sequence[str],
    digest: str,
    encoder: Any,
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    chunk_size: int = BANK_CHUNK,
) -> tuple[np.ndarray, bool]:
    """Embeddings of ``texts`` from ``cache_dir/<model key>/<digest>.npy``, computed and stored when missing.

    Returns the matrix and whether it came from the cache. A cache file of the wrong shape is recomputed.
    Texts are embedded ``chunk_size`` at a time and each chunk is saved atomically beside the final file
    (``<file>.parts/<index>-<size>.npy``) as soon as it is done, so a killed or failed run resumes with the first
    missing chunk; ``progress(done, total)`` counts captions, cached chunks included. The parts go once the whole
    matrix is saved.
    """
    path = bank_cache_path(cache_dir, encoder.identity, digest)
    n, dim = len(texts), int(encoder.identity.embed_dim)
    whole = _load_vectors(path, (n, dim))
    if whole is not None:
        return whole, True
    chunk_size = max(int(chunk_size), 1)
    parts = path.with_name(path.name + ".parts")
    vectors = np.zeros((n, dim), np.float32)
    done = 0
    for index, start in enumerate(range(0, n, chunk_size)):
        chunk = texts[start:start + chunk_size]
        part = parts / f"{index:06d}-{chunk_size}.npy"
        cached = _load_vectors(part, (len(chunk), dim))
        if cached is None:
            base = done

            def chunk_progress(k: int, _total: int, base: int = base) -> None:
                if progress:
                    progress(base + k, n)

            cached = np.ascontiguousarray(encoder.encode_texts(list(chunk), progress=chunk_progress), np.float32)
            if cached.shape != (len(chunk), dim):
                raise ValueError(f"the text encoder returned {cached.shape} for {len(chunk)} texts of dimension {dim}")
            _save_vectors(part, cached)
        vectors[start:start + len(chunk)] = cached
        done += len(chunk)
        if progress:
            progress(done, n)
    _save_vectors(path, vectors)
    if parts.is_dir():
        import shutil

        shutil.rmtree(parts, ignore_errors=True)
    return vectors, False
