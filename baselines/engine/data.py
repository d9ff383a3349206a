"""Clips and captions of a split, and frames sampled exactly as the authors' loader samples them (msam.md §1).

Sources: the dataset tables (``clips``, ``captions`` with ``accepted``, ``splits``) or an exported Parquet split
file (a path ending in ``.parquet``). Order matters for the paper protocol (captions are scored in chunks of
32 consecutive captions): clips come in ``clip_id`` order (or the file's row order), each clip's captions in
``caption_id`` order (or row order), all captions of a clip together.

Frames: the authors decode with OpenCV, read the frame rate as an integer, take the first frame of each second
(``feature_framerate=1``) for seconds ``0 .. ceil(frames / fps)`` until a read fails, keep 12 spread uniformly
(``linspace`` cast to int) when there are more, resize the short side to 224 (bicubic), centre-crop 224x224,
normalise with CLIP's mean and std, and zero-pad to 12 with a mask. Decoding here is PyAV, sequential (no
seeking), which yields the same frames for the constant-frame-rate clip files ``ingest`` writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, InputError, UsageError

from .config import DataConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipRecord:
    """One clip file and what search results print about it."""

    clip_id: str
    path: Path
    fps: float | None = None
    n_frames: int | None = None
    flight_id: str | None = None
    start_s: float | None = None
    end_s: float | None = None
    keyframe_paths: tuple[Path, ...] = ()  # image families (AMFMN) read these; not part of the cache key
    category: str | None = None

    def file_key(self) -> str:
        """Identity of the clip's pixels for the feature cache: id, size and modification time of the file."""
        try:
            st = self.path.stat()
        except OSError:
            return f"{self.clip_id}:missing"
        return f"{self.clip_id}:{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class CaptionRecord:
    caption_id: str
    clip_id: str
    text: str


@dataclass
class SplitData:
    """A split's clips and captions, in protocol order; ``caption_clip[i]`` indexes ``clips``."""

    name: str
    clips: list[ClipRecord]
    captions: list[CaptionRecord]
    caption_clip: list[int] = field(default_factory=list)
    dropped_clips: int = 0  # clips of the split without any usable caption

    def __post_init__(self) -> None:
        if not self.caption_clip:
            where = {c.clip_id: i for i, c in enumerate(self.clips)}
            self.caption_clip = [where[c.clip_id] for c in self.captions]

    def summary(self) -> str:
        return f"{self.name}: {len(self.clips)} clips, {len(self.captions)} captions"


# ---------------------------------------------------------------------------------------------- frame indices
def frame_indices(n_frames: int, fps: float, cfg: DataConfig) -> list[int]:
    """Indices of the frames the authors' extractor reads, before the cut to ``max_frames``.

    ``truncate`` (the authors'): rate = int(fps); seconds 0..ceil(n/rate) inclusive; in each second the frames
    ``0, rate // frame_rate, ...`` (first ``frame_rate`` of them); reading stops at the first index past the
    end. A 5 s clip at 24 fps (120 frames) gives 5 frames; at 23.976 fps (read as 23) it gives 6.
    ``exact``: the first frame at or after each ``k / frame_rate`` seconds of the true rate.
    """
    if n_frames <= 0:
        return []
    if cfg.fps_rounding == "truncate":
        rate = max(int(fps), 1)
        seconds = (n_frames + rate - 1) // rate
        interval = max(rate // cfg.frame_rate, 1)
        offsets = list(range(0, rate, interval))[: cfg.frame_rate]
        out: list[int] = []
        for sec in range(seconds + 1):
            for off in offsets:
                idx = sec * rate + off
                if idx >= n_frames:
                    return out
                out.append(idx)
        return out
    step = fps / cfg.frame_rate
    out, k = [], 0
    while True:
        idx = math.ceil(k * step - 1e-9)
        if idx >= n_frames:
            return out
        if not out or idx > out[-1]:
            out.append(idx)
        k += 1


def pick_frames(indices: list[int], cfg: DataConfig) -> list[int]:
    """At most ``max_frames`` of ``indices``: uniformly (``linspace`` cast to int, the authors'), head or tail."""
    n, m = len(indices), cfg.max_frames
    if n <= m:
        return list(indices)
    if cfg.frame_pick == "head":
        return list(indices[:m])
    if cfg.frame_pick == "tail":
        return list(indices[-m:])
    return [indices[i] for i in np.linspace(0, n - 1, num=m, dtype=int)]


def probe_clip(path: Path) -> tuple[float, int]:
    """``(fps, frame count)`` of a clip file, as OpenCV would report them (container values)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            n = int(stream.frames or 0)
            if n <= 0 and stream.duration and stream.time_base and fps:
                n = int(round(float(stream.duration * stream.time_base) * fps))
            if n <= 0:
                n = sum(1 for _ in container.decode(stream))
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise InputError(f"cannot read clip {path}: {exc}") from exc
    return fps, n


def preprocess_frame(image: Any, size: int) -> np.ndarray:
    """Short side to ``size`` (bicubic), centre crop, RGB: ``uint8 [size, size, 3]`` (CLIP's transform)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    image = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC)
    image = TF.center_crop(image, size)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_frames(path: Path, indices: list[int], size: int) -> np.ndarray:
    """Frames ``indices`` (increasing) of a clip, preprocessed: ``uint8 [n, size, size, 3]``.

    Frames past the real end are missing from the result (the authors' read fails and stops there).
    """
    import av

    wanted = set(indices)
    last = max(indices, default=-1)
    out: list[np.ndarray] = []
    if last < 0:
        return np.zeros((0, size, size, 3), np.uint8)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    out.append(preprocess_frame(frame.to_image(), size))
                if i >= last:
                    break
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise InputError(f"cannot decode clip {path}: {exc}") from exc
    if not out:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack(out)


def load_clip_pixels(clip: ClipRecord, cfg: DataConfig, size: int) -> tuple[np.ndarray, int]:
    """``(uint8 [max_frames, S, S, 3] zero-padded, number of real frames)`` of one clip."""
    fps, n = clip.fps, clip.n_frames
    if not fps or not n:
        fps, n = probe_clip(clip.path)
    picked = pick_frames(frame_indices(n, fps, cfg), cfg)
    frames = decode_frames(clip.path, picked, size)
    if len(frames) == 0:
        raise InputError(f"clip {clip.clip_id}: no frame could be decoded from {clip.path}")
    padded = np.zeros((cfg.max_frames, size, size, 3), np.uint8)
    padded[: len(frames)] = frames
    return padded, len(frames)


def normalise(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``uint8 [..., F, S, S, 3]`` -> CLIP-normalised ``float32 [..., F, 3, S, S]``; padded frames are 0.

    The same operations as ``ToTensor`` + ``Normalize`` on each real frame; a padding frame is all zero
    *after* normalisation, as the authors' loader leaves it.
    """
    x = pixels.movedim(-1, -3).float().div(255.0)
    mean = torch.tensor(CLIP_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(CLIP_STD, device=x.device)[:, None, None]
    x = (x - mean) / std
    keep = mask.to(torch.bool)[..., None, None, None]
    return torch.where(keep, x, torch.zeros((), device=x.device))


class ClipPixels(torch.utils.data.Dataset):
    """Decoded frames of a list of clips, for a ``DataLoader`` (decoding runs in its worker processes)."""

    def __init__(self, clips: list[ClipRecord], cfg: DataConfig, size: int) -> None:
        self.clips, self.cfg, self.size = clips, cfg, size

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        pixels, n = load_clip_pixels(self.clips[i], self.cfg, self.size)
        mask = torch.zeros(self.cfg.max_frames, dtype=torch.long)
        mask[:n] = 1
        return i, torch.from_numpy(pixels), mask


def pixel_loader(clips: list[ClipRecord], cfg: DataConfig, size: int, batch_size: int) -> torch.utils.data.DataLoader:
    """Batches ``(indices, uint8 pixels [B, F, S, S, 3], mask [B, F])`` in ``clips`` order."""
    return torch.utils.data.DataLoader(
        ClipPixels(clips, cfg, size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=cfg.decode_workers,
        persistent_workers=False,
    )


# ---------------------------------------------------------------------------------------------- splits
def _table(dataset: Dataset, name: str) -> pa.Table:
    if not dataset.has_table(name):
        hints = {
            "splits": "write splits.parquet (clip_id, split, group_id), e.g. with `dvtr-data split`, or pass an exported "
            "Parquet split file as the split",
            "captions": "captions come from annotation (or `simulated_captions` for generated flights)",
            "clips": "run `dvtr-data ingest FLIGHTS --dataset DIR` first",
        }
        raise DatasetError(f"{dataset.root} has no {name} table", hint=hints.get(name))
    return dataset.read_table(name)


def _clip_records(dataset: Dataset, rows: list[dict[str, Any]]) -> dict[str, ClipRecord]:
    out = {}
    for r in rows:
        if r.get("status") != "ok" or not r.get("clip_path"):
            continue
        out[r["clip_id"]] = ClipRecord(
            clip_id=r["clip_id"],
            path=dataset.root / r["clip_path"],
            fps=r.get("fps"),
            n_frames=r.get("n_frames"),
            flight_id=r.get("flight_id"),
            start_s=r.get("start_s"),
            end_s=r.get("end_s"),
            keyframe_paths=tuple(dataset.root / k for k in r.get("keyframe_paths") or ()),
            category=r.get("category"),
        )
    return out


def dataset_clips(dataset: Dataset) -> list[ClipRecord]:
    """Every clip of the dataset with a file (what search covers), in ``clip_id`` order."""
    dataset.require()
    clips = _clip_records(dataset, _table(dataset, "clips").to_pylist())
    missing = [c for c in clips.values() if not c.path.is_file()]
    if missing:
        raise DatasetError(
            f"{len(missing)} clip file(s) are missing, e.g. {missing[0].path}", hint="re-run `dvtr-data ingest` to rewrite them"
        )
    return [clips[k] for k in sorted(clips)]


def load_split(dataset: Dataset, split: str) -> SplitData:
    """A split by name (``splits.parquet``) or an exported Parquet split file (a path ending in .parquet)."""
    if split.endswith(".parquet"):
        return load_parquet_split(Path(split), dataset)
    dataset.require()
    splits = _table(dataset, "splits").to_pylist()
    names = sorted({r["split"] for r in splits})
    members = {r["clip_id"] for r in splits if r["split"] == split}
    if not members:
        raise UsageError(f"split {split!r} has no clips in {dataset.table_path('splits')}", hint=f"splits: {', '.join(names) or 'none'}")
    clips = _clip_records(dataset, _table(dataset, "clips").to_pylist())
    captions: dict[str, list[CaptionRecord]] = {}
    for r in _table(dataset, "captions").to_pylist():
        if r.get("accepted") and r["clip_id"] in members:
            captions.setdefault(r["clip_id"], []).append(CaptionRecord(r["caption_id"], r["clip_id"], r["text"]))
    usable = sorted(c for c in members if c in clips and c in captions)
    missing = [clips[c].path for c in usable if not clips[c].path.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} clip file(s) of split {split!r} are missing, e.g. {missing[0]}")
    if not usable:
        raise DatasetError(f"split {split!r} has no clip with a file and an accepted caption")
    ordered = [cap for c in usable for cap in sorted(captions[c], key=lambda x: x.caption_id)]
    return SplitData(split, [clips[c] for c in usable], ordered, dropped_clips=len(members) - len(usable))


def load_parquet_split(path: Path, dataset: Dataset | None = None) -> SplitData:
    """An exported split file: ``dvtr-data export --format parquet`` writes one row per clip with list columns
    ``captions`` and ``caption_ids``; one row per caption with a ``text`` column works too.

    Required: ``clip_id`` and a clip file: ``video`` (relative to the file's folder, when the export carries
    media) or ``clip_path`` (absolute, or relative to the dataset folder or the file's folder). Optional:
    ``caption_id``/``caption_ids``, ``fps``, ``n_frames`` (else ``end_frame - start_frame``), ``flight_id``,
    ``start_s``, ``end_s``. Row order is kept.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"split file {path} does not exist")
    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    if not rows:
        raise InputError(f"{path} has no rows")
    cols = set(rows[0])
    if "clip_id" not in cols or not ({"clip_path", "video"} & cols) or not ({"text", "captions"} & cols):
        raise InputError(
            f"{path} needs columns clip_id, clip_path (or video) and captions (or text); it has {', '.join(sorted(cols))}"
        )
    bases = ([dataset.root] if dataset is not None else []) + [path.parent]

    def locate(r: dict[str, Any]) -> Path:
        if r.get("video") and (path.parent / r["video"]).is_file():
            return path.parent / r["video"]
        q = Path(r.get("clip_path") or r.get("video") or "")
        if q.is_absolute():
            return q
        for base in bases:
            if (base / q).is_file():
                return base / q
        return bases[0] / q

    def n_frames(r: dict[str, Any]) -> int | None:
        if r.get("n_frames"):
            return int(r["n_frames"])
        if r.get("end_frame") is not None and r.get("start_frame") is not None:
            return int(r["end_frame"] - r["start_frame"])
        return None

    clips: dict[str, ClipRecord] = {}
    per_clip: dict[str, list[CaptionRecord]] = {}
    for r in rows:
        cid = r["clip_id"]
        if cid not in clips:
            clips[cid] = ClipRecord(cid, locate(r), r.get("fps"), n_frames(r), r.get("flight_id"), r.get("start_s"), r.get("end_s"))
        caps = per_clip.setdefault(cid, [])
        if "text" in cols:
            texts, ids = [r["text"]], [r.get("caption_id")]
        else:
            texts = list(r["captions"] or [])
            ids = list(r.get("caption_ids") or [None] * len(texts))
        for text, cap_id in zip(texts, ids, strict=True):
            caps.append(CaptionRecord(str(cap_id or f"{cid}#{len(caps)}"), cid, str(text)))
    kept = [c for c in clips.values() if per_clip.get(c.clip_id)]
    captions = [cap for c in kept for cap in per_clip[c.clip_id]]
    missing = [c.path for c in kept if not c.path.is_file()]
    if missing:
        raise InputError(f"{len(missing)} clip file(s) named in {path} are missing, e.g. {missing[0]}")
    return SplitData(path.stem, kept, captions, dropped_clips=len(clips) - len(kept))
