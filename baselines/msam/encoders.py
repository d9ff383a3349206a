"""The CLIP part of MSAM: an unmodified open_clip ``CLIP`` plus the two feature readers MSAM needs.

MSAM reads CLIP differently from ``CLIP.encode_text``: it keeps the projected state of *every* text position
(the text PIENet attends over them), and it runs the text tower on the 32-token crop only (positional rows
``[:L]``, an ``L×L`` causal mask). Frames are read exactly like ``CLIP.encode_image`` (``ln_post`` then
``proj`` of the CLS token).

Paper term without an operation in the code, "rich semantic information from specific scene regions": the
authors' CLIP also projects the 49 patch tokens of every frame and then never uses them. Only the per-frame
CLS feature reaches MSAM, so no region-level feature exists in the model; this port does not compute the patch
projections at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch import Tensor, nn

from dvtr_data.errors import ModelError, UsageError

HEAD_WIDTH = 64  # the authors' (OpenAI's) attention head width; heads = width / 64 in every tower


@dataclass(frozen=True)
class ClipSizes:
    """Sizes of an OpenAI-layout ViT CLIP (QuickGELU, learnable positions, CLS pooling)."""

    embed_dim: int
    vision_width: int
    vision_layers: int
    patch_size: int
    image_size: int
    text_width: int
    text_layers: int
    vocab_size: int
    context_length: int
    vision_mlp_ratio: float = 4.0
    text_mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        for name in ("vision_width", "text_width"):
            width = getattr(self, name)
            if width % HEAD_WIDTH:
                raise ModelError(f"{name}={width} is not a multiple of the head width {HEAD_WIDTH}")
        if self.image_size % self.patch_size:
            raise ModelError(
                f"image size {self.image_size} is not a multiple of the patch size {self.patch_size}"
            )

    def build(self) -> CLIP:
        """A freshly initialised open_clip ``CLIP`` of these sizes (the ViT-B-32-quickgelu layout)."""
        vision = CLIPVisionCfg(
            layers=self.vision_layers,
            width=self.vision_width,
            head_width=HEAD_WIDTH,
            mlp_ratio=self.vision_mlp_ratio,
            patch_size=self.patch_size,
            image_size=self.image_size,
        )
        text = CLIPTextCfg(
            context_length=self.context_length,
            vocab_size=self.vocab_size,
            width=self.text_width,
            heads=self.text_width // HEAD_WIDTH,
            layers=self.text_layers,
            mlp_ratio=self.text_mlp_ratio,
        )
        return CLIP(self.embed_dim, vision_cfg=vision, text_cfg=text, quick_gelu=True)


def clip_embed_dim(clip: CLIP) -> int:
    """Width of CLIP's joint space, read from the text projection."""
    proj = clip.text_projection
    return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]


class ClipEncoders(nn.Module):
    """Text and frame feature extraction on top of an open_clip ``CLIP`` (kept as ``self.clip``).

    Only the plain ``open_clip.model.CLIP`` class is supported: MSAM needs the text tower's internals
    (token embedding, transformer, ``ln_final``, projection), which ``CustomTextCLIP`` hides behind a
    differently structured text module.
    """

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        if not isinstance(clip, CLIP):
            raise ModelError(
                f"MSAM needs an open_clip.model.CLIP, got {type(clip).__name__}",
                hint="pick a model with open_clip's built-in text transformer (e.g. ViT-B-32-quickgelu)",
            )
        if getattr(clip.visual, "proj", None) is None or not hasattr(clip.visual, "class_embedding"):
            raise ModelError("MSAM needs a ViT image tower with a CLS token and an output projection")
        self.clip = clip

    @property
    def embed_dim(self) -> int:
        return clip_embed_dim(self.clip)

    @property
    def context_length(self) -> int:
        return self.clip.positional_embedding.shape[0]

    def encode_text(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Sentence features ``[T, C]`` and projected token states ``[T, L, C]``.

        The sentence row is the EOT position, found as ``argmax(input_ids)`` (EOT has the largest id in CLIP
        vocabularies). No padding mask is used: the causal mask already keeps the EOT row from seeing the
        padding, and the padding rows themselves are kept because the text PIENet reads them.
        """
        if input_ids.ndim != 2:
            raise UsageError(f"input_ids must be [texts, tokens], got shape {tuple(input_ids.shape)}")
        length = input_ids.shape[1]
        if length > self.context_length:
            raise UsageError(f"{length} tokens exceed CLIP's context length {self.context_length}")
        clip = self.clip
        x = clip.token_embedding(input_ids) + clip.positional_embedding[:length]
        causal = torch.full((length, length), float("-inf"), device=x.device, dtype=x.dtype).triu_(1)
        x = clip.transformer(x, attn_mask=causal)
        x = clip.ln_final(x)
        proj = clip.text_projection
        tokens = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        eot = input_ids.argmax(dim=-1)
        sentence = tokens[torch.arange(tokens.shape[0], device=tokens.device), eot]
        return sentence, tokens

    def encode_frames(self, video: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Per-frame CLS features ``[V, F, C]`` of ``video`` ``[V, F, 3, H, W]``; padded frames included.

        Padding frames (all zero after normalisation) go through CLIP like real ones, as in the authors' code:
        the head and the video PIENet see their (identical) features. ``chunk_size`` bounds the number of
        frames per CLIP forward to cap memory; it does not change the result.
        """
        if video.ndim != 5:
            raise UsageError(f"video must be [videos, frames, 3, H, W], got shape {tuple(video.shape)}")
        n_videos, n_frames = video.shape[:2]
        dtype = self.clip.visual.conv1.weight.dtype
        flat = video.flatten(0, 1).to(dtype)
        if chunk_size is None or chunk_size >= flat.shape[0]:
            feats = self.clip.encode_image(flat)
        else:
            feats = torch.cat([self.clip.encode_image(part) for part in flat.split(chunk_size)])
        return feats.reshape(n_videos, n_frames, -1)
