"""Training one baseline across processes (``torchrun --nproc-per-node N dvtr-data baseline ...``).

Data parallelism with the arithmetic of ``DistributedDataParallel``: every process holds the whole model, takes a
contiguous slice of each global batch (:func:`shard`), and after ``backward`` the gradients are averaged over
processes (:func:`average_gradients`, one flat all-reduce) before the optimiser steps, so every process takes
the same step. The loops call model methods other than ``forward`` (``losses_from_features``, a family's
``loss`` hook), which the ``DistributedDataParallel`` wrapper does not see; averaging the gradients here is
the same sum-then-divide the wrapper's reducer does, without its overlap of communication and backward (the
baselines' heads are small). gloo on CPU, nccl on GPU (:func:`init_from_env`).

Contrastive losses must see the global batch as negatives, as one process does. A model gathers the features
that enter its score matrix with :func:`gather_cat` and computes the *global* loss on every process; terms
that are per sample (MSAM's KL and slot diversity, MCSAN's attribute terms) stay local and are weighted by
:func:`sample_weight` so that their average over processes is the global mean. Gradients: every process
back-propagates the same global loss, so the gradient of a local feature is the gathered tensor's gradient
summed over processes at this process's rows (``N`` times the single-process gradient); averaging parameter
gradients over the ``N`` processes then gives the single-process gradient exactly, for parameters used before
the gather (``N`` times a local part, divided by ``N``, summed) and after it (the same full gradient on every
process). The MSAM authors' ``AllGather`` returns only the local slice of this process's own gradient (no sum
over processes) and their KL divides by the local batch, so their multi-GPU runs are not their one-GPU runs
(msam.md); this module reproduces the one-GPU behaviour.

Layers that normalise by batch statistics must see the global batch as well: :class:`GlobalBatchNorm2d`
(AMFMN's ResNet-18) all-reduces them, differentiably. Random draws per sample must not depend on the process
either (AMFMN seeds each sample's crop and dropout from the step and its position in the split).

Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) every function here is the identity or a
no-op, so the loops run unchanged in one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from dvtr_data.errors import UsageError

T = TypeVar("T")


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """The process that writes (run folder, dataset lock, cache, logs): rank 0, or the only process."""
    return rank() == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes (env:// rendezvous); returns this process's device.

    gloo for CPU, nccl for CUDA (each process on ``cuda:LOCAL_RANK``). Outside torchrun, or when the group
    is already initialised, nothing is joined and ``device`` is returned (its CUDA index set when in a group).
    """
    if env_world_size() <= 1:
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UsageError(
                f"process with local rank {local} has no GPU: torch sees {torch.cuda.device_count()}",
                hint="give --nproc-per-node at most the number of GPUs of the machine",
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if active():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills the feature cache), the others wait and then run it (cache hits)."""
    if not active():
        yield
        return
    if not is_main():
        dist.barrier()
    yield
    if is_main():
        dist.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every process (e.g. a run id made from the clock)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(batch: Sequence[int]) -> list[int]:
    """This process's contiguous slice of a global batch; the slices in rank order are the batch again.

    Contiguous (not strided) so that gathering the slices in rank order rebuilds the single-process order of
    the score matrix's rows. Sizes differ by at most one (a last short batch).
    """
    n, w, r = len(batch), world_size(), rank()
    start, stop = r * n // w, (r + 1) * n // w
    return list(batch[start:stop])


def _sizes(n: int, device: torch.device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device))
    return [int(s.item()) for s in sizes]


def _gather_padded(x: Tensor, sizes: list[int]) -> Tensor:
    """Concatenation over processes of ``x`` (first dimensions ``sizes``), padded to one size for all_gather."""
    most = max(sizes)
    padded = x.new_zeros((most, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


class _GatherCat(torch.autograd.Function):
    """All-gather along dim 0 whose backward is the gathered gradient summed over processes, local rows.

    Every process computes the same global loss from the gathered tensor, so the gradient that reaches a
    process's own rows is the sum of every process's gradient at those rows (torch's
    ``distributed.nn.functional.all_gather`` does the same with a reduce-scatter; an all-reduce is used here
    because gloo has no reduce-scatter and sizes may differ).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: list[int], me: int) -> Tensor:
        ctx.sizes, ctx.me = sizes, me
        return _gather_padded(x.contiguous(), sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.me])
        return total[start : start + ctx.sizes[ctx.me]], None, None


def gather_cat(x: Tensor) -> Tensor:
    """``x`` of every process concatenated along dim 0 in rank order (differentiable); ``x`` in one process."""
    if not active():
        return x
    sizes = _sizes(x.shape[0], x.device)
    if x.requires_grad:
        return _GatherCat.apply(x, sizes, rank())
    with torch.no_grad():
        return _gather_padded(x.contiguous(), sizes)


def sample_weight(local: int, device: torch.device | None = None) -> float:
    """Weight of a per-sample mean over this process's ``local`` samples so that the average over processes
    of the weighted local means is the mean over the global batch: ``N * local / global`` (1 when equal)."""
    if not active():
        return 1.0
    total = torch.tensor([float(local)], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return world_size() * local / float(total.item())


def average_gradients(parameters: Sequence[torch.nn.Parameter] | Iterator[torch.nn.Parameter]) -> None:
    """Mean over processes of every gradient that exists (one flat all-reduce per dtype and device).

    Every process runs the same graph, so the same parameters have gradients everywhere; a parameter without
    one keeps ``None`` (the optimiser skips it, as in one process).
    """
    if not active():
        return
    groups: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for p in parameters:
        if p.grad is not None:
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    w = world_size()
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= w
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every process (as the DDP wrapper does when built)."""
    if not active():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def mean_losses(losses: dict[str, Tensor]) -> dict[str, float]:
    """Loss terms averaged over processes (one all-reduce): the single-process values of the global batch."""
    keys = list(losses)  # the caller's order (every process builds the dict alike)
    values = torch.stack([losses[k].detach().double().reshape(()) for k in keys])  # float32 -> 64 exactly
    if active():
        values = values.clone()
        dist.all_reduce(values)
        values /= world_size()
    return {k: float(v) for k, v in zip(keys, values.tolist(), strict=True)}


def check_batch(batch_size: int, last: int = 0) -> None:
    """Every process needs at least one caption of every batch, the epoch's short last one (``last``) included.

    Checked before the first step: a process with an empty slice would crash in its encoders (or, skipping them,
    leave the others waiting in a collective) at the end of the first epoch. Merging or dropping a short last
    batch would change what one process computes, and runs across processes must equal it.
    """
    if active() and batch_size < world_size():
        raise UsageError(
            f"a batch of {batch_size} captions cannot be split over {world_size()} processes",
            hint="raise --batch-size or lower the number of processes",
        )
    if active() and 0 < last < world_size():
        raise UsageError(
            f"each epoch ends with a batch of {last} caption(s), which cannot be split over {world_size()} processes",
            hint="drop it (the training config's drop_last), change --batch-size, or lower the number of processes",
        )




# ---------------------------------------------------------------------------------------------- batch norm
class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose backward is the sum over processes of the output gradient.

    The arithmetic of ``torch.distributed.nn.functional.all_reduce`` (deprecated since torch 2.x in favour of the
    functional collectives, which do not differentiate through eager process groups). Every process's output
    depends on every process's input, so the gradient of the sum of all processes' losses with respect to one
    input is the sum of all processes' output gradients; averaging parameter gradients over processes then gives
    the single-process gradient (the same reasoning as the gather, module docstring).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


def all_reduce_sum(x: Tensor) -> Tensor:
    """``x`` summed over processes, differentiable (see :class:`_AllReduceSum`); ``x`` in one process."""
    if not active():
        return x
    out: Tensor = _AllReduceSum.apply(x)
    return out


class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the global batch (every process's samples).

    Outside a process group, or in evaluation (running statistics), it *is* ``nn.BatchNorm2d`` (its forward), so
    one-process runs are unchanged to the bit. Inside a group, in training: two differentiable all-reduces, first
    ``[sum x, count]`` per channel (the global mean), then the sum of ``(x - mean)^2`` (the biased global
    variance); a single pass of sum and sum of squares would lose float32 digits to cancellation where a
    channel's mean is large against its spread, the second pass costs one more small collective per layer.
    Output ``(x - mean) / sqrt(var + eps) * weight + bias`` and the running statistics' update (momentum, or the
    cumulative average when ``momentum`` is None, with the global batch's unbiased variance) are the ones
    ``nn.BatchNorm2d`` computes on the concatenated batch; the gradients flow through both all-reduces, so they
    equal the single-process ones after :func:`average_gradients`.

    Why not ``torch.nn.SyncBatchNorm``: it runs on CUDA only (not gloo on CPU, which the tests use), and one
    module on every device keeps a single, tested path; its cost on GPU is the same kind (a few small
    collectives per layer). A subclass, so parameters, buffers and state-dict keys are ``BatchNorm2d``'s and
    checkpoints load in either mode (:func:`convert_batchnorm`).
    """

    def forward(self, input: Tensor) -> Tensor:
        uses_batch = self.training or (self.running_mean is None and self.running_var is None)
        if not uses_batch or not active():
            out: Tensor = super().forward(input)
            return out
        self._check_input_dim(input)
        c = input.shape[1]
        shape = (1, c) + (1,) * (input.dim() - 2)
        dims = [0, *range(2, input.dim())]
        local = input.numel() // c if c else 0
        first = all_reduce_sum(torch.cat([input.sum(dims), input.new_tensor([float(local)])]))
        n = first[c]
        count = int(n.item())
        if count <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got {count} over all processes")
        mean = first[:c] / n
        centred = input - mean.view(shape)
        var = all_reduce_sum(centred.pow(2).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
            tracked = float(self.num_batches_tracked) if self.num_batches_tracked is not None else 1.0
            factor = self.momentum if self.momentum is not None else 1.0 / tracked
            with torch.no_grad():
                self.running_mean.mul_(1 - factor).add_(mean.detach().to(self.running_mean.dtype), alpha=factor)
                unbiased = var.detach() * (count / (count - 1))
                self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
        return out


def convert_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Every ``nn.BatchNorm2d`` under ``module`` as a :class:`GlobalBatchNorm2d` sharing its parameters and
    buffers (the same state-dict keys and values, the same training flag); ``module`` itself is returned, or its
    replacement when it is a ``BatchNorm2d``."""
    if isinstance(module, torch.nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        replaced = convert_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


# ---------------------------------------------------------------------------------------------- writing
if TYPE_CHECKING:
    from dvtr_data.dataset import Dataset

    from .runs import RunFolder

R = TypeVar("R", bound="RunFolder")


def follower_run(run: R) -> R:
    """``run`` on rank 0; elsewhere the same folder whose JSON writes do nothing (rank 0 writes the run)."""
    if is_main():
        return run

    class _Follower(type(run)):  # type: ignore[misc]
        def write_json(self, path: Any, data: Any) -> None:
            return None

    return _Follower(run.root)


@contextmanager
def main_writing(ds: Dataset) -> Iterator[None]:
    """The dataset's write lock, taken by rank 0 only (the lock is per process: the others must not take it;
    they write nothing into the dataset)."""
    if is_main():
        with ds.writing("baseline"):
            yield
    else:
        yield


# ---------------------------------------------------------------------------------------------- launching
def strip_nproc(argv: Sequence[str]) -> tuple[int | None, list[str]]:
    """``--nproc N`` (or ``--nproc=N``) taken out of a command line: ``(N or None, the rest)``."""
    out: list[str] = []
    n: int | None = None
    it = iter(argv)
    for a in it:
        if a == "--nproc":
            value = next(it, None)
            if value is None:
                raise UsageError("--nproc needs a number")
            n = _positive(value)
        elif a.startswith("--nproc="):
            n = _positive(a.split("=", 1)[1])
        else:
            out.append(a)
    return n, out


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"--nproc must be a whole number, got {value!r}") from None
    if n < 1:
        raise UsageError(f"--nproc must be at least 1, got {n}")
    return n


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m dvtr_data <args>``: one machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "dvtr_data", *args]


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``dvtr-data <args>`` in ``nproc`` processes under torchrun; its exit status.

    ``args`` is the command line after ``dvtr-data`` without ``--nproc``. Inside torchrun already (``WORLD_SIZE``
    set), launching again is a usage error.
    """
    if env_world_size() > 1:
        raise UsageError("--nproc inside torchrun: give one or the other")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default too; said here so that it is not a surprise
    return subprocess.call(torchrun_command(nproc, args), env=env)
