"""The authors' checkpoint layout <-> this port.

The authors' ``model.state_dict()`` (CLIP4Clip fork, ``huangjh98/ASLVT``) names CLIP ``clip.*`` (OpenAI /
open_clip names after the prefix), the temporal transformer ``transformerClip.*`` and
``frame_position_embeddings``, the head ``select.afp.attention_fc.*`` and the auxiliary branch
``preloss.p.*``. Every size is read from the tensors; nothing is assumed about the backbone (ViT-B/32 or a
reduced test model alike). Keys the authors register but never use are accepted and dropped; any other
unknown key, and any missing used key, is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from dvtr_data.errors import ModelError

from .config import MSAMOptions, MSAMSizes
from .encoders import ClipSizes
from .model import MSAM


class StateDictError(ModelError):
    """A checkpoint does not have the authors' MSAM layout (missing, unknown or mis-shaped tensors)."""

    def __init__(
        self, message: str, *, missing: list[str] | None = None, unexpected: list[str] | None = None
    ):
        super().__init__(
            message, hint="is this an MSAM checkpoint from huangjh98/ASLVT (model.state_dict())?"
        )
        self.missing = missing or []
        self.unexpected = unexpected or []


# Registered in the authors' model but never used in any forward pass (msam.md §4.4, §5).
IGNORED_KEYS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p)
    for p in (
        r"^select\.afp\.multi_head_attention\.",
        r"^select\.afp\.dynamic_weight\.",
        r"^select\.gating\.",
        r"^gating\.",
        r"^preloss\.p\.uncertain_net_(video|text)\.",
        r"^preloss\.p\.pie_net_(video|text)\.noise_scale$",
    )
)

# (authors' prefix, our prefix); the MLP heads need an index rewrite, handled below.
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("clip.", "encoders.clip."),
    ("frame_position_embeddings.", "temporal.position_embeddings."),
    ("transformerClip.", "temporal.transformer."),
    ("select.afp.attention_fc.", "head.gate."),
    ("preloss.p.pie_net_video.", "semantics.video_pie."),
    ("preloss.p.pie_net_text.", "semantics.text_pie."),
)
_HEADS: tuple[tuple[str, str], ...] = (
    ("preloss.p.mean_head.layer.", "semantics.mean_head.layers."),
    ("preloss.p.var_head.layer.", "semantics.std_head.layers."),
)
_AUTHORS_LINEAR = re.compile(r"^Linear_(\d+)\.(.+)$")
_OUR_LINEAR = re.compile(r"^(\d+)\.(.+)$")


def is_ignored_key(key: str) -> bool:
    """Whether ``key`` is one of the authors' registered-but-unused tensors."""
    return any(p.search(key) for p in IGNORED_KEYS)


def reference_to_port_key(key: str) -> str | None:
    """Our parameter name for an authors' key, or None if the key is not part of the MSAM layout."""
    for theirs, ours in _HEADS:
        if key.startswith(theirs):
            m = _AUTHORS_LINEAR.match(key[len(theirs) :])
            # FCN_head holds Linear_i at Sequential position 2i (a ReLU sits between consecutive Linears).
            return f"{ours}{2 * int(m.group(1))}.{m.group(2)}" if m else None
    for theirs, ours in _PREFIXES:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return None


def port_to_reference_key(key: str) -> str:
    """The authors' name for one of our parameter names (inverse of :func:`reference_to_port_key`)."""
    for theirs, ours in _HEADS:
        if key.startswith(ours):
            m = _OUR_LINEAR.match(key[len(ours) :])
            if m is None or int(m.group(1)) % 2:
                break
            return f"{theirs}Linear_{int(m.group(1)) // 2}.{m.group(2)}"
    for theirs, ours in _PREFIXES:
        if key.startswith(ours):
            return theirs + key[len(ours) :]
    raise StateDictError(f"no authors' name for parameter {key!r}")


def _require(state_dict: Mapping[str, Tensor], key: str) -> Tensor:
    if key not in state_dict:
        raise StateDictError(f"cannot infer the model sizes: {key!r} is missing", missing=[key])
    return state_dict[key]


def _count_blocks(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    if indices and indices != set(range(len(indices))):
        raise StateDictError(f"blocks under {prefix!r} are not numbered 0..n-1: {sorted(indices)}")
    return len(indices)


def _mlp_hidden(state_dict: Mapping[str, Tensor], prefix: str) -> tuple[int, ...]:
    """Hidden widths of an authors' ``FCN_head`` from its ``Linear_i.weight`` shapes."""
    n = _count_linear(state_dict, prefix)
    if n == 0:
        raise StateDictError(f"no layers under {prefix!r}", missing=[prefix + "Linear_0.weight"])
    return tuple(int(state_dict[f"{prefix}Linear_{i}.weight"].shape[0]) for i in range(n - 1))


def _count_linear(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"Linear_(\d+)\.weight$")
    return len({int(m.group(1)) for key in state_dict if (m := pattern.match(key))})


def infer_sizes(state_dict: Mapping[str, Tensor]) -> tuple[ClipSizes, MSAMSizes]:
    """Backbone and MSAM sizes read from the tensors of an authors' checkpoint."""
    conv1 = _require(state_dict, "clip.visual.conv1.weight")
    vision_pos = _require(state_dict, "clip.visual.positional_embedding")
    grid = int(round((vision_pos.shape[0] - 1) ** 0.5))
    if grid * grid + 1 != vision_pos.shape[0]:
        raise StateDictError(f"visual positional embedding has {vision_pos.shape[0]} rows, not grid² + 1")
    vision_width, patch = int(conv1.shape[0]), int(conv1.shape[-1])
    text_width = int(_require(state_dict, "clip.ln_final.weight").shape[0])
    vision_layers = _count_blocks(state_dict, "clip.visual.transformer.resblocks.")
    text_layers = _count_blocks(state_dict, "clip.transformer.resblocks.")
    temporal_layers = _count_blocks(state_dict, "transformerClip.resblocks.")
    vision_mlp = (
        _require(state_dict, "clip.visual.transformer.resblocks.0.mlp.c_fc.weight").shape[0] / vision_width
    )
    text_mlp = _require(state_dict, "clip.transformer.resblocks.0.mlp.c_fc.weight").shape[0] / text_width
    clip_sizes = ClipSizes(
        embed_dim=int(_require(state_dict, "clip.text_projection").shape[1]),
        vision_width=vision_width,
        vision_layers=vision_layers,
        patch_size=patch,
        image_size=grid * patch,
        text_width=text_width,
        text_layers=text_layers,
        vocab_size=int(_require(state_dict, "clip.token_embedding.weight").shape[0]),
        context_length=int(_require(state_dict, "clip.positional_embedding").shape[0]),
        vision_mlp_ratio=vision_mlp,
        text_mlp_ratio=text_mlp,
    )
    width = clip_sizes.embed_dim
    temporal_mlp = (
        _require(state_dict, "transformerClip.resblocks.0.mlp.c_fc.weight").shape[0] / width
        if temporal_layers
        else 4.0
    )
    msam_sizes = MSAMSizes(
        temporal_layers=temporal_layers,
        temporal_mlp_ratio=temporal_mlp,
        frame_positions=int(_require(state_dict, "frame_position_embeddings.weight").shape[0]),
        num_slots=int(_require(state_dict, "preloss.p.pie_net_video.attention.w_2.weight").shape[0]),
        pie_hidden=int(_require(state_dict, "preloss.p.pie_net_video.attention.w_1.weight").shape[0]),
        gate_hidden=int(_require(state_dict, "select.afp.attention_fc.0.weight").shape[0]),
        mean_hidden=_mlp_hidden(state_dict, "preloss.p.mean_head.layer."),
        std_hidden=_mlp_hidden(state_dict, "preloss.p.var_head.layer."),
    )
    return clip_sizes, msam_sizes


def load_reference_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    options: MSAMOptions | None = None,
    device: torch.device | str | None = None,
) -> MSAM:
    """Build an :class:`MSAM` from the authors' ``model.state_dict()``: sizes inferred, float32 weights.

    The CLIP part is a real ``open_clip.model.CLIP`` (QuickGELU, ViT-B-32-quickgelu layout) built at the
    inferred sizes, with the ``clip.*`` tensors loaded into it. Every used key must be present and every key
    must be known (used, or one of :data:`IGNORED_KEYS`), else :class:`StateDictError`. The model is
    returned in ``eval()`` mode (dropout off), ready to score; call ``.train()`` to fine-tune.
    """
    mapped: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if is_ignored_key(key):
            continue
        ours = reference_to_port_key(key)
        if ours is None:
            unknown.append(key)
        else:
            mapped[ours] = value
    if unknown:
        raise StateDictError(
            f"unknown key(s) in the MSAM checkpoint: {', '.join(sorted(unknown))}", unexpected=unknown
        )

    clip_sizes, msam_sizes = infer_sizes(state_dict)
    model = MSAM(clip_sizes.build(), sizes=msam_sizes, options=options)
    expected = model.state_dict()
    missing = sorted(port_to_reference_key(k) for k in expected.keys() - mapped.keys())
    surplus = sorted(port_to_reference_key(k) for k in mapped.keys() - expected.keys())
    if missing or surplus:
        parts = []
        if missing:
            parts.append(f"missing: {', '.join(missing)}")
        if surplus:
            parts.append(f"not in a model of the inferred sizes: {', '.join(surplus)}")
        raise StateDictError(
            "MSAM checkpoint does not match: " + "; ".join(parts), missing=missing, unexpected=surplus
        )
    bad_shapes = [
        f"{port_to_reference_key(k)} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in mapped.items()
        if v.shape != expected[k].shape
    ]
    if bad_shapes:
        raise StateDictError("MSAM checkpoint tensors have inconsistent shapes: " + "; ".join(bad_shapes))
    model.load_state_dict({k: v.detach().to(torch.float32) for k, v in mapped.items()}, strict=True)
    model = model.float().eval()
    return model.to(device) if device is not None else model


def to_reference_state_dict(model: MSAM) -> dict[str, Tensor]:
    """Our model's tensors under the authors' names (used keys only), e.g. to compare with their code."""
    return {port_to_reference_key(k): v.detach().clone() for k, v in model.state_dict().items()}
