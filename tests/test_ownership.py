"""No command removes or changes rows that another command wrote: the matrix over ordered pairs of writers.

For every ordered pair (A, B) of the commands that write tables: run A, run B, run A again; every row B wrote is
still there and unchanged, to the byte. The commands run for real on generated flights (ingest, import, precaption,
split); annotate push/simulate/pull talk to the in-memory Label Studio stand-in here (one pair runs against a real
server in tests/test_annotate_server.py).
"""

from __future__ import annotations

import copy
import itertools
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.annotation.moments import pull_moments, push_moments, simulate_moments
from dvtr_data.annotation.pull import pull
from dvtr_data.annotation.push import push
from dvtr_data.annotation.ratings import pull_ratings, push_ratings, simulate_ratings
from dvtr_data.annotation.review import FIX_WRITER, review_pull, review_push
from dvtr_data.annotation.simulate import simulate
from dvtr_data.dataset import Dataset
from dvtr_data.importers import import_published
from dvtr_data.ingest import IngestConfig, ingest
from dvtr_data.ingest.windows import WindowRule
from dvtr_data.precaption.stage import PrecaptionConfig, precaption
from dvtr_data.schemas import TABLES
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.synth import generate
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
from dvtr_data.testing.precaption import ColourEncoder

pytestmark = pytest.mark.slow

SHORT = WindowRule(target_s=2.0, min_s=1.0, max_s=4.0)
LOCAL = Connection("http://127.0.0.1:8080", "k" * 40, local=True)
BANK = ["A red roof in a village.", "A green forest on a hill.", "A blue lake between hills.", "A port with boats."]


@dataclass
class World:
    flights: Path
    published: Path
    bank: Path


def _studio(srv: FakeServer) -> Studio:
    return Studio(LOCAL, sdk=FakeSDK(srv))


def _commands(world: World) -> dict[str, Callable[[Path, FakeServer], Any]]:
    return {
        # 1 s minimum: the tiny flights' 2 s shots beside a fade lose its frames and would make no clip at 2 s
        "ingest": lambda root, srv: ingest([world.flights], root, IngestConfig(window=SHORT), workers=1),
        "import": lambda root, srv: import_published("clip4clip", world.published, root, name="pubx", media="none"),
        "precaption": lambda root, srv: precaption(
            root,
            PrecaptionConfig(banks=(str(world.bank),), top_k=2, batch_size=8, workers=1, tags="all", top_tags=2),
            encoder=ColourEncoder(),
        ),
        "annotate-simulate": lambda root, srv: simulate(root, LOCAL, studio=_studio(srv)),
        "annotate-pull": lambda root, srv: pull(root, LOCAL, studio=_studio(srv)),
        "annotate-review-pull": lambda root, srv: review_pull(root, LOCAL, studio=_studio(srv)),
        "annotate-moments-pull": lambda root, srv: pull_moments(root, LOCAL, studio=_studio(srv)),
        "annotate-ratings-pull": lambda root, srv: pull_ratings(root, LOCAL, studio=_studio(srv)),
        "split": lambda root, srv: split_dataset(
            root, SplitConfig(ratios=(0.5, 0.0, 0.5), min_captions=1, tolerance=0.5, near_duplicates=False)
        ),
    }


# what each command writes: (table, writer) for shared tables, (table, None) for a table it owns whole
WRITES: dict[str, list[tuple[str, str | None]]] = {
    "ingest": [("flights", None), ("clips", "ingest")],
    "import": [("imports", None), ("clips", "import:pubx"), ("captions", "import:pubx"), ("splits", "import:pubx")],
    "precaption": [("precaptions", None), ("tags", None), ("embeddings/*", None)],
    "annotate-simulate": [],  # submits to Label Studio; its captions arrive through `annotate pull`
    "annotate-pull": [("captions", "annotate")],
    "annotate-review-pull": [("reviews", None), ("captions", FIX_WRITER)],  # verdicts, and fixes as new captions
    "annotate-moments-pull": [("moments", None)],
    "annotate-ratings-pull": [("moment_ratings", None)],
    "split": [("splits", "split")],
}


def _snapshot(root: Path, command: str) -> dict[str, list[str]]:
    ds = Dataset(root)
    out: dict[str, list[str]] = {}
    for table, writer in WRITES[command]:
        if table == "embeddings/*":
            for path in sorted((root / "embeddings").glob("*.parquet")):
                out[str(path.relative_to(root))] = sorted(map(repr, pq.read_table(path).to_pylist()))
            continue
        rows = ds.read_table(table)
        if writer is not None:
            rows = ds.rows_of(table, writer)
        out[table] = sorted(map(repr, rows.to_pylist()))
    return out


REVIEWER = 901


def _review_two_captions(root: Path, srv: FakeServer) -> None:
    """A reviewer (not an author) accepts one submitted caption and fixes another: reviews rows and one fix row."""
    srv.users[REVIEWER] = {"id": REVIEWER, "email": "reviewer@example.org"}
    review_push(root, LOCAL, studio=_studio(srv))
    pid = max(srv.projects)  # the review project is the newest
    first, second = sorted(t["id"] for t in srv.tasks.values() if t["project"] == pid)[:2]
    sdk = FakeSDK(srv)
    choice = {"from_name": "verdict", "to_name": "video", "type": "choices"}
    sdk.annotations.create(first, result=[{**choice, "value": {"choices": ["accept"]}}], completed_by=REVIEWER)
    fix = [{**choice, "value": {"choices": ["fix"]}},
           {"from_name": "reason", "to_name": "video", "type": "textarea", "value": {"text": ["too vague"]}},
           {"from_name": "fix", "to_name": "video", "type": "textarea",
            "value": {"text": ["a grey road runs between green fields and a small village"]}}]
    sdk.annotations.create(second, result=fix, completed_by=REVIEWER)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[World, Path, FakeServer]:
    top = tmp_path_factory.mktemp("ownership")
    generate(top / "flights", preset="tiny", seed=0)
    published = top / "pub"
    published.mkdir()
    with open(published / "raw-captions.pkl", "wb") as fh:
        pickle.dump({"vid_a ": [["a", "red", "car"], ["two", "cars"]], "vid_b 1": [["a", "boat", "at", "sea"]]}, fh)
    (published / "train_list.txt").write_text("vid_a \n")
    (published / "test_list.txt").write_text("vid_b 1\n")
    bank = top / "bank.txt"
    bank.write_text("\n".join(BANK) + "\n")
    world = World(top / "flights", published, bank)
    root = top / "base"
    srv = FakeServer()
    commands = _commands(world)
    commands["ingest"](root, srv)
    commands["import"](root, srv)
    commands["precaption"](root, srv)
    push(root, LOCAL, overlap=2, studio=_studio(srv))
    commands["annotate-simulate"](root, srv)
    commands["annotate-pull"](root, srv)
    _review_two_captions(root, srv)
    commands["annotate-review-pull"](root, srv)
    push_moments(root, LOCAL, studio=_studio(srv))
    simulate_moments(root, LOCAL, studio=_studio(srv))
    commands["annotate-moments-pull"](root, srv)
    push_ratings(root, LOCAL, studio=_studio(srv))
    simulate_ratings(root, LOCAL, studio=_studio(srv))
    commands["annotate-ratings-pull"](root, srv)
    commands["split"](root, srv)
    ds = Dataset(root)
    for command, writes in WRITES.items():  # the base holds rows of every writer, so every pair tests something
        for table, writer in writes:
            if table != "embeddings/*":
                rows = ds.rows_of(table, writer) if writer else ds.read_table(table)
                assert rows.num_rows, (command, table)
    assert set(TABLES) >= {t for ws in WRITES.values() for t, _ in ws if t != "embeddings/*"}
    return world, root, srv


PAIRS = [(a, b) for a, b in itertools.permutations(WRITES, 2)]


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
def test_no_command_changes_rows_another_wrote(base, tmp_path, first, second):
    world, base_root, base_srv = base
    root = tmp_path / "ds"
    shutil.copytree(base_root, root, symlinks=True)
    srv = copy.deepcopy(base_srv)
    commands = _commands(world)
    commands[first](root, srv)
    commands[second](root, srv)
    theirs = _snapshot(root, second)
    commands[first](root, srv)
    assert _snapshot(root, second) == theirs


def test_the_matrix_would_catch_a_writer_that_rewrites_the_whole_table(base, tmp_path):
    """The check above is not vacuous: a command that wrote the whole clips table (the first release's ingest) fails it."""
    world, base_root, base_srv = base
    root = tmp_path / "ds"
    shutil.copytree(base_root, root, symlinks=True)
    before = _snapshot(root, "import")
    ds = Dataset(root)
    ds.write_table("clips", ds.rows_of("clips", "ingest"))  # what `ingest` did before ownership
    assert _snapshot(root, "import") != before

