"""`dvtr-data baseline ...` and `dvtr-data search`: thin commands over ``dvtr_data.baselines.engine``.

``baseline_app`` is a Typer sub-app: ``list``, ``table``, ``run NAME|CONFIG.json``, ``resume RUN_ID`` and one
command per registered baseline (``dvtr-data baseline msam --dataset DIR``). ``search_cmd`` is registered by
``cli.py`` as the top-level ``search`` command. Torch is imported only inside commands that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from dvtr_data.cli.common import ProgressBars, _progress, err, out
from dvtr_data.errors import UsageError

baseline_app = typer.Typer(
    name="baseline",
    help="Train and score retrieval baselines (MSAM and its ablations) on a dataset; list them; compare runs.\n\n"
    "Run one with [bold]dvtr-data baseline NAME --dataset DIR[/] (NAME from `dvtr-data baseline list`) or "
    "[bold]dvtr-data baseline run CONFIG.json --dataset DIR[/] for your own config.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

# Shared options, declared once.
DatasetOpt = Annotated[Path, typer.Option("--dataset", "-d", help="Dataset folder (with clips, captions and splits).")]
SplitTrainOpt = Annotated[
    str, typer.Option("--split-train", help="Training split: a name in splits.parquet, or an exported .parquet split file.")
]
SplitEvalOpt = Annotated[
    str,
    typer.Option("--split-eval", help="Evaluation splits, comma-separated; the first selects the best epoch (e.g. val,test)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="JSON file with config fields to override (partial or complete).")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto (CUDA when available).")]
BackboneOpt = Annotated[
    str | None,
    typer.Option("--backbone", help="frozen (features cached in the dataset, heads train), reference (fp16 CLIP as the authors train it) or finetune (fp32 CLIP at --backbone-lr)."),
]
CheckpointOpt = Annotated[Path | None, typer.Option("--clip-checkpoint", help="Local CLIP weights file (open_clip or OpenAI ViT-B-32.pt); needed without network.")]
ClipModelOpt = Annotated[str | None, typer.Option("--clip-model", help="open_clip model name (default ViT-B-32-quickgelu).")]
PretrainedOpt = Annotated[str | None, typer.Option("--clip-pretrained", help="open_clip pretrained tag (default openai); 'none' for random weights.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Training epochs (0: score without training).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Captions per step (default 64).")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate of the MSAM modules (default 1e-4).")]
BackboneLrOpt = Annotated[float | None, typer.Option("--backbone-lr", help="Learning rate of CLIP (default lr x 1e-3, the authors').")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed of shuffling, dropout and head initialisation (default 42).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Any config field, e.g. --set eval.chunk_size=64 (repeatable).")]
RunIdOpt = Annotated[str | None, typer.Option("--run-id", help="Name of the run folder (default <baseline>-<UTC time>).")]
NprocOpt = Annotated[int, typer.Option("--nproc", min=1, help="Processes on this machine (torchrun; one GPU each on CUDA, gloo on CPU); the global batch stays --batch-size.")]


def _relaunch(nproc: int) -> None:
    """With ``--nproc N > 1``: the same command line in N processes under torchrun, then exit with its status."""
    if nproc <= 1:
        return
    import sys

    from dvtr_data.baselines.engine import distributed

    _, args = distributed.strip_nproc(sys.argv[1:])
    raise typer.Exit(distributed.launch(nproc, args))


def _is_main() -> bool:
    """Rank 0 (or the only process): the one that prints results under torchrun."""
    from dvtr_data.baselines.engine import distributed

    return distributed.is_main()


def _progress_callback(bar: Any) -> Callable[[str, int, int], None]:
    """The baseline engine's ``(label, done, total)`` progress, rendered through the one reporting protocol."""
    return ProgressBars(bar).reporter("baseline").callback()


def _overrides(
    *, backbone: str | None, clip_checkpoint: Path | None, clip_model: str | None, clip_pretrained: str | None,
    epochs: int | None, batch_size: int | None, lr: float | None, backbone_lr: float | None, seed: int | None,
    sets: list[str] | None,
) -> dict[str, Any]:
    from dvtr_data.baselines.engine.config import deep_merge, parse_assignment

    o: dict[str, Any] = {"backbone": {}, "train": {}}
    if backbone is not None:
        o["backbone"]["mode"] = backbone
    if clip_model is not None:
        o["backbone"]["model"] = clip_model
        o["backbone"]["model_cfg"] = None
    if clip_pretrained is not None:
        o["backbone"]["pretrained"] = None if clip_pretrained.lower() in ("none", "random", "") else clip_pretrained
    if clip_checkpoint is not None:
        o["backbone"]["checkpoint"] = str(clip_checkpoint.expanduser().resolve())
    if backbone_lr is not None:
        o["backbone"]["backbone_lr"] = backbone_lr
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed)):
        if value is not None:
            o["train"][key] = value
    for text in sets or []:
        o = deep_merge(o, parse_assignment(text))
    return {k: v for k, v in o.items() if v != {}}


def _print_result(result: Any) -> None:
    import json

    from dvtr_data.baselines.engine.runs import PROTOCOL_TITLES, mean_recall_cell, metric_header, metric_row

    try:
        metrics = json.loads((Path(result.run_dir) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    labels = metrics.get("protocols") or {}  # what each protocol means for the run's family (MSAM's when absent)
    for protocol in PROTOCOL_TITLES:
        rows = [(split, res[protocol]) for split, res in result.final.items() if protocol in res]
        if not rows:
            continue
        table = Table(title=labels.get(protocol) or PROTOCOL_TITLES[protocol], title_justify="left")
        table.add_column("split")
        for h in [*metric_header(), "mR"]:
            table.add_column(h, justify="right")
        for split, res in rows:
            table.add_row(split, *metric_row(res), mean_recall_cell(res))
        out.print(table)
    best = f", best epoch {result.best_epoch}" if result.best_epoch else ""
    out.print(f"run {result.run_id}{best}: {result.run_dir}", highlight=False, markup=False)
    out.print(f"report: {result.report}", highlight=False, markup=False)


def _run(
    baseline: str, dataset: Path, split_train: str, split_eval: str, config: Path | None, device: str,
    run_id: str | None, overrides: dict[str, Any],
) -> None:
    from dvtr_data.baselines.engine import registry
    from dvtr_data.baselines.engine.train import run_baseline

    cfg = registry.resolve(baseline, config_file=config)
    if overrides:
        cfg = cfg.with_overrides(overrides, source="command-line options")
    with _progress() as bar:
        result = run_baseline(
            cfg, dataset, split_train=split_train, split_eval=[s for s in split_eval.split(",") if s.strip()],
            device=device, run_id=run_id, progress=_progress_callback(bar),
            log=lambda msg: bar.console.print(msg, highlight=False, markup=False, soft_wrap=True),
        )
    if _is_main():
        _print_result(result)


@baseline_app.command("run")
def run_cmd(
    baseline: Annotated[str, typer.Argument(help="A registered baseline name or a JSON config file (which may name a registered one as \"base\").")],
    dataset: DatasetOpt,
    split_train: SplitTrainOpt = "train",
    split_eval: SplitEvalOpt = "val,test",
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
    backbone: BackboneOpt = None,
    clip_checkpoint: CheckpointOpt = None,
    clip_model: ClipModelOpt = None,
    clip_pretrained: PretrainedOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    backbone_lr: BackboneLrOpt = None,
    seed: SeedOpt = None,
    set_: SetOpt = None,
    run_id: RunIdOpt = None,
    nproc: NprocOpt = 1,
) -> None:
    """Train one baseline (registered name or config file) and score it; writes runs/<run id>/ in the dataset.

    Example: [bold]dvtr-data baseline run my-msam.json --dataset my-dataset --split-eval val,test[/]
    """
    _relaunch(nproc)
    _run(baseline, dataset, split_train, split_eval, config, device, run_id, _overrides(
        backbone=backbone, clip_checkpoint=clip_checkpoint, clip_model=clip_model, clip_pretrained=clip_pretrained,
        epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr=backbone_lr, seed=seed, sets=set_,
    ))


def _named_command(name: str, description: str) -> None:
    def command(
        dataset: DatasetOpt,
        split_train: SplitTrainOpt = "train",
        split_eval: SplitEvalOpt = "val,test",
        config: ConfigOpt = None,
        device: DeviceOpt = "auto",
        backbone: BackboneOpt = None,
        clip_checkpoint: CheckpointOpt = None,
        clip_model: ClipModelOpt = None,
        clip_pretrained: PretrainedOpt = None,
        epochs: EpochsOpt = None,
        batch_size: BatchOpt = None,
        lr: LrOpt = None,
        backbone_lr: BackboneLrOpt = None,
        seed: SeedOpt = None,
        set_: SetOpt = None,
        run_id: RunIdOpt = None,
        nproc: NprocOpt = 1,
    ) -> None:
        _relaunch(nproc)
        _run(name, dataset, split_train, split_eval, config, device, run_id, _overrides(
            backbone=backbone, clip_checkpoint=clip_checkpoint, clip_model=clip_model, clip_pretrained=clip_pretrained,
            epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr=backbone_lr, seed=seed, sets=set_,
        ))

    command.__doc__ = (
        f"{description}.\n\nTrains on --split-train, selects the epoch on the first --split-eval, scores every "
        f"evaluation split in the paper and single-query protocols.\n\n"
        f"Example: [bold]dvtr-data baseline {name} --dataset my-dataset --split-eval val,test[/]"
    )
    baseline_app.command(name, help=command.__doc__)(command)


@baseline_app.command("resume")
def resume_cmd(
    run_id: Annotated[str, typer.Argument(help="The run to continue (a folder name under <dataset>/runs/).")],
    dataset: DatasetOpt,
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: the run's device).")] = None,
    nproc: NprocOpt = 1,
) -> None:
    """Continue an interrupted run from its last finished epoch (a finished run is only reported).

    Example: [bold]dvtr-data baseline resume msam-20260601-120000 --dataset my-dataset[/]
    """
    _relaunch(nproc)
    from dvtr_data.baselines.engine.train import resume_run

    with _progress() as bar:
        result = resume_run(
            dataset, run_id, device=device, progress=_progress_callback(bar),
            log=lambda msg: bar.console.print(msg, highlight=False, markup=False, soft_wrap=True),
        )
    if not _is_main():
        return
    for msg in result.messages:
        out.print(msg, highlight=False, markup=False)
    _print_result(result)


@baseline_app.command("list")
def list_cmd() -> None:
    """List the registered baselines (one JSON config each; your own configs run by path).

    Example: [bold]dvtr-data baseline list[/]
    """
    from dvtr_data.baselines.engine.registry import describe

    table = Table(title="registered baselines", title_justify="left")
    for col in ("name", "family", "mode", "epochs", "backbone", "description"):
        table.add_column(col, overflow="fold")
    for r in describe():
        table.add_row(*(Text(str(r.get(k, "msam"))) for k in ("name", "family", "mode", "epochs", "backbone", "description")))
    out.print(table)


@baseline_app.command("table")
def table_cmd(
    dataset: DatasetOpt,
    split: Annotated[str, typer.Option("--split", help="Which evaluation split's final metrics to show.")] = "test",
    protocol: Annotated[str, typer.Option("--protocol", help="paper, single or both.")] = "both",
) -> None:
    """Print every finished run of a dataset side by side (the ablation table).

    Example: [bold]dvtr-data baseline table --dataset my-dataset --split test[/]
    """
    from dvtr_data.baselines.engine.runs import results_table
    from dvtr_data.dataset import Dataset

    if protocol not in ("paper", "single", "both"):
        raise UsageError(f"--protocol must be paper, single or both, got {protocol!r}")
    ds = Dataset(dataset).require()
    shown = 0
    for p in ("paper", "single") if protocol == "both" else (protocol,):
        header, rows = results_table(ds, split=split, protocol=p)
        if not rows:
            continue
        shown += len(rows)
        title = f"{split}, {p} protocol (each family's meaning of it in the protocol column)"
        col = header.index("backbone")
        if len({r[col] for r in rows}) == 1:  # one shared backbone: say it once
            title += f"; backbone {rows[0][col]}"
            header = header[:col] + header[col + 1 :]
            rows = [r[:col] + r[col + 1 :] for r in rows]
        table = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for h in header:
            if h.split()[-1] in ("R1", "R5", "R10", "MdR", "MnR"):
                direction, metric = h.split()
                table.add_column(f"{direction}\n{metric.replace('R', 'R@') if metric[1:].isdigit() else metric}",
                                 justify="right", min_width=5, no_wrap=True)
            else:
                table.add_column("epoch" if h == "best epoch" else h, overflow="fold")
        for row in rows:
            table.add_row(*(Text(str(v)) for v in row))
        out.print(table)
    from dvtr_data.baselines.ms_detr.train import moment_results_table

    header, rows = moment_results_table(ds.root / "runs", split=split)
    if rows:  # moment retrieval runs: QVHighlights metrics, not retrieval ranks
        shown += len(rows)
        table = Table(title=Text(f"{split}: moment retrieval (QVHighlights metrics)"), title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for h in header:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*(Text(str(v)) for v in row))
        out.print(table)
    if not shown:
        out.print(f"no finished run of {ds.root} has results on split {split!r}", highlight=False, markup=False)


def _span(a: float | None, b: float | None) -> str:
    def mmss(x: float) -> str:
        return f"{int(x // 60):d}:{x % 60:04.1f}"

    return "-" if a is None or b is None else f"{mmss(a)}-{mmss(b)}"


def search_cmd(
    query: Annotated[str, typer.Argument(help="What to look for, in words.")],
    dataset: DatasetOpt,
    run: Annotated[str, typer.Option("--run", help="Run id of a finished baseline run (see `dvtr-data baseline table`).")],
    top: Annotated[int, typer.Option("--top", help="How many clips to print.")] = 10,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
    store: Annotated[str, typer.Option("--store", help="Precision of the stored frame embeddings: float32 (exact), float16 or bfloat16 (half the memory).")] = "float32",
) -> None:
    """Search every clip of a dataset with a trained model: clip ids, flight, time span and score.

    The first search of a run builds its index (frame embeddings and Gram matrices of every clip) in the run folder.

    Example: [bold]dvtr-data search "a white boat near the shore" --dataset my-dataset --run msam-20260601-120000 --top 10[/]
    """
    from dvtr_data.baselines.engine.search import search

    with _progress() as bar:
        result = search(dataset, run, query, top=top, device=device, store_dtype=store, progress=_progress_callback(bar))
    table = Table(title=Text(f"search: {query}"), title_justify="left")  # user text: never markup
    for col, just in (("rank", "right"), ("score", "right"), ("clip", "left"), ("flight file", "left"), ("span", "left")):
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for h in result.hits:  # the flight's file name when the dataset knows it: a person knows a video by it, not a hash
        table.add_row(str(h.rank), f"{h.score:.4f}", Text(h.clip_id), Text(h.file_name or h.flight_id or "-"),
                      _span(h.start_s, h.end_s))
    out.print(table)
    err.print(f"{result.clips} clips scored in {result.seconds * 1000:.1f} ms (index {result.index_path})",
              highlight=False, markup=False, soft_wrap=True)


def _moment_command(name: str) -> None:
    def command(
        dataset: DatasetOpt,
        split_train: SplitTrainOpt = "train",
        split_eval: SplitEvalOpt = "val,test",
        config: Annotated[Path | None, typer.Option("--config", help="JSON file: {\"base\": NAME, ...fields of MomentConfig}.")] = None,
        device: DeviceOpt = "auto",
        clip_checkpoint: CheckpointOpt = None,
        clip_model: Annotated[str, typer.Option("--clip-model", help="open_clip model of the features.")] = "ViT-B-32",
        clip_pretrained: Annotated[str, typer.Option("--clip-pretrained", help="open_clip pretrained tag; 'none' for random weights.")] = "openai",
        features: Annotated[list[Path] | None, typer.Option("--features", help="An extra feature folder you bring ({vid}.npz, e.g. SlowFast), read before the CLIP one (repeatable).")] = None,
        epochs: EpochsOpt = None,
        batch_size: BatchOpt = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 1e-4).")] = None,
        seed: SeedOpt = None,
        run_id: RunIdOpt = None,
    ) -> None:
        from dvtr_data.baselines.ms_detr.dataset_runs import run_moment_baseline
        from dvtr_data.export.moment_features import FeatureOptions

        overrides: dict[str, Any] = {"device": device}
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed)):
            if value is not None:
                overrides[key] = value
        pretrained = None if clip_pretrained.lower() in ("none", "random", "") else clip_pretrained
        opts = FeatureOptions(model=clip_model, pretrained=pretrained,
                              checkpoint=clip_checkpoint.expanduser().resolve() if clip_checkpoint else None)
        run = run_moment_baseline(
            dataset, str(config) if config else name, features=opts, overrides=overrides, split_train=split_train,
            split_eval=tuple(s.strip() for s in split_eval.split(",") if s.strip()), extra_feature_dirs=features,
            run_id=run_id,
        )
        for note in run.notes:
            err.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
        for split, brief in (run.metrics.get("final") or {}).items():
            shown = ", ".join(f"{k} {v:.2f}" for k, v in brief.items() if isinstance(v, int | float))
            out.print(f"{split}: {shown}", highlight=False, markup=False, soft_wrap=True)
        out.print(f"run {run.run_id}: {run.run_dir}", highlight=False, markup=False)

    what = "MS-DETR (motion and semantics streams)" if name == "ms-detr" else "Moment-DETR (the simpler registered row)"
    command.__doc__ = (
        f"Moment retrieval with {what} on the dataset's annotated moments.\n\nExports the splits' moments with "
        "CLIP features into runs/<run id>/export, trains on --split-train, selects the epoch on the first "
        "--split-eval, and scores QVHighlights metrics.\n\n"
        f"Example: [bold]dvtr-data baseline {name} --dataset my-dataset --split-eval val,test[/]"
    )
    baseline_app.command(name, help=command.__doc__)(command)


def _register_named() -> None:
    from dvtr_data.baselines.engine.registry import describe

    for row in describe():
        _named_command(row["name"], row["description"])
    for name in ("ms-detr", "moment-detr"):
        _moment_command(name)


_register_named()
