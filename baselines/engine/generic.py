"""The engine's loop for any :class:`~.family.ModelFamily` that has no loop of its own (AMFMN, MCSAN, ...).

Same run folder, metrics and report as MSAM's loop (``train.py``), so runs of every family sit side by side in
``baseline table``: captions shuffled per epoch (a permutation seeded by ``seed + epoch``), batches of
``train.batch_size`` captions (each brings its clip; ``drop_last`` as configured), global gradient clipping
when ``train.max_grad_norm > 0``, the family's optimiser and per-epoch learning rate, an evaluation of the
first evaluation split after every epoch, ``best.pt`` for the selected epoch (ties go to the later one, as in
MSAM's loop) and ``last.pt`` to resume from. The model is small enough to be stored whole in both.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from dvtr_data.dataset import Dataset
from dvtr_data.errors import ModelError, UsageError

from . import distributed as ddp
from . import draws
from .checkpoint import load_checkpoint, load_state_or_fail
from .config import BaselineConfig
from .data import SplitData, load_split
from .family import ModelFamily
from .runs import RunFolder, write_report
from .train import (
    Log,
    Progress,
    RunResult,
    _metric_value,
    _rng_state,
    _save,
    _selection_value,
    batches_of,
    epoch_order,
    epoch_steps,
    resume_point,
)


def run_family(
    family: ModelFamily, run: RunFolder, cfg: BaselineConfig, ds: Dataset, request: dict[str, Any], dev: torch.device, *,
    progress: Progress | None, log: Log | None, resumed: bool,
) -> RunResult:
    """Train ``cfg`` (unless zero-shot) and score every evaluation split; see the module docstring."""
    say = log or (lambda _msg: None)
    family.validate(cfg)
    if ddp.active() and not family.gathers_across_processes and not cfg.zero_shot:
        raise UsageError(
            f"{family.name} cannot train across processes yet: its loss does not gather the global batch",
            hint="run it in one process (without torchrun / --nproc)",
        )
    eval_splits = [load_split(ds, s) for s in request["split_eval"]]
    train_split = None if cfg.zero_shot else load_split(ds, request["split_train"])
    if train_split is not None:
        train_ids = {c.clip_id for c in train_split.clips}
        overlap = {c.clip_id for s in eval_splits for c in s.clips} & train_ids
        if overlap:
            say(f"warning: {len(overlap)} clip(s) are in both the training and an evaluation split")
    all_splits = ([train_split] if train_split else []) + eval_splits
    for s in all_splits:
        say(f"split {s.summary()}" + (f" ({s.dropped_clips} clip(s) without captions left out)" if s.dropped_clips else ""))

    torch.manual_seed(cfg.train.seed)
    model = family.build_model(cfg, [c.text for c in train_split.captions] if train_split else []).to(dev)
    ddp.broadcast_parameters(model)  # seeded alike already; rank 0's weights everywhere, as DDP starts
    if not resumed and ddp.is_main():
        run.root.mkdir(parents=True, exist_ok=True)
        run.write_json(run.config_path, {"run_id": run.run_id, "request": request, "baseline": cfg.to_dict()})

    with ddp.main_first():  # a family that caches features (MCSAN) fills the cache on rank 0 first
        inputs = {s.name: family.prepare(model, cfg, s, train=False, device=dev, progress=progress) for s in eval_splits}

    def evaluate(split: SplitData) -> dict[str, Any]:
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                caption_clip = torch.tensor(split.caption_clip, dtype=torch.long)
                return family.evaluate(model, inputs[split.name], cfg, caption_clip)
        finally:
            model.train(was)

    metrics: dict[str, Any] = run.metrics() if resumed else {}
    metrics.update({"run_id": run.run_id, "baseline": cfg.name, "family": family.name, "status": "running"})
    metrics.setdefault("epochs", [])
    metrics["data"] = {s.name: f"{len(s.clips)} clips / {len(s.captions)} captions" for s in all_splits}
    metrics["protocols"] = {p: family.protocol_label(p) for p in cfg.eval.protocols if p in family.protocols}
    select = eval_splits[0]
    protocol = cfg.eval.select_protocol if cfg.eval.select_protocol in family.protocols else next(iter(family.protocols))
    metrics["selection"] = {"split": select.name, "protocol": protocol, "metric": cfg.eval.select_metric}
    if len(eval_splits) == 1 and not cfg.zero_shot:
        metrics["selection"]["note"] = "the only evaluation split also selected the epoch: its numbers are optimistic"
    run.write_json(run.metrics_path, metrics)

    best_epoch: int | None = None
    if train_split is not None:
        with ddp.main_first():
            train_inputs = family.prepare(model, cfg, train_split, train=True, device=dev, progress=progress)
        best_epoch = _train(family, run, cfg, model, train_split, train_inputs, select, protocol, evaluate, metrics, dev,
                            resumed=resumed, progress=progress, say=say)
        ddp.barrier()  # rank 0 has written best.pt
        best = load_checkpoint(run.best_path, dev)
        load_state_or_fail(run.best_path, lambda: model.load_state_dict(best["model"]))
        say(f"best epoch {best_epoch}; scoring {', '.join(s.name for s in eval_splits)}")
    metrics["final"] = {s.name: evaluate(s) for s in eval_splits}
    metrics["best_epoch"] = best_epoch
    metrics["status"] = "finished"
    run.write_json(run.metrics_path, metrics)
    report = write_report(run) if ddp.is_main() else run.report_path
    return RunResult(run.run_id, run.root, "finished", best_epoch, metrics["final"], report, resumed=resumed)


def _train(
    family: ModelFamily, run: RunFolder, cfg: BaselineConfig, model: torch.nn.Module, train_split: SplitData,
    train_inputs: Any, select: SplitData, protocol: str, evaluate: Any, metrics: dict[str, Any], dev: torch.device, *,
    resumed: bool, progress: Progress | None, say: Log,
) -> int:
    t = cfg.train
    n_captions = len(train_split.captions)
    steps_per_epoch = epoch_steps(n_captions, t.batch_size, t.drop_last)
    optimizer = family.optimizer(model, cfg)
    extra = family.checkpoint_extra(model)
    draws.align_rng()  # rank 0's RNG everywhere: rank 0 alone may have drawn while filling the feature cache
    start_epoch, best_score, best_epoch = resume_point(
        run, dev, resumed, metrics, say, optimizer, model.load_state_dict
    )

    for epoch in range(start_epoch, t.epochs):
        lr = family.learning_rate(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        step_loss: list[float] = []
        batches = batches_of(epoch_order(n_captions, t.seed, epoch), t.batch_size, t.drop_last)
        for done, batch in enumerate(batches, start=1):
            rows = ddp.shard(batch)  # this process's slice of the global batch
            with draws.per_sample(rows):  # a family's SampleDropout layers draw per caption, not per process
                losses = family.loss(model, train_inputs, rows)
            loss = losses["total"]
            values = ddp.mean_losses(losses)  # the global batch's terms, whatever the number of processes
            if not math.isfinite(values["total"]):
                raise ModelError(f"the loss became {values['total']} at epoch {epoch + 1}, step {done}", hint="lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            ddp.average_gradients(model.parameters())
            if t.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], t.max_grad_norm)
            optimizer.step()
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            step_loss.append(values["total"])
            if progress:
                progress(f"epoch {epoch + 1}/{t.epochs}", done, steps_per_epoch)
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "steps": len(step_loss),
            "loss": {k: v / max(len(step_loss), 1) for k, v in sums.items()},
            "step_loss": step_loss,
            "lr": [lr],
            "seconds": time.perf_counter() - t0,
        }
        result = evaluate(select)
        record["eval"] = {select.name: result}
        score = _selection_value(result, protocol, cfg.eval.select_metric)
        state = model.state_dict()
        if best_score is None or score >= best_score:
            best_score, best_epoch = score, epoch + 1
            _save(run.best_path, {"epoch": epoch + 1, "model": state, "baseline": cfg.name, "family": family.name,
                                  "extra": extra})
        _save(
            run.last_path,
            {"epoch": epoch + 1, "model": state, "optimizer": optimizer.state_dict(), "rng": _rng_state(dev),
             "best_score": best_score, "best_epoch": best_epoch, "extra": extra},
        )
        metrics["epochs"].append(record)
        metrics["selection"]["score"] = _metric_value(best_score, cfg.eval.select_metric)
        metrics["best_epoch"] = best_epoch
        run.write_json(run.metrics_path, metrics)
        if ddp.is_main():
            write_report(run, curves=False)
        r = result[protocol]
        say(
            f"epoch {epoch + 1}/{t.epochs}: loss {record['loss'].get('total', 0):.4f}, {select.name} "
            f"t2v R@1 {r['t2v']['R1']:.1f}, v2t R@1 {r['v2t']['R1']:.1f} ({protocol}), {record['seconds']:.1f} s"
        )
    return best_epoch
