"""Every registered baseline row trains and scores on a tiny generated dataset, and ``baseline table`` shows the
rows of every family side by side with the protocol each one was scored in.

Rows run with tiny overrides (a small random backbone, 64 px inputs, one epoch of batches of 8): these tests
say that every row runs end to end and writes what a run promises, not how well it retrieves. A family whose
rows need other tiny sizes adds them to ``TINY_FAMILY`` (see ``baselines/engine/family.py``).
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from dvtr_data.baselines.engine.config import deep_merge
from dvtr_data.baselines.engine.family import get_family
from dvtr_data.baselines.engine.registry import baseline_names, registered
from dvtr_data.baselines.engine.runs import results_table
from dvtr_data.baselines.engine.train import run_baseline
from dvtr_data.dataset import Dataset
from dvtr_data.testing.engine import TINY_OVERRIDES, build_toy_dataset

# Per family: what makes its rows tiny. Sizes only: every row keeps its own method settings.
TINY_FAMILY: dict[str, dict] = {
    "msam": TINY_OVERRIDES,
    "mcsan": TINY_OVERRIDES,  # frozen CLIP features, as MSAM's rows
    "amfmn": {
        "backbone": {"pretrained": None, "checkpoint": None},
        "data": {"image_size": 64},
        "model": {"sizes": {"embed_dim": 32, "word_dim": 16, "text_hidden": 32}, "options": {"vocab_threshold": 1}},
    },
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    """The engine's toy dataset; half of its clips get a category (AMFMN's keywords) and keyframes stay absent
    (AMFMN then reads each clip's middle frame)."""
    ds = build_toy_dataset(tmp_path_factory.mktemp("rows") / "ds")
    clips = ds.read_table("clips").to_pylist()
    for k, row in enumerate(clips):
        if k % 2 == 0:
            row["category"] = f"scene {k}, toy ground"
            row["category_source"] = "user"
    ds.write_table("clips", clips)
    return ds


def tiny(name: str) -> object:
    """The row with its family's tiny sizes and at most one epoch (a zero-shot row stays zero-shot)."""
    cfg = registered(name)
    train = {"epochs": min(cfg.train.epochs, 1), "batch_size": 8}
    return cfg.with_overrides(deep_merge(TINY_FAMILY.get(cfg.family, {}), {"train": train}))


@pytest.mark.parametrize("name", baseline_names())
def test_every_registered_row_trains_and_scores(toy: Dataset, name: str) -> None:
    cfg = tiny(name)
    family = get_family(cfg.family)
    # the tests below reuse this run when it is there, or make it: in any order, this test trains it afresh
    shutil.rmtree(toy.root / "runs" / f"row-{name}", ignore_errors=True)
    result = run_baseline(cfg, toy.root, device="cpu", run_id=f"row-{name}")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished" and set(metrics["final"]) == {"val", "test"}
    expected_epochs = cfg.train.epochs
    assert len(metrics["epochs"]) == expected_epochs
    for record in metrics["epochs"]:
        assert record["steps"] == 3 and all(math.isfinite(v) for v in record["step_loss"])  # 24 captions / 8
    assert (result.run_dir / "best.pt").is_file() == (expected_epochs > 0)
    reported = set(family.protocols) & set(cfg.eval.protocols)
    for split in ("val", "test"):
        assert set(metrics["final"][split]) == reported
        for res in metrics["final"][split].values():
            for direction in ("t2v", "v2t"):
                r = res[direction]
                assert 0 <= r["R1"] <= r["R5"] <= r["R10"] <= 100 and r["MnR"] >= 1
    header, rows = results_table(toy, split="test", protocol=min(reported))
    mine = [r for r in rows if r[0] == f"row-{name}"]
    assert len(mine) == 1 and mine[0][header.index("family")] == cfg.family
    assert mine[0][header.index("protocol")].startswith(f"{cfg.family} ")


def test_the_table_shows_families_side_by_side_with_their_protocols(toy: Dataset) -> None:
    for name in ("clip4clip-meanp-zeroshot", "amfmn-fixed-margin"):
        if not (toy.root / "runs" / f"row-{name}").is_dir():
            run_baseline(tiny(name), toy.root, device="cpu", run_id=f"row-{name}")
    header, rows = results_table(toy, split="test", protocol="paper")
    assert header[:7] == ["run", "baseline", "family", "backbone", "mode", "best epoch", "protocol"] and header[-1] == "mR"
    by_run = {r[0]: dict(zip(header, r, strict=True)) for r in rows}
    msam, amfmn = by_run["row-clip4clip-meanp-zeroshot"], by_run["row-amfmn-fixed-margin"]
    assert "32-caption chunks" in msam["protocol"] and "each caption alone" in amfmn["protocol"]
    assert msam["mode"] == "zero-shot" and amfmn["family"] == "amfmn" and amfmn["backbone"] == "resnet18/random"
    # mR is the mean of the six recalls shown in the same row
    recalls = [float(amfmn[f"{d} R{k}"]) for d in ("t2v", "v2t") for k in (1, 5, 10)]
    assert float(amfmn["mR"]) == pytest.approx(sum(recalls) / 6, abs=0.06)


def test_amfmn_scores_are_the_same_in_both_protocols(toy: Dataset) -> None:
    """AMFMN's own protocol scores every caption alone, so its paper and single numbers must agree."""
    run_dir = toy.root / "runs" / "row-amfmn-fixed-margin"
    if not run_dir.is_dir():
        run_baseline(tiny("amfmn-fixed-margin"), toy.root, device="cpu", run_id="row-amfmn-fixed-margin")
    final = json.loads((run_dir / "metrics.json").read_text())["final"]
    for split in ("val", "test"):
        assert final[split]["paper"] == final[split]["single"]
    # the checkpoint carries its vocabulary: a caption's ids can be made again outside the engine
    best = torch.load(run_dir / "best.pt", weights_only=True)
    word2idx = best["extra"]["word2idx"]
    assert word2idx["<unk>"] == max(word2idx.values()) and "ground" in word2idx
    assert best["model"]["text_feature.seq2vec.embedding.weight"].shape[0] == len(word2idx) + 1


def test_search_names_the_family_it_cannot_index(toy: Dataset) -> None:
    from dvtr_data.baselines.engine.search import search
    from dvtr_data.errors import UsageError

    if not (toy.root / "runs" / "row-amfmn-fixed-margin").is_dir():
        run_baseline(tiny("amfmn-fixed-margin"), toy.root, device="cpu", run_id="row-amfmn-fixed-margin")
    with pytest.raises(UsageError, match="amfmn run"):
        search(toy.root, "row-amfmn-fixed-margin", "a red square", top=3)


@pytest.mark.slow
def test_amfmn_learns_the_tiny_training_split(toy: Dataset) -> None:
    """Released loss, random backbone, 12 epochs at lr 1e-3: training R@1 well above chance (1 in 8; ~40 s)."""
    cfg = tiny("amfmn-fixed-margin").with_overrides({"train": {"epochs": 12, "lr": 1e-3}})
    result = run_baseline(cfg, toy.root, split_eval=["train"], device="cpu", run_id="amfmn-learns")
    final = result.final["train"]["paper"]
    assert final["t2v"]["R1"] >= 37.5 and final["v2t"]["R1"] >= 37.5
    epochs = json.loads((result.run_dir / "metrics.json").read_text())["epochs"]
    assert epochs[-1]["loss"]["total"] < epochs[0]["loss"]["total"]


def test_an_interrupted_amfmn_run_resumes_to_the_same_result(toy: Dataset) -> None:
    """The generic loop's last.pt carries model, optimiser and RNG (random crops, skip-thoughts dropout)."""
    from dvtr_data.baselines.engine.train import resume_run

    cfg = tiny("amfmn").with_overrides({"train": {"epochs": 2}})
    whole = run_baseline(cfg, toy.root, device="cpu", run_id="amfmn-whole")

    def stop_in_epoch_2(label: str, done: int, total: int) -> None:
        if label.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_baseline(cfg, toy.root, device="cpu", run_id="amfmn-cut", progress=stop_in_epoch_2)
    resumed = resume_run(toy.root, "amfmn-cut")
    assert resumed.resumed and resumed.final == whole.final
    a = torch.load(whole.run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed.run_dir / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_missing_imagenet_weights_stop_an_amfmn_run_before_its_folder(toy: Dataset, tmp_path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dvtr_data.errors import InputError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = tiny("amfmn").with_overrides({"backbone": {"pretrained": "imagenet"}})
    with pytest.raises(InputError, match="resnet18-5c106cde.pth"):
        run_baseline(cfg, toy.root, device="cpu", run_id="amfmn-no-weights")
    assert not (toy.root / "runs" / "amfmn-no-weights").exists()
