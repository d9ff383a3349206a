"""Training runs end to end on a tiny dataset (CPU, random frozen backbone): MSAM overfits, runs resume
exactly, run folders hold what they promise, the CLI commands work, and search returns the model's ranking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dvtr_data.baselines.engine.config import deep_merge
from dvtr_data.baselines.engine.data import dataset_clips
from dvtr_data.baselines.engine.registry import registered
from dvtr_data.baselines.engine.runs import list_runs, results_table
from dvtr_data.baselines.engine.search import load_run_model, search
from dvtr_data.baselines.engine.train import build_model, feature_cache, resume_run, run_baseline
from dvtr_data.dataset import Dataset
from dvtr_data.testing.engine import TINY_OVERRIDES, build_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    return build_toy_dataset(tmp_path_factory.mktemp("toy") / "ds")


def tiny(name: str = "msam", **sections) -> object:
    return registered(name).with_overrides(deep_merge(TINY_OVERRIDES, sections))


@pytest.mark.slow
def test_msam_overfits_a_tiny_dataset(toy: Dataset) -> None:
    """Frozen random backbone, distinct clips and captions: the heads alone reach ~100 % training R@1 (~20 s)."""
    cfg = tiny(train={"epochs": 40, "batch_size": 8, "lr": 1e-3})
    result = run_baseline(cfg, toy.root, split_train="train", split_eval=["train"], device="cpu", run_id="overfit")
    final = result.final["train"]
    assert final["paper"]["t2v"]["R1"] >= 95 and final["single"]["t2v"]["R1"] >= 95
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    first, last = metrics["epochs"][0]["loss"], metrics["epochs"][-1]["loss"]
    assert last["contrastive"] < 0.7 * first["contrastive"]
    assert metrics["epochs"][0]["eval"]["train"]["paper"]["t2v"]["R1"] < final["paper"]["t2v"]["R1"]


def test_run_folder_holds_config_metrics_checkpoints_and_report(toy: Dataset) -> None:
    cfg = tiny(train={"epochs": 2, "batch_size": 8})
    result = run_baseline(cfg, toy.root, device="cpu", run_id="folder")
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "metrics.json", "best.pt", "last.pt", "report.md", "curves.png"} <= files
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["baseline"]["name"] == "msam" and config["request"]["split_eval"] == ["val", "test"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished" and len(metrics["epochs"]) == 2
    assert set(metrics["final"]) == {"val", "test"} and set(metrics["final"]["test"]) == {"paper", "single"}
    assert metrics["selection"]["split"] == "val" and metrics["best_epoch"] in (1, 2)
    best = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert not any(k.startswith("encoders.clip.") for k in best["model"])  # heads only: the backbone is frozen
    report = (result.run_dir / "report.md").read_text()
    assert "paper protocol" in report and "single-query" in report and "curves.png" in report
    header, rows = results_table(toy, split="test", protocol="single")
    assert any(r[0] == "folder" for r in rows) and header[0] == "run"


def test_interrupted_run_resumes_to_the_same_result(toy: Dataset) -> None:
    cfg = tiny(train={"epochs": 3, "batch_size": 8})
    whole = run_baseline(cfg, toy.root, device="cpu", run_id="whole")

    def stop_in_epoch_2(label: str, done: int, total: int) -> None:
        if label.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_baseline(cfg, toy.root, device="cpu", run_id="cut", progress=stop_in_epoch_2)
    assert json.loads((toy.root / "runs/cut/metrics.json").read_text())["status"] == "running"
    resumed = resume_run(toy.root, "cut")
    assert resumed.resumed and resumed.final == whole.final
    a = torch.load(whole.run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed.run_dir / "last.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    again = resume_run(toy.root, "cut")
    assert "already finished" in again.messages[0]


def test_frozen_features_are_cached_once_per_backbone(toy: Dataset) -> None:
    # a backbone no other test of this module uses, so the cache of its features starts empty, in any order
    cfg = tiny(train={"epochs": 1, "batch_size": 8}, backbone={"init_seed": 11})
    first: list[str] = []
    second: list[str] = []
    run_baseline(cfg, toy.root, device="cpu", run_id="cache-a", progress=lambda lab, d, t: first.append(lab))
    run_baseline(cfg, toy.root, device="cpu", run_id="cache-b", progress=lambda lab, d, t: second.append(lab))
    assert any(lab.startswith("encoding") for lab in first)  # the first run fills the cache
    assert not any(lab.startswith("encoding") for lab in second)  # the second encodes no clip or caption again
    other = tiny(train={"epochs": 1, "batch_size": 8}, backbone={"init_seed": 7})
    assert feature_cache(toy, other, 64).folder != feature_cache(toy, cfg, 64).folder


def test_nothing_to_train_is_a_usage_error_before_any_folder(toy: Dataset) -> None:
    from dvtr_data.errors import UsageError

    with pytest.raises(UsageError, match="nothing to train"):
        run_baseline(tiny("clip4clip-meanp", backbone={"mode": "frozen"}), toy.root, device="cpu", run_id="meanp-frozen")
    assert not (toy.root / "runs" / "meanp-frozen").exists()


def test_zero_shot_baseline_scores_without_training(toy: Dataset) -> None:
    result = run_baseline(tiny("clip4clip-meanp-zeroshot"), toy.root, device="cpu", run_id="zs")
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == [] and metrics["best_epoch"] is None and not (result.run_dir / "best.pt").exists()
    assert metrics["final"]["test"]["paper"]["t2v"]["R1"] >= 0
    hits = search(toy.root, "zs", "a red square", top=3).hits
    assert len(hits) == 3


def test_search_returns_the_models_ranking_of_every_clip(toy: Dataset) -> None:
    if not (toy.root / "runs/folder").is_dir():
        run_baseline(tiny(train={"epochs": 2, "batch_size": 8}), toy.root, device="cpu", run_id="folder")
    query = "a blue bar moves up over white ground"
    result = search(toy.root, "folder", query, top=12)
    clips = dataset_clips(toy)
    assert result.clips == len(clips) == 12
    run, cfg, model = load_run_model(toy, "folder", torch.device("cpu"))
    cache = feature_cache(toy, cfg, 64)
    frames, mask = cache.frame_features(clips, lambda missing: iter(()))
    from dvtr_data.baselines.engine.backbone import tokenize

    with torch.no_grad():
        sentence, _ = model.encode_text(tokenize([query]))
        expected = model.single_query_similarity_from_features(sentence, frames, mask)[0]
    order = torch.argsort(expected, descending=True).tolist()
    assert [h.clip_id for h in result.hits] == [clips[i].clip_id for i in order]
    got = torch.tensor([h.score for h in result.hits])
    assert (got - expected[order]).abs().max().item() <= 1e-5
    hit = result.hits[0]
    assert hit.flight_id and hit.end_s > hit.start_s
    assert result.index_path.is_file()  # built once, reused by the next query
    assert search(toy.root, "folder", "green", top=2).index_path == result.index_path


def test_demo_step_trains_once_then_reports(toy: Dataset) -> None:
    from dvtr_data.baselines.engine.demo import DEMO_RUN_ID, run_demo_baseline

    lines: list[str] = []
    first = run_demo_baseline(toy.root, query="a red square", say=lines.append, top=3)
    assert first.run_id == DEMO_RUN_ID and len(first.hits) == 3 and first.report.is_file()
    assert any(line.startswith("epoch 5/5") for line in lines) and any("search 'a red square'" in x for x in lines)
    lines.clear()
    again = run_demo_baseline(toy.root, query="a red square", say=lines.append, top=3)
    assert not any(line.startswith("epoch") for line in lines) and any("already finished" in x for x in lines)
    assert [h.clip_id for h in again.hits] == [h.clip_id for h in first.hits]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["reference", "finetune"])
def test_trained_backbone_modes_run(toy: Dataset, mode: str) -> None:
    cfg = tiny(backbone={"mode": mode, "backbone_lr": 1e-3 if mode == "finetune" else None}, train={"epochs": 1, "batch_size": 8})
    before = build_model(cfg).encoders.clip.state_dict()  # the same seeded initial weights
    result = run_baseline(cfg, toy.root, device="cpu", run_id=f"mode-{mode}")
    best = torch.load(result.run_dir / "best.pt", weights_only=True)["model"]
    w = "encoders.clip.transformer.resblocks.0.mlp.c_fc.weight"
    assert (best[w].dtype == torch.float16) == (mode == "reference")
    moved = (best[w].float() - before[w[len("encoders.clip."):]]).abs().max().item()
    if mode == "finetune":
        assert moved > 1e-5
    else:  # fp16 weights at lr 1e-7: at most the few underflowing entries move (see test_engine_optim)
        assert moved < 1e-2
    frozen_name = "encoders.clip.visual.conv1.weight"  # frozen by the authors' loop in both modes
    torch.testing.assert_close(best[frozen_name].float(), before[frozen_name[len("encoders.clip."):]], rtol=0, atol=1e-3)
    assert search(toy.root, f"mode-{mode}", "a red square", top=2).hits


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli():
    from dvtr_data.cli import app  # the real app: its one error boundary maps errors to exit codes

    return app


def test_cli_list_run_table_and_search(cli, toy: Dataset, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    listed = runner.invoke(cli, ["baseline", "list"], env=env)
    assert listed.exit_code == 0 and "msam-no-gate" in listed.output and "clip4clip-meanp-zeroshot" in listed.output
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"base": "msam", **TINY_OVERRIDES}))
    ran = runner.invoke(cli, ["baseline", "run", str(config), "-d", str(toy.root), "--epochs", "1", "--batch-size", "8",
                              "--device", "cpu", "--run-id", "cli-run"], env=env)
    assert ran.exit_code == 0, ran.output
    assert "paper protocol" in ran.output and "single-query" in ran.output and "cli-run" in ran.output
    table = runner.invoke(cli, ["baseline", "table", "-d", str(toy.root)], env=env)
    assert table.exit_code == 0 and "cli-run" in table.output and "tiny" in table.output
    found = runner.invoke(cli, ["search", "a green block", "-d", str(toy.root), "--run", "cli-run", "--top", "3"], env=env)
    assert found.exit_code == 0, found.output
    assert sum(c.clip_id in found.output for c in dataset_clips(toy)) == 3
    named = runner.invoke(cli, ["baseline", "msam", "--config", str(config), "-d", str(toy.root), "--epochs", "0",
                                "--device", "cpu", "--run-id", "cli-named"], env=env)
    assert named.exit_code == 0, named.output
    assert any(r.run_id == "cli-named" for r in list_runs(toy))


@pytest.mark.boundary
def test_cli_errors_are_one_line_with_exit_codes(cli, toy: Dataset) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    unknown = runner.invoke(cli, ["baseline", "run", "msam-nope", "-d", str(toy.root)], env=env)
    assert unknown.exit_code == 2 and "unknown baseline" in unknown.stderr
    # the real backbone: OpenAI weights are not on this machine and downloads are off
    weights = runner.invoke(cli, ["baseline", "msam", "-d", str(toy.root), "--device", "cpu", "--run-id", "no-weights"], env=env)
    assert weights.exit_code == 6 and "--clip-checkpoint" in weights.stderr
    errors = [ln for ln in weights.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in weights.output
    assert not (toy.root / "runs" / "no-weights").exists()  # no run folder for a run that never started
    missing = runner.invoke(cli, ["search", "x", "-d", str(toy.root), "--run", "nope"], env=env)
    assert missing.exit_code == 4 and "no run" in missing.stderr
    cuda = runner.invoke(cli, ["baseline", "msam", "-d", str(toy.root), "--device", "cuda:7", "--run-id", "nocuda"], env=env)
    assert cuda.exit_code == 2


@pytest.mark.parametrize("command", ["list", "table", "run", "resume", "msam", "clip4clip-meanp-zeroshot"])
def test_every_baseline_command_has_help_with_an_example(cli, command: str) -> None:
    result = CliRunner().invoke(cli, ["baseline", command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Example:" in result.output and "dvtr-data baseline" in result.output
