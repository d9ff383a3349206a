"""Hostile and faulty inputs on the CLI, text and service side (issue 11 items 6, 7, 9, 12, 13, 16, 17).

Each case of the issue is one named test: a pickle bomb (bounded memory, exit 3), a resumable bank embedding,
Rich markup in user text, out-of-range options (exit 2), unreadable checkpoints (exit 6, never PyTorch's advice to
load unsafely), a port in TIME-WAIT, and the minor ones (bounded error lines, URL passwords, the resume hint,
control characters in captions). Commands run in the real app, inside its one error boundary.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dvtr_data.cli import app
from dvtr_data.errors import InputError, UsageError

runner = CliRunner()
ENV = {"COLUMNS": "200", "HF_HUB_OFFLINE": "1", "DVTR_DEBUG": ""}


def invoke(*args: str):
    return runner.invoke(app, list(args), env=ENV)


def one_error_line(result) -> str:
    """The run's one error line (progress and log lines may precede it on stderr)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith(("error:", "internal error:"))]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    return lines[0]


# ------------------------------------------------------------------------------------------------------------
# 6. pickle bomb
# ------------------------------------------------------------------------------------------------------------
def write_bomb(folder: Path) -> Path:
    """140 KB: one caption whose 20,000 tokens all reference one 100 KB string (2 GB once joined)."""
    folder.mkdir(parents=True, exist_ok=True)
    token = "x" * 100_000
    path = folder / "raw-captions.pkl"
    path.write_bytes(pickle.dumps({"v1": [[token] * 20_000]}, protocol=4))
    return path


def peak_growth(code: str, tmp_path: Path) -> tuple[int, str]:
    """Run ``code`` in a fresh interpreter (modules imported first); its peak RSS growth in bytes and its output."""
    script = textwrap.dedent(
        """
        import resource, sys
        from typer.testing import CliRunner
        from dvtr_data.cli import app
        import dvtr_data.importers, dvtr_data.precaption.bank, pyarrow.parquet
        runner = CliRunner()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        """
    ) + textwrap.dedent(code) + textwrap.dedent(
        """
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("GROWTH", (after - before) * 1024)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("DVTR_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    growth = int(done.stdout.split("GROWTH")[-1])
    return growth, done.stdout


def test_pickle_bomb_import_fails_with_exit_3_in_bounded_memory(tmp_path):
    bomb = write_bomb(tmp_path / "pub")
    size = bomb.stat().st_size
    assert 130_000 < size < 150_000  # the 140 KB file
    growth, output = peak_growth(
        f"""
        r = runner.invoke(app, ["import", {str(bomb.parent)!r}, "--format", "clip4clip", "--dataset",
                                {str(tmp_path / 'ds')!r}])
        print("EXIT", r.exit_code, r.output.replace("\\n", " "))
        """,
        tmp_path,
    )
    assert "EXIT 3 " in output and "expands to over" in output, output
    # joining the tokens would take 2 GB (14,000x the file); reading and checking it stays a small multiple
    assert growth < 200 * size, growth


def test_pickle_bomb_caption_bank_fails_with_exit_3_in_bounded_memory(tmp_path):
    bomb = write_bomb(tmp_path / "bank")
    size = bomb.stat().st_size
    growth, output = peak_growth(
        f"""
        from dvtr_data.errors import InputError
        try:
            dvtr_data.precaption.bank.load_bank({str(bomb)!r})
            print("LOADED")
        except InputError as exc:
            print("EXIT", exc.exit_code, str(exc))
        """,
        tmp_path,
    )
    assert "EXIT 3 " in output and "expands to over" in output, output
    assert growth < 200 * size, growth


def test_pickle_of_many_short_captions_sharing_one_token_exceeds_the_total_bound(tmp_path):
    from dvtr_data.precaption.bank import load_bank
    from dvtr_data.unpickle import EXPANSION_FACTOR, EXPANSION_SLACK

    token = "y" * 4000  # each caption is under the per-caption limit ...
    path = tmp_path / "raw-captions.pkl"
    path.write_bytes(pickle.dumps({f"v{i}": [[token]] for i in range(2000)}, protocol=4))
    size = path.stat().st_size
    # ... but together they are 8 M characters, over the bound for this file (16 x ~30 KB + 1 MiB, about 1.5 M)
    assert 2000 * 4000 > EXPANSION_FACTOR * size + EXPANSION_SLACK
    with pytest.raises(InputError, match="characters per byte|captions expand to over") as caught:
        load_bank(path)
    assert caught.value.exit_code == 3


def test_honest_caption_pickle_with_shared_tokens_still_loads(tmp_path):
    from dvtr_data.unpickle import caption_pickle

    words = ["a", "boat", "near", "the", "harbour", "with", "people", "walking"]
    data = {f"video{i}": [[words[(i + k) % 8] for k in range(12)] for _ in range(5)] for i in range(300)}
    path = tmp_path / "raw-captions.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    assert caption_pickle(path) == data


def test_old_unpickle_module_reexports_the_neutral_one():
    import dvtr_data.precaption.unpickle as old
    import dvtr_data.unpickle as new

    assert old.load_restricted is new.load_restricted and old.RefusedPickle is new.RefusedPickle


# ------------------------------------------------------------------------------------------------------------
# 7. bank embeddings: progress and resume
# ------------------------------------------------------------------------------------------------------------
class CountingEncoder:
    """Embeds text i as a one-hot-ish vector of its length; counts calls and fails on the ``fail_at``-th."""

    class identity:  # the shape of `ModelIdentity` the cache reads
        key = "counting"
        config_hash = "c0ffee"
        embed_dim = 4

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[int] = []
        self.fail_at = fail_at

    def encode_texts(self, texts, progress=None):
        self.calls.append(len(texts))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise RuntimeError("injected failure")
        out = np.array([[len(t), t.count("a"), 1.0, 0.0] for t in texts], np.float32)
        if progress:
            progress(len(texts), len(texts))
        return out


def test_bank_embedding_resumes_after_a_failure_mid_way(tmp_path):
    from dvtr_data.precaption.bank import cached_text_embeddings

    texts = [f"caption {'a' * (i % 7)} number {i}" for i in range(23)]  # 5 chunks of 5, the last of 3
    expected = np.array([[len(t), t.count("a"), 1.0, 0.0] for t in texts], np.float32)
    first = CountingEncoder(fail_at=4)
    with pytest.raises(RuntimeError, match="injected"):
        cached_text_embeddings(texts, "d" * 64, first, tmp_path, chunk_size=5)
    assert first.calls == [5, 5, 5, 5]  # three chunks saved, the fourth failed
    second = CountingEncoder()
    seen: list[tuple[int, int]] = []
    vectors, cached = cached_text_embeddings(texts, "d" * 64, second, tmp_path, lambda d, n: seen.append((d, n)),
                                             chunk_size=5)
    assert second.calls == [5, 3]  # only the two remaining chunks are encoded
    assert not cached and np.array_equal(vectors, expected)
    assert seen[-1] == (23, 23) and (15, 23) in seen  # progress counts the cached chunks too
    assert not list(tmp_path.rglob("*.parts"))  # the parts go once the whole matrix is saved
    third = CountingEncoder()
    again, cached = cached_text_embeddings(texts, "d" * 64, third, tmp_path, chunk_size=5)
    assert cached and third.calls == [] and np.array_equal(again, expected)


def test_bank_embedding_progress_reaches_the_reporting_protocol(tmp_path):
    from dvtr_data.precaption.bank import cached_text_embeddings
    from dvtr_data.reporting import ProgressEvent, Reporter

    events: list = []
    reporter = Reporter(events.append, "precaption")
    texts = [f"t{i}" for i in range(10)]
    cached_text_embeddings(texts, "e" * 64, CountingEncoder(), tmp_path,
                           reporter.heartbeat("embedding bank captions", "captions"), chunk_size=4)
    done = [e.done for e in events if isinstance(e, ProgressEvent)]
    assert done == sorted(done) and done[-1] == 10 and {4, 8} <= set(done)
    assert all(e.total == 10 and e.unit == "captions" for e in events)


# ------------------------------------------------------------------------------------------------------------
# 9. Rich markup in user text
# ------------------------------------------------------------------------------------------------------------
def test_search_query_with_markup_is_printed_verbatim(monkeypatch, tmp_path):
    import dvtr_data.baselines.engine.search as search_mod

    def fake_search(dataset, run, query, **kw):
        hit = search_mod.SearchHit(1, "clip[/]one [parked]", "flight [dji mini]", 0.0, 2.0, 0.5)
        return search_mod.SearchResult(query, [hit], 1, 0.001, tmp_path / "index[/b].pt")

    monkeypatch.setattr(search_mod, "search", fake_search)
    result = invoke("search", "boats [/] sea [parked]", "-d", str(tmp_path), "--run", "r")
    assert result.exit_code == 0, result.output
    assert "search: boats [/] sea [parked]" in result.stdout
    assert "clip[/]one [parked]" in result.stdout and "flight [dji mini]" in result.stdout


def test_precaption_show_of_a_bank_caption_with_markup(tmp_path):
    from dvtr_data.testing.precaption import make_dataset

    ds = make_dataset(tmp_path / "ds", ["red"])
    bank = tmp_path / "bank.txt"
    bank.write_text("A red roof [/x] with cars [parked].\nA blue lake [dji mini].\n")
    ran = invoke("precaption", "-d", str(ds.root), "--model", "ViT-S-32-alt", "--pretrained", "none",
                 "--bank", str(bank), "--top-k", "2", "--top-tags", "0", "--device", "cpu")
    assert ran.exit_code == 0, ran.output
    shown = invoke("precaption", "show", "f0000000000000001-0000000-red", "-d", str(ds.root))
    assert shown.exit_code == 0, shown.output
    assert "A red roof [/x] with cars [parked]." in shown.stdout and "A blue lake [dji mini]." in shown.stdout


def test_ingest_input_path_with_markup(tmp_path):
    flights = tmp_path / "flights[" / "]"  # the path flights[/] as typed
    result = invoke("ingest", str(flights), "--dataset", str(tmp_path / "ds [dji mini]"))
    assert result.exit_code in (2, 3), result.output
    assert "flights[/]" in one_error_line(result)


def test_info_of_a_dataset_path_with_markup(tmp_path):
    result = invoke("info", "--dataset", str(tmp_path / "no[/b]where [parked]"))
    assert result.exit_code == 4, result.output
    assert "no[/b]where [parked]" in one_error_line(result)


def test_progress_labels_with_markup_render_verbatim():
    import io

    from rich.console import Console
    from rich.progress import Progress, TextColumn

    from dvtr_data.cli.common import ProgressBars
    from dvtr_data.reporting import Notice, ProgressEvent

    console = Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)
    progress = Progress(TextColumn("{task.description}"), console=console, auto_refresh=False)
    bars = ProgressBars(progress)
    with bars:
        bars(ProgressEvent("ingest", "flights[/] [dji mini]/a.mp4", 1, 2))
        bars(Notice("ingest", "skipped [parked] file [/x]", "warning"))
        progress.refresh()
    text = console.file.getvalue()
    assert "flights[/] [dji mini]/a.mp4" in text and "skipped [parked] file [/x]" in text


# ------------------------------------------------------------------------------------------------------------
# 12. out-of-range options: exit 2, checked in the config objects
# ------------------------------------------------------------------------------------------------------------
def test_split_negative_seed_is_a_usage_error(tmp_path):
    from dvtr_data.splits.build import SplitConfig

    with pytest.raises(UsageError, match="--seed must be >= 0"):
        SplitConfig(seed=-1).check()
    from dvtr_data.dataset import Dataset

    Dataset(tmp_path / "ds").create()
    result = invoke("split", "--dataset", str(tmp_path / "ds"), "--seed", "-1")
    assert result.exit_code == 2 and "--seed must be >= 0" in one_error_line(result)


def test_precaption_negative_seed_is_a_usage_error(tmp_path):
    from dvtr_data.precaption.encoder import ModelSpec
    from dvtr_data.testing.precaption import make_dataset

    with pytest.raises(UsageError, match="--seed must be >= 0"):
        ModelSpec("ViT-S-32-alt", None, seed=-1).check()
    ds = make_dataset(tmp_path / "ds", ["red"])
    result = invoke("precaption", "-d", str(ds.root), "--model", "ViT-S-32-alt", "--pretrained", "none",
                    "--seed", "-1", "--device", "cpu")
    assert result.exit_code == 2 and "--seed must be >= 0" in one_error_line(result)


def test_baseline_negative_seed_is_a_usage_error():
    from dvtr_data.baselines.engine.registry import registered

    with pytest.raises(UsageError, match="seed"):
        registered("msam").with_overrides({"train": {"seed": -1}})
    with pytest.raises(UsageError, match="seed"):
        registered("msam").with_overrides({"backbone": {"init_seed": -3}})


def test_annotate_push_overlap_is_bounded(tmp_path):
    from dvtr_data.annotation.client import Connection
    from dvtr_data.annotation.push import MAX_OVERLAP, push
    from dvtr_data.dataset import Dataset

    Dataset(tmp_path / "ds").create()
    conn = Connection("http://127.0.0.1:9", "k" * 40, local=False)
    for bad in (0, MAX_OVERLAP + 1, 100_000_000_000):
        with pytest.raises(UsageError, match=f"--overlap must be between 1 and {MAX_OVERLAP}") as caught:
            push(tmp_path / "ds", conn, overlap=bad)
        assert caught.value.exit_code == 2


def test_negative_workers_is_a_usage_error(tmp_path):
    from dvtr_data.engine import make_executor

    with pytest.raises(UsageError, match="--workers must be >= 0"):
        make_executor(-1)
    (tmp_path / "flights").mkdir()
    result = invoke("ingest", str(tmp_path / "flights"), "--dataset", str(tmp_path / "ds"), "--workers", "-1")
    assert result.exit_code == 2 and "--workers must be" in one_error_line(result)


# ------------------------------------------------------------------------------------------------------------
# 13. unreadable checkpoints: exit 6, "checkpoint unreadable", never the advice to load unsafely
# ------------------------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this would run a shell command: what a hostile checkpoint does under a plain torch.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoint(path: Path, kind: str, good: bytes, marker: Path) -> None:
    import torch

    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save({"model": Payload(marker)}, path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A toy dataset with one finished 1-epoch run of a tiny MSAM (CPU, seconds)."""
    from dvtr_data.baselines.engine.config import deep_merge
    from dvtr_data.baselines.engine.registry import registered
    from dvtr_data.baselines.engine.train import run_baseline
    from dvtr_data.testing.engine import TINY_OVERRIDES, build_toy_dataset

    ds = build_toy_dataset(tmp_path_factory.mktemp("toy") / "ds")
    cfg = registered("msam").with_overrides(deep_merge(TINY_OVERRIDES, {"train": {"epochs": 1, "batch_size": 8}}))
    run_baseline(cfg, ds.root, device="cpu", run_id="good")
    return ds


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "hostile"])
def test_search_with_an_unreadable_best_pt_exits_6(finished_run, tmp_path, kind):
    runs = finished_run.root / "runs"
    run_id = f"best-{kind}"
    shutil.rmtree(runs / run_id, ignore_errors=True)
    shutil.copytree(runs / "good", runs / run_id)
    shutil.rmtree(runs / run_id / "search", ignore_errors=True)
    marker = tmp_path / "pwned"
    _bad_checkpoint(runs / run_id / "best.pt", kind, (runs / "good" / "best.pt").read_bytes(), marker)
    result = invoke("search", "a red square", "-d", str(finished_run.root), "--run", run_id)
    assert result.exit_code == 6, result.output
    line = one_error_line(result)
    assert "checkpoint unreadable" in line and "best.pt" in line
    assert "weights_only" not in result.output and "False" not in result.output
    assert not marker.exists()


def test_resume_with_a_truncated_last_pt_exits_6(finished_run):
    runs = finished_run.root / "runs"
    shutil.rmtree(runs / "cut", ignore_errors=True)
    shutil.copytree(runs / "good", runs / "cut")
    metrics = json.loads((runs / "cut" / "metrics.json").read_text())
    metrics["status"] = "running"
    (runs / "cut" / "metrics.json").write_text(json.dumps(metrics))
    last = runs / "cut" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    result = invoke("baseline", "resume", "cut", "-d", str(finished_run.root), "--device", "cpu")
    assert result.exit_code == 6, result.output
    line = one_error_line(result)
    assert "checkpoint unreadable" in line and "last.pt" in line and "weights_only" not in line


def test_unreadable_reason_never_repeats_the_unsafe_advice():
    from dvtr_data.baselines.engine.checkpoint import unreadable_reason

    advice = pickle.UnpicklingError(
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely succeed")
    reason = unreadable_reason(advice)
    assert "weights_only" not in reason and "False" not in reason and "could run code" in reason


# ------------------------------------------------------------------------------------------------------------
# 16. a port in TIME-WAIT is free to the server
# ------------------------------------------------------------------------------------------------------------
def test_port_in_time_wait_is_free():
    from dvtr_data.annotation.server import HOST, port_in_use

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    port = listener.getsockname()[1]
    listener.listen(1)
    client = socket.create_connection((HOST, port))
    served, _ = listener.accept()
    assert port_in_use(port)  # something listens: in use
    served.close()  # the server side closes first: its end of the connection goes to TIME-WAIT
    client.close()
    listener.close()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout \
        if shutil.which("ss") else ""
    if shutil.which("ss"):
        assert "TIME-WAIT" in states  # the case of the issue really is set up
    assert not port_in_use(port)


# ------------------------------------------------------------------------------------------------------------
# 17. minor
# ------------------------------------------------------------------------------------------------------------
def test_error_line_with_a_five_megabyte_id_is_bounded(tmp_path):
    from dvtr_data.testing.precaption import make_dataset

    ds = make_dataset(tmp_path / "ds", ["red"])
    huge = "x" * 5_000_000
    result = invoke("precaption", "show", huge, "-d", str(ds.root))
    assert result.exit_code == 2
    assert len(one_error_line(result)) <= 2100 and len(result.output) < 5000


def test_url_password_is_redacted_in_errors(tmp_path):
    from dvtr_data.annotation.client import redact
    from dvtr_data.dataset import Dataset

    Dataset(tmp_path / "ds").create()
    env = {**ENV, "LABEL_STUDIO_API_KEY": ""}
    result = runner.invoke(app, ["annotate", "push", "-d", str(tmp_path / "ds"), "--url",
                                 "https://alice:s3cr3t-pass@ls.example.org"], env=env)
    assert result.exit_code == 5, result.output
    line = one_error_line(result)
    assert "s3cr3t-pass" not in result.output and "alice:***@ls.example.org" in line
    assert redact("at http://u:hunter22@h:8080/x, token abcdef123", "abcdef123") == "at http://u:***@h:8080/x, token ***"


def test_resume_hint_names_the_real_command(finished_run):
    runs = finished_run.root / "runs"
    shutil.rmtree(runs / "unfinished", ignore_errors=True)
    shutil.copytree(runs / "good", runs / "unfinished")
    metrics = json.loads((runs / "unfinished" / "metrics.json").read_text())
    metrics["status"] = "running"
    (runs / "unfinished" / "metrics.json").write_text(json.dumps(metrics))
    result = invoke("search", "a red square", "-d", str(finished_run.root), "--run", "unfinished")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "dvtr-data baseline resume unfinished" in line and "--resume" not in line


@pytest.mark.parametrize("text", ["a boat\x00 near the shore with people", "a boat \x1b[31mred\x1b[0m near the shore",
                                  "a boat near the \u202eerohs eht\u202c with people"])
def test_captions_with_control_characters_are_flagged(tmp_path, text):
    from dvtr_data.annotation.checks import BLOCKING, caption_flags
    from dvtr_data.importers import import_published
    from dvtr_data.text import tokenize

    assert "control_chars" in caption_flags(text, tokenize(text), None) and "control_chars" in BLOCKING
    src = tmp_path / "pub"
    src.mkdir()
    (src / "raw-captions.pkl").write_bytes(pickle.dumps({"v1": [text.split(" "), ["a", "clean", "caption"]]}))
    import_published("clip4clip", src, tmp_path / "ds", media="none")
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "ds" / "captions.parquet").to_pylist()
    flagged = {r["text"]: r["flags"] for r in rows}
    assert flagged[text] == ["control_chars"]  # the published bytes are kept as they were
    assert flagged["a clean caption"] == []


def test_a_clean_caption_has_no_control_flag():
    from dvtr_data.annotation.checks import caption_flags
    from dvtr_data.text import tokenize

    text = "a white boat near the shore\twith café tables"
    assert "control_chars" not in caption_flags(text, tokenize(text), None)


def test_run_log_and_error_rows_bound_a_five_megabyte_error(tmp_path):
    from dvtr_data.runlog import RunLog
    from dvtr_data.text import MAX_ERROR_CHARS, bounded

    huge = "no clip " + "x" * 5_000_000
    with RunLog(tmp_path / "logs", "probe") as log:
        log.write("error", error=huge, count=3)
    line = (tmp_path / "logs").glob("probe-*.jsonl").__next__().read_text()
    record = json.loads(line)
    assert len(record["error"]) <= MAX_ERROR_CHARS and record["error"].startswith("no clip xxx")
    kept = record["error"].index("...")
    assert record["error"].endswith(f"({len(huge) - kept} more characters)")
    assert record["count"] == 3 and len(line) < 3 * MAX_ERROR_CHARS
    assert bounded("short") == "short"
    # the cut says exactly how much is missing: kept + missing = the whole
    cut = bounded("y" * 10_000, 100)
    kept = cut.index("...")
    assert len(cut) <= 100 and cut.endswith(f"({10_000 - kept} more characters)") and kept > 70


def test_precaption_error_rows_are_bounded():
    from types import SimpleNamespace

    from dvtr_data.precaption.embed import error_row
    from dvtr_data.text import MAX_ERROR_CHARS

    identity = SimpleNamespace(name="m/random-s0", config_hash="h", checkpoint_sha256=None, precision="fp32",
                               embed_dim=4)
    clip = SimpleNamespace(clip_id="c1", source="ingest", path=Path("/x.mp4"))
    row = error_row(clip, identity, "uniform:8", "z" * 5_000_000)
    assert len(row["error"]) <= MAX_ERROR_CHARS and row["error"].startswith("zzz")


def test_serve_says_when_the_dataset_moved_since_push(tmp_path):
    from dvtr_data.annotation.server import moved_since_push, start_server
    from dvtr_data.dataset import Dataset
    from dvtr_data.errors import ServiceError

    ds = Dataset(tmp_path / "copy").create()
    assert moved_since_push(ds) is None  # never pushed
    ds.work_dir.mkdir(parents=True, exist_ok=True)
    state = ds.work_dir / "annotate.json"
    state.write_text(json.dumps({"servers": {"local": {"storage_path": str(ds.clips_dir)}}}))
    assert moved_since_push(ds) is None  # pushed from here
    state.write_text(json.dumps({"servers": {"local": {"storage_path": "/old/place/clips"}}}))
    assert moved_since_push(ds) == "/old/place/clips"
    said: list[str] = []
    with socket.socket() as busy:  # a port that really is in use stops the start right after the warning
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(ServiceError, match="in use"):
            start_server(ds.root, port=busy.getsockname()[1], say=said.append, install=False)
    assert any("/old/place/clips" in s and "annotate push" in s and "404" in s for s in said)


def test_precaption_with_a_hostile_checkpoint_exits_6_without_the_unsafe_advice(tmp_path):
    import torch

    from dvtr_data.testing.precaption import make_dataset

    ds = make_dataset(tmp_path / "ds", ["red"])
    marker = tmp_path / "pwned"
    weights = tmp_path / "hostile.pt"
    torch.save({"state_dict": Payload(marker)}, weights)
    result = invoke("precaption", "-d", str(ds.root), "--model", "ViT-S-32-alt", "--checkpoint", str(weights),
                    "--device", "cpu", "--top-tags", "0")
    assert result.exit_code == 6, result.output
    line = one_error_line(result)
    assert "checkpoint unreadable" in line and "weights_only" not in result.output and not marker.exists()
