"""The authors' optimiser (CLIP4Clip's ``BertAdam``) and learning-rate schedules, quirks included (msam.md §6).

What differs from ``torch.optim.AdamW``, each reproduced by default:

* no bias correction of the moments;
* each parameter tensor's gradient is clipped to norm ``max_grad_norm`` inside ``step`` (the training loop
  also clips the global norm before calling it);
* decoupled weight decay added to the update before the learning rate multiplies it;
* the schedule reads progress as ``state["step"] / t_total`` *before* the step counter increments, so the
  very first update has learning rate 0 under a warm-up;
* the moments live in the parameter's dtype, so fp16 weights get fp16 moments and fp16 in-place updates
  (at lr 1e-7 they do not move: msam.md §12-2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import overload

import torch
from torch import nn

from dvtr_data.errors import UsageError


def warmup_cosine(x: float, warmup: float = 0.002) -> float:
    """``x / warmup`` during warm-up, then ``0.5 (1 + cos(pi x))`` on *total* progress ``x``.

    Because the cosine runs on total progress, the multiplier drops from 1 to ``0.5 (1 + cos(pi warmup))``
    at the end of warm-up (0.976 at 0.1): the authors' schedule, kept.
    """
    if x < warmup:
        return x / warmup
    return 0.5 * (1.0 + math.cos(math.pi * x))


def warmup_linear(x: float, warmup: float = 0.002) -> float:
    if x < warmup:
        return x / warmup
    return max((x - 1.0) / (warmup - 1.0), 0.0)


def warmup_constant(x: float, warmup: float = 0.002) -> float:
    return x / warmup if x < warmup else 1.0


SCHEDULES: dict[str, Callable[[float, float], float]] = {
    "warmup_cosine": warmup_cosine,
    "warmup_linear": warmup_linear,
    "warmup_constant": warmup_constant,
    "none": lambda x, warmup: 1.0,
}


class BertAdam(torch.optim.Optimizer):
    """CLIP4Clip's BertAdam (see the module docstring); ``bias_correction=True`` is the corrected variant."""

    def __init__(
        self,
        params: Iterable[nn.Parameter] | Iterable[dict],
        lr: float,
        *,
        warmup: float = -1.0,
        t_total: int = -1,
        schedule: str = "warmup_cosine",
        b1: float = 0.9,
        b2: float = 0.999,
        e: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
        bias_correction: bool = False,
    ) -> None:
        if lr < 0.0:
            raise UsageError(f"invalid learning rate {lr}")
        if schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {schedule!r}", hint=f"choose one of {', '.join(SCHEDULES)}")
        if not 0.0 <= warmup < 1.0 and warmup != -1:
            raise UsageError(f"invalid warmup proportion {warmup}")
        defaults = {
            "lr": lr,
            "schedule": schedule,
            "warmup": warmup,
            "t_total": t_total,
            "b1": b1,
            "b2": b2,
            "e": e,
            "weight_decay": weight_decay,
            "max_grad_norm": max_grad_norm,
            "bias_correction": bias_correction,
        }
        super().__init__(params, defaults)

    @staticmethod
    def scheduled_lr(group: dict, step: int) -> float:
        if group["t_total"] == -1:
            return group["lr"]
        progress = step / group["t_total"]
        return group["lr"] * SCHEDULES[group["schedule"]](progress, group["warmup"])

    def current_lrs(self) -> list[float]:
        """The learning rate each group's next update uses (for logs)."""
        out = []
        for group in self.param_groups:
            steps = [self.state[p]["step"] for p in group["params"] if p in self.state and "step" in self.state[p]]
            out.append(self.scheduled_lr(group, steps[0] if steps else 0))
        return out

    # The overloads mirror torch.optim.Optimizer.step's, so the override keeps its signature (no closure, no loss).
    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise UsageError("BertAdam does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["next_m"] = torch.zeros_like(p)
                    state["next_v"] = torch.zeros_like(p)
                next_m, next_v = state["next_m"], state["next_v"]
                if group["max_grad_norm"] > 0:
                    torch.nn.utils.clip_grad_norm_(p, group["max_grad_norm"])
                grad = p.grad
                next_m.mul_(group["b1"]).add_(grad, alpha=1 - group["b1"])
                next_v.mul_(group["b2"]).addcmul_(grad, grad, value=1 - group["b2"])
                if group["bias_correction"]:
                    n = state["step"] + 1
                    m_hat = next_m / (1 - group["b1"] ** n)
                    v_hat = next_v / (1 - group["b2"] ** n)
                    update = m_hat / (v_hat.sqrt() + group["e"])
                else:
                    update = next_m / (next_v.sqrt() + group["e"])
                if group["weight_decay"] > 0.0:
                    update += group["weight_decay"] * p
                lr = self.scheduled_lr(group, state["step"])
                p.add_(-(lr * update))
                state["step"] += 1
        return loss


def authors_param_groups(
    model: nn.Module,
    *,
    lr: float,
    backbone_lr: float,
    weight_decay: float,
    decay_norm_weights: bool = True,
    is_backbone: Callable[[str], bool] = lambda name: name.startswith("encoders.clip."),
) -> list[dict]:
    """The authors' four groups: (backbone | rest) x (decay | no decay); frozen tensors are left out.

    No decay for names containing ``bias`` (and ``LayerNorm.bias`` / ``LayerNorm.weight``, which match no
    name here: LayerNorm weights are decayed, as in the authors' runs). ``decay_norm_weights=False`` is the
    corrected variant that exempts every normalisation weight.
    """
    norm_weights: set[str] = set()
    if not decay_norm_weights:
        for mod_name, module in model.named_modules():
            if isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower():
                norm_weights.add(f"{mod_name}.weight" if mod_name else "weight")
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = any(nd in name for nd in ("bias", "LayerNorm.bias", "LayerNorm.weight")) or name in norm_weights
        groups.setdefault((is_backbone(name), no_decay), []).append(p)
    out = []
    for (backbone, no_decay), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": backbone_lr if backbone else lr,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "group": f"{'backbone' if backbone else 'heads'}{'-no-decay' if no_decay else ''}",
            }
        )
    return out
