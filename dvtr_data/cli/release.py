"""`dvtr-data release ...`: freeze the splits under a version name, list releases, diff two of them.

A thin view of `dvtr_data.splits.releases`. Registered by the main CLI with
``app.add_typer(release_app, name="release")``; its error boundary (`BoundaryGroup`) covers these commands too.
Release names are clean ids (checked by the library), so they print without escaping; caption texts in a diff are
user text and go out with markup off.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from dvtr_data.cli.common import DatasetOpt, out

release_app = typer.Typer(
    name="release",
    help="Releases that do not move: freeze the splits (and their captions) under a version name; later `split` "
    "runs keep every frozen clip in its split and place only new groups.\n\n"
    "Typical order: split, release freeze v1, (ingest and annotate more), split, release diff v1.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

NameArg = Annotated[str, typer.Argument(help="Release name: letters, digits, '.', '_', '-' (e.g. v1).")]


@release_app.command("freeze")
def freeze_cmd(dataset: DatasetOpt, name: NameArg) -> None:
    """Freeze the current splits as release NAME: releases/NAME/ (splits.parquet, captions.parquet of accepted
    captions, manifest.json with hashes and counts) and a row of the releases table. A name is frozen once.

    Example: [bold]dvtr-data release freeze --dataset my-dataset v1[/]
    """
    from dvtr_data.splits.releases import freeze_release

    manifest = freeze_release(dataset, name)
    clips = manifest["counts"]["clips"]
    caps = manifest["counts"]["captions"]
    out.print(
        f"frozen release {name}: "
        + ", ".join(f"{s} {clips[s]} clips / {caps[s]} captions" for s in clips)
        + f"; written: {dataset / 'releases' / name}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@release_app.command("list")
def list_cmd(dataset: DatasetOpt) -> None:
    """List the frozen releases, oldest first."""
    from dvtr_data.dataset import Dataset
    from dvtr_data.splits.releases import list_releases

    rows = list_releases(Dataset(dataset).require())
    if not rows:
        out.print(
            "no releases yet: freeze one with `dvtr-data release freeze NAME`", highlight=False, markup=False
        )
        return
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("release", "created", "train", "val", "test", "captions"):
        t.add_column(col, justify="left" if col in ("release", "created") else "right", no_wrap=True)
    for r in rows:
        t.add_row(
            r["release"],
            r["created_at"].strftime("%Y-%m-%d %H:%M"),
            str(r["train_clips"]),
            str(r["val_clips"]),
            str(r["test_clips"]),
            str(r["captions"]),
        )
    out.print(t)


@release_app.command("diff")
def diff_cmd(
    dataset: DatasetOpt,
    old: Annotated[str, typer.Argument(help="The earlier release.")],
    new: Annotated[str, typer.Argument(help="The later release, or 'now' (the dataset as it is).")] = "now",
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as one JSON document.")] = False,
) -> None:
    """What changed between two releases (or a release and now): clips added, removed and moved per split,
    captions added, changed and removed.

    Example: [bold]dvtr-data release diff --dataset my-dataset v1 now[/]
    """
    from dvtr_data.audit.render import render_changes
    from dvtr_data.splits.releases import compare

    changes = compare(dataset, old, new)
    if as_json:
        typer.echo(json.dumps(changes, ensure_ascii=False, indent=1))
        return
    render_changes(changes, out)
