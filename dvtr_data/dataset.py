"""The dataset folder: where each table lives, atomic writes, validated reads, and ``dataset.toml``.

Every stage goes through `Dataset` so that the layout (architecture.md) is written down once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import tomli_w

from dvtr_data import __version__
from dvtr_data.errors import DatasetError
from dvtr_data.schemas import SCHEMA_METADATA_KEY, empty_table, schema_of, validate

DATASET_FORMAT = 1


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write ``table`` atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


class Dataset:
    """A dataset folder. Creating the object touches nothing; `create` makes the folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()

    # layout --------------------------------------------------------------------------------------------
    @property
    def toml_path(self) -> Path:
        return self.root / "dataset.toml"

    def table_path(self, name: str) -> Path:
        return self.root / f"{name}.parquet"

    @property
    def clips_dir(self) -> Path:
        return self.root / "clips"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def work_dir(self) -> Path:
        """Per-item results of unfinished or finished runs, merged into the tables (resume state)."""
        return self.root / ".work"

    def exists(self) -> bool:
        return self.toml_path.is_file()

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive lock for a stage run: two runs writing one dataset at once would race on its tables."""
        import fcntl

        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"{name}.lock"
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatasetError(
                    f"another `{name}` run is writing {self.root}", hint="wait for it to finish, or stop it"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def sweep_temp_files(self) -> int:
        """Remove temporary files a killed run left behind (call only while holding the stage's lock)."""
        removed = 0
        folders = [self.root, self.work_dir, *self.work_dir.glob("*/"), *self.clips_dir.glob("*/")]
        for folder in folders:
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
                    removed += 1
        return removed

    # dataset.toml -----------------------------------------------------------------------------------------
    def create(self, name: str | None = None) -> Dataset:
        """Make the folder and ``dataset.toml`` if missing (idempotent)."""
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.exists():
            self.save_config(
                {
                    "name": name or self.root.name,
                    "format": DATASET_FORMAT,
                    "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "tool_version": __version__,
                    "stages": {},
                }
            )
        return self

    def require(self) -> Dataset:
        """Raise a helpful `DatasetError` unless this is a dataset folder of a format we read."""
        if not self.exists():
            raise DatasetError(
                f"{self.root} is not a dvtr-data dataset (no dataset.toml)",
                hint="run `dvtr-data ingest FLIGHTS --dataset DIR` first",
            )
        fmt = self.config().get("format", 0)
        if fmt > DATASET_FORMAT:
            raise DatasetError(
                f"{self.root} was written by a newer dvtr-data (format {fmt} > {DATASET_FORMAT})",
                hint="upgrade dvtr-data",
            )
        return self

    def config(self) -> dict[str, Any]:
        try:
            return tomllib.loads(self.toml_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except tomllib.TOMLDecodeError as exc:
            raise DatasetError(f"{self.toml_path} is not valid TOML: {exc}") from exc

    def save_config(self, config: dict[str, Any]) -> None:
        atomic_write_bytes(self.toml_path, tomli_w.dumps(_toml_safe(config)).encode())

    def record_stage(self, stage: str, settings: dict[str, Any]) -> None:
        """Remember the settings a stage last ran with (shown by `info` and the dataset card)."""
        config = self.config()
        config.setdefault("stages", {})[stage] = {
            **settings,
            "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "tool_version": __version__,
        }
        self.save_config(config)

    # tables ----------------------------------------------------------------------------------------------
    def has_table(self, name: str) -> bool:
        return self.table_path(name).is_file()

    def read_table(self, name: str, *, missing_ok: bool = True) -> pa.Table:
        """Read a table and check its schema tag; an absent table reads as empty (or raises)."""
        path = self.table_path(name)
        if not path.is_file():
            if missing_ok:
                return empty_table(name)
            raise DatasetError(f"{path} does not exist")
        return read_table_file(path, name)

    def write_table(self, name: str, table: pa.Table | list[dict]) -> pa.Table:
        """Validate against the table's schema, then write atomically. Returns the validated table."""
        table = validate(name, table)
        write_parquet(self.table_path(name), table)
        return table


def read_table_file(path: Path, name: str) -> pa.Table:
    spec = schema_of(name)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path} is not a readable Parquet file: {exc}") from exc
    tag = (table.schema.metadata or {}).get(SCHEMA_METADATA_KEY, b"").decode()
    t_name, _, t_version = tag.partition("/")
    if t_name != spec.name:
        raise DatasetError(f"{path} holds table {t_name or '?'!r}, expected {spec.name!r}")
    if int(t_version or 0) > spec.version:
        raise DatasetError(
            f"{path} has schema {tag}, newer than this dvtr-data reads ({spec.tag})", hint="upgrade dvtr-data"
        )
    return table


def _toml_safe(value: Any) -> Any:
    """TOML has no null: drop None values, and turn paths and tuples into strings and lists."""
    if isinstance(value, dict):
        return {str(k): _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_safe(v) for v in value if v is not None]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
