"""The dataset core: one write lock, ownership of rows, typed rows, file modes, old folders, damaged dataset.toml."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, DatasetLocked
from dvtr_data.schemas import TABLES, schema_of
from dvtr_data.schemas.records import RECORDS

V1 = Path(__file__).parent / "data" / "v1-dataset"


def _split_row(clip: str, split: str = "train", **over: object) -> dict:
    return {"clip_id": clip, "split": split, "group_id": clip, "group_kind": "flight", **over}


# --- ownership ------------------------------------------------------------------------------------------------
def test_a_writer_replaces_only_its_own_rows(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    ds.replace_rows("splits", "split", [_split_row("a"), _split_row("b")])
    ds.replace_rows("splits", "import:pub", [_split_row("p", "test", group_kind="published")])
    ds.replace_rows("splits", "split", [_split_row("c")])  # the split's new complete set: a and b go, p stays
    rows = {r["clip_id"]: r for r in ds.read_table("splits").to_pylist()}
    assert set(rows) == {"p", "c"}
    assert rows["p"] == {**_split_row("p", "test", group_kind="published"), "writer": "import:pub"}
    assert rows["c"]["writer"] == "split"


def test_a_writer_cannot_take_over_a_row_another_wrote(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    ds.replace_rows("splits", "import:pub", [_split_row("p", "test")])
    with pytest.raises(DatasetError, match="import:pub already wrote"):
        ds.replace_rows("splits", "split", [_split_row("p", "train")])
    assert ds.read_table("splits").to_pylist()[0]["split"] == "test"
    with pytest.raises(DatasetError, match="rows of import:other"):
        ds.replace_rows("splits", "split", [_split_row("q", writer="import:other")])


def test_tables_declare_one_owner_or_a_writer_column():
    for spec in TABLES.values():
        assert bool(spec.owner) != bool(spec.writer_column), spec.name
        if spec.writer_column:
            fld = spec.schema.field(spec.writer_column)
            assert pa.types.is_string(fld.type) and not fld.nullable


# --- typed rows -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_record_fields_equal_the_schema(name):
    spec = schema_of(name)
    record = RECORDS[name]
    flds = {f.name: f for f in dataclasses.fields(record)}
    assert sorted(flds) == sorted(spec.schema.names)
    for col in spec.schema:
        has_default = flds[col.name].default is not dataclasses.MISSING
        assert has_default == col.nullable, f"{name}.{col.name}: required in one, optional in the other"
    # every required field filled with a value of its column's type makes a row the schema accepts
    assert record.columns() == [f.name for f in dataclasses.fields(record)]


def test_a_misspelt_column_fails_where_the_row_is_made():
    from dvtr_data.schemas.records import SplitRow

    with pytest.raises(TypeError):
        SplitRow(clip_id="a", split="train", group_id="a", writer="split", grup_kind="flight")  # type: ignore[call-arg]


# --- the one write lock ----------------------------------------------------------------------------------------
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from dvtr_data.dataset import Dataset
    ds = Dataset(sys.argv[1])
    with ds.writing("ingest"):
        Path(sys.argv[2]).write_text("held")
        while not Path(sys.argv[3]).exists():
            time.sleep(0.05)
    """
)


def _wait_for(path: Path, proc: subprocess.Popen) -> None:
    for _ in range(2000):  # bounded: the holder writes the file as soon as it has the lock
        if path.exists():
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "holder died"
        import time

        time.sleep(0.05)
    raise AssertionError("the holder never took the lock")


@pytest.mark.boundary
def test_a_second_writer_stops_with_exit_4_naming_the_holder(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    held, release = tmp_path / "held", tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(ds.root), str(held), str(release)], stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for(held, holder)
        second = subprocess.run(
            [sys.executable, "-m", "dvtr_data", "split", "--dataset", str(ds.root)],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
        )
        assert second.returncode == 4, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "another `ingest` run" in lines[0] and f"pid {holder.pid}" in lines[0]
        # readers are never blocked
        info = subprocess.run([sys.executable, "-m", "dvtr_data", "info", "--dataset", str(ds.root)],
                              capture_output=True, text=True)
        assert info.returncode == 0, info.stderr
    finally:
        release.write_text("go")
        holder.wait(timeout=60)
    assert holder.returncode == 0
    # released: the next writer gets it, and a killed holder releases it too (flock dies with its process)
    with ds.writing("split"):
        pass
    killed = subprocess.Popen([sys.executable, "-c", _HOLDER, str(ds.root), str(tmp_path / "held2"), str(tmp_path / "never")])
    _wait_for(tmp_path / "held2", killed)
    killed.kill()
    killed.wait()
    with ds.writing("split"):
        assert ds.lock_holder() == {**ds.lock_holder(), "command": "split"}  # type: ignore[dict-item]


def test_a_second_writer_in_the_same_process_is_refused_too(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    with ds.writing("import"):
        with pytest.raises(DatasetLocked, match="another `import` run"):
            with Dataset(ds.root).writing("split"):
                pass


def test_writes_outside_a_command_take_the_lock_for_that_write(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    with ds.writing("ingest"):
        ds.replace_rows("splits", "split", [_split_row("a")])  # held: no second lock taken
    other = Dataset(ds.root)
    with ds.writing("ingest"):
        pass
    other.write_table("splits", [{**_split_row("b"), "writer": "split"}])
    assert ds.read_table("splits").column("clip_id").to_pylist() == ["b"]


# --- leftovers and file modes -------------------------------------------------------------------------------------
def test_the_next_writer_sweeps_what_a_killed_run_left(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    leftovers = [
        ds.root / ".clips.parquet.abc123.tmp",
        ds.root / "exports" / ".parquet.partial-4242" / "train.parquet",
        ds.root / "clips" / "f1" / ".f1-0-10.mp4.x.tmp",
        ds.root / ".work" / "ingest" / ".f1.clips.parquet.y.tmp",
    ]
    kept = [ds.root / "clips" / "f1" / "f1-0-10.mp4", ds.root / "labelstudio" / ".db.partial-1" / "x"]
    for p in leftovers + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    with ds.writing("split"):
        pass
    assert not any(p.exists() for p in leftovers)
    assert not (ds.root / "exports" / ".parquet.partial-4242").exists()
    assert all(p.exists() for p in kept)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_data_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        ds = Dataset(tmp_path / "ds").create()
        ds.replace_rows("splits", "split", [_split_row("a")])
        ds.record_stage("split", {"seed": 1})
    finally:
        os.umask(old)
    for path in (ds.table_path("splits"), ds.toml_path):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


# --- dataset.toml ---------------------------------------------------------------------------------------------------
@pytest.mark.boundary
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)) * 4, "not a text file"),
        (b'name = "x"\nformat = "one"\n', "must be a whole number"),
        (b"", "has no `format`"),
        (b"name = [", "not valid TOML"),
        (b'format = 1\nstages = "x"\n', "`stages` must be a table"),
        (b"format = 99\n", "newer dvtr-data"),
    ],
)
def test_a_damaged_dataset_toml_is_one_clear_line_and_exit_4(tmp_path, content, message):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "dataset.toml").write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        Dataset(root).require()
    run = subprocess.run([sys.executable, "-m", "dvtr_data", "info", "--dataset", str(root)], capture_output=True, text=True)
    assert run.returncode == 4
    assert len([ln for ln in run.stderr.splitlines() if ln.strip()]) == 1 and "Traceback" not in run.stderr
    assert (root / "dataset.toml").read_bytes() == content  # never rewritten


def test_a_dataset_toml_that_is_a_folder_is_a_dataset_error(tmp_path):
    (tmp_path / "ds" / "dataset.toml").mkdir(parents=True)
    with pytest.raises(DatasetError, match="is a folder"):
        Dataset(tmp_path / "ds").require()


# --- old datasets open ---------------------------------------------------------------------------------------------
def test_a_dataset_written_by_the_first_release_opens_and_is_migrated_on_read(tmp_path):
    root = tmp_path / "old"
    shutil.copytree(V1, root)
    before = {p.name: p.read_bytes() for p in root.glob("*.parquet")}
    ds = Dataset(root).require()
    clips = ds.read_table("clips").to_pylist()
    captions = ds.read_table("captions").to_pylist()
    splits = ds.read_table("splits").to_pylist()
    # the two imported clips (clip ids "pubx-...") were written by `import pubx`; the rest by ingest
    assert {c["clip_id"]: c["writer"] for c in clips if c["clip_id"].startswith("pubx-")} == {
        "pubx-vid_a": "import:pubx", "pubx-vid_b_1": "import:pubx"
    }
    assert {c["writer"] for c in clips if not c["clip_id"].startswith("pubx-")} == {"ingest"}
    assert {c["writer"] for c in captions if c["origin"] == "imported"} == {"import:pubx"}
    assert {c["writer"] for c in captions if c["caption_id"].startswith("sim-")} == {"demo"}
    assert sum(c["origin"] == "imported" for c in captions) == 3  # "vid_a " has 2 captions, "vid_b 1" one
    assert {s["clip_id"]: s["writer"] for s in splits} == {
        **{s["clip_id"]: "split" for s in splits if not s["clip_id"].startswith("pubx-")},
        "pubx-vid_a": "import:pubx", "pubx-vid_b_1": "import:pubx",
    }
    for name in ("clips", "captions", "splits"):
        assert ds.read_table(name).schema.metadata[b"dvtr.schema"] == schema_of(name).tag.encode()
    assert {p.name: p.read_bytes() for p in root.glob("*.parquet")} == before  # reading never writes
    # a writer of today rewrites its own rows in the current version and keeps the old release's rows of others
    own = [r for r in splits if r["writer"] == "split"]
    ds.replace_rows("splits", "split", own)
    after = ds.read_table("splits").to_pylist()
    assert sorted(map(str, after)) == sorted(map(str, splits))
