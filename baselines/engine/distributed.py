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


def check_batch(batch_size: int) -> None:
    """Every process needs at least one caption of every full batch."""
    if active() and batch_size < world_size():
        raise UsageError(
            f"a batch of {batch_size} captions cannot be split over {world_size()} processes",
            hint="raise --batch-size or lower the number of processes",
        )


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
