"""Frame dynamic-change modelling: CLIP4Clip's ``seqTransf`` temporal transformer."""

from __future__ import annotations

from functools import partial

from open_clip.transformer import LayerNorm, QuickGELU, Transformer
from torch import Tensor, nn

from dvtr_data.errors import UsageError

from .encoders import HEAD_WIDTH

TEMPORAL_LN_EPS = 1e-12  # CLIP4Clip's TF-style LayerNorm (the CLIP towers use 1e-5)


class TemporalTransformer(nn.Module):
    """Pre-LN transformer over the per-frame CLS features of each video.

    ``out = transformer(frames + P[:F], key mask) + frames``: the residual goes to the features *before* the
    frame position embedding was added (as in CLIP4Clip). Padded frames are masked as keys only (additive
    ``mask_value``), so every query row, padded ones included, gets an output; there is no causal mask.
    The blocks are open_clip ``ResidualAttentionBlock``s, so CLIP text blocks can be copied in unchanged.
    """

    def __init__(
        self,
        width: int,
        layers: int,
        positions: int,
        *,
        mlp_ratio: float = 4.0,
        mask_value: float = -1e6,
    ) -> None:
        super().__init__()
        if width % HEAD_WIDTH:
            raise UsageError(f"temporal width {width} is not a multiple of the head width {HEAD_WIDTH}")
        self.heads = width // HEAD_WIDTH
        self.mask_value = mask_value
        self.position_embeddings = nn.Embedding(positions, width)
        self.transformer = Transformer(
            width,
            layers,
            self.heads,
            mlp_ratio=mlp_ratio,
            act_layer=QuickGELU,
            norm_layer=partial(LayerNorm, eps=TEMPORAL_LN_EPS),
        )

    def forward(self, frames: Tensor, video_mask: Tensor) -> Tensor:
        """``frames`` ``[V, F, C]``, ``video_mask`` ``[V, F]`` (1 = real frame) -> ``[V, F, C]``."""
        n_videos, n_frames, _ = frames.shape
        if n_frames > self.position_embeddings.num_embeddings:
            raise UsageError(
                f"{n_frames} frames exceed the {self.position_embeddings.num_embeddings} frame positions"
            )
        x = frames + self.position_embeddings.weight[:n_frames]
        keep = video_mask.to(frames.dtype)
        key_bias = ((1.0 - keep) * self.mask_value)[:, None, :]  # [V, 1, F]: same for every query row
        attn_mask = key_bias.expand(n_videos, n_frames, n_frames).repeat_interleave(self.heads, dim=0)
        x = self.transformer(x, attn_mask=attn_mask)
        return x + frames
