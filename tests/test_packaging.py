"""Every code package is listed in pyproject.toml, so a wheel ships all of it under dvtr_data."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"dvtr_data": "dvtr_data", "annotation": "dvtr_data.annotation", "baselines": "dvtr_data.baselines", "schemas": "dvtr_data.schemas"}


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_namespaced_imports():
    import dvtr_data.annotation
    import dvtr_data.baselines.msam
    import dvtr_data.schemas

    assert dvtr_data.baselines.msam.load_reference_state_dict
    assert "clips" in dvtr_data.schemas.TABLES
