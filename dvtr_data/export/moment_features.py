"""Clip and query features in the layout Moment-DETR and MS-DETR read, computed with an open_clip model.

``features/clip/{vid}.npz`` holds ``features``: one row per 2-s cell of the segment (``ceil(duration / 2)`` rows;
the frame at the middle of each cell, clamped inside the segment, through the image tower, unit length), and
``features/text/qid{qid}.npz`` holds ``last_hidden_state`` (SOT..EOT tokens after ``ln_final``) and
``pooler_output`` (the projected EOT token) of the text tower. CLIP only: the released models also read SlowFast
features, whose weights cannot be had here; a user who has them passes their folder as an extra feature folder
(MS-DETR's motion stream, `train_moment_model(feat_dir=[slowfast_dir, clip_dir])`), and without it MS-DETR uses
the clip-to-clip difference of these CLIP features. The manifest says which model made them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dvtr_data.errors import InputError

CELL_S = 2.0
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SLOWFAST_NOTE = (
    "CLIP features only: SlowFast weights cannot be had here. Bring SlowFast {vid}.npz files as an extra feature "
    "folder (MS-DETR's motion stream); without them MS-DETR's motion stream is the clip-to-clip difference of "
    "these CLIP features"
)


@dataclass(frozen=True)
class FeatureOptions:
    """The open_clip model (name + pretrained tag, or a local checkpoint; ``model_cfg``: an inline tiny random
    config for tests) and how many tokens a query keeps."""

    model: str = "ViT-B-32"
    pretrained: str | None = "openai"
    checkpoint: Path | None = None
    model_cfg: dict[str, Any] | None = field(default=None, hash=False)
    max_words: int = 32
    batch: int = 32

    def backbone(self) -> Any:
        from dvtr_data.baselines.engine.config import BackboneConfig

        return BackboneConfig(model=self.model, pretrained=self.pretrained, checkpoint=self.checkpoint,
                              model_cfg=self.model_cfg)

    def describe(self) -> str:
        if self.model_cfg is not None:
            return f"{self.model} (inline config, random weights)"
        if self.checkpoint:
            return f"{self.model} (checkpoint {Path(self.checkpoint).name})"
        return f"{self.model}/{self.pretrained or 'random'}"


def cell_times(start: float, end: float) -> list[float]:
    """The middle of each 2-s cell of [start, end), clamped just inside the segment (a partial last cell's middle
    may lie past the end)."""
    n = max(1, math.ceil((end - start) / CELL_S - 1e-9))
    return [min(start + (k + 0.5) * CELL_S, max(start, end - 1e-3)) for k in range(n)]


def frames_at(path: Path, times: list[float], size: int) -> np.ndarray:
    """uint8 (len(times), size, size, 3): for each time the first decoded frame at or after it (the last frame
    when none), resized on its short side and centre-cropped."""
    import av
    from PIL import Image

    if not path.is_file():
        raise InputError(f"video {path} is missing: cannot compute its clip features")
    out: list[np.ndarray | None] = [None] * len(times)
    order = sorted(range(len(times)), key=lambda i: times[i])
    last = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if times and times[order[0]] > 1.0 and stream.time_base:
            container.seek(int(max(0.0, times[order[0]] - 1.0) / stream.time_base), stream=stream, backward=True)
        j = 0
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            last = frame
            while j < len(order) and t + 1e-6 >= times[order[j]]:
                out[order[j]] = _square(frame.to_image(), size, Image)
                j += 1
            if j == len(order):
                break
    if last is None:
        raise InputError(f"{path}: no video frame could be decoded")
    fill = _square(last.to_image(), size, Image)
    return np.stack([o if o is not None else fill for o in out])


def _square(img: Any, size: int, image_mod: Any) -> np.ndarray:
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), image_mod.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(img.crop((left, top, left + size, top + size)).convert("RGB"), dtype=np.uint8)


def write_moment_features(
    folder: Path, videos: dict[str, tuple[Path, float, float]], queries: dict[int, str], opts: FeatureOptions,
) -> dict[str, Any]:
    """Write ``clip/{vid}.npz`` and ``text/qid{qid}.npz`` under ``folder``; returns the manifest entry."""
    import torch

    from dvtr_data.baselines.engine.backbone import load_clip, tokenize

    clip = load_clip(opts.backbone()).eval()
    size = clip.visual.image_size
    size = int(size[0] if isinstance(size, tuple | list) else size)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    (folder / "clip").mkdir(parents=True, exist_ok=True)
    (folder / "text").mkdir(parents=True, exist_ok=True)
    rows = 0
    with torch.no_grad():
        for vid, (path, start, end) in sorted(videos.items()):
            frames = frames_at(path, cell_times(start, end), size)
            feats = []
            for i in range(0, len(frames), opts.batch):
                x = torch.from_numpy(frames[i : i + opts.batch]).permute(0, 3, 1, 2).float() / 255.0
                feats.append(torch.nn.functional.normalize(clip.encode_image((x - mean) / std), dim=-1))
            arr = torch.cat(feats).numpy().astype(np.float32)
            np.savez(folder / "clip" / f"{vid}.npz", features=arr)
            rows += len(arr)
        captured: dict[str, torch.Tensor] = {}
        hook = clip.ln_final.register_forward_hook(lambda _m, _i, o: captured.__setitem__("h", o))
        try:
            items = sorted(queries.items())
            for i in range(0, len(items), opts.batch):
                chunk = items[i : i + opts.batch]
                ids = tokenize([t for _, t in chunk], max_words=clip.context_length)
                pooled = clip.encode_text(ids)
                hidden = captured["h"]
                if hidden.shape[0] != ids.shape[0]:  # a sequence-first transformer
                    hidden = hidden.transpose(0, 1)
                eot = ids.argmax(dim=-1)
                for j, (qid, _) in enumerate(chunk):
                    n = min(int(eot[j]) + 1, opts.max_words)
                    np.savez(folder / "text" / f"qid{qid}.npz",
                             last_hidden_state=hidden[j, :n].numpy().astype(np.float32),
                             pooler_output=pooled[j].numpy().astype(np.float32))
        finally:
            hook.remove()
    return {
        "model": opts.describe(),
        "clip_folder": "features/clip",
        "text_folder": "features/text",
        "videos": len(videos),
        "clip_rows": rows,
        "queries": len(queries),
        "frames_per_clip": 1,
        "clip_length_s": CELL_S,
        "slowfast": SLOWFAST_NOTE,
    }
