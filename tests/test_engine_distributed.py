"""Training across processes (``baselines/engine/distributed.py``): the gather's gradient, and two gloo CPU
processes training MSAM and MCSAN as one process does on the same global batch, with their default options
(MSAM's PIENet dropout on: per-sample draws, ``engine/draws.py`` and ``tests/test_engine_draws.py``).

Tolerances. Two processes add the same float32 numbers in another order (the gradient is the sum of two
half-batch gradients, then halved; the all-gather's backward sums two copies), so values agree to float32
rounding (relative ~1e-7 per operation), not bit for bit. The gather test compares one step: relative 1e-6
on losses, 1e-5 on gradients (a few roundings deep), each with atol 1e-6. A training run compounds a few such steps through Adam: losses within rtol 1e-4 (a real
difference, e.g. local-only negatives or a gradient off by the number of processes, moves them by 1e-2 and
more), and the retrieval metrics, which are ranks, exactly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from dvtr_data.baselines.engine import distributed as ddp
from dvtr_data.baselines.engine.config import BaselineConfig, deep_merge
from dvtr_data.baselines.engine.data import load_split
from dvtr_data.baselines.engine.family import get_family
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.engine.train import run_baseline
from dvtr_data.baselines.msam import MSAMOptions
from dvtr_data.dataset import Dataset
from dvtr_data.errors import UsageError
from dvtr_data.testing.distributed import contrastive_case, run_baseline_in_processes, run_in_group
from dvtr_data.testing.engine import TINY_OVERRIDES, build_toy_dataset


def test_shard_is_contiguous_and_rebuilds_the_batch_outside_a_group() -> None:
    assert not ddp.active()
    assert ddp.shard([5, 1, 4]) == [5, 1, 4]
    assert ddp.sample_weight(7) == 1.0
    assert ddp.strip_nproc(["baseline", "run", "msam", "--nproc", "2", "--epochs=1"]) == (
        2, ["baseline", "run", "msam", "--epochs=1"])
    assert ddp.strip_nproc(["--nproc=3", "x"]) == (3, ["x"])
    with pytest.raises(UsageError):
        ddp.strip_nproc(["--nproc", "0"])


@pytest.mark.slow  # spawns two processes (seconds of start-up each)
@pytest.mark.parametrize("sizes", [[3, 3], [3, 1]])
def test_gather_gradient_matches_one_process(tmp_path: Path, sizes: list[int]) -> None:
    """Two processes with 3+3 (and uneven 3+1) rows: after averaging, every gradient (encoders before the
    gather, the scale after it) and every loss term equal the one-process run of the whole batch."""
    reference = contrastive_case([sum(sizes)])
    results = run_in_group(contrastive_case, (sizes,), 2, tmp_path)
    for got in results:
        for name, value in reference["losses"].items():
            assert got["losses"][name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
        for g, want in zip(got["grads"], reference["grads"], strict=True):
            torch.testing.assert_close(g, want, atol=1e-6, rtol=1e-5)
    # a local-slice-only backward (the authors' AllGather) would leave the encoder gradients at 1/N: not equal
    assert not torch.allclose(reference["grads"][0] / 2, reference["grads"][0])


def _gather_rows(rank_rows: list[list[float]]) -> list[list[float]]:
    return ddp.gather_cat(torch.tensor(rank_rows[ddp.rank()])).tolist()


@pytest.mark.slow
def test_gather_concatenates_in_rank_order(tmp_path: Path) -> None:
    rows = [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0]]]
    for got in run_in_group(_gather_rows, (rows,), 2, tmp_path):
        assert got == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]


def _compare(one: dict, two: dict) -> None:
    assert len(one["epochs"]) == len(two["epochs"]) > 0
    for a, b in zip(one["epochs"], two["epochs"], strict=True):
        assert a["steps"] == b["steps"]
        assert b["step_loss"] == pytest.approx(a["step_loss"], rel=1e-4)
        for k, v in a["loss"].items():
            assert b["loss"][k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
        assert b["eval"] == a["eval"]
    assert one["best_epoch"] == two["best_epoch"]
    assert one["final"] == two["final"]


def _runs(tmp_path: Path, cfg: dict) -> tuple[dict, dict]:
    """The same config in two processes (first: rank 0 fills the feature cache while rank 1 waits) and in one.

    Rank 1 taking the dataset's write lock too would fail the run at once (the lock is not re-entrant)."""
    ds = build_toy_dataset(tmp_path / "ds")
    run_baseline_in_processes(cfg, ds.root, "two", 2)
    run_baseline(BaselineConfig.from_dict(cfg), ds.root, device="cpu", run_id="one")
    load = lambda rid: json.loads((ds.root / "runs" / rid / "metrics.json").read_text())  # noqa: E731
    return load("one"), load("two")


# batch 8 of 24 training captions: 3 steps an epoch, 4 captions per process. Every default stays on, MSAM's
# PIENet dropout (0.2) included: its masks are drawn per caption (engine/draws.py), so the runs agree to rounding
# (measured: step losses within 2e-7, the KL term within 2e-5 relative). With nn.Dropout's per-process draws
# they agree only in distribution: put back (the mutation check), it moved the epochs' KL term by 0.9 to 4.5 %
# and the step losses by up to 5e-4 relative, and this test failed.
TRAIN = {"train": {"epochs": 2, "batch_size": 8, "lr": 1e-3}}


@pytest.mark.slow
def test_msam_two_processes_train_as_one(tmp_path: Path) -> None:
    cfg = registered("msam").with_overrides(deep_merge(TINY_OVERRIDES, TRAIN)).to_dict()
    options = MSAMOptions.preset(cfg["model"]["preset"], **cfg["model"]["options"])
    assert options.pie_dropout == 0.2 and options.uses_semantic_branch  # the default dropout, not turned off
    one, two = _runs(tmp_path, cfg)
    _compare(one, two)
    first = one["epochs"][0]["loss"]
    assert first["kl"] > 0 and first["diversity"] > 0 and math.isfinite(first["contrastive"])


@pytest.mark.slow
def test_mcsan_two_processes_train_as_one(tmp_path: Path) -> None:
    """MCSAN's defaults: it draws nothing while training (no dropout; test_engine_draws checks its layers)."""
    tiny = deep_merge(TINY_OVERRIDES, {"model": {"sizes": {"embed_dim": 32, "gru_hidden": 16, "attention_hidden": 16}}})
    cfg = registered("mcsan").with_overrides(deep_merge(tiny, TRAIN)).to_dict()
    one, two = _runs(tmp_path, cfg)
    _compare(one, two)


# ---------------------------------------------------------------------------------------------- AMFMN
def _batchnorm_case(sizes: list[int], momentum: float | None) -> dict[str, torch.Tensor]:
    """Two training steps of a ``GlobalBatchNorm2d`` on this process's rows of a fixed global batch (all rows in
    one process with ``sizes = [B]``: then it is ``nn.BatchNorm2d``, the reference). The loss weights every
    output of the *gathered* batch by a fixed random tensor, as the engine's losses do (every process computes
    the global loss). Returns the gathered outputs, this process's input gradient, the averaged parameter
    gradients and the running statistics after the second step."""
    g = torch.Generator().manual_seed(7)
    total = sum(sizes)
    xs = [torch.randn(total, 3, 4, 5, generator=g) * 2.0 + 3.0 for _ in range(2)]  # mean far from 0
    weights = [torch.randn(total, 3, 4, 5, generator=g) for _ in range(2)]
    bn = ddp.convert_batchnorm(torch.nn.BatchNorm2d(3, momentum=momentum))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    bn.train()
    r = ddp.rank()
    rows = slice(sum(sizes[:r]), sum(sizes[: r + 1]))
    out: dict[str, torch.Tensor] = {}
    for step, (x_all, w) in enumerate(zip(xs, weights, strict=True)):
        x = x_all[rows].clone().requires_grad_(True)
        y = ddp.gather_cat(bn(x))
        bn.zero_grad()
        (y * w).sum().backward()
        ddp.average_gradients(list(bn.parameters()))
        if step == 0:
            out["y"] = y.detach()
            assert x.grad is not None and bn.weight.grad is not None and bn.bias.grad is not None
            out["x_grad"] = x.grad.clone()
            out["weight_grad"], out["bias_grad"] = bn.weight.grad.clone(), bn.bias.grad.clone()
    out["running_mean"], out["running_var"] = bn.running_mean.clone(), bn.running_var.clone()
    out["tracked"] = bn.num_batches_tracked.clone()
    out["state_keys"] = torch.tensor([len(bn.state_dict())])
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("sizes", "momentum"), [([2, 2], 0.1), ([3, 1], None)])
def test_global_batchnorm_matches_batchnorm_on_the_whole_batch(tmp_path: Path, sizes: list[int],
                                                               momentum: float | None) -> None:
    """Forward outputs, parameter gradients (after averaging), input gradients and running statistics of two
    processes (even and uneven slices; EMA and cumulative running averages) equal nn.BatchNorm2d on the
    concatenated batch. The input gradient of a process is that of the sum of every process's (identical)
    global loss, N times the single-process one at its rows; parameters are averaged back to one."""
    reference = _batchnorm_case([sum(sizes)], momentum)  # no group: plain nn.BatchNorm2d
    # a run with each process's own statistics would not match: the two slices' means differ
    g = torch.Generator().manual_seed(7)
    first = torch.randn(sum(sizes), 3, 4, 5, generator=g) * 2.0 + 3.0
    assert not torch.allclose(first[: sizes[0]].mean((0, 2, 3)), first.mean((0, 2, 3)), atol=1e-3)
    results = run_in_group(_batchnorm_case, (sizes, momentum), 2, tmp_path)
    for r, got in enumerate(results):
        rows = slice(sum(sizes[:r]), sum(sizes[: r + 1]))
        torch.testing.assert_close(got["y"], reference["y"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["x_grad"] / 2, reference["x_grad"][rows], atol=1e-5, rtol=1e-5)
        for k in ("weight_grad", "bias_grad", "running_mean", "running_var"):
            torch.testing.assert_close(got[k], reference[k], atol=1e-5, rtol=1e-5, msg=k)
        assert int(got["tracked"]) == int(reference["tracked"]) == 2
        assert int(got["state_keys"]) == int(reference["state_keys"]) == 5


def test_converted_batchnorm_is_batchnorm_in_one_process() -> None:
    """Converting a ResNet keeps its state-dict keys and values (plain weights load into it and back), and
    outside a process group its output and running statistics are nn.BatchNorm2d's to the bit."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    plain = resnet18(weights=None)
    converted = ddp.convert_batchnorm(resnet18(weights=None))
    assert list(converted.state_dict()) == list(plain.state_dict())
    converted.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, ddp.GlobalBatchNorm2d) for m in converted.modules()) == 20  # every BN of resnet18
    x = torch.randn(2, 3, 32, 32)
    plain.train()
    converted.train()
    torch.testing.assert_close(converted(x), plain(x), rtol=0, atol=0)
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(converted.state_dict()[k], v, rtol=0, atol=0, msg=k)


# AMFMN's tiny sizes (tests/test_engine_rows.py's); its defaults stay on: random crops (augment) and the
# skip-thoughts dropout (0.25), both drawn per sample, so the two runs must draw alike to agree.
AMFMN_TINY = {
    "backbone": {"pretrained": None, "checkpoint": None},
    "data": {"image_size": 64},
    "model": {"sizes": {"embed_dim": 32, "word_dim": 16, "text_hidden": 32}, "options": {"vocab_threshold": 1}},
}


def _keyword_dataset(root: Path) -> Dataset:
    """The toy dataset with a category (AMFMN's keywords) on half of its clips."""
    ds = build_toy_dataset(root)
    clips = ds.read_table("clips").to_pylist()
    for k, row in enumerate(clips):
        if k % 2 == 0:
            row["category"], row["category_source"] = f"scene {k}, toy ground", "user"
    ds.write_table("clips", clips)
    return ds


def _amfmn_cfg(row: str, train: dict, options: dict) -> dict:
    overrides = deep_merge(AMFMN_TINY, {"train": {"epochs": 2, **train}, "model": {"options": options}})
    return registered(row).with_overrides(overrides).to_dict()


def _amfmn_step(root: str, cfg_dict: dict, batch: list[int]) -> dict[str, Any]:
    """One training step's loss, averaged parameter gradients and BatchNorm buffers on this process's slice of
    ``batch`` (the whole batch in one process), through the family's own hooks as the loop calls them."""
    cfg = BaselineConfig.from_dict(cfg_dict)
    family = get_family("amfmn")
    split = load_split(Dataset(root), "train")
    torch.manual_seed(cfg.train.seed)
    model = family.build_model(cfg, [c.text for c in split.captions])
    inputs = family.prepare(model, cfg, split, train=True, device=torch.device("cpu"))
    model.train()
    losses = family.loss(model, inputs, ddp.shard(batch))
    losses["total"].backward()
    ddp.average_gradients(model.parameters())
    return {"loss": ddp.mean_losses(losses)["total"],
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            "buffers": {n: b.clone() for n, b in model.named_buffers()}}


@pytest.mark.slow
def test_amfmn_step_gradients_match_one_process(tmp_path: Path) -> None:
    """Seven captions sliced 3 + 4: the global hinge (hardest negatives, keywords through the VGMF gate), every
    parameter's gradient after averaging and the ResNet's running statistics equal one process's step. Crops
    and dropout masks are on and drawn per sample; local negatives, local BatchNorm statistics or
    per-process draws would each move the loss itself."""
    ds = _keyword_dataset(tmp_path / "ds")
    cfg = _amfmn_cfg("amfmn-fusion-keywords", {"batch_size": 7}, {"max_violation": True})
    batch = [11, 2, 19, 7, 0, 23, 5]
    reference = _amfmn_step(str(ds.root), cfg, batch)
    results = run_in_group(_amfmn_step, (str(ds.root), cfg, batch), 2, tmp_path / "group")
    assert len(reference["grads"]) > 60  # the ResNet, attention, gate, keyword and text branches
    for got in results:
        assert got["loss"] == pytest.approx(reference["loss"], rel=1e-6)
        assert set(got["grads"]) == set(reference["grads"])
        for name, want in reference["grads"].items():
            # 1e-3 of the tensor's largest element: a bias gradient is a sum over every position of a feature map
            # whose terms mostly cancel (measured: 5e-4 of its largest element for mvsa.HF_conv.bias, 5e-6 for
            # the rest); a real difference (local statistics, local negatives, other crops) is of order 1
            scale = float(want.abs().max())
            torch.testing.assert_close(got["grads"][name], want, rtol=1e-4, atol=1e-3 * scale + 1e-9, msg=name)
        for name, want in reference["buffers"].items():
            torch.testing.assert_close(got["buffers"][name], want, rtol=1e-5, atol=1e-6, msg=name)


def _amfmn_runs(tmp_path: Path, cfg: dict) -> tuple[dict, dict, dict, dict]:
    """The config in two processes and in one on the keyword dataset: both metrics.json and both last.pt model
    states."""
    ds = _keyword_dataset(tmp_path / "ds")
    run_baseline_in_processes(cfg, ds.root, "two", 2)
    run_baseline(BaselineConfig.from_dict(cfg), ds.root, device="cpu", run_id="one")
    load = lambda rid: json.loads((ds.root / "runs" / rid / "metrics.json").read_text())  # noqa: E731
    state = lambda rid: torch.load(ds.root / "runs" / rid / "last.pt", weights_only=False)["model"]  # noqa: E731
    return load("one"), load("two"), state("one"), state("two")


# lr 1e-5: Adam's first steps move every weight by about +-lr whatever its gradient's size, so a gradient
# component within float rounding of zero can take either sign in the two runs and move a weight by 2 lr; on a
# random ResNet-18 at lr 1e-3 that compounds to relative loss differences of 2e-3 after 8 steps (measured:
# one step's gradients agree, test above), at 1e-5 the runs stay within 1e-6 of each other.
@pytest.mark.slow
@pytest.mark.parametrize(("row", "train", "options"), [
    # 24 captions in batches of 7: 7, 7, 7, 3, sliced 3 + 4 and 1 + 2 (uneven slices, a short last batch)
    ("amfmn", {"batch_size": 7}, {}),
    # keywords and the VGMF gate, the hardest negative only, gradient clipping (global norm)
    ("amfmn-fusion-keywords", {"batch_size": 8, "max_grad_norm": 1.0}, {"max_violation": True}),
])
def test_amfmn_two_processes_train_as_one(tmp_path: Path, row: str, train: dict, options: dict) -> None:
    """Losses per step, metrics, final weights and the ResNet's running BatchNorm statistics of two gloo
    processes equal one process on the same global batches."""
    cfg = _amfmn_cfg(row, {"lr": 1e-5, **train}, options)
    one, two, w_one, w_two = _amfmn_runs(tmp_path, cfg)
    _compare(one, two)
    assert all(math.isfinite(v) and v > 0 for e in one["epochs"] for v in e["step_loss"])
    assert set(w_one) == set(w_two)
    stats = [k for k in w_one if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 40  # the 20 BatchNorm layers of ResNet-18
    for k in stats:  # buffers (no optimiser between them and the statistics): float rounding only
        torch.testing.assert_close(w_two[k], w_one[k], rtol=1e-4, atol=1e-6, msg=k)
    weights = [k for k, v in w_one.items() if v.is_floating_point() and k not in stats]
    # Adam can flip the sign of a weight's step where its gradient is within rounding of zero (comment above):
    # measured, 1 element in 300,000 moves by more than a tenth of one step (1e-6); other batch statistics,
    # negatives or draws would move nearly all of them
    moved = sum(int(((w_two[k] - w_one[k]).abs() > 1e-6).sum()) for k in weights)
    assert moved <= 1e-4 * sum(w_one[k].numel() for k in weights)
    for k, v in w_one.items():
        if not v.is_floating_point():
            assert torch.equal(w_two[k], v), k  # num_batches_tracked: every step in both
