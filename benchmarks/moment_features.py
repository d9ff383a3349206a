"""MS-DETR / Moment-DETR training step with cached clip features, against recomputing them at every step.

    .venv/bin/python benchmarks/moment_features.py [--variant ms-detr] [--batch 8] [--clips 75] [--frames 1]
                                                   [--steps 5] [--device cpu|cuda] [--threads N] [--small]

Both paths run the same batches through the same model, loss and optimiser; they differ only in where the
per-clip video features and the per-token query features come from:

* cached: read from memory (what the trainer does: the features are exported once as ``{vid}.npz`` and
  ``qid{qid}.npz`` and loaded once per run);
* recomputed: the frozen CLIP image tower on ``--frames`` frames per 2-s clip (QVHighlights' CLIP features use
  one frame per clip) and the text tower on 32 tokens per query, at every step.

The CLIP is open_clip's ``CLIP`` built from an inline tiny random config through ``load_clip`` (as the
baseline
engine builds its test backbone; nothing is downloaded), so the recomputation cost printed here is a lower
bound: ViT-B/32 costs far more. The printed ratio is measured in one run, same machine, same data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F

from dvtr_data.baselines.engine.backbone import load_clip, tokenize
from dvtr_data.baselines.engine.config import BackboneConfig
from dvtr_data.baselines.ms_detr.config import load_config
from dvtr_data.baselines.ms_detr.losses import MomentCriterion
from dvtr_data.baselines.ms_detr.model import build_model
from dvtr_data.baselines.msam.encoders import ClipEncoders

TINY_CLIP = {
    "embed_dim": 128,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 128, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}
WORDS = (
    "a",
    "the",
    "drone",
    "flies",
    "over",
    "red",
    "white",
    "car",
    "boat",
    "road",
    "river",
    "field",
    "roof",
    "bridge",
    "crowd",
    "near",
    "along",
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def video_tensor(feats: torch.Tensor, two_streams: bool) -> torch.Tensor:
    """(B, L, C) clip features -> model input: normalised, motion difference (MS-DETR), TEF columns."""
    x = F.normalize(feats, dim=-1)
    if two_streams:
        motion = torch.diff(x, dim=1, prepend=x[:, :1])
        x = torch.cat([motion, x], -1)
    b, n, _ = x.shape
    start = torch.arange(n, device=x.device, dtype=x.dtype) / n
    tef = torch.stack([start, start + 1.0 / n], -1).expand(b, n, 2)
    return torch.cat([x, tef], -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="ms-detr", choices=["ms-detr", "moment-detr"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--clips", type=int, default=75)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="a 64-wide detector (quick runs on a CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)

    clip = load_clip(BackboneConfig(model="tiny-random", pretrained=None, model_cfg=TINY_CLIP)).to(device)
    encoders = ClipEncoders(clip).eval()
    for p in clip.parameters():
        p.requires_grad_(False)
    overrides = {"device": str(device), "input_dropout": 0.0}
    if args.small:
        overrides.update(hidden_dim=64, nheads=4, dim_feedforward=128)
    cfg = load_config(args.variant, **overrides)
    dim = TINY_CLIP["embed_dim"]
    two = cfg.variant == "ms-detr"
    model = build_model(
        cfg, video_dim=2 * dim if two else dim, text_dim=dim, motion_dim=dim if two else 0
    ).to(device)
    criterion = MomentCriterion(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    b, n, f = args.batch, args.clips, args.frames
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(b, n * f, 3, 224, 224, generator=g).to(device)
    captions = [
        " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (8,), generator=g)) for _ in range(b)
    ]
    ids = tokenize(captions, 32).to(device)
    text_mask = ids != 0
    spans = [torch.tensor([[0.3 + 0.05 * (i % 4), 0.2]], device=device) for i in range(b)]
    batch = {
        "spans": spans,
        "saliency_pos": torch.tensor([[int(0.3 * n)] * 2] * b, device=device),
        "saliency_neg": torch.tensor([[0, n - 1]] * b, device=device),
        "saliency_all": torch.zeros(b, n, device=device),
    }
    batch["saliency_all"][:, int(0.2 * n) : int(0.4 * n)] = 8.0
    video_mask = torch.ones(b, n, dtype=torch.bool, device=device)

    @torch.no_grad()
    def features() -> tuple[torch.Tensor, torch.Tensor]:
        img = clip.encode_image(frames.flatten(0, 1)).view(b, n, f, -1).mean(2)
        _, tokens = encoders.encode_text(ids)
        return img, F.normalize(tokens, dim=-1)

    def step(vid_feats: torch.Tensor, txt: torch.Tensor) -> float:
        model.train()
        out = model(video_tensor(vid_feats, two), video_mask, txt, text_mask, target_spans=spans)
        loss = criterion.total(criterion(out, {**batch, "video_mask": video_mask}))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        return float(loss.detach())

    sync(device)
    t0 = time.perf_counter()
    cached = features()
    sync(device)
    fill = time.perf_counter() - t0
    step(*cached)  # warm-up of both paths
    step(*features())
    times: dict[str, list[float]] = {"cached": [], "recomputed": []}
    for _ in range(args.steps):  # interleaved, so drift on a shared machine hits both alike
        for name in ("cached", "recomputed"):
            sync(device)
            t0 = time.perf_counter()
            if name == "cached":
                step(*cached)
            else:
                step(*features())
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
        f"threads {torch.get_num_threads()}, variant {cfg.variant}, hidden {cfg.hidden_dim}, "
        f"batch {b} queries x {n} clips x {f} frame(s), tiny random CLIP ({dim}-d), {args.steps} steps each"
    )
    print(f"one-time feature extraction for the batch: {fill * 1000:.1f} ms")
    for k in ("cached", "recomputed"):
        print(
            f"{k:>10}: median step {med[k] * 1000:8.1f} ms  "
            f"(min {min(times[k]) * 1000:.1f}, max {max(times[k]) * 1000:.1f})"
        )
    print(f"recomputed / cached step time: {med['recomputed'] / med['cached']:.2f}x")


if __name__ == "__main__":
    main()
