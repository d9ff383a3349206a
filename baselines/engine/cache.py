"""The frozen-backbone feature cache: CLIP features of clips and captions, kept in the dataset folder.

In ``frozen`` mode the backbone never changes, so each clip is decoded and encoded once and each caption
tokenised and encoded once; training and evaluation then read ``[F, C]`` frame features and ``[C]`` +
``[L, C]`` text features from here. Layout::

    <dataset>/cache/<backbone label>-<hash>/
        identity.json            what the features depend on (weights, precision, sampling, context)
        frames/<shard>.pt        {"keys": [...], "features": [n, F, C], "mask": [n, F]}
        captions/<shard>.pt      {"keys": [...], "sentence": [n, C], "tokens": [n, L, C], "ids": [n, L]}

A clip's key is its id plus its file's size and modification time, a caption's key is a hash of its text, so
an edited clip or caption is encoded again and nothing stale is read. Shards are written atomically every few
hundred items: a killed encoding resumes where it stopped. Files are read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from dvtr_data.dataset import atomic_path, atomic_write_bytes

from .data import ClipRecord

Progress = Callable[[str, int, int], None]
FLUSH_EVERY = 256
COMPACT_AT = 64  # shards per store before they are merged into one


def caption_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class ShardStore:
    """Rows of named tensors under string keys, in append-only shard files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._index: dict[str, int] = {}
        self._parts: dict[str, list[torch.Tensor]] = {}
        self._cat: dict[str, torch.Tensor] | None = None
        self._rows = 0
        self._shards = 0
        if folder.is_dir():
            for path in sorted(folder.glob("*.pt")):
                try:
                    data = torch.load(path, map_location="cpu", weights_only=True)
                except Exception:
                    path.unlink(missing_ok=True)
                    continue
                self._append(data["keys"], data["tensors"])
                self._shards += 1

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def _append(self, keys: list[str], tensors: dict[str, torch.Tensor]) -> None:
        for name, t in tensors.items():
            self._parts.setdefault(name, []).append(t)
        for i, k in enumerate(keys):
            self._index[k] = self._rows + i
        self._rows += len(keys)
        self._cat = None

    def add(self, keys: list[str], tensors: dict[str, torch.Tensor]) -> None:
        """Persist a shard (atomically), then make its rows readable."""
        if not keys:
            return
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        buf = io.BytesIO()
        torch.save({"keys": list(keys), "tensors": tensors}, buf)
        atomic_write_bytes(self.folder / f"{uuid.uuid4().hex}.pt", buf.getvalue())
        self._append(list(keys), tensors)
        self._shards += 1

    def _tensors(self) -> dict[str, torch.Tensor]:
        if self._cat is None:
            self._cat = {name: torch.cat(parts) for name, parts in self._parts.items()}
            self._parts = {name: [t] for name, t in self._cat.items()}
        return self._cat

    def get(self, keys: list[str]) -> dict[str, torch.Tensor]:
        rows = torch.tensor([self._index[k] for k in keys], dtype=torch.long)
        return {name: t.index_select(0, rows) for name, t in self._tensors().items()}

    def compact(self) -> None:
        """Merge many small shards into one file (the old ones are removed after the new one is in place)."""
        if self._shards < COMPACT_AT:
            return
        old = sorted(self.folder.glob("*.pt"))
        keys = [""] * self._rows
        for k, r in self._index.items():
            keys[r] = k
        live = [r for r, k in enumerate(keys) if k]
        tensors = {n: t[live] for n, t in self._tensors().items()}
        buf = io.BytesIO()
        torch.save({"keys": [keys[r] for r in live], "tensors": tensors}, buf)
        target = self.folder / f"{uuid.uuid4().hex}.pt"
        with atomic_path(target) as tmp:
            tmp.write_bytes(buf.getvalue())
        for p in old:
            p.unlink(missing_ok=True)
        self._shards = 1


class FeatureCache:
    """CLIP features of one backbone identity (see the module docstring)."""

    def __init__(self, root: Path, identity: dict[str, Any], key: str) -> None:
        self.folder = Path(root) / key
        self.folder.mkdir(parents=True, exist_ok=True)
        ident = self.folder / "identity.json"
        if not ident.is_file():
            atomic_write_bytes(ident, json.dumps(identity, indent=2, sort_keys=True, default=str).encode())
        self.identity = identity
        self.frames = ShardStore(self.folder / "frames")
        self.captions = ShardStore(self.folder / "captions")

    def frame_features(
        self,
        clips: list[ClipRecord],
        encode: Callable[[list[ClipRecord]], Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]],
        *,
        progress: Progress | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [N, F, C], mask [N, F])`` of ``clips``; missing ones are encoded with ``encode`` first.

        ``encode(missing)`` yields ``(positions in missing, features, mask)`` batches.
        """
        keys = [c.file_key() for c in clips]
        missing = [c for c, k in zip(clips, keys, strict=True) if k not in self.frames]
        missing = list({c.file_key(): c for c in missing}.values())
        if missing:
            self._fill(
                self.frames,
                [c.file_key() for c in missing],
                ((idx, {"features": f, "mask": m}) for idx, f, m in encode(missing)),
                "encoding clips",
                progress,
            )
        got = self.frames.get(keys)
        return got["features"], got["mask"]

    def caption_features(
        self,
        texts: list[str],
        encode: Callable[[list[str]], Iterator[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]]],
        *,
        progress: Progress | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(sentence [N, C], tokens [N, L, C], ids [N, L])`` of ``texts``; missing ones are encoded first."""
        keys = [caption_key(t) for t in texts]
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self.captions))
        if todo:
            self._fill(
                self.captions,
                [caption_key(t) for t in todo],
                ((idx, {"sentence": s, "tokens": w, "ids": i}) for idx, s, w, i in encode(todo)),
                "encoding captions",
                progress,
            )
        got = self.captions.get(keys)
        return got["sentence"], got["tokens"], got["ids"]

    @staticmethod
    def _fill(
        store: ShardStore,
        keys: list[str],
        batches: Iterable[tuple[list[int], dict[str, torch.Tensor]]],
        label: str,
        progress: Progress | None,
    ) -> None:
        pending_keys: list[str] = []
        pending: dict[str, list[torch.Tensor]] = {}
        done = 0
        if progress:
            progress(label, 0, len(keys))

        def flush() -> None:
            if pending_keys:
                store.add(list(pending_keys), {n: torch.cat(v) for n, v in pending.items()})
                pending_keys.clear()
                pending.clear()

        for positions, tensors in batches:
            pending_keys.extend(keys[p] for p in positions)
            for name, t in tensors.items():
                pending.setdefault(name, []).append(t.detach().to("cpu"))
            done += len(positions)
            if progress:
                progress(label, done, len(keys))
            if len(pending_keys) >= FLUSH_EVERY:
                flush()
        flush()
        store.compact()
