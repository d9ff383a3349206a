"""Run folders: ``<dataset>/runs/<run id>/`` with the resolved config, metrics, checkpoints and a report.

::

    runs/<run id>/
        config.json     the resolved baseline config plus the request (dataset, splits, device, versions)
        metrics.json    status, one record per epoch (losses, learning rates, validation metrics), the
                        selected epoch and the final metrics of every evaluation split in both protocols
        last.pt         end-of-epoch state for resuming (model, optimiser, RNG)
        best.pt         the selected epoch's weights (heads only when the backbone was frozen)
        report.md       Markdown report; curves.png beside it
        search/         the search index of this run (written by ``search``)

Every file is written atomically; a killed run leaves the previous epoch's files intact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dvtr_data.dataset import Dataset, atomic_path, atomic_write_bytes
from dvtr_data.errors import DatasetError, UsageError

from .metrics import mean_recall

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DIRECTIONS = ("t2v", "v2t")
METRICS = ("R1", "R5", "R10", "MdR", "MnR")
PROTOCOL_TITLES = {
    "paper": "paper protocol (chunks of 32 captions; v2t = best caption of each video)",
    "single": "single-query (each caption alone; v2t ranks captions)",
}


# What the protocols mean for runs of MSAM's loop (family.MSAMFamily.protocols says the same).
MSAM_PROTOCOLS = {
    "paper": "32-caption chunks; v2t by a video's best caption",
    "single": "each caption alone; v2t ranks captions",
}


def runs_dir(dataset: Dataset) -> Path:
    return dataset.root / "runs"


def new_run_id(baseline: str) -> str:
    return f"{baseline}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise UsageError(f"run id {run_id!r} must be letters, digits, '.', '_' or '-'")
    return run_id


@dataclass
class RunFolder:
    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    @property
    def last_path(self) -> Path:
        return self.root / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.root / "best.pt"

    @property
    def report_path(self) -> Path:
        return self.root / "report.md"

    @property
    def curves_path(self) -> Path:
        return self.root / "curves.png"

    def exists(self) -> bool:
        return self.config_path.is_file()

    def write_json(self, path: Path, data: Any) -> None:
        atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())

    def read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path} is not valid JSON: {exc}") from exc

    def config(self) -> dict[str, Any]:
        data = self.read_json(self.config_path)
        if data is None:
            raise DatasetError(f"{self.root} is not a run folder (no config.json)")
        return data

    def metrics(self) -> dict[str, Any]:
        return self.read_json(self.metrics_path) or {}


def open_run(dataset: Dataset, run_id: str) -> RunFolder:
    """An existing run of ``dataset``."""
    run = RunFolder(runs_dir(dataset) / check_run_id(run_id))
    if not run.exists():
        known = ", ".join(r.run_id for r in list_runs(dataset)[-5:]) or "none"
        raise DatasetError(f"no run {run_id!r} in {runs_dir(dataset)}", hint=f"recent runs: {known}")
    return run


def list_runs(dataset: Dataset) -> list[RunFolder]:
    folder = runs_dir(dataset)
    if not folder.is_dir():
        return []
    return sorted((RunFolder(p) for p in folder.iterdir() if (p / "config.json").is_file()), key=lambda r: r.run_id)


# ---------------------------------------------------------------------------------------------- tables
def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if metric in ("R1", "R5", "R10", "MnR") else f"{value:g}"


def metric_row(result: dict[str, Any] | None) -> list[str]:
    """``t2v R1 R5 R10 MdR MnR | v2t ...`` cells of one protocol result."""
    cells: list[str] = []
    for d in DIRECTIONS:
        part = (result or {}).get(d) or {}
        cells.extend(_fmt(m, part.get(m)) for m in METRICS)
    return cells


def metric_header() -> list[str]:
    return [f"{d} {m}" for d in DIRECTIONS for m in METRICS]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def protocol_label(metrics: dict[str, Any], family: str, protocol: str) -> str:
    """What ``protocol`` meant for a run: the label its family wrote, else MSAM's (runs of MSAM's loop)."""
    label = (metrics.get("protocols") or {}).get(protocol)
    return label or f"{family} {protocol}: {MSAM_PROTOCOLS.get(protocol, '?')}"


def mean_recall_cell(result: dict[str, Any] | None) -> str:
    """mR, the mean of R@1/5/10 both ways (AMFMN's and its successors' summary), as a table cell."""
    try:
        return _fmt("R1", mean_recall(result or {}))
    except (KeyError, TypeError):
        return "-"


def results_table(dataset: Dataset, *, split: str = "test", protocol: str = "paper") -> tuple[list[str], list[list[str]]]:
    """One row per finished run of ``dataset``: its final metrics on ``split`` in ``protocol``.

    Runs of every model family sit side by side; the ``protocol`` cell says what the protocol meant for the
    run's family (MSAM's paper protocol scores captions in chunks, AMFMN's scores each caption alone), and
    ``mR`` is the mean of the six recalls.
    """
    header = ["run", "baseline", "family", "backbone", "mode", "best epoch", "protocol", *metric_header(), "mR"]
    rows = []
    for run in list_runs(dataset):
        m = run.metrics()
        if m.get("status") != "finished":
            continue
        result = (m.get("final") or {}).get(split, {}).get(protocol)
        if result is None:
            continue
        cfg = run.config()
        base = cfg.get("baseline", {})
        family = base.get("family", "msam")
        bb = base.get("backbone", {})
        mode = "zero-shot" if not m.get("epochs") else bb.get("mode", "?")
        rows.append(
            [
                run.run_id,
                base.get("name", "?"),
                family,
                f"{bb.get('model', '?')}/{bb.get('checkpoint') and 'checkpoint' or bb.get('pretrained') or 'random'}",
                mode,
                str(m.get("best_epoch") if m.get("best_epoch") is not None else "-"),
                protocol_label(m, family, protocol),
                *metric_row(result),
                mean_recall_cell(result),
            ]
        )
    return header, rows


# ---------------------------------------------------------------------------------------------- report
def plot_curves(metrics: dict[str, Any], path: Path) -> bool:
    """Training loss per step and the selection metric per epoch; False when there is nothing to plot."""
    epochs = metrics.get("epochs") or []
    if not epochs:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps, losses, epoch_ends = [], [], []
    step = 0
    for e in epochs:
        for loss in e.get("step_loss", []):
            step += 1
            steps.append(step)
            losses.append(loss)
        epoch_ends.append(step)
    ax_loss.plot(steps, losses, lw=0.8, label="total loss per step")
    for term in ("contrastive", "kl", "diversity"):
        ys = [e["loss"].get(term) for e in epochs]
        if any(y for y in ys):
            ax_loss.plot(epoch_ends, ys, marker="o", lw=1, label=f"{term} (epoch mean)")
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss")
    ax_loss.legend(fontsize=7)
    sel = metrics.get("selection", {})
    split = sel.get("split")
    xs = [e["epoch"] for e in epochs]
    for protocol, style in (("paper", "-o"), ("single", "--s")):
        for d in DIRECTIONS:
            ys = [((e.get("eval") or {}).get(split) or {}).get(protocol, {}).get(d, {}).get("R1") for e in epochs]
            if any(y is not None for y in ys):
                ax_eval.plot(xs, ys, style, label=f"{d} R@1, {protocol}")
    ax_eval.set_xlabel("epoch")
    ax_eval.set_ylabel("%")
    ax_eval.set_title(f"{split} R@1")
    ax_eval.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


RECALL_KS = (1, 5, 10)
_DATA_COUNTS = re.compile(r"^\s*(\d+) clips / (\d+) captions")


def trivial_recall_warnings(data: dict[str, Any], eval_splits: list[str]) -> list[str]:
    """Warnings for evaluation splits so small that R@K is 100 whatever the model does.

    Text-to-video ranks a caption's clip among the split's clips: with no more clips than K, the clip is always in
    the top K. Video-to-text ranks captions: the same with no more captions than K. ``data`` is the run's
    ``metrics["data"]`` (``"N clips / M captions"`` per split).
    """
    out: list[str] = []
    for split in eval_splits:
        match = _DATA_COUNTS.match(str(data.get(split, "")))
        if not match:
            continue
        clips, captions = int(match.group(1)), int(match.group(2))
        t2v = [k for k in RECALL_KS if clips <= k]
        v2t = [k for k in RECALL_KS if captions <= k]
        if t2v:
            out.append(
                f"warning: evaluation split `{split}` has {clips} clip(s): t2v "
                + ", ".join(f"R@{k}" for k in t2v)
                + " is 100 by construction (every ranking puts the right clip in the top K); add clips"
            )
        if v2t:
            out.append(
                f"warning: evaluation split `{split}` has {captions} caption(s): v2t "
                + ", ".join(f"R@{k}" for k in v2t)
                + " is 100 by construction"
            )
    return out


def write_report(run: RunFolder, *, curves: bool = True) -> Path:
    """``report.md`` (and ``curves.png``) from the run's config and metrics.

    ``curves=False`` (after each epoch) skips the plot, which costs more than a small epoch; the plot of a
    previous call stays linked.
    """
    cfg = run.config()
    m = run.metrics()
    base = cfg.get("baseline", {})
    bb = base.get("backbone", {})
    req = cfg.get("request", {})
    lines = [
        f"# Run `{run.run_id}`: {base.get('name')}",
        "",
        base.get("description", ""),
        "",
        f"- status: **{m.get('status', '?')}**",
        f"- dataset: `{req.get('dataset')}`; train split `{req.get('split_train')}`, evaluation splits "
        + ", ".join(f"`{s}`" for s in req.get("split_eval", [])),
        f"- backbone: {bb.get('model')} ({bb.get('checkpoint') or bb.get('pretrained') or 'random init'}), mode "
        f"**{'zero-shot' if not base.get('train', {}).get('epochs') else bb.get('mode')}**, device {req.get('device')}",
        f"- family `{base.get('family', 'msam')}`, model preset `{base.get('model', {}).get('preset')}`, options "
        f"{json.dumps(base.get('model', {}).get('options') or {})}",
        f"- data: {', '.join(f'{k}: {v}' for k, v in (m.get('data') or {}).items())}",
    ]
    lines += [f"- **{w}**" for w in trivial_recall_warnings(m.get("data") or {}, list(req.get("split_eval", [])))]
    sel = m.get("selection") or {}
    if m.get("best_epoch") is not None:
        lines.append(
            f"- selected epoch {m['best_epoch']} by {sel.get('split')} {sel.get('protocol')} {sel.get('metric')} = "
            f"{sel.get('score'):.2f}"
        )
    if sel.get("note"):
        lines.append(f"- note: {sel['note']}")
    lines.append("")
    final = m.get("final") or {}
    family = base.get("family", "msam")
    for protocol in ("paper", "single"):
        rows = [[split, *metric_row(res.get(protocol)), mean_recall_cell(res.get(protocol))]
                for split, res in final.items() if res.get(protocol)]
        if rows:
            title = protocol_label(m, family, protocol)
            lines += [f"## Results: {title}", "", markdown_table(["split", *metric_header(), "mR"], rows), ""]
    notes = "R@K in percent; MdR/MnR are 1-based ranks; mR is the mean of the six recalls."
    if family == "msam":
        notes += (
            " The paper protocol scores captions jointly in chunks (the MSAM head normalises over the texts it scores "
            "together), so its numbers are not what one query sees; the single-query protocol is. Paper-protocol t2v "
            "MdR is the lower median (torch.median), v2t the midpoint (np.median), as in the authors' metrics."
        )
    lines += [notes, ""]
    epochs = m.get("epochs") or []
    if epochs:
        split = sel.get("split")
        terms = ["contrastive", "kl", "diversity"] if family == "msam" else sorted(
            {k for e in epochs for k in e.get("loss", {}) if k != "total"}
        )
        header = [
            "epoch", "steps", "loss", *terms, "lr (heads)", "seconds",
            f"{split} t2v R1 paper", f"{split} t2v R1 single",
        ]
        rows = []
        for e in epochs:
            ev = (e.get("eval") or {}).get(split) or {}
            rows.append(
                [
                    str(e["epoch"]),
                    str(e.get("steps")),
                    *(f"{e['loss'].get(k, 0.0):.4f}" for k in ("total", *terms)),
                    f"{e.get('lr', [0])[0]:.2e}" if e.get("lr") else "-",
                    f"{e.get('seconds', 0):.1f}",
                    _fmt("R1", ev.get("paper", {}).get("t2v", {}).get("R1")),
                    _fmt("R1", ev.get("single", {}).get("t2v", {}).get("R1")),
                ]
            )
        lines += ["## Training", "", markdown_table(header, rows), ""]
        if (curves and plot_curves(m, run.curves_path)) or run.curves_path.is_file():
            lines += ["![training curves](curves.png)", ""]
    lines += ["## Config", "", "```json", json.dumps(base, indent=2), "```", ""]
    atomic_write_bytes(run.report_path, "\n".join(lines).encode())
    return run.report_path
