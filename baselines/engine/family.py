"""Model families: what the baseline engine must know about a kind of model to train and score it.

A baseline config names its family (``"family": "amfmn"``; default ``"msam"``, so every older config means what
it meant). The engine looks the family up here and asks it for everything model-specific; run folders,
metrics, reports, the results table and resuming stay the engine's.

How a new family plugs in
-------------------------
1. Write a subclass of :class:`ModelFamily` in the family's own package (e.g. ``baselines/mcsan/family.py``)
   and set its class attributes:

   * ``name``: the config value (``"mcsan"``), ``title`` (a few words for tables);
   * ``needs``: which inputs of a clip it reads, a subset of :data:`FEATURES` (``"frames"``: sampled video
     frames, ``"keyframe"``: one image per clip from ``clips.keyframe_paths`` (the middle frame when a clip has
     none), ``"tokens"``: caption text, ``"keywords"``: ``clips.category`` words);
   * ``protocols``: ``{protocol: what it means for this family}`` for the protocols it reports (``"paper"``
     is the protocol of the family's own paper, ``"single"`` is each caption scored alone), and ``ranking``:
     which video-to-text ranking of ``metrics.retrieval_metrics`` each protocol uses (``"paper"``: MSAM's
     best-caption groups with the authors' ties; ``"single"``: a video's best own caption among all captions,
     which is the image-to-text rank of AMFMN's and most retrieval papers' code).

2. Implement the four model hooks (the generic loop in ``generic.py`` calls them):

   * ``build_model(cfg, train_texts)``: the ``nn.Module``, seeded by ``cfg.train.seed``; ``train_texts`` are the
     training captions in split order (empty for a zero-shot run), for families that build a vocabulary from
     them; it must be a pure function of its arguments, so that a resumed run rebuilds the same model;
   * ``prepare(model, cfg, split, train=..., device=..., progress=...)``: whatever the family reads of a
     ``data.SplitData`` (decoded keyframes, token ids, cached features), in any object; once per split and run;
   * ``loss(model, inputs, batch)``: ``{"total": scalar, ...named terms}`` for a list of caption positions of
     the training split (each caption brings its clip ``split.caption_clip[pos]``, so two captions of one clip
     in a batch are each other's negatives, as the reference codes have it);
   * ``similarity(model, inputs, protocol)``: the ``[captions, clips]`` score matrix of a prepared split in one
     of the family's protocols, higher is more similar (called under ``no_grad``, model in eval mode).

   Optional: ``validate`` (config checks with the family's own option classes, before any folder is made),
   ``optimizer`` (default Adam on the trainable parameters at ``train.lr``), ``learning_rate`` (per epoch;
   default constant), ``similarity_key`` (protocols that share one score matrix), ``checkpoint_extra`` (what a
   checkpoint needs beside the weights, e.g. a vocabulary), ``describe``.

3. Add ``"<name>": "dvtr_data.baselines.<package>.family:<Class>"`` to :data:`FAMILIES` below (imported on first
   use) and register rows as JSON files in ``configs/`` with ``"family": "<name>"``. Family settings go in
   ``model.preset`` (a variant name), ``model.options`` and ``model.sizes`` (free-form dicts the family checks);
   ``train`` (epochs, batch_size, lr, seed, max_grad_norm, drop_last) and ``eval`` (protocols, select_metric)
   keep their meaning; ``backbone`` names the visual backbone and its weights.

4. Every registered row is trained and scored in ``tests/test_engine_rows.py`` on a tiny generated dataset:
   add the row's tiny overrides (small sizes, one or two epochs) to ``TINY_FAMILY`` there.

A family may instead override :meth:`ModelFamily.execute` to keep a loop of its own: MSAM does (its feature
cache, backbone modes and BertAdam live in ``train.py``).

This module imports no torch: configs check family names without loading a model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from dvtr_data.errors import UsageError

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from dvtr_data.dataset import Dataset

    from .config import BaselineConfig
    from .data import SplitData
    from .runs import RunFolder
    from .train import Log, Progress, RunResult

FEATURES = ("frames", "keyframe", "tokens", "keywords")

# name -> "module:Class", imported on first use.
FAMILIES: dict[str, str] = {
    "msam": "dvtr_data.baselines.engine.family:MSAMFamily",
    "amfmn": "dvtr_data.baselines.amfmn.family:AMFMNFamily",
    "mcsan": "dvtr_data.baselines.mcsan.family:MCSANFamily",
}


def family_names() -> list[str]:
    """Known family names, sorted."""
    return sorted(FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family object of ``name`` (imports its module)."""
    target = FAMILIES.get(name)
    if target is None:
        raise UsageError(f"unknown model family {name!r}", hint=f"choose one of {', '.join(family_names())}")
    module, _, cls = target.partition(":")
    family = getattr(import_module(module), cls)()
    if not isinstance(family, ModelFamily):
        raise TypeError(f"{target} is not a ModelFamily")
    return family


class ModelFamily(ABC):
    """One kind of model the engine trains and scores (see the module docstring for how to add one)."""

    name: ClassVar[str]
    title: ClassVar[str]
    needs: ClassVar[frozenset[str]]
    protocols: ClassVar[dict[str, str]]
    ranking: ClassVar[dict[str, Literal["paper", "single"]]]
    # True when ``loss`` gathers the features of its score matrix across processes (``distributed.gather_cat``)
    # and weights its per-sample terms (``distributed.sample_weight``): only then does a run over several
    # processes train as one process on the global batch; the generic loop refuses the others under torchrun.
    gathers_across_processes: ClassVar[bool] = False

    # ------------------------------------------------------------------ model hooks
    @abstractmethod
    def build_model(self, cfg: BaselineConfig, train_texts: list[str]) -> nn.Module:
        """The model of ``cfg``, initialised (seeded by ``cfg.train.seed``)."""

    @abstractmethod
    def prepare(
        self, model: nn.Module, cfg: BaselineConfig, split: SplitData, *, train: bool, device: torch.device,
        progress: Progress | None = None,
    ) -> Any:
        """What the model reads of ``split`` (computed once per split and run)."""

    @abstractmethod
    def loss(self, model: nn.Module, inputs: Any, batch: list[int]) -> dict[str, Tensor]:
        """Loss terms of a batch of training caption positions; ``"total"`` is minimised."""

    @abstractmethod
    def similarity(self, model: nn.Module, inputs: Any, protocol: str) -> Tensor:
        """``[captions, clips]`` scores of a prepared split."""

    # ------------------------------------------------------------------ optional hooks
    def validate(self, cfg: BaselineConfig) -> None:  # noqa: B027 (optional hook: every config passes)
        """Family-specific config checks, before any folder is written."""

    def optimizer(self, model: nn.Module, cfg: BaselineConfig) -> torch.optim.Optimizer:
        import torch

        return torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)

    def learning_rate(self, cfg: BaselineConfig, epoch: int) -> float:
        """Learning rate of 0-based ``epoch`` (set at its start)."""
        return cfg.train.lr

    def similarity_key(self, protocol: str) -> str:
        """Protocols with equal keys share one score matrix (default: each its own)."""
        return protocol

    def checkpoint_extra(self, model: nn.Module) -> dict[str, Any]:
        """What a checkpoint needs beside the state dict to be used outside the engine (e.g. a vocabulary);
        saved under ``"extra"`` in ``best.pt`` and ``last.pt``. Plain Python values only (``weights_only`` loads)."""
        return {}

    def describe(self, cfg: BaselineConfig) -> dict[str, str]:
        """``model``, ``backbone`` and ``mode`` cells for listings."""
        b = cfg.backbone
        return {
            "model": f"{self.name}:{cfg.model.preset}",
            "backbone": f"{b.model}/{b.checkpoint and 'checkpoint' or b.pretrained or 'random'}",
            "mode": "zero-shot" if cfg.zero_shot else b.mode,
        }

    def protocol_label(self, protocol: str) -> str:
        """What ``protocol`` means for this family (the results table's protocol column)."""
        return f"{self.name} {protocol}: {self.protocols.get(protocol, 'not reported')}"

    def evaluate(self, model: nn.Module, inputs: Any, cfg: BaselineConfig, caption_clip: Tensor) -> dict[str, Any]:
        """``{protocol: {"t2v": metrics, "v2t": metrics}}`` for the configured protocols this family reports."""
        from .metrics import retrieval_metrics

        out: dict[str, Any] = {}
        scored: dict[str, Tensor] = {}
        for protocol in cfg.eval.protocols:
            if protocol not in self.protocols:
                continue
            key = self.similarity_key(protocol)
            if key not in scored:
                scored[key] = self.similarity(model, inputs, protocol)
            out[protocol] = retrieval_metrics(scored[key], caption_clip, protocol=self.ranking[protocol])
        return out

    def execute(
        self, run: RunFolder, cfg: BaselineConfig, ds: Dataset, request: dict[str, Any], dev: torch.device, *,
        progress: Progress | None, log: Log | None, resumed: bool,
    ) -> RunResult:
        """Train (unless zero-shot) and score: the generic loop of ``generic.py``."""
        from .generic import run_family

        return run_family(self, run, cfg, ds, request, dev, progress=progress, log=log, resumed=resumed)


class MSAMFamily(ModelFamily):
    """MSAM and its ablations, the CLIP4Clip rows included. Training and scoring keep the exact loop of
    ``train.py`` (feature cache, backbone modes, BertAdam, the authors' chunked paper protocol); the hooks
    here give other code the same view of MSAM as of any family."""

    name = "msam"
    title = "MSAM / CLIP4Clip"
    needs = frozenset({"frames", "tokens"})
    protocols: ClassVar[dict[str, str]] = {
        "paper": "32-caption chunks; v2t by a video's best caption",
        "single": "each caption alone; v2t ranks captions",
    }
    ranking: ClassVar[dict[str, Literal["paper", "single"]]] = {"paper": "paper", "single": "single"}
    gathers_across_processes = True  # train.py's loop; MSAM.trace_from_features gathers

    def build_model(self, cfg: BaselineConfig, train_texts: list[str]) -> nn.Module:
        from .train import build_model

        return build_model(cfg)

    def prepare(self, model: nn.Module, cfg: BaselineConfig, split: SplitData, *, train: bool,
                device: torch.device, progress: Progress | None = None) -> Any:
        from .train import Encoder

        return Encoder(model, cfg, device).split_features(split, progress).to(device)

    def loss(self, model: nn.Module, inputs: Any, batch: list[int]) -> dict[str, Tensor]:
        raise NotImplementedError("MSAM trains in train.py's own loop (MSAMFamily.execute)")

    def similarity(self, model: nn.Module, inputs: Any, protocol: str) -> Tensor:
        from .evaluate import paper_protocol_similarity, single_query_similarity

        if protocol == "paper":
            return paper_protocol_similarity(model, inputs)
        return single_query_similarity(model, inputs)

    def describe(self, cfg: BaselineConfig) -> dict[str, str]:
        row = super().describe(cfg)
        row["model"] = cfg.model.preset
        return row

    def execute(
        self, run: RunFolder, cfg: BaselineConfig, ds: Dataset, request: dict[str, Any], dev: torch.device, *,
        progress: Progress | None, log: Log | None, resumed: bool,
    ) -> RunResult:
        from .train import _execute

        return _execute(run, cfg, ds, request, dev, progress=progress, log=log, resumed=resumed)
