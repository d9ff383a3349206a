"""Shapes and masking of the MS-DETR and Moment-DETR ports, the data reader, the config registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dvtr_data.baselines.ms_detr.config import MomentConfig, load_config, registered_names
from dvtr_data.baselines.ms_detr.data import FeatureStore, read_split, saliency_labels, span_labels
from dvtr_data.baselines.ms_detr.layers import TextToVideoLayer, sine_position_embedding, span_sine_embedding
from dvtr_data.baselines.ms_detr.losses import MomentCriterion
from dvtr_data.baselines.ms_detr.model import MSDETR, MomentDETR, build_model
from dvtr_data.errors import InputError, UsageError

TINY = {
    "hidden_dim": 16,
    "nheads": 2,
    "dim_feedforward": 32,
    "num_queries": 4,
    "dn_groups": 2,
    "dropout": 0.0,
    "input_dropout": 0.0,
}


def _inputs(lengths: list[int], text_lengths: list[int], dv: int = 10, dt: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    b, lv, lt = len(lengths), max(lengths), max(text_lengths)
    video = torch.randn(b, lv, dv + 2, generator=g)
    text = torch.randn(b, lt, dt, generator=g)
    vmask = torch.arange(lv)[None] < torch.tensor(lengths)[:, None]
    tmask = torch.arange(lt)[None] < torch.tensor(text_lengths)[:, None]
    return video, vmask, text, tmask


@pytest.mark.parametrize("variant", ["ms-detr", "moment-detr"])
def test_output_shapes(variant: str) -> None:
    torch.manual_seed(0)
    cfg = MomentConfig(variant=variant, **TINY)
    model = build_model(cfg, video_dim=10, text_dim=6, motion_dim=5)
    video, vmask, text, tmask = _inputs([7, 5], [3, 4])
    model.train()
    spans = [torch.tensor([[0.5, 0.2]]), torch.tensor([[0.3, 0.2], [0.7, 0.1]])]
    out = model(video, vmask, text, tmask, target_spans=spans)
    assert out["pred_logits"].shape == (2, 4, 2) and out["pred_spans"].shape == (2, 4, 2)
    assert out["saliency_scores"].shape == (2, 7)
    assert ((out["pred_spans"] >= 0) & (out["pred_spans"] <= 1)).all()
    assert len(out["aux_outputs"]) == cfg.dec_layers - 1
    if variant == "ms-detr":
        assert out["interm_outputs"]["pred_spans"].shape == (2, 4, 2)
        assert out["saliency_scores_neg"].shape == (2, 7)
        assert out["pred_logits_neg"].shape == (2, 4, 2)
        # denoising: 2 groups x up to 2 windows, over every decoder layer
        assert out["dn"]["logits"].shape == (cfg.dec_layers, 2, 4, 2)
    else:
        assert "saliency_scores_neg" not in out and "dn" not in out


@pytest.mark.parametrize("variant", ["ms-detr", "moment-detr"])
def test_padding_does_not_change_an_items_outputs(variant: str) -> None:
    torch.manual_seed(1)
    model = build_model(MomentConfig(variant=variant, **TINY), video_dim=10, text_dim=6, motion_dim=5).eval()
    video, vmask, text, tmask = _inputs([5, 9], [3, 6], seed=3)
    with torch.no_grad():
        both = model(video, vmask, text, tmask)
        alone = model(video[:1, :5], vmask[:1, :5], text[:1, :3], tmask[:1, :3])
    torch.testing.assert_close(both["pred_spans"][0], alone["pred_spans"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both["pred_logits"][0], alone["pred_logits"][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        both["saliency_scores"][0, :5], alone["saliency_scores"][0], atol=1e-5, rtol=1e-4
    )


def test_ms_detr_top_k_never_picks_padding() -> None:
    torch.manual_seed(2)
    model = MSDETR(
        MomentConfig(**{**TINY, "num_queries": 3}), motion_dim=5, semantic_dim=5, text_dim=6
    ).eval()
    video, vmask, text, tmask = _inputs([4, 12], [3, 3])
    with torch.no_grad():
        enc = model.encode(video, vmask, text, tmask)
        prop = model.proposals(enc["memory"], vmask)
    assert (prop["top"][0] < 4).all()
    # fewer usable clips than queries: the usable ones are reused
    model.cfg.num_queries = 6
    with torch.no_grad():
        prop = model.proposals(enc["memory"], vmask)
    assert prop["top"].shape == (2, 6) and (prop["top"][0] < 4).all()


def test_text_stream_reads_the_query() -> None:
    # changing the words changes MS-DETR's saliency (the text-to-video streams attend to them); changing a
    # padded
    # word does not
    torch.manual_seed(4)
    model = MSDETR(MomentConfig(**TINY), motion_dim=5, semantic_dim=5, text_dim=6).eval()
    video, vmask, text, tmask = _inputs([6], [3])
    text = torch.cat([text, torch.zeros(1, 2, 6)], 1)
    tmask = torch.cat([tmask, torch.zeros(1, 2, dtype=torch.bool)], 1)
    with torch.no_grad():
        base = model(video, vmask, text, tmask)["saliency_scores"]
        other = text.clone()
        other[0, 0, 0] += 3.0  # one feature (a constant shift would vanish in the LayerNorm)
        changed = model(video, vmask, other, tmask)["saliency_scores"]
        padded = text.clone()
        padded[0, 4, 0] += 5.0
        same = model(video, vmask, padded, tmask)["saliency_scores"]
    assert not torch.allclose(base, changed)
    torch.testing.assert_close(base, same)


def test_every_loss_term_has_a_weight_and_gets_gradient() -> None:
    torch.manual_seed(5)
    cfg = MomentConfig(**TINY)
    model = build_model(cfg, video_dim=10, text_dim=6, motion_dim=5).train()
    crit = MomentCriterion(cfg)
    video, vmask, text, tmask = _inputs([6, 6], [3, 3])
    spans = [torch.tensor([[0.5, 0.3]]), torch.tensor([[0.2, 0.2]])]
    out = model(video, vmask, text, tmask, target_spans=spans)
    batch = {
        "spans": spans,
        "saliency_pos": torch.tensor([[2, 2], [1, 1]]),
        "saliency_neg": torch.tensor([[0, 5], [4, 5]]),
        "saliency_all": torch.tensor([[0, 4, 12, 8, 0, 0], [6, 12, 0, 0, 0, 0]], dtype=torch.float),
    }
    losses = crit(out, batch)
    assert set(losses) <= set(crit.weights), set(losses) - set(crit.weights)
    for key in (
        "loss_span_interm",
        "loss_label_interm_neg",
        "tgt_loss_ce",
        "tgt_loss_bbox_0",
        "loss_label_0",
    ):
        assert key in losses
    crit.total(losses).backward()
    assert model.tgt_embed.weight.grad is not None and model.label_enc.weight.grad is not None
    assert model.input_motion_proj[0].linear.weight.grad.abs().sum() > 0


def test_a_query_without_windows_trains() -> None:
    torch.manual_seed(6)
    cfg = MomentConfig(**TINY)
    model = build_model(cfg, video_dim=10, text_dim=6, motion_dim=5).train()
    crit = MomentCriterion(cfg)
    video, vmask, text, tmask = _inputs([6, 6], [3, 3])
    spans = [torch.zeros(0, 2), torch.tensor([[0.2, 0.2]])]
    out = model(video, vmask, text, tmask, target_spans=spans)
    batch = {
        "spans": spans,
        "saliency_pos": torch.tensor([[0, 0], [1, 1]]),
        "saliency_neg": torch.tensor([[0, 0], [4, 5]]),
        "saliency_all": torch.tensor([[0] * 6, [6, 12, 0, 0, 0, 0]], dtype=torch.float),
    }
    losses = crit(out, batch)
    total = crit.total(losses)
    assert torch.isfinite(total)
    total.backward()
    # the item without a window: every one of its queries is background in the label loss
    only_empty = crit.label_ce(out["pred_logits"][:1], [(torch.zeros(0, dtype=torch.long),) * 2])
    assert torch.isfinite(only_empty)


def test_text_to_video_layer_residuals_as_released() -> None:
    # With the attention output zeroed, the released layer computes norm2(v + FFN(norm1(v))): the FFN reads
    # the
    # normalised clips but its residual is the raw clip (the one-off comparison with the released code found
    # this).
    torch.manual_seed(7)
    layer = TextToVideoLayer(8, 2, 16, 0.0, "relu").eval()
    torch.nn.init.zeros_(layer.attn.out_proj.weight)
    torch.nn.init.zeros_(layer.attn.out_proj.bias)
    vid = torch.randn(1, 5, 8) * 3 + 1
    txt = torch.randn(1, 3, 8)
    out = layer(vid, torch.zeros_like(vid), txt, torch.zeros_like(txt), torch.zeros(1, 3, dtype=torch.bool))
    ln = torch.nn.functional.layer_norm
    ffn = layer.linear2(torch.relu(layer.linear1(ln(vid, (8,)))))
    torch.testing.assert_close(out, ln(vid + ffn, (8,)), atol=1e-5, rtol=1e-5)


def test_position_embeddings() -> None:
    # normalised by each item's own length: position 1 of 2 and of a padded 2-clip item agree
    mask = torch.tensor([[True, True, False], [True, True, True]])
    pos = sine_position_embedding(mask, 8)
    assert pos.shape == (2, 3, 8)
    # the last real clip sits at 2π: sin(2π) = 0 in the first channel
    assert pos[0, 1, 0].item() == pytest.approx(0.0, abs=1e-5) and pos[1, 2, 0].item() == pytest.approx(
        0.0, abs=1e-5
    )
    emb = span_sine_embedding(torch.tensor([[[0.25, 0.5]]]), 8)
    # first channel of each half: sin(2π·0.25) = 1 for the centre, sin(2π·0.5) = 0 for the width
    assert emb[0, 0, 0].item() == pytest.approx(1.0) and emb[0, 0, 4].item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- data
def test_saliency_labels_hand_case() -> None:
    rng = np.random.default_rng(0)
    pos, neg, scores = saliency_labels([2, 3, 4], [[1, 1, 1], [4, 4, 3], [0, 1, 0]], 6, rng)
    assert pos[0] == 3 and neg[0] == 4  # highest and lowest summed rating among the relevant clips
    assert pos[1] in (2, 3, 4) and neg[1] in (0, 1, 5)  # random relevant / random outside the windows
    np.testing.assert_array_equal(scores, [0, 0, 3, 11, 1, 0])


def test_span_labels_normalise_by_feature_length() -> None:
    spans = span_labels([[4, 10], [0, 2]], n_clips=10, clip_length=2, max_windows=5)
    torch.testing.assert_close(spans, torch.tensor([[0.35, 0.3], [0.05, 0.1]]))
    assert len(span_labels([[0, 2]] * 7, 10, 2, 5)) == 5


def test_feature_store_motion_difference(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "t").mkdir()
    np.savez(
        tmp_path / "v" / "a.npz", features=np.array([[3.0, 4.0], [0.0, 2.0], [0.0, 2.0]], dtype=np.float32)
    )
    np.savez(tmp_path / "t" / "qid1.npz", last_hidden_state=np.ones((2, 3), np.float32))
    store = FeatureStore([tmp_path / "v"], tmp_path / "t", MomentConfig())
    v = store.video("a")
    # normalised rows: (.6, .8), (0, 1), (0, 1); motion = difference with the previous row (0 for the first)
    np.testing.assert_allclose(v[:, 2:], [[0.6, 0.8], [0, 1], [0, 1]], atol=1e-4)
    np.testing.assert_allclose(v[:, :2], [[0, 0], [-0.6, 0.2], [0, 0]], atol=1e-4)
    assert store.dims("a", 1) == (4, 2, 3)
    with pytest.raises(InputError, match="missing feature file"):
        store.video("nope")


def test_feature_store_motion_from_a_second_folder(tmp_path: Path) -> None:
    for name in ("motion", "clip", "t"):
        (tmp_path / name).mkdir()
    np.savez(tmp_path / "motion" / "a.npz", features=np.ones((4, 3), np.float32))
    np.savez(tmp_path / "clip" / "a.npz", features=np.ones((3, 2), np.float32))  # one clip shorter
    np.savez(tmp_path / "t" / "qid0.npz", last_hidden_state=np.ones((2, 4), np.float32))
    store = FeatureStore(
        [tmp_path / "motion", tmp_path / "clip"], tmp_path / "t", MomentConfig(motion="features")
    )
    assert store.video("a").shape == (3, 5)  # the shorter stream sets the length, motion columns first
    assert store.dims("a", 0) == (5, 3, 4)
    with pytest.raises(InputError, match="two feature folders"):
        FeatureStore([tmp_path / "clip"], tmp_path / "t", MomentConfig(motion="features")).dims("a", 0)


def test_feature_store_rejects_mixed_extractors(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    np.savez(tmp_path / "v" / "a.npz", features=np.ones((3, 4), np.float32))
    np.savez(tmp_path / "v" / "b.npz", features=np.ones((3, 5), np.float32))
    store = FeatureStore([tmp_path / "v"], tmp_path, MomentConfig(variant="moment-detr"))
    store.video("a")
    with pytest.raises(InputError, match="same extractor"):
        store.video("b")


def test_read_split_names_a_broken_line(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text(json.dumps({"qid": 1, "vid": "a", "duration": 4}) + "\n{oops\n")
    with pytest.raises(InputError, match="train.jsonl:2"):
        read_split(tmp_path, "train")
    with pytest.raises(InputError, match="no val split"):
        read_split(tmp_path, "val")


def test_registered_configs() -> None:
    assert {"ms-detr", "moment-detr"} <= set(registered_names())
    ms = load_config("ms-detr")
    assert ms.variant == "ms-detr" and ms.num_queries == 20 and ms.use_dn and ms.box_noise_scale == 0.5
    md = load_config("moment-detr", epochs=3)
    assert md.variant == "moment-detr" and md.num_queries == 10 and md.epochs == 3
    assert isinstance(
        build_model(MomentConfig(variant="moment-detr", **TINY), video_dim=4, text_dim=3), MomentDETR
    )
    with pytest.raises(UsageError):
        load_config("nope")
    with pytest.raises(InputError, match="unknown field"):
        load_config("ms-detr", hidden=3)
