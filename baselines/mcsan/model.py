"""MCSAN (Nian et al., Mathematics 2022, 10(18):3346) on CLIP features: four semantic levels per modality.

No code was released; this follows methods.md §1.3-§1.4, and every open choice is written down here and in
``README.md``. The model splits, like the MSAM port, at the cacheable CLIP features:

1. ``encode_text(input_ids) -> (sentence [T, C], tokens [T, L, C])`` and ``encode_frames(video) -> [V, F, C]``
   run CLIP (the engine's backbone and cache, ``baselines/engine/backbone.py``/``cache.py``) and exist only
   when the model was built around a CLIP (:meth:`MCSAN.from_clip`);
2. ``embed_video(frame_cls, video_mask)`` and ``embed_text(sentence, tokens, input_ids, roles)`` give one
   ``embed_dim`` vector per level (global, entity, action, relation);
3. ``similarity_from_features`` / ``losses_from_features`` / ``trace_from_features``.

Video side ("spatial-temporal semantic learning", ours in detail): unit CLIP frame features ``x_t``
(masked where padded) go through a bidirectional GRU (``h_t``).

* global: ``W_g [mean_t h_t ; mean_t x_t]`` (masked means);
* entity (what is there: appearance): additive attention pooling of ``x_t``;
* action (what happens: change): additive attention pooling of ``[h_t ; x_t - x_{t-1}]``;
* relation (how things relate across the clip): one attention-graph step over the frames,
  ``r_t = x_t + Σ_s softmax_s(q_t·k_s / √C) v_s`` (a fully connected graph whose edges are learned
  affinities), then additive attention pooling of ``r_t``.

Text side: unit CLIP token states of SOT .. EOT go through a bidirectional GRU (``u_i``).

* global: ``W_g [mean_words u_i ; unit sentence feature]``;
* entity / action / relation: additive attention pooling of ``u_i`` over the token positions of the caption's
  nouns / verbs / relation phrases (``attributes.role_masks``, mined by the tagger); a caption without such a
  word pools over all its words (``text_roles=False`` always does).

Each level has one attribute projection ``P_l`` (``embed_dim -> K_l``) *shared by both modalities*
(the paper's parameter-shared attribute projection). Similarity: ``s(v, t) = Σ_l w_l cos(v_l, t_l)`` with
``w = softmax(learned logits)`` (equal at start) or fixed ``1/|levels|``. It is a dual encoder with late
interaction: scores never depend on which other captions or videos are scored with them, so the engine's
paper and single-query protocols give identical similarity matrices.

Losses (``losses.py``): ``L = L_rank(s) + λ1 Σ_l KL(q_l^t || q_l^v) + λ2 Σ_l ½[FBCE(p_l^v, y_l^v) +
FBCE(p_l^t, y_l^t)]``; the text label is the caption's own attributes, the video label the union of the
attributes of all the clip's training captions (HANet's video concept labels).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dvtr_data.baselines.engine.distributed import gather_cat, sample_weight
from dvtr_data.errors import UsageError

from .attributes import LEVELS as ATTRIBUTE_LEVELS
from .config import MCSANOptions, MCSANSizes
from .losses import attribute_kl, focal_bce, ranking_loss

ROLE_INDEX = {lv: k for k, lv in enumerate(ATTRIBUTE_LEVELS)}  # rows of the [T, 3, L] role masks


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x [N, S, D]`` over the positions where ``mask [N, S]`` is true (0 where none is)."""
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class AttentionPool(nn.Module):
    """Additive attention pooling (Bahdanau/Lin et al.): ``softmax_s(w · tanh(W x_s))`` over valid ``s``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1, bias=False)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(pooled [N, D], weights [N, S])``; rows of ``mask`` must have at least one true entry."""
        logits = self.score(torch.tanh(self.proj(x))).squeeze(-1)
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        return torch.einsum("ns,nsd->nd", weights, x), weights


class FrameGraph(nn.Module):
    """One attention-graph step over a clip's frames (the relation level's spatial-temporal interaction)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(nodes [V, F, C], adjacency [V, F, F])``; padded frames neither send nor matter."""
        q, k = self.query(x), self.key(x)
        affinity = torch.einsum("vfc,vgc->vfg", q, k) / math.sqrt(x.shape[-1])
        affinity = affinity.masked_fill(~mask[:, None, :], float("-inf"))
        adjacency = torch.softmax(affinity, dim=-1)
        return self.norm(x + adjacency @ self.value(x)), adjacency


def _bigru(gru: nn.GRU, x: Tensor, lengths: Tensor) -> Tensor:
    """Run a batch-first GRU over the first ``lengths`` steps of each row; padded steps come back as 0."""
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    out, _ = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


@dataclass
class LevelEmbeddings:
    """One modality's level vectors ``{level: [N, D]}`` plus the attention maps behind them."""

    levels: dict[str, Tensor]
    attention: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device) -> LevelEmbeddings:
        return LevelEmbeddings(
            {k: v.to(device) for k, v in self.levels.items()},
            {k: v.to(device) for k, v in self.attention.items()},
        )


@dataclass
class MCSANTrace:
    """Every intermediate of one joint pass, by name (for fixtures and debugging)."""

    video: LevelEmbeddings
    text: LevelEmbeddings
    level_similarity: Tensor  # [levels, T, V] cosine per level
    fusion_weights: Tensor  # [levels]
    similarity: Tensor  # [T, V] fused
    video_attribute_logits: dict[str, Tensor]
    text_attribute_logits: dict[str, Tensor]
    losses: dict[str, Tensor]

    def intermediates(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for side, emb in (("video", self.video), ("text", self.text)):
            out.update({f"{side}_{k}": v for k, v in emb.levels.items()})
            out.update({f"{side}_attention_{k}": v for k, v in emb.attention.items()})
        out.update({f"video_attributes_{k}": v for k, v in self.video_attribute_logits.items()})
        out.update({f"text_attributes_{k}": v for k, v in self.text_attribute_logits.items()})
        out.update(
            level_similarity=self.level_similarity,
            fusion_weights=self.fusion_weights,
            similarity=self.similarity,
        )
        return out


class MCSAN(nn.Module):
    """Multi-Level Cross-Modal Semantic Alignment Network over CLIP frame and token features.

    Submodules (state-dict prefixes): ``video_gru``, ``video_global``, ``video_entity_pool``/``video_entity``,
    ``video_action_pool``/``video_action``, ``frame_graph``, ``video_relation_pool``/``video_relation`` and
    the ``text_*`` counterparts, ``attribute_heads`` (one per level, shared by both modalities) and
    ``fusion_logits``. A CLIP given to :meth:`from_clip` is held as ``encoders`` outside the module tree: it
    is frozen, so it is neither saved with the heads nor moved by ``.to()`` (``model.encoders.to(device)``).
    """

    def __init__(
        self, *, sizes: MCSANSizes | None = None, options: MCSANOptions | None = None, seed: int | None = None
    ) -> None:
        super().__init__()
        self.sizes = sizes = sizes or MCSANSizes()
        self.options = options = options or MCSANOptions()
        # Not submodules: the CLIP backbone is frozen (its features are cached) and stays out of the state
        # dict and the optimiser; the vocabulary and tagger are what the attribute heads and role masks were
        # built from.
        self.encoders: Any = None
        self.vocabulary: Any = None
        self.tagger: Any = None
        c, d, h, a = sizes.feature_dim, sizes.embed_dim, sizes.gru_hidden, sizes.attention_hidden
        levels = options.levels
        with _seeded(seed):
            self.video_gru = nn.GRU(c, h, batch_first=True, bidirectional=True)
            self.text_gru = nn.GRU(c, h, batch_first=True, bidirectional=True)
            if "global" in levels:
                self.video_global = nn.Linear(2 * h + c, d)
                self.text_global = nn.Linear(2 * h + c, d)
            if "entity" in levels:
                self.video_entity_pool = AttentionPool(c, a)
                self.video_entity = nn.Linear(c, d)
            if "action" in levels:
                self.video_action_pool = AttentionPool(2 * h + c, a)
                self.video_action = nn.Linear(2 * h + c, d)
            if "relation" in levels:
                self.frame_graph = FrameGraph(c)
                self.video_relation_pool = AttentionPool(c, a)
                self.video_relation = nn.Linear(c, d)
            for lv in ATTRIBUTE_LEVELS:
                if lv in levels:
                    setattr(self, f"text_{lv}_pool", AttentionPool(2 * h, a))
                    setattr(self, f"text_{lv}", nn.Linear(2 * h, d))
            heads = {}
            k_e, k_a, k_r = sizes.attributes
            width = {"entity": k_e, "action": k_a, "relation": k_r, "global": k_e + k_a + k_r}
            if options.uses_attributes:
                for lv in levels:
                    if lv == "global" and not options.global_attributes:
                        continue
                    if width[lv] > 0:
                        heads[lv] = nn.Linear(d, width[lv])
            self.attribute_heads = nn.ModuleDict(heads)
        self.fusion_logits = nn.Parameter(torch.zeros(len(levels)), requires_grad=options.fusion == "learned")

    # ------------------------------------------------------------------------------------------ CLIP stage
    @classmethod
    def from_clip(
        cls,
        clip: nn.Module,
        *,
        sizes: MCSANSizes | None = None,
        options: MCSANOptions | None = None,
        seed: int | None = 0,
    ) -> MCSAN:
        """MCSAN around an open_clip ``CLIP``, read as the MSAM port reads it (EOT, tokens, frame CLS)."""
        from dvtr_data.baselines.msam.encoders import ClipEncoders

        encoders = ClipEncoders(clip)
        sizes = sizes or MCSANSizes()
        if sizes.feature_dim != encoders.embed_dim:
            sizes = MCSANSizes(**{**sizes.__dict__, "feature_dim": encoders.embed_dim})
        model = cls(sizes=sizes, options=options, seed=seed)
        object.__setattr__(
            model, "encoders", encoders
        )  # kept out of the module tree on purpose (see __init__)
        return model

    def _clip(self) -> Any:
        if self.encoders is None:
            raise UsageError(
                "this MCSAN has no CLIP backbone; build it with MCSAN.from_clip to encode pixels or ids"
            )
        return self.encoders

    def encode_text(self, input_ids: Tensor) -> tuple[Tensor, Tensor]:
        """CLIP sentence ``[T, C]`` and token ``[T, L, C]`` features (the feature cache's contents)."""
        return self._clip().encode_text(input_ids)

    def encode_frames(self, video: Tensor) -> Tensor:
        """CLIP frame CLS features ``[V, F, C]`` of normalised pixels ``[V, F, 3, H, W]``."""
        return self._clip().encode_frames(video)

    # --------------------------------------------------------------------------------------- level embeddings
    @property
    def levels(self) -> tuple[str, ...]:
        return self.options.levels

    def embed_video(self, frame_cls: Tensor, video_mask: Tensor) -> LevelEmbeddings:
        """Level vectors of videos from raw CLIP frame features ``[V, F, C]`` and their mask ``[V, F]``."""
        if frame_cls.ndim != 3 or video_mask.shape != frame_cls.shape[:2]:
            raise UsageError(
                f"need frame_cls [V, F, C] and video_mask [V, F]; got {tuple(frame_cls.shape)}, "
                f"{tuple(video_mask.shape)}"
            )
        mask = video_mask.to(torch.bool).clone()
        mask[:, 0] |= ~mask.any(1)  # a clip without a real frame still gets one position
        x = F.normalize(frame_cls.float(), dim=-1) * mask[..., None]
        h = _bigru(self.video_gru, x, mask.sum(1))
        out: dict[str, Tensor] = {}
        att: dict[str, Tensor] = {}
        if "global" in self.levels:
            out["global"] = self.video_global(torch.cat([masked_mean(h, mask), masked_mean(x, mask)], dim=-1))
        if "entity" in self.levels:
            pooled, att["entity"] = self.video_entity_pool(x, mask)
            out["entity"] = self.video_entity(pooled)
        if "action" in self.levels:
            delta = torch.zeros_like(x)
            delta[:, 1:] = (x[:, 1:] - x[:, :-1]) * mask[:, 1:, None] * mask[:, :-1, None]
            motion = torch.cat([h, delta], dim=-1)
            pooled, att["action"] = self.video_action_pool(motion, mask)
            out["action"] = self.video_action(pooled)
        if "relation" in self.levels:
            nodes, att["relation_graph"] = self.frame_graph(x, mask)
            pooled, att["relation"] = self.video_relation_pool(nodes, mask)
            out["relation"] = self.video_relation(pooled)
        return LevelEmbeddings(out, att)

    def embed_text(
        self, sentence: Tensor, tokens: Tensor, input_ids: Tensor, roles: Tensor | None = None
    ) -> LevelEmbeddings:
        """Level vectors of captions from CLIP features (``sentence [T, C]``, ``tokens [T, L, C]``), their
        token ids ``[T, L]`` (for SOT/EOT positions) and role masks ``[T, 3, L]`` (entity, action,
        relation)."""
        if tokens.ndim != 3 or input_ids.shape != tokens.shape[:2] or sentence.shape[0] != tokens.shape[0]:
            raise UsageError(
                f"need sentence [T, C], tokens [T, L, C], input_ids [T, L]; got {tuple(sentence.shape)}, "
                f"{tuple(tokens.shape)}, {tuple(input_ids.shape)}"
            )
        n, length = input_ids.shape
        eot = input_ids.argmax(dim=-1)
        pos = torch.arange(length, device=input_ids.device)[None, :]
        words = (pos >= 1) & (pos < eot[:, None])
        words = words | ((~words.any(1))[:, None] & (pos == eot[:, None]))  # an empty caption: its EOT state
        w = F.normalize(tokens.float(), dim=-1) * (pos <= eot[:, None])[..., None]
        u = _bigru(self.text_gru, w, eot + 1)
        out: dict[str, Tensor] = {}
        att: dict[str, Tensor] = {}
        if "global" in self.levels:
            out["global"] = self.text_global(
                torch.cat([masked_mean(u, words), F.normalize(sentence.float(), dim=-1)], -1)
            )
        for lv in ATTRIBUTE_LEVELS:
            if lv not in self.levels:
                continue
            mask = words
            if self.options.text_roles and roles is not None:
                if roles.shape != (n, len(ATTRIBUTE_LEVELS), length):
                    raise UsageError(f"roles must be [T, 3, {length}], got {tuple(roles.shape)}")
                role = roles[:, ROLE_INDEX[lv]].to(torch.bool) & words
                mask = torch.where(role.any(1, keepdim=True), role, words)
            pooled, att[lv] = getattr(self, f"text_{lv}_pool")(u, mask)
            out[lv] = getattr(self, f"text_{lv}")(pooled)
        return LevelEmbeddings(out, att)

    # ------------------------------------------------------------------------------------------ scores
    def fusion_weights(self) -> Tensor:
        if self.options.fusion == "equal":
            return torch.full_like(self.fusion_logits, 1.0 / len(self.levels))
        return torch.softmax(self.fusion_logits, dim=0)

    def level_similarity(self, text: LevelEmbeddings, video: LevelEmbeddings) -> Tensor:
        """``[levels, T, V]`` cosine similarity per level."""
        return torch.stack(
            [
                F.normalize(text.levels[lv], dim=-1) @ F.normalize(video.levels[lv], dim=-1).T
                for lv in self.levels
            ]
        )

    def fuse(self, level_similarity: Tensor) -> Tensor:
        return torch.einsum("l,ltv->tv", self.fusion_weights(), level_similarity)

    def similarity_from_embeddings(self, text: LevelEmbeddings, video: LevelEmbeddings) -> Tensor:
        return self.fuse(self.level_similarity(text, video))

    def similarity_from_features(
        self,
        sentence: Tensor,
        tokens: Tensor,
        input_ids: Tensor,
        frame_cls: Tensor,
        video_mask: Tensor,
        roles: Tensor | None = None,
    ) -> Tensor:
        """``[T, V]`` fused scores in [-1, 1]."""
        return self.similarity_from_embeddings(
            self.embed_text(sentence, tokens, input_ids, roles), self.embed_video(frame_cls, video_mask)
        )

    def attribute_logits(self, emb: LevelEmbeddings) -> dict[str, Tensor]:
        return {lv: head(emb.levels[lv]) for lv, head in self.attribute_heads.items()}

    # ------------------------------------------------------------------------------------------ training
    def trace_from_features(
        self,
        sentence: Tensor,
        tokens: Tensor,
        input_ids: Tensor,
        frame_cls: Tensor,
        video_mask: Tensor,
        *,
        roles: Tensor | None = None,
        text_labels: dict[str, Tensor] | None = None,
        video_labels: dict[str, Tensor] | None = None,
        clip_index: Tensor | None = None,
    ) -> MCSANTrace:
        """A training pass over ``B`` matched pairs (caption i with video i) and everything it computes.

        ``text_labels``/``video_labels`` are ``{entity|action|relation: [B, K]}`` multi-hot attributes (needed
        when an attribute loss is on); ``clip_index [B]`` names each pair's clip so that two captions of one
        clip are never each other's negatives.
        """
        b = sentence.shape[0]
        if frame_cls.shape[0] != b:
            raise UsageError(
                f"a training pass needs one video per caption; got {b} captions, {frame_cls.shape[0]} videos"
            )
        text = self.embed_text(sentence, tokens, input_ids, roles)
        video = self.embed_video(frame_cls, video_mask)
        # Across processes the ranking sees the global batch (engine/distributed.py); one process: as is.
        all_text = LevelEmbeddings({k: gather_cat(v) for k, v in text.levels.items()})
        all_video = LevelEmbeddings({k: gather_cat(v) for k, v in video.levels.items()})
        per_level = self.level_similarity(all_text, all_video)
        weights = self.fusion_weights()
        sim = torch.einsum("l,ltv->tv", weights, per_level)
        all_clips = None if clip_index is None else gather_cat(clip_index)
        same = None if all_clips is None else all_clips[:, None] == all_clips[None, :]
        o = self.options
        losses = {"rank": ranking_loss(sim, margin=o.margin, negatives=o.negatives, same_clip=same)}
        t_logits, v_logits = self.attribute_logits(text), self.attribute_logits(video)
        zero = sim.sum() * 0.0
        kl, fbce = zero, zero
        if self.attribute_heads:
            if text_labels is None or video_labels is None:
                raise UsageError("the attribute losses need text_labels and video_labels")
            for lv in self.attribute_heads:
                y_t = _level_labels(text_labels, lv)
                y_v = _level_labels(video_labels, lv)
                if o.kl_weight > 0:
                    kl = kl + attribute_kl(t_logits[lv], v_logits[lv], direction=o.kl_direction)
                if o.fbce_weight > 0:
                    fbce = fbce + 0.5 * (
                        focal_bce(v_logits[lv], y_v, alpha=o.fbce_alpha, gamma=o.fbce_gamma)
                        + focal_bce(t_logits[lv], y_t, alpha=o.fbce_alpha, gamma=o.fbce_gamma)
                    )
        share = sample_weight(b, sentence.device)  # per-pair terms of the local pairs: average to the global mean
        kl, fbce = kl * share, fbce * share
        losses["kl"] = kl
        losses["fbce"] = fbce
        losses["total"] = losses["rank"] + o.kl_weight * kl + o.fbce_weight * fbce
        return MCSANTrace(video, text, per_level, weights, sim, v_logits, t_logits, losses)

    def losses_from_features(self, *args: Tensor, **kwargs: object) -> dict[str, Tensor]:
        """``{rank, kl, fbce, total}`` of :meth:`trace_from_features`."""
        return self.trace_from_features(*args, **kwargs).losses  # type: ignore[arg-type]


def _level_labels(labels: dict[str, Tensor], level: str) -> Tensor:
    if level == "global":
        return torch.cat([labels[lv] for lv in ATTRIBUTE_LEVELS], dim=-1)
    return labels[level]
