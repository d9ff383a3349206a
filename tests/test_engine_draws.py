"""Per-sample random draws (``baselines/engine/draws.py``): a row's dropout mask is a function of the step's seed,
the sample's position and the layer, never of the rows beside it, so that a batch sliced over processes drops
exactly as the whole batch does in one process (the two-process runs are in ``test_engine_distributed.py``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dvtr_data.baselines.engine import draws
from dvtr_data.baselines.engine.config import deep_merge
from dvtr_data.baselines.engine.family import get_family
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.msam.semantics import MultiSemanticBranch
from dvtr_data.errors import ModelError
from dvtr_data.testing.engine import TINY_OVERRIDES


def _layer(p: float = 0.5, name: str = "a") -> draws.SampleDropout:
    layer = draws.SampleDropout(p, layer=name)
    layer.train()
    return layer


def test_a_rows_mask_does_not_depend_on_the_rest_of_its_batch() -> None:
    """Rows 7, 3, 9, 1 dropped together, the last two alone, and in another order: each row the same."""
    x = torch.ones(4, 6, 5)
    layer = _layer()
    with draws.per_sample([7, 3, 9, 1], seed=123):
        whole = layer(x)
    with draws.per_sample([9, 1], seed=123):
        half = layer(x[2:])
    with draws.per_sample([1, 9, 3], seed=123):
        shuffled = layer(x[:3])
    assert torch.equal(half, whole[2:])
    assert torch.equal(shuffled, whole[[3, 2, 1]])
    # a mask of ones and zeros scaled by 1 / (1 - p): elements are 0 or 2, and each row drops some and keeps some
    assert set(whole.unique().tolist()) == {0.0, 2.0}
    assert all(0 < int((row == 0).sum()) < row.numel() for row in whole)


def test_masks_differ_between_rows_steps_layers_and_calls() -> None:
    x = torch.ones(2, 200)
    a, b = _layer(name="a"), _layer(name="b")
    with draws.per_sample([5, 6], seed=1):
        first_a, again_a, first_b = a(x), a(x), b(x)
    with draws.per_sample([5, 6], seed=2):
        next_step = a(x)
    with draws.per_sample([5, 6], seed=1):
        replay = a(x)
    assert not torch.equal(first_a[0], first_a[1])  # rows (positions 5 and 6)
    assert not torch.equal(first_a, first_b)  # layers
    assert not torch.equal(first_a, again_a)  # a second call of one layer in a step draws again
    assert not torch.equal(first_a, next_step)  # steps
    assert torch.equal(first_a, replay)  # and the same (step, position, layer, call) draws the same mask


def test_dropout_rate_scaling_and_gradient() -> None:
    """p = 0.2 over 100,000 elements: about 20 % zeros (binomial sd 0.13 %, bound 1 %), the rest times 1.25;
    the gradient of the sum is the mask itself."""
    layer = _layer(p=0.2)
    x = torch.full((10, 10_000), 3.0, requires_grad=True)
    with draws.per_sample(range(10), seed=9):
        y = layer(x)
    assert abs(float((y == 0).float().mean()) - 0.2) < 0.01
    assert torch.allclose(y[y != 0], torch.tensor(3.75))
    y.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, y.detach() / 3.0, rtol=0, atol=0)


def test_outside_the_context_and_in_eval_it_is_nn_dropout() -> None:
    x = torch.randn(3, 50)
    plain = nn.Dropout(0.3)
    layer = _layer(0.3)
    torch.manual_seed(0)
    want = plain(x)
    torch.manual_seed(0)
    torch.testing.assert_close(layer(x), want, rtol=0, atol=0)  # the same draws from the process's RNG
    layer.eval()
    with draws.per_sample([0, 1, 2], seed=4):
        assert torch.equal(layer(x), x)
    assert list(layer.state_dict()) == list(plain.state_dict()) == []


def test_the_step_seed_is_one_draw_from_torch_taken_on_first_use() -> None:
    """A step whose layers draw nothing (p = 0) leaves torch's RNG alone; one that draws takes one number from it,
    once however many layers draw, so resumed runs (RNG state in last.pt) and every process see the same seeds."""
    x = torch.ones(2, 8)
    torch.manual_seed(3)
    with draws.per_sample([0, 1]):
        _layer(p=0.0)(x)
    assert torch.equal(torch.random.get_rng_state(), torch.manual_seed(3).get_state())
    torch.manual_seed(3)
    expected_seed = int(torch.randint(0, 2**62, (1,)).item())
    after_one_draw = torch.random.get_rng_state()
    torch.manual_seed(3)
    with draws.per_sample([0, 1]):
        got = _layer(name="a")(x)
        _layer(name="b")(x)
    assert torch.equal(torch.random.get_rng_state(), after_one_draw)
    with draws.per_sample([0, 1], seed=expected_seed):
        assert torch.equal(_layer(name="a")(x), got)


def test_misuse_is_a_clear_error() -> None:
    with draws.per_sample([0, 1, 2], seed=1), pytest.raises(ModelError, match="2 rows inside a step of 3"):
        _layer()(torch.ones(2, 4))
    with draws.per_sample([0], seed=1), pytest.raises(ModelError, match="name_layers"):
        _layer(name="")(torch.ones(1, 4))


def test_msam_semantic_branch_rows_do_not_depend_on_their_batch() -> None:
    """MSAM's two PIENets with the default dropout (0.2), in training mode: the Gaussians of captions 2 and 3
    computed with their batch of four equal those computed alone (a process's slice), and dropout is active
    (another step seed moves them)."""
    torch.manual_seed(0)
    branch = MultiSemanticBranch(16, slots=3, pie_hidden=8, mean_hidden=(8,), std_hidden=(8,))
    branch.train()
    assert [m.layer for m in branch.modules() if isinstance(m, draws.SampleDropout)] == [
        "video_pie.dropout", "text_pie.dropout"]
    g = torch.Generator().manual_seed(1)
    video, frames = torch.randn(4, 16, generator=g), torch.randn(4, 5, 16, generator=g)
    sentence, tokens = torch.randn(4, 16, generator=g), torch.randn(4, 7, 16, generator=g)
    positions = [11, 4, 20, 0]
    with draws.per_sample(positions, seed=5):
        whole = branch(video, frames, sentence, tokens)
    with draws.per_sample(positions[2:], seed=5):
        part = branch(video[2:], frames[2:], sentence[2:], tokens[2:])
    with draws.per_sample(positions, seed=6):
        other = branch(video, frames, sentence, tokens)
    for w, p, o in zip(whole, part, other, strict=True):
        torch.testing.assert_close(p, w[2:], rtol=1e-6, atol=1e-6)  # the same masks; matmul blocking aside
        assert not torch.allclose(o, w, atol=1e-4)


AMFMN_TINY = {
    "backbone": {"pretrained": None, "checkpoint": None},
    "data": {"image_size": 64},
    "model": {"sizes": {"embed_dim": 32, "word_dim": 16, "text_hidden": 32}, "options": {"vocab_threshold": 1}},
}
MCSAN_TINY = deep_merge(TINY_OVERRIDES, {"model": {"sizes": {"embed_dim": 32, "gru_hidden": 16, "attention_hidden": 16}}})


@pytest.mark.parametrize(("row", "overrides"), [("msam", TINY_OVERRIDES), ("mcsan", MCSAN_TINY), ("amfmn", AMFMN_TINY)])
def test_no_layer_of_a_retrieval_family_draws_from_the_process(row: str, overrides: dict) -> None:
    """Every registered retrieval family (MSAM, MCSAN, AMFMN): each dropout with p > 0 is a SampleDropout (MSAM's two
    PIENets; MCSAN has none; AMFMN seeds its skip-thoughts masks itself), and no attention or recurrent layer
    has a dropout of its own (those draw from the process's RNG)."""
    cfg = registered(row).with_overrides(overrides)
    texts = ["a red car drives left on a grey road", "two people walk along a beach", "a boat turns near a pier"]
    model = get_family(cfg.family).build_model(cfg, texts)
    sampled = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Dropout) and m.p > 0:
            assert isinstance(m, draws.SampleDropout), name
            sampled += 1
        if isinstance(m, (nn.MultiheadAttention, nn.RNNBase)):
            assert m.dropout == 0, name
    assert sampled == {"msam": 2, "mcsan": 0, "amfmn": 0}[row]
