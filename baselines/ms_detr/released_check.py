"""By hand: the port against the released MS-DETR code, same weights, same inputs (CPU, no SciPy, no CUDA).

    git clone https://github.com/snailma0229/MS-DETR /tmp/MS-DETR      # never into this repository
    python -m dvtr_data.baselines.ms_detr.released_check --released /tmp/MS-DETR \
        [--moment-detr /tmp/moment_detr]

It builds the released model at its published sizes (d 256, SlowFast 2304 + CLIP 512 columns, which its code
hard-codes), copies every weight into the port, and prints the largest differences of

1. the eval forward pass (no padded clips: the port deliberately keeps padded clips out of the top-k);
2. every loss term of ``SetCriterion`` on the released model's training outputs (denoising off);
3. the denoising path: queries, group attention mask, decoder, ``compute_dn_loss`` (noise scale 0 and the same
   windows in every item, which sidesteps the released ``get_dn_targets`` bug; negative decoder loss off,
   which
   would overwrite the reconstructions the released loss reads).

The released code calls ``.cuda()`` and imports SciPy and a missing ``util`` module: this script patches
``Tensor.cuda``/``Tensor.to("cuda")`` to stay on the CPU, serves the port's assignment solver as
``scipy.optimize.linear_sum_assignment`` and ``core.box_ops`` as ``util.box_ops``, all in this process only.
It is never imported by the library or the tests.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import MomentConfig
from .losses import MomentCriterion
from .matcher import linear_sum_assignment
from .model import MSDETR

SF, CLIP, TXT = 2304, 512, 512


def _patch_released_environment(released: Path) -> None:
    sys.path.insert(0, str(released))
    setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)  # noqa: B010 (the released code calls .cuda())
    original_to = torch.Tensor.to

    def to(self: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
        return self if (a and a[0] == "cuda") else original_to(self, *a, **k)

    setattr(torch.Tensor, "to", to)  # noqa: B010 (a method patched for this process only)
    scipy, optimize = types.ModuleType("scipy"), types.ModuleType("scipy.optimize")

    def solve(cost: Any) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = linear_sum_assignment(torch.as_tensor(np.asarray(cost)))
        return rows.numpy(), cols.numpy()

    setattr(optimize, "linear_sum_assignment", solve)  # noqa: B010
    setattr(scipy, "optimize", optimize)  # noqa: B010
    sys.modules.update({"scipy": scipy, "scipy.optimize": optimize})
    import core.box_ops

    util = types.ModuleType("util")
    setattr(util, "box_ops", core.box_ops)  # noqa: B010
    sys.modules["util"] = util


def released_args(**over: Any) -> argparse.Namespace:
    """The options of ``ms_detr/scripts/train.sh`` (dropout 0 so both sides are deterministic)."""
    base: dict[str, Any] = {
        "device": "cpu",
        "hidden_dim": 256,
        "dropout": 0.0,
        "nheads": 8,
        "dim_feedforward": 1024,
        "enc_layers": 2,
        "dec_layers": 2,
        "pre_norm": False,
        "use_tgt": True,
        "use_sf": True,
        "cross_enc_layers": 2,
        "position_embedding": "sine",
        "max_v_l": 75,
        "max_q_l": 32,
        "a_feat_dir": None,
        "interm_neg": True,
        "t_feat_dim": TXT,
        "v_feat_dim": SF + CLIP + 2,
        "slowfast_dim": SF + 2,
        "clip_dim": CLIP + 2,
        "num_queries": 20,
        "input_dropout": 0.0,
        "aux_loss": True,
        "contrastive_align_loss": False,
        "contrastive_hdim": 64,
        "span_loss_type": "l1",
        "use_txt_pos": False,
        "n_input_proj": 2,
        "use_dn": False,
        "use_dn_neg": False,
        "set_cost_span": 10,
        "set_cost_giou": 1,
        "set_cost_class": 4,
        "span_loss_coef": 10,
        "giou_loss_coef": 1,
        "label_loss_coef": 4,
        "lw_saliency": 1,
        "use_interm": True,
        "interm_loss_coef": 1.0,
        "dset_name": "hl",
        "focal_alpha": 0.25,
        "eos_coef": 0.1,
        "temperature": 0.07,
        "saliency_margin": 0.2,
        "use_neg_captions": False,
        "use_decoder_neg": True,
        "scalar": 10,
        "label_noise_scale": 0.0,
        "box_noise_scale": 0.0,
        "num_patterns": 0,
    }
    base.update(over)
    return argparse.Namespace(**base)


def port_state_dict(released: dict[str, torch.Tensor], n_layers: int = 2) -> dict[str, torch.Tensor]:
    """The released model's weights under the port's names."""
    out: dict[str, torch.Tensor] = {}

    def lin(src: str, dst: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = released[f"{src}.weight"], released[f"{src}.bias"]

    for src, dst in (
        ("input_txt_proj", "input_txt_proj"),
        ("input_slowfast_vid_proj", "input_motion_proj"),
        ("input_clip_vid_proj", "input_semantic_proj"),
        ("concat_vid_proj", "concat_vid_proj"),
    ):
        for i in range(2):
            lin(f"{src}.{i}.LayerNorm", f"{dst}.{i}.norm")
            lin(f"{src}.{i}.net.1", f"{dst}.{i}.linear")

    def encoder_layer(src: str, dst: str) -> None:
        for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
            out[f"{dst}.attn.{k}"] = released[f"{src}.self_attn.{k}"]
        for n in ("linear1", "linear2", "norm1", "norm2"):
            lin(f"{src}.{n}", f"{dst}.{n}")
        out[f"{dst}.act.weight"] = released[f"{src}.activation.weight"]

    for i in range(n_layers):
        encoder_layer(f"transformer_sf.t2v_encoder.layers.{i}", f"motion_stream.{i}")
        encoder_layer(f"transformer_clip.t2v_encoder.layers.{i}", f"semantic_stream.{i}")
        encoder_layer(f"transformer.encoder.layers.{i}", f"encoder.{i}")
        src, dst = f"transformer.decoder.layers.{i}", f"decoder.layers.{i}"
        names = [
            "sa_qcontent",
            "sa_qpos",
            "sa_kcontent",
            "sa_kpos",
            "sa_v",
            "ca_qcontent",
            "ca_kcontent",
            "ca_kpos",
            "ca_v",
            "ca_qpos_sine",
        ] + (["ca_qpos"] if i == 0 else [])
        for n in names:
            lin(f"{src}.{n}_proj", f"{dst}.{n}")
        for n in (
            "self_attn.out_proj",
            "cross_attn.out_proj",
            "linear1",
            "linear2",
            "norm1",
            "norm2",
            "norm3",
        ):
            lin(f"{src}.{n}", f"{dst}.{n}")
        out[f"{dst}.act.weight"] = released[f"{src}.activation.weight"]
    lin("transformer.decoder.norm", "decoder.norm")
    for head, layers in (
        ("query_scale", 2),
        ("ref_point_head", 2),
        ("ref_anchor_head", 2),
        ("bbox_embed", 3),
    ):
        for j in range(layers):
            lin(f"transformer.decoder.{head}.layers.{j}", f"decoder.{head}.layers.{j}")
    lin("transformer.enc_output", "enc_output")
    lin("transformer.enc_output_norm", "enc_output_norm")
    lin("transformer.enc_out_class_embed", "enc_class_embed")
    for j in range(3):
        lin(f"transformer.enc_out_span_embed.layers.{j}", f"enc_span_embed.layers.{j}")
        lin(f"span_embed.0.layers.{j}", f"span_embed.layers.{j}")
    lin("class_embed.0", "class_embed")
    lin("saliency_proj1", "saliency_proj1")
    lin("saliency_proj2", "saliency_proj2")
    out["tgt_embed.weight"] = released["tgt_embed.weight"]
    out["global_token"], out["global_pos"] = released["global_rep_token"], released["global_rep_pos"]
    if "label_enc.weight" in released:
        out["label_enc.weight"] = released["label_enc.weight"]
    return out


def _pair(args: argparse.Namespace, cfg: MomentConfig) -> tuple[Any, Any, MSDETR]:
    from ms_detr.model import build_model as released_build

    torch.manual_seed(0)
    theirs, criterion = released_build(args)
    mine = MSDETR(cfg, motion_dim=SF, semantic_dim=CLIP, text_dim=TXT)
    state = port_state_dict(theirs.state_dict())
    if "label_enc.weight" not in state:
        state["label_enc.weight"] = mine.state_dict()["label_enc.weight"]
    mine.load_state_dict(state, strict=True)
    return theirs, criterion, mine


def _inputs(
    b: int, length: int, t: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, length, SF + CLIP, generator=g)
    start = torch.arange(length) / length
    video = torch.cat([video, torch.stack([start, start + 1 / length], -1).expand(b, length, 2)], -1)
    text = torch.randn(b, t, TXT, generator=g)
    tmask = torch.ones(b, t)
    tmask[-1, t - 2 :] = 0  # padded words in the last item
    return video, torch.ones(b, length), text, tmask


def _diff(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    d = float((a - b).abs().max())
    print(f"  {name:32s} max |difference| {d:.2e}   (max |value| {float(a.abs().max()):.2e})")
    return d


def moment_detr_state_dict(released: dict[str, torch.Tensor], n_layers: int = 2) -> dict[str, torch.Tensor]:
    """The released Moment-DETR weights under the port's names."""
    out: dict[str, torch.Tensor] = {}

    def lin(src: str, dst: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = released[f"{src}.weight"], released[f"{src}.bias"]

    for proj in ("input_vid_proj", "input_txt_proj"):
        for i in range(2):
            lin(f"{proj}.{i}.LayerNorm", f"{proj}.{i}.norm")
            lin(f"{proj}.{i}.net.1", f"{proj}.{i}.linear")
    for i in range(n_layers):
        src, dst = f"transformer.encoder.layers.{i}", f"encoder.{i}"
        for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
            out[f"{dst}.attn.{k}"] = released[f"{src}.self_attn.{k}"]
        for n in ("linear1", "linear2", "norm1", "norm2"):
            lin(f"{src}.{n}", f"{dst}.{n}")
        src, dst = f"transformer.decoder.layers.{i}", f"decoder.{i}"
        for theirs, ours in (("self_attn", "self_attn"), ("multihead_attn", "cross_attn")):
            for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
                out[f"{dst}.{ours}.{k}"] = released[f"{src}.{theirs}.{k}"]
        for n in ("linear1", "linear2", "norm1", "norm2", "norm3"):
            lin(f"{src}.{n}", f"{dst}.{n}")
    lin("transformer.decoder.norm", "decoder_norm")
    out["query_embed.weight"] = released["query_embed.weight"]
    lin("class_embed", "class_embed")
    for j in range(3):
        lin(f"span_embed.layers.{j}", f"span_embed.layers.{j}")
    lin("saliency_proj", "saliency_proj")
    return out


def check_moment_detr(released_dir: Path) -> float:
    """Forward pass and losses of jayleicn/moment_detr against the port's ``moment-detr`` variant."""
    from .model import MomentDETR

    sys.path.insert(0, str(released_dir))
    from moment_detr.model import build_model as released_build

    args = released_args(
        dropout=0.0,
        input_dropout=0.0,
        num_queries=10,
        v_feat_dim=CLIP + 2,
        position_embedding="sine",
        eos_coef=0.1,
        lw_saliency=1.0,
        aux_loss=True,
    )
    torch.manual_seed(0)
    theirs, criterion = released_build(args)
    cfg = MomentConfig(
        variant="moment-detr", activation="relu", num_queries=10, dropout=0.0, input_dropout=0.0
    )
    mine = MomentDETR(cfg, video_dim=CLIP, text_dim=TXT)
    mine.load_state_dict(moment_detr_state_dict(theirs.state_dict()), strict=True)
    g = torch.Generator().manual_seed(3)
    b, length, t = 3, 16, 6
    start = torch.arange(length) / length
    video = torch.cat(
        [
            torch.randn(b, length, CLIP, generator=g),
            torch.stack([start, start + 1 / length], -1).expand(b, length, 2),
        ],
        -1,
    )
    text = torch.randn(b, t, TXT, generator=g)
    vmask, tmask = torch.ones(b, length), torch.ones(b, t)
    vmask[1, 12:] = 0  # Moment-DETR has no top-k: padded clips must match too
    tmask[2, 4:] = 0
    worst = 0.0
    with torch.no_grad():
        out_t = theirs.eval()(text, tmask, video, vmask)
        out_m = mine.eval()(video, vmask.bool(), text, tmask.bool())
    for key in ("pred_logits", "pred_spans"):
        worst = max(worst, _diff(key, out_t[key], out_m[key]))
        worst = max(worst, _diff(f"aux {key}", out_t["aux_outputs"][0][key], out_m["aux_outputs"][0][key]))
    for i, n in enumerate((16, 12, 16)):
        worst = max(
            worst,
            _diff(f"saliency_scores[{i}]", out_t["saliency_scores"][i, :n], out_m["saliency_scores"][i, :n]),
        )
    spans = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.5, 0.1], [0.8, 0.2]]), torch.tensor([[0.6, 0.4]])]
    pos, neg = torch.tensor([[3, 5], [9, 10], [12, 11]]), torch.tensor([[0, 15], [2, 11], [6, 1]])
    targets = {
        "span_labels": [{"spans": s} for s in spans],
        "saliency_pos_labels": pos,
        "saliency_neg_labels": neg,
    }
    released = criterion(out_t, targets)
    crit = MomentCriterion(cfg)
    ported = crit(out_m, {"spans": spans, "saliency_pos": pos, "saliency_neg": neg})
    for key in sorted(ported):
        worst = max(worst, _diff(key, released[key].detach(), ported[key].detach()))
    print(f"  weight dicts equal: {criterion.weight_dict == crit.weights}")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description="compare the port with the released MS-DETR code")
    ap.add_argument("--released", type=Path, required=True, help="a checkout of snailma0229/MS-DETR")
    ap.add_argument("--moment-detr", type=Path, help="a checkout of jayleicn/moment_detr (checked too)")
    opts = ap.parse_args()
    _patch_released_environment(opts.released)
    worst = 0.0

    print("1. eval forward")
    args = released_args()
    theirs, criterion, mine = _pair(args, MomentConfig(dropout=0.0, input_dropout=0.0, use_dn=False))
    video, vmask, text, tmask = _inputs(3, 24, 7, 1)
    with torch.no_grad():
        out_t, _ = theirs.eval()(text, tmask, None, None, video, vmask, args, mode="val")
        out_m = mine.eval()(video, vmask.bool(), text, tmask.bool())
    for key in ("pred_logits", "pred_spans", "saliency_scores"):
        worst = max(worst, _diff(key, out_t[key], out_m[key]))
    for key in ("pred_logits", "pred_spans"):
        worst = max(worst, _diff(f"aux {key}", out_t["aux_outputs"][0][key], out_m["aux_outputs"][0][key]))
        worst = max(worst, _diff(f"interm {key}", out_t["interm_outputs"][key], out_m["interm_outputs"][key]))

    print("2. losses on the released model's training outputs")
    video, vmask, text, tmask = _inputs(4, 20, 6, 7)
    out, _ = theirs.train()(text, tmask, None, None, video, vmask, args, mode="train")
    spans = [
        torch.tensor([[0.3, 0.2]]),
        torch.tensor([[0.5, 0.1], [0.8, 0.2]]),
        torch.tensor([[0.6, 0.4]]),
        torch.tensor([[0.2, 0.3]]),
    ]
    pos = torch.tensor([[3, 5], [9, 10], [12, 11], [4, 2]])
    neg = torch.tensor([[0, 19], [2, 15], [6, 1], [1, 18]])
    sal = torch.zeros(4, 20)
    sal[0, 2:8] = torch.tensor([3.0, 7, 12, 9, 4, 2])
    sal[1, 9:11], sal[1, 14:18], sal[2, 8:16], sal[3, 1:5] = 10, 6, 5, 11
    targets = {
        "span_labels": [{"spans": s} for s in spans],
        "saliency_pos_labels": pos,
        "saliency_neg_labels": neg,
        "saliency_all_labels": sal,
    }
    released = criterion(out, targets, None, args, mode="train")
    port_crit = MomentCriterion(MomentConfig(use_dn=False))
    ported = port_crit(out, {"spans": spans, "saliency_pos": pos, "saliency_neg": neg, "saliency_all": sal})
    for key in sorted(ported):
        worst = max(worst, _diff(key, released[key].detach(), ported[key].detach()))
    same_weights = criterion.weight_dict == port_crit.weights
    print(f"  weight dicts equal: {same_weights}")

    print("3. denoising")
    args = released_args(use_dn=True, use_decoder_neg=False)
    cfg = MomentConfig(
        dropout=0.0, input_dropout=0.0, use_decoder_neg=False, box_noise_scale=0.0, dn_groups=10
    )
    theirs, _, mine = _pair(args, cfg)
    video, vmask, text, tmask = _inputs(3, 20, 6, 7)
    spans = [torch.tensor([[0.35, 0.2], [0.7, 0.1]]) for _ in range(3)]
    dn_targets = [{"labels": torch.zeros(2, dtype=torch.long), "boxes": s} for s in spans]
    out_t, mask_dict = theirs.train()(
        text, tmask, None, None, video, vmask, args, mode="train", dn_args=(dn_targets, 10, 0.0, 0.0, 0)
    )
    out_m = mine.train()(video, vmask.bool(), text, tmask.bool(), target_spans=spans)
    known_logits, known_spans = mask_dict["output_known_lbs_bboxes"]
    worst = max(
        worst, _diff("matching pred_spans", out_t["pred_spans"].detach(), out_m["pred_spans"].detach())
    )
    worst = max(worst, _diff("denoising logits", known_logits.detach(), out_m["dn"]["logits"].detach()))
    worst = max(worst, _diff("denoising spans", known_spans.detach(), out_m["dn"]["spans"].detach()))
    from ms_detr.dn_components import compute_dn_loss

    rel = compute_dn_loss(mask_dict, "train", 1, 0.25)
    crit = MomentCriterion(cfg)
    port = {**crit.denoising(out_m["dn"], "", 1), **crit.denoising(out_m["dn"], "_0", 0)}
    for key in sorted(port):
        worst = max(worst, _diff(key, rel[key].detach(), port[key].detach()))
    print(f"largest difference overall: {worst:.2e}; weight dicts equal: {same_weights}")
    if opts.moment_detr is not None:
        print("4. Moment-DETR (jayleicn/moment_detr): forward pass with padded clips and words, losses")
        print(f"Moment-DETR largest difference: {check_moment_detr(opts.moment_detr):.2e}")


if __name__ == "__main__":
    main()
