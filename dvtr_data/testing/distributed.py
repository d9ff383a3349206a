"""Helpers that run code in several CPU processes joined by gloo, for the tests of ``engine/distributed.py``.

Workers are module-level functions (``torch.multiprocessing.spawn`` pickles them by name) and set the same
environment variables torchrun sets, so the code under test joins the group the way it does under torchrun.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update({
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
    })
    torch.set_num_threads(1)


def _call_worker(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...], out: str) -> None:
    _env(rank, world, port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(*args)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_in_group(fn: Callable[..., Any], args: tuple[Any, ...], world: int, out: Path) -> list[Any]:
    """``fn(*args)`` in ``world`` gloo processes; each process's return value (saved with torch.save), by rank."""
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_call_worker, args=(world, free_port(), fn, args, str(out)), nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


def _baseline_worker(rank: int, world: int, port: int, cfg: dict[str, Any], root: str, run_id: str) -> None:
    """One process of ``dvtr-data baseline`` under a torchrun-like environment (joins the group itself)."""
    from dvtr_data.baselines.engine.config import BaselineConfig
    from dvtr_data.baselines.engine.train import run_baseline

    _env(rank, world, port)
    try:
        run_baseline(BaselineConfig.from_dict(cfg), root, device="cpu", run_id=run_id)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_baseline_in_processes(cfg: dict[str, Any], root: Path, run_id: str, world: int) -> None:
    """``run_baseline`` of ``cfg`` (a config dict) on the dataset at ``root`` in ``world`` gloo processes."""
    mp.spawn(_baseline_worker, args=(world, free_port(), cfg, str(root), run_id), nprocs=world, join=True)


def contrastive_case(sizes: list[int], seed: int = 0) -> dict[str, Any]:
    """A small contrastive model on the rows of this process (``sizes[rank]`` of ``sum(sizes)``): its loss
    terms and parameter gradients after :func:`average_gradients`. In one process (no group) with
    ``sizes = [B]`` it is the single-process reference of the same global batch.

    Parameters before the gather (``w``, ``v``: per-row encoders) and after it (``scale``), a symmetric
    cross-entropy over the gathered ``[B, B]`` scores and a per-row term weighted by ``sample_weight``.
    """
    import torch.nn.functional as F

    from dvtr_data.baselines.engine import distributed as ddp

    g = torch.Generator().manual_seed(seed)
    total, dim = sum(sizes), 5
    x, y = torch.randn(total, dim, generator=g), torch.randn(total, dim, generator=g)
    w = torch.nn.Parameter(torch.randn(dim, dim, generator=g))
    v = torch.nn.Parameter(torch.randn(dim, dim, generator=g))
    scale = torch.nn.Parameter(torch.tensor(2.0))
    r = ddp.rank()
    start = sum(sizes[:r])
    rows = slice(start, start + sizes[r])
    h, k = torch.tanh(x[rows] @ w), torch.tanh(y[rows] @ v)
    logits = scale * ddp.gather_cat(h) @ ddp.gather_cat(k).T
    contrastive = (F.cross_entropy(logits, torch.arange(total)) + F.cross_entropy(logits.T, torch.arange(total))) / 2
    per_row = (h - k).square().sum(-1).mean() * ddp.sample_weight(h.shape[0])
    loss = contrastive + 0.5 * per_row
    loss.backward()
    params = [w, v, scale]
    ddp.average_gradients(params)
    losses = ddp.mean_losses({"contrastive": contrastive, "per_row": per_row, "total": loss})
    return {"losses": losses, "grads": [p.grad.clone() for p in params if p.grad is not None]}
