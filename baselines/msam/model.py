"""MSAM (arXiv 2510.15470) assembled from its stages, with an API split at the cacheable CLIP features.

Stages, each usable on its own so that a frozen-backbone trainer or a search service can cache CLIP outputs:

1. ``encode_text(input_ids) -> (sentence [T, C], tokens [T, L, C])`` and ``encode_frames(video) -> [V, F, C]``
   (CLIP, the expensive part);
2. ``similarity_from_features`` / ``losses_from_features`` / ``trace_from_features`` (temporal transformer,
   fusion pooling head, auxiliary branch; cheap);
3. ``similarity`` / ``losses`` / ``forward`` compose 1 and 2.

Everything computes in float32 (TF32 off on CUDA, see ``precision.py``). The PIENet dropout (p = 0.2) is a
regular ``nn.Dropout``: it is active in ``train()`` mode as in the authors' training, and off in ``eval()``
mode, which is how the reference fixture's losses were computed (``load_reference_state_dict`` returns the
model in eval mode).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import Tensor, nn

from dvtr_data.baselines.engine.distributed import gather_cat, sample_weight
from dvtr_data.errors import UsageError

from .config import MSAMOptions, MSAMSizes
from .encoders import ClipEncoders
from .fusion_head import FusionPoolingHead, frame_gram, mean_pooled_video, single_query_scores
from .losses import gaussian_kl, slot_diversity, symmetric_cross_entropy
from .precision import strict_fp32
from .semantics import MultiSemanticBranch, SemanticDistributions
from .temporal import TemporalTransformer


def _resolved(size: int | None, name: str) -> int:
    """A size that `MSAMSizes.resolved` has derived; ``None`` here is a bug in this package, not a user error."""
    if size is None:
        raise RuntimeError(f"MSAM size {name} was used before MSAMSizes.resolved() derived it")
    return size


@dataclass
class MSAMTrace:
    """Every intermediate of one joint pass (names match the reference fixture's ``intermediates``)."""

    text_sentence: Tensor  # [T, C] EOT feature, before normalisation
    text_tokens: Tensor  # [T, L, C] projected states of every position
    frame_cls: Tensor  # [V, F, C] raw CLIP frame features (pre-temporal)
    frame_temporal: Tensor  # [V, F, C] temporal transformer output + residual
    video_global: Tensor  # [V, C] normalise(valid-frame mean of unit frame_temporal)
    gate_logit: Tensor | None  # [V, T] pre-sigmoid gate; None when the head has no gate
    similarity: Tensor  # [T, V] logits, exp(logit_scale) included
    losses: dict[str, Tensor]  # contrastive, kl, diversity, total
    semantics: SemanticDistributions | None  # None when both auxiliary weights are 0

    def intermediates(self) -> dict[str, Tensor]:
        """The tensors as a flat dict, in the fixture's key names."""
        out = {
            "text_sentence": self.text_sentence,
            "text_tokens": self.text_tokens,
            "frame_cls": self.frame_cls,
            "frame_temporal": self.frame_temporal,
            "video_global": self.video_global,
        }
        if self.gate_logit is not None:
            out["gate_logit"] = self.gate_logit
        if self.semantics is not None:
            out.update(self.semantics._asdict())
        return out


class MSAM(nn.Module):
    """Multi-Semantic Adaptive Mining for drone video-text retrieval (the authors' code path, in float32).

    Submodules (their state-dict prefixes): ``encoders.clip`` (open_clip CLIP), ``temporal`` (frame dynamic
    change modelling), ``head`` (cross-modal interactive feature fusion pooling = the similarity), and
    ``semantics`` (adaptive semantic construction + distribution heads, training loss only).

    The constructor builds modules with PyTorch's default init; use :meth:`from_clip` for the authors'
    initialisation or ``load_reference_state_dict`` for the authors' checkpoints.
    """

    def __init__(
        self, clip: CLIP, *, sizes: MSAMSizes | None = None, options: MSAMOptions | None = None
    ) -> None:
        super().__init__()
        self.encoders = ClipEncoders(clip)
        width = self.encoders.embed_dim
        self.sizes = (sizes or MSAMSizes()).resolved(width, self.encoders.context_length)
        self.options = options or MSAMOptions()
        s, o = self.sizes, self.options
        # resolved() above has replaced every None size by its derived value
        frame_positions, gate_hidden, pie_hidden = (
            _resolved(s.frame_positions, "frame_positions"),
            _resolved(s.gate_hidden, "gate_hidden"),
            _resolved(s.pie_hidden, "pie_hidden"),
        )
        self.temporal = TemporalTransformer(
            width,
            s.temporal_layers,
            frame_positions,
            mlp_ratio=s.temporal_mlp_ratio,
            mask_value=o.temporal_mask_value,
        )
        self.head = FusionPoolingHead(
            width,
            gate_hidden,
            tau=o.tau,
            scale=o.head_scale,
            gate_divisor=o.gate_divisor,
            use_gate=o.similarity == "fusion",
        )
        self.semantics = MultiSemanticBranch(
            width,
            slots=s.num_slots,
            pie_hidden=pie_hidden,
            mean_hidden=s.mean_hidden,
            std_hidden=s.std_hidden,
            dropout=o.pie_dropout,
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_clip(
        cls,
        clip: CLIP,
        *,
        sizes: MSAMSizes | None = None,
        options: MSAMOptions | None = None,
        init_std: float = 0.02,
        generator: torch.Generator | None = None,
    ) -> MSAM:
        """Wrap an open_clip model (e.g. ``open_clip.create_model(name, pretrained=tag)``) for training.

        Applies the authors' initialisation (:meth:`init_like_authors`) and converts the whole model to
        float32. The CLIP weights are kept as given.
        """
        model = cls(clip, sizes=sizes, options=options)
        model.init_like_authors(init_std, generator=generator)
        return model.float()

    @torch.no_grad()
    def init_like_authors(self, std: float = 0.02, *, generator: torch.Generator | None = None) -> None:
        """CLIP4Clip's ``init_weights`` on the MSAM modules, then the copies from CLIP.

        Every ``nn.Linear``/``nn.Embedding`` outside CLIP gets N(0, std) weights and zero biases, LayerNorms
        get (1, 0), attention input projections keep ``nn.MultiheadAttention``'s own init (xavier, zero bias).
        Then CLIP text blocks ``0..min(temporal, text layers)-1`` are copied into the temporal transformer
        (the rest keep the init above) and CLIP's text positional embedding into the frame position table.
        """
        for part in (self.temporal, self.head, self.semantics):
            for m in part.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    m.weight.normal_(0.0, std, generator=generator)
                    if isinstance(m, nn.Linear) and m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, nn.LayerNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                elif isinstance(m, nn.MultiheadAttention):
                    nn.init.xavier_uniform_(m.in_proj_weight, generator=generator)
                    m.in_proj_bias.zero_()
        clip = self.encoders.clip
        text_blocks = clip.transformer.resblocks
        temporal_blocks = self.temporal.transformer.resblocks
        for i in range(min(len(text_blocks), len(temporal_blocks))):
            source = text_blocks[i].state_dict()
            target = temporal_blocks[i].state_dict()
            if source.keys() != target.keys() or any(source[k].shape != target[k].shape for k in source):
                warnings.warn(
                    "CLIP text blocks do not match the temporal blocks' shape (text width != joint width); "
                    "the temporal transformer keeps its fresh initialisation",
                    stacklevel=2,
                )
                break
            temporal_blocks[i].load_state_dict(source)
        table = self.temporal.position_embeddings.weight
        positions = clip.positional_embedding
        if positions.shape[1] == table.shape[1]:
            rows = min(positions.shape[0], table.shape[0])
            table[:rows] = positions[:rows].to(table.dtype)
        else:
            warnings.warn(
                "CLIP's text positional embedding width differs from the embedding width; "
                "the frame position table keeps its fresh initialisation",
                stacklevel=2,
            )

    # ------------------------------------------------------------------ stage 1: CLIP features
    @property
    def logit_scale(self) -> Tensor:
        """CLIP's learnable log temperature; logits use its exp. Not clamped here (the optimiser does)."""
        return self.encoders.clip.logit_scale

    @strict_fp32
    def encode_text(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """``(sentence [T, C], tokens [T, L, C])``, unnormalised (see ``ClipEncoders.encode_text``)."""
        sentence, tokens = self.encoders.encode_text(input_ids)
        return sentence.float(), tokens.float()

    @strict_fp32
    def encode_frames(self, video: Tensor, *, chunk_size: int | None = None) -> Tensor:
        """Raw CLS frame features ``[V, F, C]`` of ``video`` ``[V, F, 3, H, W]`` (cast to float32 first)."""
        return self.encoders.encode_frames(video.float(), chunk_size=chunk_size).float()

    # ------------------------------------------------------------------ stage 2: from features
    def _temporal(self, frame_cls: Tensor, video_mask: Tensor) -> Tensor:
        frame_cls = frame_cls.float()
        return self.temporal(frame_cls, video_mask) if self.options.use_temporal else frame_cls

    @strict_fp32
    def frame_embeddings(self, frame_cls: Tensor, video_mask: Tensor) -> Tensor:
        """Unit post-temporal frames ``[V, F, C]``: the per-video state a search index caches."""
        return F.normalize(self._temporal(frame_cls, video_mask), dim=-1)

    def _head_mask(self, video_mask: Tensor) -> Tensor | None:
        return video_mask if self.options.mask_padding_in_head else None

    def _scores(
        self,
        text: Tensor,
        frames: Tensor,
        video_mask: Tensor,
        *,
        text_chunk_size: int | None = None,
        video_chunk_size: int | None = None,
    ) -> Tensor:
        """Logits ``[T, V]`` from unit texts and unit post-temporal frames, exp(logit_scale) included."""
        if self.options.similarity == "mean":
            scores = text @ mean_pooled_video(frames, video_mask).T
        else:
            n_texts, n_videos = text.shape[0], frames.shape[0]
            t_step = text_chunk_size or n_texts
            v_step = video_chunk_size or n_videos
            head_mask = self._head_mask(video_mask)
            rows = []
            for t0 in range(0, n_texts, t_step):
                chunk = text[t0 : t0 + t_step]
                cols = [
                    self.head(
                        chunk,
                        frames[v0 : v0 + v_step],
                        None if head_mask is None else head_mask[v0 : v0 + v_step],
                    )
                    for v0 in range(0, n_videos, v_step)
                ]
                rows.append(torch.cat(cols, dim=1))
            scores = torch.cat(rows, dim=0)
        return self.logit_scale.exp() * scores

    @strict_fp32
    def similarity_from_features(
        self,
        sentence: Tensor,
        frame_cls: Tensor,
        video_mask: Tensor,
        *,
        text_chunk_size: int | None = None,
        video_chunk_size: int | None = None,
    ) -> Tensor:
        """Logits ``[T, V]`` from cached CLIP features.

        The head is transductive over texts: by default all ``T`` texts form one chunk (the fixture's
        setting). ``text_chunk_size=32`` reproduces the authors' evaluation (32 consecutive captions per
        chunk); ``video_chunk_size`` only bounds memory (videos are independent).
        """
        text = F.normalize(sentence.float(), dim=-1)
        frames = F.normalize(self._temporal(frame_cls, video_mask), dim=-1)
        return self._scores(
            text, frames, video_mask, text_chunk_size=text_chunk_size, video_chunk_size=video_chunk_size
        )

    @strict_fp32
    def single_query_similarity_from_features(
        self, sentence: Tensor, frame_cls: Tensor, video_mask: Tensor
    ) -> Tensor:
        """Logits ``[Q, V]`` with every query scored alone (the search setting, msam.md §8).

        Equals ``similarity_from_features(..., text_chunk_size=1)`` but needs no gate MLP and no
        ``[Q, V, C]`` tensor: see ``fusion_head.single_query_scores``.
        """
        text = F.normalize(sentence.float(), dim=-1)
        frames = F.normalize(self._temporal(frame_cls, video_mask), dim=-1)
        if self.options.similarity == "mean":
            return self._scores(text, frames, video_mask)
        return single_query_scores(
            text,
            frames,
            gram=frame_gram(frames),
            video_mask=self._head_mask(video_mask),
            tau=self.options.tau,
            scale=self.options.head_scale * self.logit_scale.exp(),
        )

    @strict_fp32
    def trace_from_features(
        self,
        sentence: Tensor,
        tokens: Tensor,
        frame_cls: Tensor,
        video_mask: Tensor,
        *,
        token_mask: Tensor | None = None,
    ) -> MSAMTrace:
        """One joint training-style pass: similarity, losses and every intermediate.

        Pairs are aligned: caption ``i`` belongs to video ``i`` (``T == V``), all texts form one chunk.
        ``token_mask`` ``[T, L]`` (1 on SOT..EOT, i.e. the tokenizer's attention mask) is read only under
        ``MSAMOptions.mask_padding_in_pienet``.
        """
        o = self.options
        sentence, tokens = sentence.float(), tokens.float()
        frame_cls = frame_cls.float()
        if sentence.shape[0] != frame_cls.shape[0]:
            raise UsageError(
                f"losses need aligned pairs: {sentence.shape[0]} captions vs {frame_cls.shape[0]} videos"
            )
        text = F.normalize(sentence, dim=-1)
        frame_temporal = self._temporal(frame_cls, video_mask)
        frames = F.normalize(frame_temporal, dim=-1)
        video_global = mean_pooled_video(frames, video_mask)
        gate_logit = None
        # Across processes the score matrix is the global batch's (engine/distributed.py); one process: as is.
        all_text, all_frames, all_mask = gather_cat(text), gather_cat(frames), gather_cat(video_mask)
        if o.similarity == "mean":
            similarity = self.logit_scale.exp() * (all_text @ gather_cat(video_global).T)
        else:
            out = self.head.detailed(all_text, all_frames, self._head_mask(all_mask))
            similarity = self.logit_scale.exp() * out.scores
            gate_logit = out.gate_logit
        contrastive = symmetric_cross_entropy(similarity)

        zero = contrastive.new_zeros(())
        kl, diversity, dists = zero, zero, None
        if o.uses_semantic_branch:
            frame_pad = token_pad = None
            if o.mask_padding_in_pienet:
                if token_mask is None:
                    raise UsageError(
                        "mask_padding_in_pienet needs the token mask (the tokenizer's attention mask)"
                    )
                frame_pad, token_pad = ~video_mask.bool(), ~token_mask.bool()
            dists = self.semantics(
                video_global,
                F.normalize(frame_cls, dim=-1),
                text,
                F.normalize(tokens, dim=-1),
                frame_pad=frame_pad,
                token_pad=token_pad,
            )
            if o.kl_weight > 0:
                kl = gaussian_kl(dists.video_mu, dists.video_sigma, dists.text_mu, dists.text_sigma)
            if o.diversity_weight > 0:
                diversity = (
                    slot_diversity(dists.video_mu, dists.video_sigma)
                    + slot_diversity(dists.text_mu, dists.text_sigma)
                ) / 2
        if o.uses_semantic_branch:  # per-sample terms of the local pairs, weighted to average to the global mean
            share = sample_weight(sentence.shape[0], sentence.device)
            kl, diversity = kl * share, diversity * share
        total = contrastive + o.kl_weight * kl + o.diversity_weight * diversity
        losses = {"contrastive": contrastive, "kl": kl, "diversity": diversity, "total": total}
        return MSAMTrace(
            text_sentence=sentence,
            text_tokens=tokens,
            frame_cls=frame_cls,
            frame_temporal=frame_temporal,
            video_global=video_global,
            gate_logit=gate_logit,
            similarity=similarity,
            losses=losses,
            semantics=dists,
        )

    def losses_from_features(
        self,
        sentence: Tensor,
        tokens: Tensor,
        frame_cls: Tensor,
        video_mask: Tensor,
        *,
        token_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The four loss terms from cached CLIP features (see ``trace_from_features``).

        ``total = contrastive + kl_weight · kl + diversity_weight · diversity`` (1.0 and 0.01 by default); a
        term whose weight is 0 is not computed and reported as 0.
        """
        return self.trace_from_features(sentence, tokens, frame_cls, video_mask, token_mask=token_mask).losses

    # ------------------------------------------------------------------ stage 3: end to end
    def similarity(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        video: Tensor,
        video_mask: Tensor,
        *,
        text_chunk_size: int | None = None,
        video_chunk_size: int | None = None,
    ) -> Tensor:
        """Logits ``[T, V]``, all texts as one chunk by default.

        ``attention_mask`` is accepted for interface parity and not read: MSAM's text encoder uses only the
        causal mask, like the authors' code.
        """
        sentence, _ = self.encode_text(input_ids)
        frame_cls = self.encode_frames(video)
        return self.similarity_from_features(
            sentence,
            frame_cls,
            video_mask,
            text_chunk_size=text_chunk_size,
            video_chunk_size=video_chunk_size,
        )

    def trace(
        self, input_ids: Tensor, attention_mask: Tensor | None, video: Tensor, video_mask: Tensor
    ) -> MSAMTrace:
        """End-to-end :meth:`trace_from_features`."""
        sentence, tokens = self.encode_text(input_ids)
        frame_cls = self.encode_frames(video)
        return self.trace_from_features(sentence, tokens, frame_cls, video_mask, token_mask=attention_mask)

    def losses(
        self, input_ids: Tensor, attention_mask: Tensor | None, video: Tensor, video_mask: Tensor
    ) -> dict[str, Tensor]:
        """Training losses of aligned pairs (caption ``i`` <-> video ``i``); dropout follows train/eval."""
        return self.trace(input_ids, attention_mask, video, video_mask).losses

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None, video: Tensor, video_mask: Tensor
    ) -> dict[str, Tensor]:
        """The training entry point: same as :meth:`losses`."""
        return self.losses(input_ids, attention_mask, video, video_mask)
