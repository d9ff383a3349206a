"""AMFMN (Yuan et al., TGRS 2021; arXiv 2204.09868), ported from the released code (xiaoyuan1996/AMFMN).

Module and parameter names are the released ``layers/AMFMN.py`` / ``AMFMN_Modules.py`` ones, so a released
checkpoint's ``model`` state dict loads (:func:`load_released_state_dict`):

* ``extract_feature``: ResNet-18 (``resnet.*``, its unused ``fc`` included) and ``linear`` (512 -> embed) on
  the mean-pooled stage-4 map, the global vector ``v_g``. Stages 1 and 2 (stage 2 upsampled x2) make the
  low-level map (64 + 128 = 192 channels), stages 3 and 4 (stage 4 upsampled x2) the high-level one (768).
* ``mvsa`` (multi-scale visual self-attention): ``LF_conv`` (3x3, stride 4) and ``HF_conv`` (1x1) to
  ``multiscale_input_channel`` channels each, concatenated, plus the channel mean of the high-level map
  (residual); ``conv1x1_1`` values times ``sigmoid(conv1x1_2)`` gates, flattened, ``solo_attention``
  (Linear) and a sigmoid give the salient mask; ``F_v = v_g * mask``. The paper writes PReLU after the two
  sub-sampling convolutions and L2 normalisation before the 1x1 convolutions; the released code has neither,
  and this port follows the code (the paper's form is not what the released numbers came from).
* ``text_feature``: the released skip-thoughts ``seq2vec`` (BayesianUniSkip: ``embedding`` 620-d, one GRU
  cell of 2400 with ``weight_ir/ii/in`` (input, with bias) and ``weight_hr/hi/hn`` (hidden, no bias) and
  per-sequence dropout masks; the state at the last real token) then ``to_out`` (2400 -> embed) and ReLU; or
  the paper's BiGRU (``bigru``: 300-d words, hidden 512, the two directions averaged at each step and the
  steps averaged).
* ``cross_attention_s``: the visual-guided attention of the sentence, one of ``soft_att`` (``sigma(W v) * t``),
  ``fusion_att`` (``sigma(W1 [v, t]) * W2 [v, t]``) or ``similarity_att`` (``sigma(Wv v * Wt t) * Wt t``:
  element-wise product where the paper writes cosine, as released).
* ``vgmf_gate`` (Linear 2*embed -> embed): dynamic fusion of the attended sentence and keywords,
  ``F_t = s * sigma(g) + k * (1 - sigma(g))`` with ``g = gate([L2(s), L2(k)])`` on the L2-normalised vectors
  (as released). The released training never calls it (its keyword branch is unpublished); here it runs
  when ``options.keywords`` is on and a caption has keywords.
* ``keyword_feature`` (only with ``options.keywords``): keyword phrases through a GRU over the shared word
  embedding, the phrase vectors averaged, then an MLP (the paper's keyword branch; not in the released code,
  so its names are ours); ``cross_attention_k`` attends it like the sentence.

The score is ``cos(F_v, F_t)`` for every (image, caption) pair: ``[images, captions]`` as released; the engine
transposes it to ``[captions, images]``. :meth:`AMFMN.trace` returns every named intermediate.

Weights: ImageNet ResNet-18 (``backbone.checkpoint``, or ``backbone.pretrained: "imagenet"`` from torch's
checkpoint cache, e.g. the released ``layers/resnet18-5c106cde.pth``) and skip-thoughts
(``options.skipthoughts_dir``) are loaded when named; a named file that is missing fails at once with what
to pass instead. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet18

from dvtr_data.baselines.engine.distributed import convert_batchnorm
from dvtr_data.errors import InputError, ModelError

from .config import AMFMNOptions, AMFMNSizes
from .text import Vocabulary

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET18_FILES = ("resnet18-5c106cde.pth", "resnet18-f37072fd.pth")  # the released file; torchvision's current one


def l2norm(x: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """``x / (||x|| + eps)`` (the released ``l2norm``: eps added to the norm, not clamped)."""
    return x / (x.pow(2).sum(dim=dim, keepdim=True).sqrt() + eps)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = -1, eps: float = 1e-8) -> Tensor:
    """The released ``cosine_similarity``: the product of the norms clamped at ``eps``."""
    w12 = (x1 * x2).sum(dim)
    return w12 / (x1.norm(2, dim) * x2.norm(2, dim)).clamp(min=eps)


# ---------------------------------------------------------------------------------------------- visual
class ExtractFeature(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        # BatchNorm layers that take the global batch's statistics across processes (plain BatchNorm2d in one
        # process; the same state-dict keys, so torchvision and released weights load either way)
        self.resnet = convert_batchnorm(resnet18(weights=None))
        self.linear = nn.Linear(512, embed_dim)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(img))))
        f1 = r.layer1(x)
        f2 = r.layer2(f1)
        f3 = r.layer3(f2)
        f4 = r.layer4(f3)
        lower = torch.cat([f1, F.interpolate(f2, scale_factor=2, mode="nearest")], dim=1)
        higher = torch.cat([f3, F.interpolate(f4, scale_factor=2, mode="nearest")], dim=1)
        solo = self.linear(f4.flatten(2).mean(dim=-1))
        return lower, higher, solo


class VSAModule(nn.Module):
    """Multi-scale visual self-attention (released ``VSA_Module``)."""

    def __init__(self, sizes: AMFMNSizes, image_size: int) -> None:
        super().__init__()
        cin, cout = sizes.multiscale_input_channel, sizes.multiscale_output_channel
        self.LF_conv = nn.Conv2d(192, cin, kernel_size=3, stride=4)
        self.HF_conv = nn.Conv2d(768, cin, kernel_size=1, stride=1)
        self.conv1x1_1 = nn.Conv2d(2 * cin, cout, kernel_size=1)
        self.conv1x1_2 = nn.Conv2d(2 * cin, cout, kernel_size=1)
        side = image_size // 16
        self.solo_attention = nn.Linear(cout * side * side, sizes.embed_dim)

    def forward(self, lower: Tensor, higher: Tensor, solo: Tensor) -> tuple[Tensor, Tensor]:
        """``(F_v, salient mask)``."""
        lower = self.LF_conv(lower)
        higher = self.HF_conv(higher)
        concat = torch.cat([lower, higher], dim=1)
        concat = higher.mean(dim=1, keepdim=True).expand_as(concat) + concat
        main = self.conv1x1_1(concat)
        b = concat.shape[0]
        attn = torch.sigmoid(self.conv1x1_2(concat).view(b, 1, -1)).view(b, 1, main.shape[2], main.shape[3])
        atted = (main * attn).reshape(b, -1)
        mask = torch.sigmoid(self.solo_attention(atted))
        return solo * mask, mask


# ---------------------------------------------------------------------------------------------- text
class BayesianGRUCell(nn.Module):
    """The skip-thoughts GRU cell: input maps with bias, hidden maps without, one dropout mask per sequence.

    The masks come from torch's RNG, or, given one seed per sequence (``noise``), from that seed alone: a
    sequence's masks then do not depend on which other sequences share its batch or its process, which is what
    lets a run over several processes drop exactly what one process drops (the family derives the seeds from
    the step and the caption's position in the split).
    """

    def __init__(self, input_size: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.hidden_size, self.dropout = hidden_size, dropout
        self.weight_ir = nn.Linear(input_size, hidden_size)
        self.weight_ii = nn.Linear(input_size, hidden_size)
        self.weight_in = nn.Linear(input_size, hidden_size)
        self.weight_hr = nn.Linear(hidden_size, hidden_size, bias=False)
        self.weight_hi = nn.Linear(hidden_size, hidden_size, bias=False)
        self.weight_hn = nn.Linear(hidden_size, hidden_size, bias=False)

    def _masks(self, like: Tensor, width: int) -> list[Tensor | None]:
        if not self.training or self.dropout <= 0:
            return [None, None, None]
        keep = 1.0 - self.dropout
        return [torch.empty(like.shape[0], width, device=like.device).bernoulli_(keep) / keep for _ in range(3)]

    def _seeded_masks(self, like: Tensor, noise: Sequence[int]) -> tuple[list[Tensor | None], list[Tensor | None]]:
        """Input and hidden masks, row ``i`` drawn from a generator seeded with ``noise[i]`` (on the CPU, so the
        draw is the same on every device)."""
        if not self.training or self.dropout <= 0:
            return [None, None, None], [None, None, None]
        if len(noise) != like.shape[0]:
            raise ModelError(f"{len(noise)} dropout seeds for {like.shape[0]} sequences")
        keep = 1.0 - self.dropout
        d, h = like.shape[-1], self.hidden_size
        rows = [torch.rand(3 * (d + h), generator=torch.Generator().manual_seed(int(s))) for s in noise]
        u = torch.stack(rows) if rows else torch.empty(0, 3 * (d + h))
        masks = ((u < keep).to(like.dtype) / keep).to(like.device)
        parts = list(masks.split([d, d, d, h, h, h], dim=1))
        return [parts[0], parts[1], parts[2]], [parts[3], parts[4], parts[5]]

    def run(self, x: Tensor, steps: int, noise: Sequence[int] | None = None) -> Tensor:
        """Hidden states ``[B, steps, H]`` over the first ``steps`` positions of ``x [B, L, D]`` (``noise``: one
        dropout seed per sequence, else torch's RNG)."""
        b = x.shape[0]
        hx = x.new_zeros(b, self.hidden_size)
        if noise is None:
            mx = self._masks(x, x.shape[-1])
            mh = self._masks(x, self.hidden_size)
        else:
            mx, mh = self._seeded_masks(x, noise)

        def drop(v: Tensor, m: Tensor | None) -> Tensor:
            return v if m is None else v * m

        out = []
        for i in range(steps):
            xi = x[:, i]
            r = torch.sigmoid(self.weight_ir(drop(xi, mx[0])) + self.weight_hr(drop(hx, mh[0])))
            z = torch.sigmoid(self.weight_ii(drop(xi, mx[1])) + self.weight_hi(drop(hx, mh[1])))
            n = torch.tanh(self.weight_in(drop(xi, mx[2])) + r * self.weight_hn(drop(hx, mh[2])))
            hx = (1 - z) * n + z * hx
            out.append(hx)
        return torch.stack(out, dim=1)


class BayesianGRU(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.gru_cell = BayesianGRUCell(input_size, hidden_size, dropout)


class UniSkip(nn.Module):
    """The released ``seq2vec`` (skip-thoughts BayesianUniSkip): the GRU state at each caption's last token."""

    def __init__(self, vocab_size: int, word_dim: int, hidden: int, dropout: float, fixed_emb: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.embedding.weight.requires_grad = not fixed_emb
        self.rnn = BayesianGRU(word_dim, hidden, dropout)

    def forward(self, ids: Tensor, noise: Sequence[int] | None = None) -> Tensor:
        lengths = (ids != 0).sum(1).clamp(min=1)  # skip-thoughts' _process_lengths: positions that are not 0
        states = self.rnn.gru_cell.run(self.embedding(ids), int(lengths.max()), noise)
        return states[torch.arange(ids.shape[0], device=ids.device), lengths - 1]


class SkipthoughtsEmbedding(nn.Module):
    """Released ``Skipthoughts_Embedding_Module``: ``relu(to_out(seq2vec(ids)))``."""

    def __init__(self, vocab_size: int, word_dim: int, hidden: int, embed_dim: int, dropout: float, fixed_emb: bool) -> None:
        super().__init__()
        self.seq2vec = UniSkip(vocab_size, word_dim, hidden, dropout, fixed_emb)
        self.to_out = nn.Linear(hidden, embed_dim)

    @property
    def embedding(self) -> nn.Embedding:
        return self.seq2vec.embedding

    def forward(self, ids: Tensor, noise: Sequence[int] | None = None) -> Tensor:
        return F.relu(self.to_out(self.seq2vec(ids, noise)))


class BiGRUEmbedding(nn.Module):
    """The paper's sentence branch: BiGRU, directions averaged per step, steps averaged (valid steps only)."""

    def __init__(self, vocab_size: int, word_dim: int, hidden: int, embed_dim: int, fixed_emb: bool) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.embedding.weight.requires_grad = not fixed_emb
        self.rnn = nn.GRU(word_dim, hidden, batch_first=True, bidirectional=True)
        self.to_out = nn.Linear(hidden, embed_dim) if hidden != embed_dim else nn.Identity()

    def forward(self, ids: Tensor, noise: Sequence[int] | None = None) -> Tensor:
        """``noise`` is accepted for the skip-thoughts encoder's signature; this branch has no dropout."""
        lengths = (ids != 0).sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        h = out.shape[-1] // 2
        steps = (out[..., :h] + out[..., h:]) / 2
        valid = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).to(steps.dtype)
        return self.to_out((steps * valid[..., None]).sum(1) / lengths[:, None].to(steps.dtype))


class KeywordEmbedding(nn.Module):
    """The paper's keyword branch: each phrase through a GRU on the shared word embedding, averaged, MLP."""

    def __init__(self, word_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(word_dim, embed_dim, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, embedding: nn.Embedding, keywords: Tensor) -> tuple[Tensor, Tensor]:
        """``keywords [T, K, L]`` ids (0 pads) -> ``([T, embed], has_keywords [T])``."""
        t, k, length = keywords.shape
        flat = keywords.reshape(t * k, length)
        lengths = (flat != 0).sum(1)
        present = lengths > 0
        phrase = torch.zeros(t * k, self.rnn.hidden_size, device=keywords.device, dtype=embedding.weight.dtype)
        if bool(present.any()):
            packed = nn.utils.rnn.pack_padded_sequence(
                embedding(flat[present]), lengths[present].cpu(), batch_first=True, enforce_sorted=False
            )
            _, h = self.rnn(packed)
            phrase[present] = h[-1]
        phrase = phrase.view(t, k, -1)
        count = present.view(t, k).sum(1)
        mean = phrase.sum(1) / count.clamp(min=1)[:, None].to(phrase.dtype)
        return self.mlp(mean), count > 0


# ---------------------------------------------------------------------------------------------- fusion
class CrossAttention(nn.Module):
    """Visual-guided attention (VGA): ``[V, embed]`` visual and ``[T, embed]`` text -> ``[V, T, embed]``."""

    def __init__(self, att_type: str, dim: int) -> None:
        super().__init__()
        self.att_type = att_type
        if att_type == "soft_att":
            self.cross_attention = nn.Sequential(nn.Linear(dim, dim), nn.Sigmoid())
        elif att_type == "fusion_att":
            self.cross_attention_fc1 = nn.Sequential(nn.Linear(2 * dim, dim), nn.Sigmoid())
            self.cross_attention_fc2 = nn.Sequential(nn.Linear(2 * dim, dim))
        elif att_type == "similarity_att":
            self.fc_visual = nn.Sequential(nn.Linear(dim, dim))
            self.fc_text = nn.Sequential(nn.Linear(dim, dim))
        else:
            raise ModelError(f"unknown AMFMN attention {att_type!r}")

    def forward(self, visual: Tensor, text: Tensor) -> Tensor:
        v, t = visual.shape[0], text.shape[0]
        if self.att_type == "soft_att":
            gate = self.cross_attention(visual)
            return gate[:, None, :].expand(-1, t, -1) * text[None, :, :].expand(v, -1, -1)
        if self.att_type == "fusion_att":
            fused = torch.cat([visual[:, None, :].expand(-1, t, -1), text[None, :, :].expand(v, -1, -1)], dim=-1)
            return self.cross_attention_fc1(fused) * self.cross_attention_fc2(fused)
        vis = self.fc_visual(visual)[:, None, :].expand(-1, t, -1)
        txt = self.fc_text(text)[None, :, :].expand(v, -1, -1)
        return torch.sigmoid(vis * txt) * txt


class VGMFFusion(nn.Module):
    """Dynamic fusion of the attended sentence and keywords (released ``VGMF_Fusion``)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * embed_dim, embed_dim)

    def forward(self, sv: Tensor, kv: Tensor) -> Tensor:
        sv, kv = l2norm(sv), l2norm(kv)
        w = torch.sigmoid(self.gate(torch.cat([sv, kv], dim=-1)))
        return w * sv + (1 - w) * kv


# ---------------------------------------------------------------------------------------------- model
@dataclass
class AMFMNTrace:
    """Every intermediate of one pass (``[V, ...]`` images, ``[T, ...]`` captions, ``[V, T, ...]`` pairs)."""

    lower_feature: Tensor
    higher_feature: Tensor
    solo_feature: Tensor  # v_g
    salient_mask: Tensor
    mvsa_feature: Tensor  # F_v
    text_feature: Tensor  # s_g
    sentence_attended: Tensor  # s_v [V, T, E]
    keyword_feature: Tensor | None  # k_g
    keyword_attended: Tensor | None  # k_v
    fused_text: Tensor  # F_t [V, T, E]
    similarity: Tensor  # [V, T] cosine

    def intermediates(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, Tensor)}


class AMFMN(nn.Module):
    def __init__(self, att_type: str, vocab_size: int, *, options: AMFMNOptions | None = None,
                 sizes: AMFMNSizes | None = None, image_size: int = 256) -> None:
        super().__init__()
        self.options = options or AMFMNOptions()
        self.sizes = sizes or AMFMNSizes()
        self.image_size = image_size
        if image_size % 32:
            raise ModelError(f"AMFMN needs an input size divisible by 32 (ResNet stages and the x2 upsampling), got {image_size}")
        o, s = self.options, self.sizes
        embed = s.embed_dim
        self.extract_feature = ExtractFeature(embed)
        self.mvsa = VSAModule(s, image_size)
        word_dim, hidden = s.text_sizes(o.text_encoder)
        if o.text_encoder == "skipthoughts":
            self.text_feature: nn.Module = SkipthoughtsEmbedding(vocab_size, word_dim, hidden, embed, o.text_dropout, o.fixed_emb)
        else:
            self.text_feature = BiGRUEmbedding(vocab_size, word_dim, hidden, embed, o.fixed_emb)
        self.cross_attention_s = CrossAttention(att_type, embed)
        self.vgmf_gate = VGMFFusion(embed)
        if o.keywords:
            self.keyword_feature = KeywordEmbedding(word_dim, embed)
            self.cross_attention_k = CrossAttention(att_type, embed)

    # -------------------------------------------------------------- stages
    def encode_image(self, img: Tensor) -> Tensor:
        """``F_v [V, embed]`` of ImageNet-normalised images ``[V, 3, S, S]``."""
        lower, higher, solo = self.extract_feature(img)
        return self.mvsa(lower, higher, solo)[0]

    def encode_text(self, ids: Tensor, noise: Sequence[int] | None = None) -> Tensor:
        """``s_g [T, embed]`` of token ids ``[T, L]`` (0 pads); ``noise``: one dropout seed per caption (training)."""
        out: Tensor = self.text_feature(ids) if noise is None else self.text_feature(ids, noise)
        return out

    def encode_keywords(self, keywords: Tensor) -> tuple[Tensor, Tensor]:
        return self.keyword_feature(self.text_feature.embedding, keywords)

    def fuse(self, visual: Tensor, text: Tensor, keywords: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``(s_v, F_t)``, both ``[V, T, embed]``."""
        sv = self.cross_attention_s(visual, text)
        if keywords is None:
            return sv, sv
        kg, has = keywords
        kv = self.cross_attention_k(visual, kg)
        fused = self.vgmf_gate(sv, kv)
        return sv, torch.where(has[None, :, None], fused, sv)

    def scores(self, visual: Tensor, text: Tensor, keywords: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``[V, T]`` cosine of ``F_v`` and each image-guided ``F_t``."""
        _, ft = self.fuse(visual, text, keywords)
        return cosine_similarity(visual[:, None, :].expand_as(ft), ft)

    def forward(self, img: Tensor, ids: Tensor, keywords: Tensor | None = None) -> Tensor:
        """``[V, T]`` scores (the released ``BaseModel.forward``, ``text_lens`` unused there too)."""
        kw = self.encode_keywords(keywords) if keywords is not None and self.options.keywords else None
        return self.scores(self.encode_image(img), self.encode_text(ids), kw)

    def trace(self, img: Tensor, ids: Tensor, keywords: Tensor | None = None) -> AMFMNTrace:
        """One pass with every intermediate kept (for reference tensors)."""
        lower, higher, solo = self.extract_feature(img)
        fv, mask = self.mvsa(lower, higher, solo)
        sg = self.encode_text(ids)
        kw = self.encode_keywords(keywords) if keywords is not None and self.options.keywords else None
        sv, ft = self.fuse(fv, sg, kw)
        kv = self.cross_attention_k(fv, kw[0]) if kw is not None else None
        sim = cosine_similarity(fv[:, None, :].expand_as(ft), ft)
        return AMFMNTrace(lower, higher, solo, mask, fv, sg, sv, kw[0] if kw else None, kv, ft, sim)


# ---------------------------------------------------------------------------------------------- weights
def find_resnet18_weights(pretrained: str | None, checkpoint: str | None) -> Path | None:
    """The ImageNet ResNet-18 file to load, ``None`` for random init; a named but missing file fails now."""
    if checkpoint:
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            raise InputError(f"ResNet-18 weights {p} do not exist", hint="backbone.checkpoint names a torchvision resnet18 .pth file")
        return p
    if pretrained is None:
        return None
    if pretrained != "imagenet":
        raise InputError(f"AMFMN's backbone.pretrained must be 'imagenet' or null, got {pretrained!r}")
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    for name in RESNET18_FILES:
        if (hub / name).is_file():
            return hub / name
    raise InputError(
        f"ImageNet ResNet-18 weights not found in {hub} ({' or '.join(RESNET18_FILES)}); nothing is downloaded",
        hint="pass the file with --set backbone.checkpoint=/path/resnet18-5c106cde.pth (the AMFMN repository ships it "
        "in layers/), or --set backbone.pretrained=null for a random backbone",
    )


def load_resnet18(model: AMFMN, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.extract_feature.resnet.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path} is not a torchvision ResNet-18 state dict: {exc}") from exc


def load_skipthoughts(model: AMFMN, folder: str | Path, vocab: Vocabulary) -> int:
    """Initialise the skip-thoughts encoder from ``dictionary.txt``, ``utable.npy``, ``uni_skip.npz`` (as the
    skipthoughts package maps them); returns the number of vocabulary words not in the dictionary (UNK rows)."""
    d = Path(folder).expanduser()
    files = {n: d / n for n in ("dictionary.txt", "utable.npy", "uni_skip.npz")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise InputError(
            f"skip-thoughts files missing: {', '.join(missing)}",
            hint="model.options.skipthoughts_dir must hold dictionary.txt, utable.npy and uni_skip.npz (the released "
            "config's seq2vec.dir_st), or be null for a random text encoder",
        )
    enc = model.text_feature
    if not isinstance(enc, SkipthoughtsEmbedding):
        raise InputError("skip-thoughts weights need model.options.text_encoder = skipthoughts")
    dico = {w.strip(): i for i, w in enumerate(files["dictionary.txt"].read_text(encoding="utf-8").splitlines())}
    table = np.load(files["utable.npy"], allow_pickle=False, encoding="latin1")
    p = np.load(files["uni_skip.npz"], allow_pickle=False)
    weight = torch.zeros_like(enc.seq2vec.embedding.weight)
    unknown = 0
    for word, idx in vocab.word2idx.items():
        row = dico.get(word)
        if row is None:
            unknown += 1
            row = dico["UNK"]
        weight[idx] = torch.from_numpy(np.asarray(table[row], dtype=np.float32))
    h = enc.seq2vec.rnn.gru_cell.hidden_size
    W, U = torch.from_numpy(p["encoder_W"]).t(), torch.from_numpy(p["encoder_U"]).t()
    b = torch.from_numpy(p["encoder_b"])
    cell = {
        "weight_ir.weight": W[:h], "weight_ii.weight": W[h:], "weight_in.weight": torch.from_numpy(p["encoder_Wx"]).t(),
        "weight_ir.bias": b[:h], "weight_ii.bias": b[h:], "weight_in.bias": torch.from_numpy(p["encoder_bx"]),
        "weight_hr.weight": U[:h], "weight_hi.weight": U[h:], "weight_hn.weight": torch.from_numpy(p["encoder_Ux"]).t(),
    }
    with torch.no_grad():
        enc.seq2vec.embedding.weight.copy_(weight)
        enc.seq2vec.rnn.gru_cell.load_state_dict({k: v.float() for k, v in cell.items()})
    return unknown


def released_key(key: str) -> str:
    """A released checkpoint key as ours (strips ``module.`` of DataParallel checkpoints)."""
    return key.removeprefix("module.")


def load_released_state_dict(model: AMFMN, state: dict[str, Any]) -> None:
    """Load a released checkpoint's ``model`` state dict (or the checkpoint itself) strictly."""
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    state = {released_key(k): v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"state dict does not fit AMFMN: {len(missing)} missing, {len(unexpected)} unexpected "
            f"(e.g. {(missing or unexpected)[0]})",
            hint="same attention type, vocabulary (model.options.vocab_path) and sizes as the checkpoint",
        )
