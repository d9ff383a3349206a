"""Render the dataset card: ``README.md`` + ``card.html`` (figures inlined) + ``figures/*.png`` + ``card.json``.

Captions are text from annotators and strangers' datasets, so both outputs escape every value: the HTML template
runs with Jinja2 autoescaping (and a Content-Security-Policy that forbids scripts and outside requests), and the
Markdown template passes every value through `md_escape` (a Markdown viewer renders raw HTML and link syntax).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from dvtr_data import __version__
from dvtr_data.audit.card import card_audit
from dvtr_data.card import coastlines, plots
from dvtr_data.card.escape import md_escape
from dvtr_data.card.publishing import TABLE_SOURCES, limitations
from dvtr_data.card.stats import dataset_stats
from dvtr_data.dataset import Dataset
from dvtr_data.errors import UsageError
from dvtr_data.export.manifest import dataset_version, staged_folder
from dvtr_data.reporting import Reporter, Sink, as_reporter

TEMPLATES = Path(__file__).parent / "templates"


def _md_finalize(value: Any) -> Any:
    if isinstance(value, (Markup, int, float)) or value is None:
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
    s["map_source"] = None
    if s["locations"]:
        lines = coastlines.map_lines(plots.map_extent(s["locations"]))
        s["map_source"] = lines.source if lines is not None else None
        figs["map"] = plots.location_map(s["locations"], lines)
    if s["regions"]:
        figs["regions"] = plots.bars(
            {r["label"]: r["clips"] for r in s["regions"]}, "clips per region (top 25)", "clips on the map"
        )
    if s["altitudes"]:
        figs["altitudes"] = plots.hist(s["altitudes"], "clip altitude", "metres (as the telemetry gives it)")
    if any(s["hours"].values()):
        figs["hours"] = plots.hours(s["hours"])
    return figs


THUMB_SIZE = (320, 180)


def _thumbnails(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JPEG thumbnails of the example clips' keyframes; a keyframe that cannot be decoded is left out."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for c in candidates:
        try:
            with Image.open(c["keyframe"]) as src:
                im = src.convert("RGB")
                im.thumbnail(THUMB_SIZE)
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=80)
        except (OSError, UnidentifiedImageError, ValueError):
            continue
        out.append({**{k: v for k, v in c.items() if k != "keyframe"}, "jpeg": buf.getvalue()})
    return out


def write_card(dataset: Dataset | str | Path, out: str | Path | None = None, *,
               reporter: Reporter | Sink | None = None) -> CardResult:
    """Write the card of ``dataset`` into ``out`` (default ``<dataset>/card``), replacing an earlier card there.

    ``reporter`` follows the four steps: statistics, figures, thumbnails, pages.
    """
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    ds.require()
    with ds.writing("card"):
        return _write_card(ds, out, as_reporter(reporter, "card").counter("dataset card", 4, "steps"))


def _write_card(ds: Dataset, out: str | Path | None, steps: Any) -> CardResult:
    target = Path(out).expanduser().absolute() if out else ds.root / "card"
    if target.resolve() == ds.root or ds.root.is_relative_to(target.resolve()):
        raise UsageError(f"--out {target} would hold the dataset itself; choose another folder")
    if target.exists() and any(target.iterdir()) and not (target / "card.json").is_file():
        raise UsageError(
            f"{target} exists and is not an earlier dataset card (no card.json); not replacing it"
        )
    s = dataset_stats(ds)
    s["stages"] = {k: _flatten(v) for k, v in s["stages"].items()}
    steps.advance()
    figs = _figures(s)
    steps.advance()
    s["limitations"] = limitations(s)
    s["caption_audit"] = card_audit(ds)  # audit.json when `audit` wrote one, else computed now
    thumbs = _thumbnails(s.pop("thumbnail_candidates"))
    steps.advance()
    for i, t in enumerate(thumbs):
        t["file"] = f"figures/examples/{i + 1}.jpg"
        t["data"] = "data:image/jpeg;base64," + base64.b64encode(t["jpeg"]).decode()
    context = {
        "s": s,
        "t": s["totals"],
        "x": s["text"],
        "r": s["split_report"],
        "a": s["caption_audit"],
        "tool_version": __version__,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "version": dataset_version(ds),
        "table_names": TABLE_SOURCES,
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
    page = html_env.get_template("card.html.j2").render(**context, figures=inline, thumbs=thumbs)
    markdown = md_env.get_template("card.md.j2").render(**context, figures=figs, thumbs=thumbs)
    slim = {
        k: v for k, v in s.items() if k not in ("clip_lengths", "caption_lengths", "locations", "altitudes")
    }
    slim["examples_with_keyframes"] = [
        {k: v for k, v in t.items() if k not in ("jpeg", "data")} for t in thumbs
    ]
    with staged_folder(target, force=True) as stage:
        (stage / "figures").mkdir()
        for name, png in figs.items():
            (stage / "figures" / f"{name}.png").write_bytes(png)
        if thumbs:
            (stage / "figures" / "examples").mkdir()
            for t in thumbs:
                (stage / t["file"]).write_bytes(t["jpeg"])
        (stage / "README.md").write_text(markdown, encoding="utf-8")
        (stage / "card.html").write_text(page, encoding="utf-8")
        (stage / "card.json").write_text(
            json.dumps(slim, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
    steps.advance()
    return CardResult(
        out=target, markdown=target / "README.md", html=target / "card.html", figures=sorted(figs), stats=s
    )
