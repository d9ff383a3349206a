"""The MSAM port against the authors' reference fixture, and its structure (converter, options, search).

The fixture (``shared/fixtures/msam_fixture_a.pt``, described in ``msam_fixtures.md``) comes from the authors'
own code; tests that need it skip when it is absent. Everything else runs on small random open_clip models
built here (no downloads).
"""

from __future__ import annotations

import copy
from pathlib import Path

import open_clip
import pytest
import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

from dvtr_data.baselines.msam import (
    MSAM,
    FusionPoolingHead,
    MSAMOptions,
    StateDictError,
    frame_gram,
    ieee_fp32,
    infer_sizes,
    load_reference_state_dict,
    single_query_scores,
    to_reference_state_dict,
)
from dvtr_data.errors import ModelError, UsageError

REPO = Path(__file__).resolve().parents[1]
FIXTURE_CANDIDATES = (
    REPO.parent / "shared" / "fixtures" / "msam_fixture_a.pt",
    REPO / "shared" / "fixtures" / "msam_fixture_a.pt",
)
FIXTURE = next((p for p in FIXTURE_CANDIDATES if p.exists()), None)
REL_TOL = 1e-4  # msam_fixtures.md: normwise for tensors, relative for losses

# The small backbone used by the structural tests: text width == embedding width (so temporal blocks can be
# copied from the text tower), 2 text layers (< 4 temporal layers: blocks 2-3 keep their init),
# heads = width/64.
TINY = {
    "embed_dim": 128,
    "vision": {"layers": 2, "width": 128, "patch_size": 16, "image_size": 32},
    "text": {"context_length": 24, "vocab_size": 300, "width": 128, "heads": 2, "layers": 2},
}


def normwise(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def reference() -> dict:
    if FIXTURE is None:
        pytest.skip("../shared/fixtures/msam_fixture_a.pt not found (the authors' reference fixture)")
    return torch.load(FIXTURE, weights_only=True)


@pytest.fixture(scope="module")
def ref_model(reference: dict) -> MSAM:
    return load_reference_state_dict(reference["state_dict"])


@pytest.fixture(scope="module")
def ref_inputs(reference: dict) -> tuple[torch.Tensor, ...]:
    return (
        reference["input_ids"],
        reference["attention_mask"],
        reference["video"].float(),
        reference["video_mask"],
    )


@pytest.fixture(scope="module")
def ref_trace(ref_model: MSAM, ref_inputs: tuple[torch.Tensor, ...]):
    with torch.no_grad():
        return ref_model.trace(*ref_inputs)


def tiny_clip() -> CLIP:
    return CLIP(
        TINY["embed_dim"],
        vision_cfg=CLIPVisionCfg(**TINY["vision"]),
        text_cfg=CLIPTextCfg(**TINY["text"]),
        quick_gelu=True,
    )


def tiny_inputs(seed: int = 1, n: int = 4, frames: int = 6) -> tuple[torch.Tensor, ...]:
    """Captions of different lengths (SOT = vocab-2, EOT = vocab-1, pad 0) and partly padded videos."""
    g = torch.Generator().manual_seed(seed)
    vocab, length = TINY["text"]["vocab_size"], 16
    ids = torch.zeros(n, length, dtype=torch.long)
    mask = torch.zeros(n, length, dtype=torch.long)
    for i in range(n):
        real = 3 + (5 * i) % (length - 3)
        ids[i, 0] = vocab - 2
        ids[i, 1 : real - 1] = torch.randint(1, vocab - 2, (real - 2,), generator=g)
        ids[i, real - 1] = vocab - 1
        mask[i, :real] = 1
    size = TINY["vision"]["image_size"]
    video = torch.randn(n, frames, 3, size, size, generator=g)
    video_mask = torch.zeros(n, frames, dtype=torch.long)
    for i in range(n):
        valid = frames - (2 * i) % frames
        video_mask[i, :valid] = 1
        video[i, valid:] = 0.0  # padding frames are zeros, as in the authors' loader
    return ids, mask, video, video_mask


@pytest.fixture(scope="module")
def tiny_model() -> MSAM:
    """A tiny MSAM with the authors' init, then the gate and PIENets moved 'as if trained' (seeded).

    At the bare init the gate is nearly constant and the slots are parallel, which would hide mistakes; the
    noise follows the fixture's recipe (msam_fixtures.md, "How the weights were made").
    """
    torch.manual_seed(0)
    model = MSAM.from_clip(tiny_clip(), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("head.gate."):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
            elif name.startswith(("semantics.video_pie.", "semantics.text_pie.")):
                p.add_(torch.randn(p.shape, generator=g) * (0.5 if "w_2" in name or ".fc." in name else 0.1))
            elif name.startswith("temporal."):
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
    return model.eval()


# ---------------------------------------------------------------------------------------------- fixture A
def test_similarity_matches_reference(ref_model: MSAM, ref_inputs, reference: dict) -> None:
    with torch.no_grad():
        sim = ref_model.similarity(*ref_inputs)
    assert sim.shape == reference["similarity"].shape
    assert normwise(sim, reference["similarity"]) <= REL_TOL


@pytest.mark.parametrize("term", ["contrastive", "kl", "diversity", "total"])
def test_losses_match_reference(ref_trace, reference: dict, term: str) -> None:
    expected = reference["losses"][term]
    assert abs(ref_trace.losses[term].item() - expected.item()) <= REL_TOL * abs(expected.item())


def test_losses_entry_point_matches_trace(ref_model: MSAM, ref_inputs, ref_trace) -> None:
    with torch.no_grad():
        losses = ref_model.losses(*ref_inputs)
    assert set(losses) == {"contrastive", "kl", "diversity", "total"}
    for term, value in losses.items():
        assert torch.equal(value, ref_trace.losses[term])


@pytest.mark.parametrize(
    "key",
    [
        "text_sentence",
        "text_tokens",
        "frame_cls",
        "frame_temporal",
        "video_global",
        "gate_logit",
        "video_mu",
        "video_sigma",
        "text_mu",
        "text_sigma",
    ],
)
def test_intermediates_match_reference(ref_trace, reference: dict, key: str) -> None:
    expected = reference["intermediates"][key]
    actual = ref_trace.intermediates()[key]
    assert actual.shape == expected.shape
    assert normwise(actual, expected) <= REL_TOL


def test_similarity_from_features_matches_trace(ref_model: MSAM, ref_trace, reference: dict) -> None:
    with torch.no_grad():
        sim = ref_model.similarity_from_features(
            ref_trace.text_sentence, ref_trace.frame_cls, reference["video_mask"]
        )
    assert torch.allclose(sim, ref_trace.similarity, atol=1e-6)


def test_head_is_transductive_over_texts_not_videos(ref_model: MSAM, ref_trace, reference: dict) -> None:
    sentence, frame_cls, video_mask = ref_trace.text_sentence, ref_trace.frame_cls, reference["video_mask"]
    with torch.no_grad():
        joint = ref_model.similarity_from_features(sentence, frame_cls, video_mask)
        per_text = ref_model.similarity_from_features(sentence, frame_cls, video_mask, text_chunk_size=1)
        per_video = ref_model.similarity_from_features(sentence, frame_cls, video_mask, video_chunk_size=1)
        by_hand = torch.cat(
            [
                ref_model.similarity_from_features(sentence, frame_cls[i : i + 1], video_mask[i : i + 1])
                for i in range(4)
            ],
            dim=1,
        )
    assert normwise(per_text, joint) > 1e-3  # the fixture notes ~2 %
    assert normwise(per_video, joint) < 1e-5
    assert normwise(by_hand, joint) < 1e-5


def test_single_query_mode_on_reference(ref_model: MSAM, ref_trace, reference: dict) -> None:
    sentence, frame_cls, video_mask = ref_trace.text_sentence, ref_trace.frame_cls, reference["video_mask"]
    with torch.no_grad():
        exact = ref_model.single_query_similarity_from_features(sentence, frame_cls, video_mask)
        per_text = ref_model.similarity_from_features(sentence, frame_cls, video_mask, text_chunk_size=1)
    assert normwise(exact, per_text) <= 1e-5


# ---------------------------------------------------------------------------------------------- head algebra
def test_single_query_score_equals_head_with_one_text() -> None:
    g = torch.Generator().manual_seed(3)
    width, n_videos, n_frames = 64, 5, 7
    head = FusionPoolingHead(width, 32)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g))  # a strongly non-trivial gate: it must still cancel
    frames = torch.nn.functional.normalize(torch.randn(n_videos, n_frames, width, generator=g), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(3, width, generator=g), dim=-1)
    video_mask = torch.ones(n_videos, n_frames, dtype=torch.long)
    video_mask[1:, 4:] = 0
    with torch.no_grad():
        fast = single_query_scores(texts, frames, gram=frame_gram(frames))
        slow = torch.cat([head(texts[i : i + 1], frames) for i in range(3)])
        fast_masked = single_query_scores(texts, frames, video_mask=video_mask)
        slow_masked = torch.cat([head(texts[i : i + 1], frames, video_mask) for i in range(3)])
    assert fast.shape == (3, n_videos)
    assert normwise(fast, slow) <= 1e-5
    assert normwise(fast_masked, slow_masked) <= 1e-5
    assert normwise(fast_masked, fast) > 1e-4  # the mask matters


def test_single_query_mode_on_tiny_model(tiny_model: MSAM) -> None:
    ids, _, video, video_mask = tiny_inputs()
    with torch.no_grad():
        sentence, _ = tiny_model.encode_text(ids)
        frame_cls = tiny_model.encode_frames(video)
        exact = tiny_model.single_query_similarity_from_features(sentence, frame_cls, video_mask)
        per_text = tiny_model.similarity_from_features(sentence, frame_cls, video_mask, text_chunk_size=1)
    assert normwise(exact, per_text) <= 1e-5


# ---------------------------------------------------------------------------------------------- converter
def test_round_trip_through_reference_names(tiny_model: MSAM) -> None:
    state = to_reference_state_dict(tiny_model)
    assert "select.afp.attention_fc.0.weight" in state and "preloss.p.var_head.layer.Linear_1.bias" in state
    clip_sizes, msam_sizes = infer_sizes(state)
    assert (clip_sizes.embed_dim, clip_sizes.vision_width, clip_sizes.patch_size, clip_sizes.image_size) == (
        128,
        128,
        16,
        32,
    )
    assert (
        clip_sizes.vision_layers,
        clip_sizes.text_layers,
        clip_sizes.vocab_size,
        clip_sizes.context_length,
    ) == (
        2,
        2,
        300,
        24,
    )
    assert (
        msam_sizes.temporal_layers,
        msam_sizes.num_slots,
        msam_sizes.pie_hidden,
        msam_sizes.gate_hidden,
    ) == (
        4,
        7,
        64,
        64,
    )
    assert (msam_sizes.mean_hidden, msam_sizes.std_hidden, msam_sizes.frame_positions) == (
        (256, 256),
        (64,),
        24,
    )

    reloaded = load_reference_state_dict(state)
    assert not reloaded.training
    inputs = tiny_inputs()
    with torch.no_grad():
        a, b = tiny_model.trace(*inputs), reloaded.trace(*inputs)
    assert torch.allclose(a.similarity, b.similarity, rtol=0, atol=1e-6)
    for term in a.losses:
        assert torch.allclose(a.losses[term], b.losses[term], rtol=1e-6, atol=0)


def test_ignored_keys_are_accepted(tiny_model: MSAM) -> None:
    """Ignoring means: accepted (no StateDictError), and no effect at all: the model loaded from a checkpoint
    with the authors' unused tensors equals, tensor for tensor and output for output, the one loaded without
    them, whatever values they hold. The converter drops them silently (it reports nothing), so nothing of them
    survives a round trip either."""
    plain = to_reference_state_dict(tiny_model)
    shapes = {
        "gating.weight": (3, 3),
        "select.gating.bias": (3,),
        "select.afp.multi_head_attention.in_proj_weight": (3, 3),
        "select.afp.dynamic_weight.2.bias": (2,),
        "preloss.p.uncertain_net_text.fc2.weight": (3, 3),
        "preloss.p.pie_net_video.noise_scale": (1,),
    }
    assert not set(shapes) & set(plain)  # really extra keys, not ones the model uses
    generator = torch.Generator().manual_seed(7)
    loaded = []
    for scale in (1.0, -50.0):  # two different sets of values: neither may matter
        state = dict(plain)
        state.update({k: scale * torch.randn(shape, generator=generator) for k, shape in shapes.items()})
        loaded.append(load_reference_state_dict(state))
    reference = load_reference_state_dict(plain)
    inputs = tiny_inputs()
    with torch.no_grad():
        want = reference.trace(*inputs)
        for model in loaded:
            assert model.state_dict().keys() == reference.state_dict().keys()
            for key, value in reference.state_dict().items():
                assert torch.equal(model.state_dict()[key], value), key
            got = model.trace(*inputs)
            assert torch.equal(got.similarity, want.similarity)
            assert to_reference_state_dict(model).keys() == plain.keys()


def test_unknown_key_is_an_error(tiny_model: MSAM) -> None:
    state = to_reference_state_dict(tiny_model)
    state["preloss.p.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(StateDictError, match="preloss.p.extra_head.weight") as err:
        load_reference_state_dict(state)
    assert err.value.unexpected == ["preloss.p.extra_head.weight"]


@pytest.mark.parametrize(
    "key",
    [
        "select.afp.attention_fc.2.bias",
        "clip.visual.ln_post.weight",
        "transformerClip.resblocks.3.ln_2.bias",
        "preloss.p.pie_net_text.fc1.weight",
        "preloss.p.mean_head.layer.Linear_2.bias",
        "clip.logit_scale",
    ],
)
def test_missing_used_key_is_an_error(tiny_model: MSAM, key: str) -> None:
    state = to_reference_state_dict(tiny_model)
    del state[key]
    with pytest.raises(StateDictError, match=key.replace(".", r"\.")):
        load_reference_state_dict(state)


def test_missing_size_key_and_bad_shape_are_errors(tiny_model: MSAM) -> None:
    state = to_reference_state_dict(tiny_model)
    del state["clip.ln_final.weight"]
    with pytest.raises(StateDictError, match="ln_final"):
        load_reference_state_dict(state)
    state = to_reference_state_dict(tiny_model)
    state["select.afp.attention_fc.2.weight"] = torch.zeros(2, 64)
    with pytest.raises(StateDictError, match="attention_fc.2.weight"):
        load_reference_state_dict(state)


# ---------------------------------------------------------------------------------------------- from_clip
def test_from_clip_applies_the_authors_init() -> None:
    clip = open_clip.create_model("ViT-S-32-alt", pretrained=None)
    model = MSAM.from_clip(clip, generator=torch.Generator().manual_seed(0))
    text_blocks = clip.transformer.resblocks
    for i, block in enumerate(model.temporal.transformer.resblocks):  # 10 text layers: all 4 are copied
        for (name, a), b in zip(
            block.state_dict().items(), text_blocks[i].state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), f"temporal block {i} {name} not copied"
    assert torch.equal(model.temporal.position_embeddings.weight, clip.positional_embedding)
    gate = model.head.gate
    assert torch.count_nonzero(gate[0].bias) == 0 and torch.count_nonzero(gate[2].bias) == 0
    assert 0.015 < gate[0].weight.std().item() < 0.025
    pie = model.semantics.video_pie
    assert 0.015 < pie.fc.weight.std().item() < 0.025 and torch.count_nonzero(pie.fc.bias) == 0
    assert torch.equal(pie.layer_norm.weight, torch.ones_like(pie.layer_norm.weight))
    assert model.sizes.pie_hidden == 128 and model.sizes.frame_positions == 77  # width 256 -> 256 // 2

    model.eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(2, 32, dtype=torch.long)
    ids[0, :4] = torch.tensor([49406, 320, 1125, 49407])
    ids[1, :6] = torch.tensor([49406, 320, 1125, 530, 518, 49407])
    video = torch.randn(2, 3, 3, 224, 224, generator=g)
    video_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    with torch.no_grad():
        sim = model.similarity(ids, None, video, video_mask)
        losses = model.losses(ids, None, video, video_mask)
    assert sim.shape == (2, 2) and torch.isfinite(sim).all()
    assert all(torch.isfinite(v) for v in losses.values())
    assert abs(losses["diversity"].item() - 6 / 7) < 1e-3  # at init the 7 slots are parallel (fixture notes)


def test_from_clip_with_fewer_text_layers_keeps_init_for_the_rest() -> None:
    clip = tiny_clip()
    model = MSAM.from_clip(clip, generator=torch.Generator().manual_seed(0))
    blocks = model.temporal.transformer.resblocks
    for i in range(2):
        assert torch.equal(blocks[i].mlp.c_fc.weight, clip.transformer.resblocks[i].mlp.c_fc.weight)
    for block in blocks[2:]:
        assert torch.count_nonzero(block.attn.in_proj_bias) == 0
        assert torch.count_nonzero(block.mlp.c_fc.bias) == 0
        assert torch.equal(block.ln_1.weight, torch.ones_like(block.ln_1.weight))
        assert 0.015 < block.mlp.c_fc.weight.std().item() < 0.025


def test_non_clip_backbone_is_rejected() -> None:
    with pytest.raises(ModelError, match="open_clip.model.CLIP"):
        MSAM.from_clip(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- options
def test_stage_split_composes(tiny_model: MSAM) -> None:
    ids, mask, video, video_mask = tiny_inputs()
    with torch.no_grad():
        sentence, tokens = tiny_model.encode_text(ids)
        frame_cls = tiny_model.encode_frames(video, chunk_size=5)
        assert tokens.shape == (4, ids.shape[1], 128) and frame_cls.shape == (4, 6, 128)
        assert torch.allclose(sentence, tokens[torch.arange(4), ids.argmax(-1)])
        from_features = tiny_model.losses_from_features(sentence, tokens, frame_cls, video_mask)
        end_to_end = tiny_model.losses(ids, mask, video, video_mask)
        sim = tiny_model.similarity(ids, mask, video, video_mask)
        chunked = tiny_model.similarity(ids, mask, video, video_mask, text_chunk_size=2)
        two_calls = torch.cat(
            [tiny_model.similarity_from_features(sentence[i : i + 2], frame_cls, video_mask) for i in (0, 2)]
        )
    for term in from_features:
        assert torch.allclose(from_features[term], end_to_end[term], rtol=1e-6, atol=1e-7)
    assert torch.allclose(chunked, two_calls, atol=1e-6)
    assert normwise(chunked, sim) > 1e-4


def _variant(model: MSAM, **options: object) -> MSAM:
    variant = MSAM(model.encoders.clip, sizes=model.sizes, options=MSAMOptions(**options))  # type: ignore[arg-type]
    variant.load_state_dict(model.state_dict())
    return variant.eval()


def test_ablation_options(tiny_model: MSAM) -> None:
    inputs = tiny_inputs()
    ids, mask, video, video_mask = inputs
    with torch.no_grad():
        base = tiny_model.trace(*inputs)
        masked = _variant(tiny_model, mask_padding_in_head=True).trace(*inputs)
        no_gate = _variant(tiny_model, similarity="fusion_no_gate")
        no_gate_trace = no_gate.trace(*inputs)
        no_gate.head.gate[2].bias.add_(5.0)  # the gate must not be read
        no_gate_again = no_gate.similarity(*inputs)
        mean = _variant(tiny_model, similarity="mean").trace(*inputs)
        no_kl = _variant(tiny_model, kl_weight=0.0).trace(*inputs)
        con_only = _variant(tiny_model, kl_weight=0.0, diversity_weight=0.0).trace(*inputs)
        pie_masked = _variant(tiny_model, mask_padding_in_pienet=True).trace(*inputs)
        meanp = _variant(tiny_model, similarity="mean", use_temporal=False).trace(*inputs)

    assert normwise(masked.similarity, base.similarity) > 1e-4
    assert no_gate_trace.gate_logit is None
    assert torch.allclose(no_gate_trace.similarity, no_gate_again, atol=1e-6)
    assert normwise(no_gate_trace.similarity, base.similarity) > 1e-4

    text = torch.nn.functional.normalize(base.text_sentence, dim=-1)
    expected_mean = tiny_model.logit_scale.exp() * text @ base.video_global.T
    assert torch.allclose(mean.similarity, expected_mean, atol=1e-5)

    assert no_kl.losses["kl"].item() == 0.0
    assert torch.isclose(no_kl.losses["total"], base.losses["contrastive"] + 0.01 * base.losses["diversity"])
    assert con_only.semantics is None and torch.equal(con_only.losses["total"], base.losses["contrastive"])
    assert abs(pie_masked.losses["kl"].item() - base.losses["kl"].item()) > 1e-4 * abs(
        base.losses["kl"].item()
    )
    assert torch.equal(meanp.frame_temporal, meanp.frame_cls)  # temporal transformer skipped

    assert MSAMOptions.preset("no_gate").similarity == "fusion_no_gate"
    assert MSAMOptions.preset("full") == MSAMOptions()
    with pytest.raises(UsageError):
        MSAMOptions.preset("bogus")
    with pytest.raises(UsageError):
        MSAMOptions(similarity="max")  # type: ignore[arg-type]


def test_dropout_follows_train_mode_and_gradients_flow(tiny_model: MSAM) -> None:
    inputs = tiny_inputs()
    # a deep copy: train mode and gradients must not leak into the module's tiny_model (a variant shares its CLIP)
    model = _variant(copy.deepcopy(tiny_model))
    with torch.no_grad():
        eval_a, eval_b = model.losses(*inputs)["kl"], model.losses(*inputs)["kl"]
    assert torch.equal(eval_a, eval_b)
    model.train()
    torch.manual_seed(0)
    train_losses = model.losses(*inputs)
    assert not torch.isclose(train_losses["kl"], eval_a)
    train_losses["total"].backward()
    for name in (
        "head.gate.0.weight",
        "semantics.video_pie.fc.weight",
        "semantics.text_pie.attention.w_2.weight",
        "temporal.transformer.resblocks.0.attn.in_proj_weight",
        "temporal.position_embeddings.weight",
        "semantics.std_head.layers.0.weight",
        "encoders.clip.logit_scale",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_ieee_fp32_restores_backend_settings() -> None:
    before = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    with ieee_fp32():
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == before


@pytest.mark.slow
def test_full_vit_b32_sizes_are_inferred() -> None:
    """The authors release ViT-B/32 checkpoints: the converter must infer those sizes too."""
    clip = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    model = MSAM.from_clip(clip).eval()
    state = to_reference_state_dict(model)
    clip_sizes, msam_sizes = infer_sizes(state)
    assert (
        clip_sizes.vision_width,
        clip_sizes.vision_layers,
        clip_sizes.patch_size,
        clip_sizes.image_size,
    ) == (
        768,
        12,
        32,
        224,
    )
    assert (
        clip_sizes.text_width,
        clip_sizes.text_layers,
        clip_sizes.vocab_size,
        clip_sizes.context_length,
    ) == (
        512,
        12,
        49408,
        77,
    )
    assert (clip_sizes.embed_dim, msam_sizes.temporal_layers, msam_sizes.pie_hidden) == (512, 4, 256)
    reloaded = load_reference_state_dict(state)
    from_half = load_reference_state_dict({k: v.half() for k, v in state.items()})  # the authors store fp16
    assert all(p.dtype == torch.float32 for p in from_half.parameters())
    g = torch.Generator().manual_seed(0)
    ids = torch.zeros(2, 32, dtype=torch.long)
    ids[:, 0], ids[0, 1:4], ids[0, 4], ids[1, 1:9], ids[1, 9] = 49406, 320, 49407, 530, 49407
    video = torch.randn(2, 2, 3, 224, 224, generator=g)
    video_mask = torch.tensor([[1, 1], [1, 0]])
    with torch.no_grad():
        a = model.similarity(ids, None, video, video_mask)
        b = reloaded.similarity(ids, None, video, video_mask)
    assert torch.isfinite(a).all() and torch.allclose(a, b, rtol=0, atol=1e-6)
