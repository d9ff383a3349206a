"""`dvtr-data clips`: clip ids with their span, QC, captions and split (a thin view of `clips_listing`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from dvtr_data.cli.common import DatasetOpt, out


def clips_cmd(
    dataset: DatasetOpt,
    flight: Annotated[
        list[str] | None,
        typer.Option(
            "--flight",
            metavar="ID_OR_FILE_NAME",
            help="Only the clips of this flight, by flight id or file name (or an import's name); "
            "repeatable.",
        ),
    ] = None,
    qc: Annotated[
        str | None, typer.Option("--qc", help="Only clips with this QC verdict: pass or reject.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON array (machine-readable, no markup).")
    ] = False,
) -> None:
    """List clips: id, span in the flight (seconds), QC verdict and reasons, captions (accepted/all), split.

    The ids are what `precaption show` and `annotate push --clip` take.

    Example: [bold]dvtr-data clips --dataset my-dataset --qc pass[/]
    """
    from dvtr_data.clips_listing import list_clips

    listed = list_clips(dataset, flight, qc)
    if as_json:
        typer.echo(json.dumps([c.as_dict() for c in listed], ensure_ascii=False, indent=1))
        return
    if not listed:
        out.print("no clips match", highlight=False, markup=False)
        return
    # one table per flight: the long clip ids and the file name need not share a row at 80 columns
    by_source: dict[tuple[str, str], list] = {}
    for c in listed:
        key = (c.source, c.flight_id if c.source != c.flight_id else "")
        by_source.setdefault(key, []).append(c)
    for (source, flight_id), rows in by_source.items():
        title = Text(source)  # user text: a Text is never read as markup
        if flight_id and not rows[0].source.startswith("import:"):
            title.append(f"  ({flight_id})", style="dim")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("clip", no_wrap=True, overflow="fold")
        table.add_column("span s", no_wrap=True, justify="right")
        table.add_column("QC", overflow="fold")
        table.add_column("capt.", justify="right", no_wrap=True)
        table.add_column("split", no_wrap=True)
        for c in rows:
            verdict = c.qc_verdict if c.status == "ok" else "error"
            qc_text = Text(verdict, style="green" if verdict == "pass" else "red")
            if c.qc_reasons:
                qc_text.append(": " + ", ".join(c.qc_reasons))
            table.add_row(
                Text(c.clip_id),
                f"{c.start_s:.2f}-{c.end_s:.2f}",
                qc_text,
                f"{c.captions_accepted}/{c.captions_total}",
                Text(c.split or "-"),
            )
        out.print(table)
    passed = sum(c.qc_verdict == "pass" for c in listed)
    captioned = sum(c.captions_accepted > 0 for c in listed)
    out.print(
        f"{len(listed)} clip(s): {passed} pass QC, {captioned} with an accepted caption", highlight=False, markup=False
    )
