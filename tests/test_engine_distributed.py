"""Training across processes (``baselines/engine/distributed.py``): the gather's gradient, and two gloo CPU
processes training MSAM and MCSAN as one process does on the same global batch.

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

import pytest
import torch

from dvtr_data.baselines.engine import distributed as ddp
from dvtr_data.baselines.engine.config import BaselineConfig, deep_merge
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.engine.train import run_baseline
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


# batch 8 of 24 training captions: 3 steps an epoch, 4 captions per process; PIENet dropout off (random masks
# are drawn per process, so with dropout the runs agree only in distribution)
TRAIN = {"train": {"epochs": 2, "batch_size": 8, "lr": 1e-3}}


@pytest.mark.slow
def test_msam_two_processes_train_as_one(tmp_path: Path) -> None:
    cfg = registered("msam").with_overrides(
        deep_merge(TINY_OVERRIDES, deep_merge(TRAIN, {"model": {"options": {"pie_dropout": 0.0}}}))
    ).to_dict()
    one, two = _runs(tmp_path, cfg)
    _compare(one, two)
    first = one["epochs"][0]["loss"]
    assert first["kl"] > 0 and first["diversity"] > 0 and math.isfinite(first["contrastive"])


@pytest.mark.slow
def test_mcsan_two_processes_train_as_one(tmp_path: Path) -> None:
    tiny = deep_merge(TINY_OVERRIDES, {"model": {"sizes": {"embed_dim": 32, "gru_hidden": 16, "attention_hidden": 16}}})
    cfg = registered("mcsan").with_overrides(deep_merge(tiny, TRAIN)).to_dict()
    one, two = _runs(tmp_path, cfg)
    _compare(one, two)
