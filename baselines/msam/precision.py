"""Strict float32 on CUDA.

The reference fixture was computed in IEEE float32; TF32 matmuls or convolutions (on by default for cuDNN
convolutions) give errors around 1e-3, ten times the port's tolerance. MSAM's public entry points run inside
:func:`ieee_fp32`, which turns TF32 off for their duration and restores the caller's settings afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


def _precision_handles() -> list[object]:
    """The backend objects that carry an ``fp32_precision`` switch (torch >= 2.9 API)."""
    handles: list[object] = [torch.backends.cuda.matmul]
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None:
        handles.append(conv)
    return [h for h in handles if hasattr(h, "fp32_precision")]


@contextmanager
def ieee_fp32() -> Iterator[None]:
    """Disable TF32 for matmul and cuDNN convolutions inside the block; a no-op cost on CPU."""
    handles = _precision_handles()
    if handles:
        saved = [h.fp32_precision for h in handles]  # type: ignore[attr-defined]
        try:
            for h in handles:
                h.fp32_precision = "ieee"  # type: ignore[attr-defined]
            yield
        finally:
            for h, value in zip(handles, saved, strict=True):
                h.fp32_precision = value  # type: ignore[attr-defined]
    else:  # older torch: the legacy switches
        saved_legacy = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_legacy


def strict_fp32(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of :func:`ieee_fp32`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with ieee_fp32():
            return fn(*args, **kwargs)

    return wrapper
