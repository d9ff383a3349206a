"""kill -9 at seeded moments of every writing command: the re-run gives the tables of an uninterrupted run.

Each command runs as a real process; ``DVTR_CRASH_AT=POINT:N`` (dvtr_data/crashpoints.py) makes it SIGKILL itself
the N-th time it reaches POINT: ``rename`` (just before any atomic rename: tables, dataset.toml, clip and media
files, manifests), ``media`` (before a media file is placed) and ``export`` (before an export folder is renamed into
place). After the kill: nothing that looks complete is there that should not be, the re-run ends like a run that
was never interrupted (timestamps aside), and no temporary file or staging folder is left. `annotate pull` runs
against the in-memory Label Studio stand-in, in a process of its own. Ingest has its own kill tests
(tests/test_ingest_bad_inputs.py); a killed `baseline` run is continued by `baseline resume` (tests/test_engine_train.py).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.synth import generate
from dvtr_data.synth.simulated import WRITER as DEMO
from dvtr_data.synth.simulated import simulated_captions

pytestmark = pytest.mark.slow

TIME_COLUMNS = {"created_at", "updated_at", "imported_at", "ingested_at", "embedded_at", "ran_at"}


def _tables(root: Path) -> dict[str, list[str]]:
    """Every table of the dataset (and every embeddings file), timestamps aside, rows in a stable order."""
    out = {}
    for path in sorted([*root.glob("*.parquet"), *root.glob("embeddings/*.parquet")]):
        table = pq.read_table(path)
        keep = [c for c in table.column_names if c not in TIME_COLUMNS]
        out[str(path.relative_to(root))] = sorted(map(repr, table.select(keep).to_pylist()))
    return out


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by content hash (the manifest and README carry a date: their presence only)."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        out[rel] = "present" if path.name in ("manifest.json", "README.md") else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob(".*") if p.name.endswith(".tmp") or ".partial-" in p.name or ".old-" in p.name]


# `annotate pull` against the in-memory Label Studio stand-in, in a process of its own; the crash point is armed only
# for the pull (push and simulate come first, to fill the stand-in the same way on every run)
_PULL = """
import os, sys
from pathlib import Path
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.annotation.pull import pull
from dvtr_data.annotation.push import push
from dvtr_data.annotation.simulate import simulate
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
root, conn, srv = Path(sys.argv[1]), Connection("http://127.0.0.1:8080", "k" * 40, local=True), FakeServer()
push(root, conn, overlap=2, studio=Studio(conn, sdk=FakeSDK(srv)))
simulate(root, conn, studio=Studio(conn, sdk=FakeSDK(srv)))
if os.environ.get("PULL_CRASH_AT"):
    os.environ["DVTR_CRASH_AT"] = os.environ["PULL_CRASH_AT"]
pull(root, conn, studio=Studio(conn, sdk=FakeSDK(srv)))
"""


def _run(args: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DVTR_CRASH_AT", "PULL_CRASH_AT")}
    env.update(COLUMNS="200")
    if crash:
        env["PULL_CRASH_AT" if args[0] == "-c" else "DVTR_CRASH_AT"] = crash
    command = [sys.executable, *args] if args[0] == "-c" else [sys.executable, "-m", "dvtr_data", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    top = tmp_path_factory.mktemp("kill")
    flights = generate(top / "flights", preset="tiny", seed=0)
    base = top / "base"
    ingest([top / "flights"], base, IngestConfig(), workers=1)
    ds = Dataset(base)
    with ds.writing("demo"):
        ds.replace_rows("captions", DEMO, simulated_captions(ds))
    pub = top / "pub"
    pub.mkdir()
    with open(pub / "raw-captions.pkl", "wb") as fh:
        pickle.dump({"vid_a": [["a", "red", "car"], ["two", "cars"]], "vid_b": [["a", "boat", "at", "sea"]]}, fh)
    (pub / "train_list.txt").write_text("vid_a\n")
    (pub / "test_list.txt").write_text("vid_b\n")
    shutil.copyfile(flights[0], pub / "vid_a.mp4")
    shutil.copyfile(flights[1], pub / "vid_b.mp4")
    return {"base": base, "pub": pub}


def _commands(world: dict[str, Path], root: Path) -> dict[str, list[str]]:
    return {
        "import": ["import", str(world["pub"]), "--format", "clip4clip", "--dataset", str(root), "--name", "pubx",
                   "--media", "copy"],
        "precaption": ["precaption", "--dataset", str(root), "--model", "ViT-S-32-alt", "--pretrained", "none",
                       "--workers", "1", "--frames", "2", "--batch-size", "8", "--device", "cpu"],
        "split": ["split", "--dataset", str(root), "--ratios", "50/0/50", "--min-captions", "1", "--tolerance", "0.5",
                  "--no-near-duplicates"],
        "export": ["export", "--dataset", str(root), "--format", "clip4clip", "--media", "copy"],
        "card": ["card", "--dataset", str(root)],
        "annotate-pull": ["-c", _PULL, str(root)],
    }


# (command, crash point): at least three moments per command, including media placement and the final rename
CASES = [
    ("import", "media:1"), ("import", "rename:4"), ("import", "rename:6"),
    ("precaption", "rename:1"), ("precaption", "rename:3"),
    ("split", "rename:1"), ("split", "rename:2"), ("split", "rename:3"),
    ("export", "media:1"), ("export", "rename:1"), ("export", "export:1"),
    ("card", "export:1"),
    ("annotate-pull", "rename:1"), ("annotate-pull", "rename:2"),
]


def _prepare(world: dict[str, Path], root: Path, command: str) -> None:
    shutil.copytree(world["base"], root, symlinks=True)
    if command in ("export", "card"):  # an export needs splits
        done = _run(_commands(world, root)["split"])
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """Each command run once without interruption on a fresh copy: its tables and its export's files."""
    out = {}
    for command in sorted({c for c, _ in CASES}):
        root = tmp_path_factory.mktemp(f"ref-{command}") / "ds"
        _prepare(world, root, command)
        done = _run(_commands(world, root)[command])
        assert done.returncode == 0, done.stderr
        out[command] = (_tables(root), _outputs(root, command))
    return out


@pytest.mark.parametrize(("command", "crash"), CASES, ids=[f"{c}-{p}" for c, p in CASES])
def test_a_kill_anywhere_then_a_rerun_gives_the_tables_of_an_uninterrupted_run(world, reference, tmp_path, command, crash):
    root = tmp_path / "ds"
    _prepare(world, root, command)
    args = _commands(world, root)[command]
    killed = _run(args, crash)
    assert killed.returncode == -signal.SIGKILL, f"{crash} was never reached: {killed.stderr}"
    if command in ("export", "card") and crash == "export:1":
        folder = root / ("card" if command == "card" else "exports/clip4clip")
        assert not folder.exists(), f"a killed {command} left a folder that looks finished"
    again = _run(args)
    assert again.returncode == 0, again.stderr
    tables, files = reference[command]
    assert _tables(root) == tables
    assert _outputs(root, command) == files
    assert _leftovers(root) == []


def _outputs(root: Path, command: str) -> dict[str, str]:
    """What a command writes besides tables: an export's files by hash; a card's file names (its pages carry a date)."""
    if command == "export":
        return _files(root / "exports" / "clip4clip")
    if command == "card":
        return {str(p.relative_to(root / "card")): "present" for p in sorted((root / "card").rglob("*")) if p.is_file()}
    return {}
