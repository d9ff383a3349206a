"""MSAM engine speed, as ratios against references measured in the same run on the same data.

    .venv/bin/python benchmarks/msam.py [--parts a,b,c] [--clips 100000] [--steps 2] [--device cpu|cuda] [--threads N]

(a) Training time of an epoch whose CLIP features come from the frozen-backbone cache, against the same epoch
    (same batches, same heads, same optimiser) computing the frozen backbone (ViT-B/32 on 12 frames per clip and
    32 tokens per caption) at every step. The weights are random (nothing is downloaded); the compute is that
    of the OpenAI weights. The one-time cost of filling the cache is printed beside it.
(b) Search over --clips generated clips (12 unit frame embeddings of 512 dimensions each): the fast exact score
    (one matrix-vector pass over the stored frames, then O(F^2) per clip) against the memory floor (that one
    matrix-vector pass alone), and the naive path (the model's own similarity head on the query and every clip,
    in chunks) against the fast one, with the top-10 and the score error. Also the half-precision store.
(c) Paper-protocol evaluation of a USRD-sized test set (1,480 captions x 296 clips, 5 real + 7 padded frames) from
    cached CLIP features: the engine computes the temporal transformer and frame norms once per clip; the authors'
    loop recomputes them for every chunk of 32 captions. Same scores, checked.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import torch.nn.functional as F

from dvtr_data.baselines.engine.backbone import set_backbone_trainable, token_mask, tokenize
from dvtr_data.baselines.engine.data import normalise
from dvtr_data.baselines.engine.evaluate import (
    SplitFeatures,
    authors_loop_similarity,
    paper_protocol_similarity,
)
from dvtr_data.baselines.engine.optim import BertAdam, authors_param_groups
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.engine.search import SearchIndex, naive_scores
from dvtr_data.baselines.engine.train import batches_of, build_model, epoch_order
from dvtr_data.baselines.msam import frame_gram

WORDS = "a the drone view of red white blue car boat road river field roof building park bridge crowd over near along".split()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls (noise on a shared machine only adds time), and the last result."""
    times, out = [], None
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), out


def vit_b32_msam(device: torch.device, **options):
    """MSAM on a randomly initialised ViT-B-32-quickgelu (the authors' architecture; no weights needed)."""
    cfg = registered("msam").with_overrides({"backbone": {"pretrained": None}, "model": {"options": options}})
    model = build_model(cfg).to(device)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100))  # OpenAI CLIP's trained value
    return cfg, model


# ---------------------------------------------------------------------------------------------- (a)
def bench_training(device: torch.device, steps: int, batch: int) -> None:
    print(f"(a) training epoch: {steps} steps of {batch} captions, 5 captions per clip, 5 real + 7 padded frames", flush=True)
    cfg, model = vit_b32_msam(device)
    set_backbone_trainable(model.encoders.clip, trainable=False)
    n_captions = steps * batch
    n_clips = math.ceil(n_captions / 5)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (n_clips, 12, 224, 224, 3), dtype=torch.uint8, generator=g)
    mask = torch.zeros(n_clips, 12, dtype=torch.long)
    mask[:, :5] = 1
    texts = [" ".join(WORDS[int(i)] for i in torch.randint(0, len(WORDS), (10,), generator=g)) for _ in range(n_captions)]
    ids = tokenize(texts, 32).to(device)
    caption_clip = torch.arange(n_captions, device=device) // 5
    order = epoch_order(n_captions, 42, 0)
    batches = batches_of(order, batch, True)

    def optimiser() -> BertAdam:
        groups = authors_param_groups(model, lr=1e-4, backbone_lr=1e-7, weight_decay=0.2)
        return BertAdam(groups, lr=1e-4, warmup=0.1, t_total=steps, b1=0.9, b2=0.98, e=1e-6, weight_decay=0.2)

    def step(opt: BertAdam, sent, toks, frames, vmask, tid) -> None:
        losses = model.losses_from_features(sent, toks, frames, vmask, token_mask=tid)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], 1.0)
        opt.step()

    state = {k: v.clone() for k, v in model.state_dict().items()}

    def backbone_every_step() -> None:
        opt = optimiser()
        model.train()
        model.encoders.clip.eval()
        for b in batches:
            idx = torch.tensor(b, device=device)
            clips = caption_clip[idx]
            video = normalise(pixels[clips.cpu()].to(device), mask[clips.cpu()].to(device))
            with torch.no_grad():
                sent, toks = model.encode_text(ids[idx])
                frames = model.encode_frames(video)
            step(opt, sent, toks, frames, mask[clips.cpu()].to(device), token_mask(ids[idx]))

    def fill_cache():
        with torch.no_grad():
            model.eval()
            frames = torch.cat([
                model.encode_frames(normalise(pixels[i : i + 8].to(device), mask[i : i + 8].to(device)))
                for i in range(0, n_clips, 8)
            ])
            sent, toks = zip(*(model.encode_text(ids[i : i + 128]) for i in range(0, n_captions, 128)), strict=False)
        return frames, torch.cat(sent), torch.cat(toks)

    def cached_epoch(frames, sent, toks) -> None:
        opt = optimiser()
        model.train()
        dev_mask = mask.to(device)
        for b in batches:
            idx = torch.tensor(b, device=device)
            clips = caption_clip[idx]
            step(opt, sent[idx], toks[idx], frames[clips], dev_mask[clips], token_mask(ids[idx]))

    t_fill, cache = timed(fill_cache, device)
    model.load_state_dict(state)
    cached_epoch(*cache)  # warm-up (allocator, kernels)
    model.load_state_dict(state)
    t_cached, _ = timed(lambda: cached_epoch(*cache), device, repeats=3)
    model.load_state_dict(state)
    t_every, _ = timed(backbone_every_step, device)
    print(f"    epoch, backbone every step:   {t_every:9.2f} s  ({t_every / steps:.2f} s/step)")
    print(f"    epoch, cached features:       {t_cached:9.3f} s  ({t_cached / steps * 1000:.0f} ms/step)")
    print(f"    one-time cache fill:          {t_fill:9.2f} s  ({n_clips} clips, {n_captions} captions)")
    print(f"(a) backbone every step / cached  = {t_every / t_cached:.0f}x  (expect two orders of magnitude)", flush=True)


# ---------------------------------------------------------------------------------------------- (b)
def generated_index(n: int, device: torch.device, *, queries: int = 5, seed: int = 0):
    """Unit frame embeddings ``[n, 12, 512]`` of generated clips (1-12 real frames; padding shares one vector),
    their Gram matrices, masks, and ``queries`` unit query vectors, each with 10 planted relevant clips of
    decreasing relevance (so that a top-10 exists that is not a tie among noise)."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.empty(n, 12, 512)
    mask = torch.zeros(n, 12, dtype=torch.long)
    pad = F.normalize(torch.randn(512, generator=g), dim=0)
    step = 8192
    for s in range(0, n, step):
        e = min(s + step, n)
        base = torch.randn(e - s, 1, 512, generator=g)  # a clip's frames resemble each other
        chunk = F.normalize(base + 0.7 * torch.randn(e - s, 12, 512, generator=g), dim=-1)
        lengths = torch.randint(1, 13, (e - s,), generator=g)
        m = torch.arange(12)[None, :] < lengths[:, None]
        frames[s:e] = torch.where(m[..., None], chunk, pad)
        mask[s:e] = m.long()
    qs = F.normalize(torch.randn(queries, 512, generator=g), dim=-1)
    for q in qs:
        for rank, clip in enumerate(torch.randperm(n, generator=g)[:10].tolist()):
            strength = 0.5 - 0.03 * rank
            valid = mask[clip].bool()
            frames[clip, valid] = F.normalize((1 - strength) * frames[clip, valid] + strength * q, dim=-1)
    frames = frames.to(device)
    gram = torch.cat([frame_gram(frames[s : s + step]) for s in range(0, n, step)])
    return frames, gram, mask.to(device), qs.to(device)


def bench_search(device: torch.device, n: int, repeats: int) -> None:
    print(f"(b) search over {n:,} generated clips x 12 frames x 512 (float32 store {n * 12 * 512 * 4 / 2**30:.2f} GiB)", flush=True)
    _, model = vit_b32_msam(device)
    model.eval()
    frames, gram, mask, queries = generated_index(n, device)
    scale = model.options.head_scale * float(model.logit_scale.detach().exp())
    common = dict(kind="fusion", clip_ids=[], flight_ids=[], spans=[], tau=model.options.tau, scale=scale)
    index = SearchIndex(frames=frames, gram=gram, **common)
    flat = frames.view(n * 12, 512)

    floor_t, fast_t, top_t = [], [], []
    for q in queries:  # interleaved, so a busy machine slows both alike
        floor_t.append(timed(lambda q=q: flat @ q, device, repeats)[0])
        fast_t.append(timed(lambda q=q, index=index: index.scores(q), device, repeats)[0])
        top_t.append(timed(lambda q=q, index=index: index.top(q, 10), device, repeats)[0])
    t_floor, t_fast, t_top = statistics.median(floor_t), statistics.median(fast_t), statistics.median(top_t)
    naive_t, max_err, same_top, tie_top = [], 0.0, 0, 0
    with torch.no_grad():
        for q in queries:
            t, naive = timed(lambda q=q: naive_scores(model, q, frames, mask, chunk=4096), device)
            naive_t.append(t)
            fast = index.scores(q)
            max_err = max(max_err, (fast - naive).abs().max().item())
            fast_top, naive_top = torch.topk(fast, 10).indices, torch.topk(naive, 10).indices
            same_top += int(torch.equal(fast_top, naive_top))
            # identical up to ties: the naive scores of the fast top-10 are the naive top-10 scores
            tie_top += int((naive[fast_top] - naive[naive_top]).abs().max().item() <= 1e-5)
    t_naive = statistics.median(naive_t)
    print(f"    memory floor (frames @ q):    {t_floor * 1000:9.1f} ms  ({flat.numel() * 4 / t_floor / 1e9:.1f} GB/s)")
    print(f"    fast exact score:             {t_fast * 1000:9.1f} ms   (+ top-10: {t_top * 1000:.1f} ms)")
    print(f"    naive (model head, chunks):   {t_naive * 1000:9.1f} ms")
    print(f"(b) fast / memory floor           = {t_fast / t_floor:.2f}  (aim <= 1.5)")
    print(f"    naive / fast                  = {t_naive / t_fast:.1f}x; top-10 identical for {same_top}/{len(queries)} queries "
          f"({tie_top}/{len(queries)} up to ties within 1e-5); "
          f"max |fast - naive| = {max_err:.2e} (logits up to {scale:.0f})", flush=True)

    half = SearchIndex(frames=frames.half(), gram=gram, **common)
    del index
    flat16 = half.frames.view(n * 12, 512)
    f16_floor, f16_fast, errs, overlap = [], [], [], []
    for q in queries:
        f16_floor.append(timed(lambda q=q: flat16 @ q.half(), device, repeats)[0])
        f16_fast.append(timed(lambda q=q: half.scores(q), device, repeats)[0])
        exact = SearchIndex(frames=frames, gram=gram, **common).scores(q)
        approx = half.scores(q)
        errs.append((approx - exact).abs().max().item())
        overlap.append(len(set(torch.topk(approx, 10).indices.tolist()) & set(torch.topk(exact, 10).indices.tolist())))
    print(f"    float16 store: floor {statistics.median(f16_floor) * 1000:.1f} ms, fast {statistics.median(f16_fast) * 1000:.1f} ms "
          f"({statistics.median(f16_fast) / t_fast:.2f} of float32); max score error {max(errs):.2e}, "
          f"top-10 overlap {sum(overlap)}/{10 * len(overlap)}", flush=True)


# ---------------------------------------------------------------------------------------------- (c)
def bench_eval(device: torch.device) -> None:
    n_videos, per = 296, 5
    print(f"(c) paper-protocol evaluation, {n_videos * per:,} captions x {n_videos} clips, chunks of 32 captions", flush=True)
    _, model = vit_b32_msam(device)
    model.eval()
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(n_videos, 12, 512, generator=g)
    mask = torch.zeros(n_videos, 12, dtype=torch.long)
    mask[:, :5] = 1
    frames[:, 5:] = frames[0, 5]  # padding frames all give CLIP's one padding feature
    caption_clip = torch.arange(n_videos).repeat_interleave(per)
    sentence = torch.randn(len(caption_clip), 512, generator=g) + frames[caption_clip, :5].mean(1)
    feats = SplitFeatures(sentence, frames, mask, caption_clip).to(device)
    with torch.no_grad():
        paper_protocol_similarity(model, feats, chunk_size=32)  # warm-up
        t_fast, fast = timed(lambda: paper_protocol_similarity(model, feats, chunk_size=32), device, repeats=3)
        t_loop, loop = timed(lambda: authors_loop_similarity(model, feats, chunk_size=32), device)
    err = ((fast - loop).abs().max() / loop.abs().max()).item()
    chunks = math.ceil(len(caption_clip) / 32)
    print(f"    engine (per-clip work once):  {t_fast:9.2f} s")
    print(f"    authors' loop ({chunks} chunks):     {t_loop:9.2f} s")
    print(f"(c) authors' loop / engine        = {t_loop / t_fast:.1f}x  (same scores: normwise difference {err:.1e})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="a,b,c", help="which measurements, e.g. b,c")
    ap.add_argument("--clips", type=int, default=100_000, help="clips in the search benchmark (b)")
    ap.add_argument("--steps", type=int, default=2, help="steps of the training epoch in (a)")
    ap.add_argument("--batch", type=int, default=64, help="captions per step in (a)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per query in (b)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f", {torch.get_num_threads()} threads"))
    parts = {p.strip() for p in args.parts.split(",")}
    t0 = time.perf_counter()
    if "c" in parts:
        bench_eval(device)
    if "b" in parts:
        bench_search(device, args.clips, args.repeats)
    if "a" in parts:
        bench_training(device, args.steps, args.batch)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
