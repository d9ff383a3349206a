"""Batches across processes: every process gets a caption of every batch, or the run refuses before its first step."""

from __future__ import annotations

import pytest

from baselines.engine import distributed as ddp
from baselines.engine.train import batches_of, epoch_steps
from dvtr_data.errors import UsageError


@pytest.fixture()
def two_processes(monkeypatch):
    monkeypatch.setattr(ddp, "active", lambda: True)
    monkeypatch.setattr(ddp, "world_size", lambda: 2)


def test_shards_of_a_batch_are_the_batch_again_in_rank_order(monkeypatch, two_processes):
    slices = []
    for r in (0, 1):
        monkeypatch.setattr(ddp, "rank", lambda r=r: r)
        slices.append(ddp.shard([10, 11, 12, 13, 14]))
    assert slices == [[10, 11], [12, 13, 14]]


def test_a_short_last_batch_of_one_caption_over_two_processes_is_refused_up_front(two_processes):
    # 25 captions in batches of 8: 8, 8, 8, 1 -> the last batch leaves one process empty
    assert [len(b) for b in batches_of(list(range(25)), 8, False)] == [8, 8, 8, 1]
    with pytest.raises(UsageError, match="ends with a batch of 1 caption"):
        epoch_steps(25, 8, drop_last=False)
    assert epoch_steps(25, 8, drop_last=True) == 3  # dropped: nothing to split
    assert epoch_steps(26, 8, drop_last=False) == 4  # a last batch of 2: one caption each


def test_one_process_trains_on_any_last_batch():
    assert epoch_steps(25, 8, drop_last=False) == 4
