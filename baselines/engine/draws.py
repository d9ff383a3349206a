"""Random draws per training sample that depend on the sample, not on the process that trains it.

Across processes (``distributed.py``) each process runs its slice of the global batch. A layer that draws from
the process's RNG stream (``nn.Dropout``) gives a sample one mask in one process and another in two: the runs
then agree in distribution only. Here a sample's mask is a function of three things every process knows alike:

* the **step's seed**: one draw from torch's CPU RNG per training step (:func:`step_seed`), taken when the first
  layer of the step needs it. Every process seeds that RNG alike (``train.seed``) and draws alike, and
  ``last.pt`` stores its state, so the sequence depends on the seed and the step only: resumed runs and runs
  over any number of processes see the same one;
* the sample's **position in the training split** (the caption's index, which the loops shard);
* the **layer**: its name in the model (:func:`name_layers`) and how many times it has drawn in this step.

:func:`per_sample` opens a step's context with the positions of the rows of the forward pass; inside it a
:class:`SampleDropout` in training mode draws row ``b``'s mask from a generator seeded by (step seed, position
``b``, layer, call), so a row's mask does not depend on the rows beside it. Outside the context it *is*
``nn.Dropout`` (its forward), so evaluation, the authors' fixtures and code that trains without the engine's
loops are unchanged to the bit; it has no parameters or buffers, so state-dict keys do not change.

Why not ``torch.func``'s randomness modes or a batch-wide generator: a batch-wide stream gives row ``b`` the
draws at offset ``b``, which move when the batch is sliced; the per-row generators cost one small ``rand`` per
row and layer (MSAM: 2 layers x 64 rows of 7 x 512 numbers per step), negligible next to the forward pass.
AMFMN draws its crops and skip-thoughts masks the same way with its own seeds (``amfmn/family.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from dvtr_data.errors import ModelError

from . import distributed as ddp


def step_seed() -> int:
    """One number from torch's CPU RNG: a training step's seed (the same draw as AMFMN's ``step_seed``)."""
    return int(torch.randint(0, 2**62, (1,)).item())


def layer_key(name: str) -> int:
    """A stable number for a layer name (CRC-32: Python's ``hash`` of a string changes per process)."""
    return zlib.crc32(name.encode("utf-8"))


def row_seed(step: int, position: int, layer: str, call: int = 0) -> int:
    """The seed of one row's draw: numpy's SeedSequence mixes (step seed, position, layer, call) into 64 bits."""
    mixed = np.random.SeedSequence([int(step), int(position), layer_key(layer), int(call)])
    return int(mixed.generate_state(1, dtype=np.uint64)[0])


@dataclass
class _Step:
    """The rows of the current forward pass and the step's seed (drawn on first use)."""

    positions: tuple[int, ...]
    seed: int | None = None
    calls: dict[str, int] = field(default_factory=dict)

    def seeds(self, layer: str, rows: int) -> list[int]:
        if rows != len(self.positions):
            raise ModelError(
                f"layer {layer!r} drew masks for {rows} rows inside a step of {len(self.positions)} samples",
                hint="per-sample draws need dim 0 of the layer's input to be the step's samples, in order",
            )
        if self.seed is None:
            self.seed = step_seed()
        call = self.calls.get(layer, 0)
        self.calls[layer] = call + 1
        return [row_seed(self.seed, p, layer, call) for p in self.positions]


_CURRENT: ContextVar[_Step | None] = ContextVar("dvtr_per_sample_draws", default=None)


@contextmanager
def per_sample(positions: Sequence[int], *, seed: int | None = None) -> Iterator[None]:
    """Inside: every :class:`SampleDropout` in training mode draws row ``b``'s mask from ``positions[b]``.

    ``positions``: the training split positions of the forward pass's rows (this process's slice of the global
    batch). ``seed``: the step's seed; by default drawn from torch's CPU RNG when a layer first needs it (a step
    whose layers draw nothing, e.g. dropout 0, leaves the RNG untouched).
    """
    token = _CURRENT.set(_Step(tuple(int(p) for p in positions), seed))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def row_masks(shape: Sequence[int], p: float, layer: str, *, dtype: torch.dtype, device: torch.device) -> Tensor | None:
    """Scaled keep masks (0 or ``1 / (1 - p)``) of ``shape``, row ``b`` from ``positions[b]``; None outside
    :func:`per_sample`."""
    step = _CURRENT.get()
    if step is None:
        return None
    rows, width = int(shape[0]), int(np.prod(shape[1:], dtype=np.int64))
    seeds = step.seeds(layer, rows)
    keep = 1.0 - p
    if keep <= 0.0:
        return torch.zeros(tuple(shape), dtype=dtype, device=device)
    u = torch.stack([torch.rand(width, generator=torch.Generator().manual_seed(s)) for s in seeds]) if rows else \
        torch.empty(0, width)
    return ((u < keep).to(dtype) / keep).reshape(tuple(shape)).to(device)


class SampleDropout(nn.Dropout):
    """``nn.Dropout`` whose masks, inside :func:`per_sample`, are drawn per row from the sample and the layer.

    Elements are zeroed with probability ``p`` and the rest scaled by ``1 / (1 - p)``, as ``nn.Dropout`` does; the
    masks come from per-row CPU generators (the same on every device) instead of the process's RNG. The layer's
    name (``layer``) enters the seed, so two layers of one model draw differently: :func:`name_layers` sets it to
    the module's qualified name. Outside the context, in evaluation, or with ``p = 0`` it is ``nn.Dropout``.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False, *, layer: str = "") -> None:
        super().__init__(p, inplace)
        self.layer = layer

    def forward(self, input: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or _CURRENT.get() is None:
            out: Tensor = super().forward(input)
            return out
        if not self.layer:
            raise ModelError("a SampleDropout without a layer name drew per-sample masks (call draws.name_layers)")
        mask = row_masks(input.shape, self.p, self.layer, dtype=input.dtype, device=input.device)
        assert mask is not None  # inside the context
        return input.mul_(mask) if self.inplace else input * mask

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, layer={self.layer!r}"


def name_layers(module: nn.Module, prefix: str = "") -> nn.Module:
    """Name every :class:`SampleDropout` under ``module`` by its qualified name (``prefix`` first); ``module``."""
    for name, child in module.named_modules():
        if isinstance(child, SampleDropout):
            child.layer = ".".join(part for part in (prefix, name) if part) or "dropout"
    return module


def align_rng() -> None:
    """Rank 0's CPU RNG state in every process (identity in one process).

    The step seeds are drawn alike only if every process's RNG is alike when training starts; work that only
    rank 0 does before it (filling a feature cache through a ``DataLoader``, which draws its base seed) would
    otherwise leave the processes' streams apart.
    """
    if ddp.active():
        torch.random.set_rng_state(ddp.broadcast_object(torch.random.get_rng_state()))
