"""Compatibility name of the worker engine: everything lives in `dvtr_data.engine` (see there)."""

from __future__ import annotations

from dvtr_data.engine import (
    Executor,
    Heartbeat,
    Outcome,
    Progress,
    SerialExecutor,
    make_executor,
)
from dvtr_data.engine.local import ProcessExecutor

__all__ = ["Executor", "Heartbeat", "Outcome", "ProcessExecutor", "Progress", "SerialExecutor", "make_executor"]
