"""The baseline registry: one JSON file per baseline in ``configs/``, found by a folder scan (as open_clip does).

A user config is any JSON file passed by path. It may name a registered baseline under ``"base"`` and state
only what differs; without ``"base"`` it is complete on its own (every missing field takes its default).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from dvtr_data.errors import InputError, UsageError

from .config import BaselineConfig, deep_merge, read_config_file

RESERVED_NAMES = frozenset({"list", "table", "run", "help"})


@cache
def _registered() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    folder = resources.files(__package__).joinpath("configs")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        data = json.loads(entry.read_text(encoding="utf-8"))
        name = data.get("name") or entry.name[: -len(".json")]
        if name != entry.name[: -len(".json")]:
            raise InputError(f"registered config {entry.name} declares name {name!r}; the file name must match")
        found[name] = data
    return found


def baseline_names() -> list[str]:
    """Registered baseline names, sorted."""
    return sorted(_registered())


def registered(name: str) -> BaselineConfig:
    """The config of a registered baseline."""
    data = _registered().get(name)
    if data is None:
        raise UsageError(f"unknown baseline {name!r}", hint=f"registered: {', '.join(baseline_names())}; or pass a config file path")
    return BaselineConfig.from_dict(data, source=f"baseline {name}")


def from_file(path: Path) -> BaselineConfig:
    """A user config file, resolved against its ``"base"`` baseline when it names one."""
    data = read_config_file(path)
    base = data.pop("base", None)
    name = data.get("name") or Path(path).stem
    if base is not None:
        data = deep_merge(registered(str(base)).to_dict(), data)
    data["name"] = name
    return BaselineConfig.from_dict(data, source=str(path))


def resolve(name_or_path: str | Path, *, config_file: Path | None = None) -> BaselineConfig:
    """A registered name or a config file path, optionally with a partial config file on top."""
    text = str(name_or_path)
    looks_like_file = text.endswith(".json") or "/" in text or Path(text).is_file()
    cfg = from_file(Path(text)) if looks_like_file else registered(text)
    if config_file is not None:
        overrides = read_config_file(config_file)
        overrides.pop("base", None)
        cfg = cfg.with_overrides(overrides, source=str(config_file))
    if cfg.name in RESERVED_NAMES:
        raise UsageError(f"baseline name {cfg.name!r} is reserved for a command")
    return cfg


def describe() -> list[dict[str, Any]]:
    """One summary row per registered baseline (what ``dvtr-data baseline list`` prints)."""
    rows = []
    for name in baseline_names():
        cfg = registered(name)
        rows.append(
            {
                "name": name,
                "family": cfg.family,
                "model": cfg.model.preset if cfg.family == "msam" else f"{cfg.family}:{cfg.model.preset}",
                "backbone": f"{cfg.backbone.model}/{cfg.backbone.pretrained or 'random'}",
                "mode": "zero-shot" if cfg.zero_shot else cfg.backbone.mode,
                "epochs": cfg.train.epochs,
                "description": cfg.description,
            }
        )
    return rows
