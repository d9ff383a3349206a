"""The authors' optimiser (BertAdam), schedule, parameter groups and freezing, against hand-written references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dvtr_data.baselines.engine.backbone import authors_trainable, convert_to_fp16, set_backbone_trainable
from dvtr_data.baselines.engine.optim import BertAdam, authors_param_groups, warmup_cosine
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.engine.train import batches_of, build_model, epoch_order
from dvtr_data.testing.engine import TINY_OVERRIDES


def test_warmup_cosine_runs_on_total_progress() -> None:
    assert warmup_cosine(0.0, 0.1) == 0.0
    assert warmup_cosine(0.05, 0.1) == pytest.approx(0.5)
    # the cosine starts at total progress 0.1, not at 0: a jump from ~1.0 to 0.976 when warm-up ends
    assert warmup_cosine(0.0999, 0.1) == pytest.approx(0.999)
    assert warmup_cosine(0.1, 0.1) == pytest.approx(0.5 * (1 + math.cos(0.1 * math.pi)))
    assert warmup_cosine(0.1, 0.1) == pytest.approx(0.9755, abs=1e-4)
    assert warmup_cosine(1.0, 0.1) == pytest.approx(0.0)


def reference_step(params, states, grads, *, lr, t_total, warmup, b1, b2, e, wd, clip):
    """The authors' BertAdam step, written out per tensor."""
    for p, st, g in zip(params, states, grads, strict=True):
        g = g.clone()
        norm = g.norm()
        if clip > 0 and norm > clip:
            g = g * (clip / (norm + 1e-6))
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        update = st["m"] / (st["v"].sqrt() + e) + wd * p
        progress = st["step"] / t_total
        lr_t = lr * warmup_cosine(progress, warmup)
        p -= lr_t * update
        st["step"] += 1


def test_bertadam_matches_the_authors_update() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 4))
    b = nn.Parameter(torch.randn(4))
    opt = BertAdam(
        [{"params": [w], "weight_decay": 0.2}, {"params": [b], "weight_decay": 0.0}],
        lr=0.01, warmup=0.1, t_total=20, schedule="warmup_cosine", b1=0.9, b2=0.98, e=1e-6, max_grad_norm=1.0,
    )
    ref = [w.detach().clone(), b.detach().clone()]
    states = [{"m": torch.zeros_like(t), "v": torch.zeros_like(t), "step": 0} for t in ref]
    for k in range(8):
        grads = [torch.randn_like(w) * (3 if k % 2 else 0.1), torch.randn_like(b)]
        w.grad, b.grad = grads[0].clone(), grads[1].clone()
        before = w.detach().clone()
        opt.step()
        reference_step([ref[0]], [states[0]], [grads[0]], lr=0.01, t_total=20, warmup=0.1, b1=0.9, b2=0.98, e=1e-6, wd=0.2, clip=1.0)
        reference_step([ref[1]], [states[1]], [grads[1]], lr=0.01, t_total=20, warmup=0.1, b1=0.9, b2=0.98, e=1e-6, wd=0.0, clip=1.0)
        torch.testing.assert_close(w.detach(), ref[0], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(b.detach(), ref[1], rtol=1e-6, atol=1e-7)
        if k == 0:  # progress 0 under warm-up: the first update has learning rate 0
            assert torch.equal(w.detach(), before)


def test_bias_corrected_variant_is_adamw() -> None:
    torch.manual_seed(1)
    a = nn.Parameter(torch.randn(6, 3))
    b = nn.Parameter(a.detach().clone())
    ours = BertAdam([a], lr=1e-2, schedule="none", b1=0.9, b2=0.98, e=1e-6, weight_decay=0.2, max_grad_norm=0.0, bias_correction=True)
    adamw = torch.optim.AdamW([b], lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
    for _ in range(5):
        g = torch.randn_like(a)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        adamw.step()
    torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)


def test_fp16_weights_do_not_move_at_the_authors_backbone_lr() -> None:
    """msam.md §12-2: an fp16 weight of magnitude 0.02 ignores updates of ~1e-7.

    (Where a clipped gradient entry is below ~1e-3 the fp16 second moment underflows to 0 and the update becomes
    m / eps, large enough to move an fp16 weight: the authors' optimiser does that too, and so does this one.)
    """
    torch.manual_seed(2)
    half = nn.Parameter((torch.rand(8, 8) * 0.02 + 0.01).half())
    full = nn.Parameter(half.detach().float().clone())
    opts = [BertAdam([p], lr=1e-7, warmup=0.1, t_total=10, weight_decay=0.2, b1=0.9, b2=0.98) for p in (half, full)]
    start_half, start_full = half.detach().clone(), full.detach().clone()
    for _ in range(5):
        g = (torch.rand(8, 8) + 0.5) * torch.randn(8, 8).sign()  # no tiny entries after per-tensor clipping
        half.grad, full.grad = g.half(), g.clone()
        for o in opts:
            o.step()
    assert torch.equal(half.detach(), start_half)
    assert not torch.equal(full.detach(), start_full)


@pytest.fixture(scope="module")
def model():
    return build_model(registered("msam").with_overrides(TINY_OVERRIDES))


def test_authors_freezing_loop(model) -> None:
    frozen = {"visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.ln_pre.weight",
              "token_embedding.weight", "positional_embedding"}
    trained = {"visual.transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.1.mlp.c_fc.weight",
               "ln_final.weight", "text_projection", "logit_scale", "visual.ln_post.bias", "visual.proj"}
    assert not any(authors_trainable(n) for n in frozen)
    assert all(authors_trainable(n) for n in trained)
    clip = model.encoders.clip
    set_backbone_trainable(clip, trainable=True, freeze="authors")
    names = {n for n, p in clip.named_parameters() if p.requires_grad}
    assert trained <= names and not (frozen & names)
    set_backbone_trainable(clip, trainable=False)
    assert not any(p.requires_grad for p in clip.parameters())


def test_parameter_groups_decay_layernorm_weights_like_the_authors(model) -> None:
    set_backbone_trainable(model.encoders.clip, trainable=True, freeze="authors")
    try:
        groups = authors_param_groups(model, lr=1e-4, backbone_lr=1e-7, weight_decay=0.2)
        by_name = {}
        ids = {id(p): n for n, p in model.named_parameters()}
        for g in groups:
            for p in g["params"]:
                by_name[ids[id(p)]] = (g["lr"], g["weight_decay"])
        assert by_name["encoders.clip.transformer.resblocks.0.ln_1.weight"] == (1e-7, 0.2)  # LN weight decayed
        assert by_name["encoders.clip.transformer.resblocks.0.ln_1.bias"] == (1e-7, 0.0)
        assert by_name["temporal.transformer.resblocks.0.ln_1.weight"] == (1e-4, 0.2)
        assert by_name["semantics.video_pie.layer_norm.weight"] == (1e-4, 0.2)
        assert by_name["head.gate.0.bias"] == (1e-4, 0.0)
        assert by_name["encoders.clip.logit_scale"] == (1e-7, 0.2)
        assert "encoders.clip.visual.conv1.weight" not in by_name  # frozen by the authors' loop
        fixed = authors_param_groups(model, lr=1e-4, backbone_lr=1e-7, weight_decay=0.2, decay_norm_weights=False)
        no_decay = {ids[id(p)] for g in fixed if g["weight_decay"] == 0 for p in g["params"]}
        assert "temporal.transformer.resblocks.0.ln_1.weight" in no_decay
    finally:
        set_backbone_trainable(model.encoders.clip, trainable=False)


def test_fp16_conversion_is_the_authors_convert_weights(model) -> None:
    clip = build_model(registered("msam").with_overrides(TINY_OVERRIDES)).encoders.clip
    convert_to_fp16(clip)
    dtypes = {n: p.dtype for n, p in clip.named_parameters()}
    assert dtypes["visual.conv1.weight"] == torch.float16
    assert dtypes["transformer.resblocks.0.attn.in_proj_weight"] == torch.float16
    assert dtypes["text_projection"] == torch.float16 and dtypes["visual.proj"] == torch.float16
    assert dtypes["transformer.resblocks.0.ln_1.weight"] == torch.float32
    assert dtypes["token_embedding.weight"] == torch.float32 and dtypes["logit_scale"] == torch.float32


def test_epoch_order_and_drop_last() -> None:
    assert epoch_order(10, 42, 0) == epoch_order(10, 42, 0)
    assert epoch_order(10, 42, 0) != epoch_order(10, 42, 1)
    assert sorted(epoch_order(10, 42, 3)) == list(range(10))
    assert [len(b) for b in batches_of(list(range(10)), 4, True)] == [4, 4]
    assert [len(b) for b in batches_of(list(range(10)), 4, False)] == [4, 4, 2]
