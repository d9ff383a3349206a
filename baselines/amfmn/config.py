"""AMFMN options and sizes, read from a baseline config's ``model`` section (``preset``, ``options``, ``sizes``).

``preset`` is the released code's ``cross_attention.att_type``: ``soft_att``, ``fusion_att`` or
``similarity_att`` (the paper's AMFMN-soft, -fusion and -sim). Defaults are the released ``RSITMD_AMFMN.yaml``
(multiscale 3 -> 1 channels, embed 512, skip-thoughts BayesianUniSkip with dropout 0.25, lr 2e-4 decayed by
0.7 every 20 epochs) and the paper's loss (dynamic margin, gamma 0.6, beta 5: its best RSITMD row).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from dvtr_data.errors import UsageError

AttType = Literal["soft_att", "fusion_att", "similarity_att"]
ATT_TYPES: tuple[str, ...] = get_args(AttType)
TextEncoder = Literal["skipthoughts", "bigru"]
LossKind = Literal["dynamic", "fixed"]


@dataclass(frozen=True)
class AMFMNOptions:
    """Behaviour (``model.options``).

    Attributes:
        loss: ``dynamic`` (the paper's variable margin from prior caption similarity) or ``fixed`` (the released
            code's constant ``margin``).
        margin: the fixed margin (released: 0.2).
        gamma, beta: the dynamic margin ``gamma * (e^beta - e^(beta*S)) / (e^beta - 1)`` (paper's best: 0.6, 5).
        max_violation: hardest negative only (VSE++) instead of the sum over the batch (released: sum).
        text_encoder: ``skipthoughts`` (the released BayesianUniSkip GRU, 620 -> 2400, then Linear to the embed
            size; its parameter names) or ``bigru`` (the paper's text: 300-d words, BiGRU 512, directions and
            steps averaged).
        skipthoughts_dir: folder with ``dictionary.txt``, ``utable.npy`` and ``uni_skip.npz`` (the released
            config's ``seq2vec.dir_st``) to initialise the skip-thoughts encoder; ``None``: random init.
        text_dropout: the BayesianUniSkip dropout (0.25).
        fixed_emb: freeze the word embeddings (released: False).
        keywords: use the keyword branch and the VGMF gate (the paper's joint input); keywords are the words of
            ``clips.category`` (clips without one fall back to the sentence alone).
        vocab_path: an AMFMN vocabulary JSON (``word2idx``) to use instead of building one from the training
            captions (needed to load a released checkpoint).
        vocab_threshold: words seen fewer times in the training captions are ``<unk>`` (released: 5).
        augment: training images are resized to 278/256 of the input size and randomly cropped (released); else
            resized to the input size as in evaluation.
        lr_decay, lr_update_epoch: the learning rate is multiplied by ``lr_decay`` at the end of every
            ``lr_update_epoch``-th epoch (released: 0.7 every 20).
    """

    loss: LossKind = "dynamic"
    margin: float = 0.2
    gamma: float = 0.6
    beta: float = 5.0
    max_violation: bool = False
    text_encoder: TextEncoder = "skipthoughts"
    skipthoughts_dir: str | None = None
    text_dropout: float = 0.25
    fixed_emb: bool = False
    keywords: bool = False
    vocab_path: str | None = None
    vocab_threshold: int = 5
    augment: bool = True
    lr_decay: float = 0.7
    lr_update_epoch: int = 20

    def __post_init__(self) -> None:
        if self.loss not in get_args(LossKind):
            raise UsageError(f"model.options.loss must be dynamic or fixed, got {self.loss!r}")
        if self.text_encoder not in get_args(TextEncoder):
            raise UsageError(f"model.options.text_encoder must be skipthoughts or bigru, got {self.text_encoder!r}")
        if not 0.0 < self.gamma <= 1.0 or self.margin < 0:
            raise UsageError("model.options.gamma must be in (0, 1] and margin >= 0")
        if not 0.0 <= self.text_dropout < 1.0:
            raise UsageError("model.options.text_dropout must be in [0, 1)")
        if self.vocab_threshold < 1 or self.lr_update_epoch < 1 or not 0 < self.lr_decay <= 1:
            raise UsageError("vocab_threshold and lr_update_epoch must be >= 1, lr_decay in (0, 1]")


@dataclass(frozen=True)
class AMFMNSizes:
    """Shapes (``model.sizes``); ``None`` word/hidden sizes take the text encoder's (620/2400 or 300/512)."""

    embed_dim: int = 512
    multiscale_input_channel: int = 3
    multiscale_output_channel: int = 1
    word_dim: int | None = None
    text_hidden: int | None = None

    def text_sizes(self, encoder: str) -> tuple[int, int]:
        """``(word_dim, hidden)`` of ``encoder``."""
        if encoder == "skipthoughts":
            return self.word_dim or 620, self.text_hidden or 2400
        return self.word_dim or 300, self.text_hidden or 512


def parse(preset: str, options: dict[str, Any], sizes: dict[str, Any]) -> tuple[str, AMFMNOptions, AMFMNSizes]:
    """``(att_type, options, sizes)`` of a config's model section; unknown keys are usage errors."""
    if preset not in ATT_TYPES:
        raise UsageError(f"AMFMN model.preset must be one of {', '.join(ATT_TYPES)}, got {preset!r}")
    for values, cls, where in ((options, AMFMNOptions, "model.options"), (sizes, AMFMNSizes, "model.sizes")):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}", hint=f"valid keys: {', '.join(sorted(known))}")
    return preset, AMFMNOptions(**options), AMFMNSizes(**sizes)
