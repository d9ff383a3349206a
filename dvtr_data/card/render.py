"""Render the dataset card: ``README.md`` + ``card.html`` (figures inlined) + ``figures/*.png`` + ``card.json``.

Captions are text from annotators and strangers' datasets, so both outputs escape every value: the HTML template
runs with Jinja2 autoescaping (and a Content-Security-Policy that forbids scripts and outside requests), and the
Markdown template passes every value through `md_escape` (a Markdown viewer renders raw HTML and link syntax).
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from dvtr_data import __version__
from dvtr_data.card import plots
from dvtr_data.card.stats import dataset_stats
from dvtr_data.dataset import Dataset
from dvtr_data.errors import UsageError
from dvtr_data.export.manifest import dataset_version, staged_folder

TEMPLATES = Path(__file__).parent / "templates"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()#!|~])")


def md_escape(value: Any) -> str:
    """Text safe inside Markdown (tables included): one line, HTML entities, Markdown punctuation escaped."""
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def _md_finalize(value: Any) -> Any:
    if isinstance(value, Markup) or isinstance(value, (int, float)) or value is None:
        return value
    return md_escape(value)


def _flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(settings, dict):
        return {prefix or "value": settings}
    out: dict[str, Any] = {}
    for k, v in settings.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = ", ".join(map(str, v)) if isinstance(v, list) else v
    return out


@dataclass
class CardResult:
    out: Path
    markdown: Path
    html: Path
    figures: list[str]
    stats: dict[str, Any]


def _figures(s: dict[str, Any]) -> dict[str, bytes]:
    figs = {
        "splits": plots.split_bars(s["splits"]),
        "clip_lengths": plots.hist(s["clip_lengths"], "clip length", "seconds"),
        "categories": plots.bars(s["categories"], "categories (top 25)"),
        "qc": plots.bars(
            {
                **{f"verdict: {k}": v for k, v in s["qc"]["verdicts"].items()},
                **{f"reason: {k}": v for k, v in s["qc"]["reasons"].items()},
            },
            "QC",
        ),
        "captions_per_clip": plots.bars(
            {str(k): v for k, v in s["captions_per_clip"].items()},
            "accepted captions per clip",
            "clips",
            horizontal=False,
        ),
        "caption_lengths": plots.hist(
            s["caption_lengths"],
            "caption length",
            "words",
            bins=max(5, min(60, (max(s["caption_lengths"], default=0) or 1))),
        ),
    }
    if s["locations"]:
        figs["map"] = plots.location_map(s["locations"])
    return figs


def write_card(dataset: Dataset | str | Path, out: str | Path | None = None) -> CardResult:
    """Write the card of ``dataset`` into ``out`` (default ``<dataset>/card``), replacing an earlier card there."""
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    ds.require()
    target = Path(out).expanduser().absolute() if out else ds.root / "card"
    if target.resolve() == ds.root or ds.root.is_relative_to(target.resolve()):
        raise UsageError(f"--out {target} would hold the dataset itself; choose another folder")
    if target.exists() and any(target.iterdir()) and not (target / "card.json").is_file():
        raise UsageError(
            f"{target} exists and is not an earlier dataset card (no card.json); not replacing it"
        )
    s = dataset_stats(ds)
    s["stages"] = {k: _flatten(v) for k, v in s["stages"].items()}
    figs = _figures(s)
    context = {
        "s": s,
        "t": s["totals"],
        "x": s["text"],
        "r": s["split_report"],
        "tool_version": __version__,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": dataset_version(ds),
    }
    html_env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    md_env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=False,
        finalize=_md_finalize,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    inline = {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in figs.items()}
    page = html_env.get_template("card.html.j2").render(**context, figures=inline)
    markdown = md_env.get_template("card.md.j2").render(**context, figures=figs)
    slim = {k: v for k, v in s.items() if k not in ("clip_lengths", "caption_lengths", "locations")}
    with staged_folder(target, force=True) as stage:
        (stage / "figures").mkdir()
        for name, png in figs.items():
            (stage / "figures" / f"{name}.png").write_bytes(png)
        (stage / "README.md").write_text(markdown, encoding="utf-8")
        (stage / "card.html").write_text(page, encoding="utf-8")
        (stage / "card.json").write_text(
            json.dumps(slim, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
    return CardResult(
        out=target, markdown=target / "README.md", html=target / "card.html", figures=sorted(figs), stats=s
    )
