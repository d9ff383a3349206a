"""`dvtr-data audit`: text leakage, id and caption checks on any dataset (a thin view of `dvtr_data.audit`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from dvtr_data.cli.common import DatasetOpt, out


def audit_cmd(
    dataset: DatasetOpt,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print the audit as one JSON document (machine-readable, no markup)."),
    ] = False,
    threshold: Annotated[
        float,
        typer.Option(
            help="Near-identical captions: rapidfuzz ratio (0-100) at or above this, after normalisation."
        ),
    ] = 90.0,
    compare: Annotated[
        str | None, typer.Option("--compare", help="A frozen release: also say what changed from it to --to.")
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="The release to compare with (default: the dataset now).")
    ] = None,
) -> None:
    """Audit the captions and ids of a dataset, own or imported: captions repeated across or inside splits
    (identical after normalisation, or near-identical), ids differing only by whitespace or case, empty, very short
    or very long captions, clips with fewer captions than the rest. Writes audit.json beside the tables (the card
    shows it).

    Example: [bold]dvtr-data audit --dataset usrd[/]
    """
    from dvtr_data.audit import audit_dataset, render
    from dvtr_data.errors import UsageError

    if not 0 < threshold <= 100:
        raise UsageError(f"--threshold must be in (0, 100]; got {threshold}")
    report = audit_dataset(dataset, threshold=threshold, compare=compare, compare_to=to)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
        return
    render(report, out)
    out.print(f"written: {dataset / 'audit.json'}", highlight=False, soft_wrap=True)
