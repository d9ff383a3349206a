"""The dataset folder: where each table lives, the one write lock, atomic writes, validated reads, ``dataset.toml``.

Every stage goes through `Dataset` so that the layout (architecture.md) is written down once. The rules it keeps:

- **One write lock.** Every command that writes anything in the folder holds `Dataset.writing` for as long as it
  writes. A second writer does not wait: it stops at once with one line naming the command that holds the lock
  (`DatasetLocked`, exit 4). Readers never take the lock: every file is replaced by an atomic rename.
- **Ownership.** A table either has one owner (the only command that writes it) or its rows carry their writer
  in a ``writer`` column (`schemas/tables.py` says which); `replace_rows` replaces one writer's rows and keeps
  every other row, unchanged and in order.
- **Nothing half-written looks complete.** Temporary files (``.NAME.*.tmp``) and staging folders
  (``.NAME.partial-*``) of a killed run are swept by the next writer, under the lock.
- **File modes follow the umask** (0644 under umask 022), unlike `tempfile.mkstemp`'s 0600; only secrets
  (`annotation/server.py`) are narrowed on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tomli_w

from dvtr_data import __version__
from dvtr_data.crashpoints import crashpoint
from dvtr_data.errors import DatasetError, DatasetLocked
from dvtr_data.schemas import SCHEMA_METADATA_KEY, empty_table, schema_of, validate
from dvtr_data.schemas.migrations import migrate

DATASET_FORMAT = 1
LOCK_FILE = ".dvtr-write.lock"
_UMASK_LOCK = threading.Lock()
_HELD: dict[Path, str] = {}  # dataset roots whose write lock this process holds -> the command holding it


def current_umask() -> int:
    """The process umask (reading it means setting it, so briefly and under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def data_file_mode() -> int:
    """The mode a plain ``open()`` would give a new data file: 0666 less the umask."""
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` only if the block succeeds.

    The temporary file gets the mode a plain ``open()`` would give (umask), not ``mkstemp``'s 0600.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, data_file_mode())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        crashpoint("rename")
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


def is_leftover(name: str) -> bool:
    """A temporary file or staging folder of ours that a killed run may have left behind."""
    return name.startswith(".") and (name.endswith(".tmp") or ".partial-" in name or ".old-" in name)


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

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @contextlib.contextmanager
    def writing(self, command: str, *, sweep: bool = True) -> Iterator[Dataset]:
        """Hold the dataset's one write lock while ``command`` writes; sweep what killed runs left first.

        Not re-entrant: a second holder, in this process or another, gets `DatasetLocked` (exit 4) at once, with
        the command and process that hold the lock. The lock is an ``flock`` on ``.dvtr-write.lock``, so it is
        released by the kernel when its holder dies, even by ``kill -9``.
        """
        if not self.root.is_dir():
            raise DatasetError(f"{self.root} is not a dataset folder")
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, data_file_mode())
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.lock_holder() or {}
                who = f"`{holder.get('command', '?')}` run"
                since = f" (pid {holder.get('pid', '?')}, since {holder.get('since', '?')})" if holder else ""
                raise DatasetLocked(
                    f"another {who}{since} is writing {self.root}",
                    hint="wait for it to finish, or stop it; readers are never blocked",
                ) from None
            info = {"command": command, "pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            _HELD[self.root] = command
            try:
                if sweep:
                    self.sweep_leftovers()
                yield self
            finally:
                _HELD.pop(self.root, None)
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def lock(self, name: str) -> contextlib.AbstractContextManager[Dataset]:
        """The one write lock, taken by command ``name`` (see `writing`)."""
        return self.writing(name)

    def lock_holder(self) -> dict[str, Any] | None:
        """Who holds the write lock, as its holder wrote it (``None`` when nobody does or it cannot be read)."""
        try:
            text = self.lock_path.read_text(encoding="utf-8").strip()
            return json.loads(text) if text else None
        except (OSError, ValueError):
            return None

    @property
    def locked_here(self) -> bool:
        """Whether this process holds the dataset's write lock."""
        return self.root in _HELD

    def _guard(self, what: str) -> contextlib.AbstractContextManager[Any]:
        """A write outside a command (a script, a test's setup) takes the lock for just that write."""
        if self.locked_here:
            return contextlib.nullcontext()
        return self.writing(what, sweep=False)

    def sweep_leftovers(self) -> int:
        """Remove temporary files and staging folders a killed run left behind (only under the write lock).

        Label Studio's own data folder is left alone: its server writes there, not us.
        """
        removed = 0
        for dirpath, dirs, files in os.walk(self.root):
            if Path(dirpath) == self.root and "labelstudio" in dirs:
                dirs.remove("labelstudio")
            for name in [d for d in dirs if is_leftover(d)]:
                shutil.rmtree(Path(dirpath) / name, ignore_errors=True)
                dirs.remove(name)
                removed += 1
            for name in files:
                if is_leftover(name):
                    (Path(dirpath) / name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def sweep_temp_files(self) -> int:
        """Kept for callers of the first release: the same as `sweep_leftovers`."""
        return self.sweep_leftovers()

    # dataset.toml -----------------------------------------------------------------------------------------
    def create(self, name: str | None = None) -> Dataset:
        """Make the folder and ``dataset.toml`` if missing (idempotent)."""
        if self.root.exists() and not self.root.is_dir():
            raise DatasetError(f"{self.root} exists and is not a folder")
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.toml_path.exists():
            with self._guard("create"):
                if not self.toml_path.exists():
                    self.save_config(
                        {
                            "name": name or self.root.name,
                            "format": DATASET_FORMAT,
                            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                            "tool_version": __version__,
                            "stages": {},
                        }
                    )
        return self.require()

    def require(self) -> Dataset:
        """Raise a helpful `DatasetError` unless this is a dataset folder of a format we read."""
        if not self.toml_path.exists():
            raise DatasetError(
                f"{self.root} is not a dvtr-data dataset (no dataset.toml)",
                hint="run `dvtr-data ingest FLIGHTS --dataset DIR` first",
            )
        self.config()  # every check of the file's content lives there
        return self

    def config(self) -> dict[str, Any]:
        """``dataset.toml`` as a dict (empty when the file does not exist yet); a damaged file is a `DatasetError`."""
        path = self.toml_path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        except IsADirectoryError:
            raise DatasetError(f"{path} is a folder, not a file", hint="remove it or point --dataset elsewhere") from None
        except OSError as exc:
            raise DatasetError(f"{path} cannot be read: {exc.strerror}") from None
        try:
            config = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DatasetError(f"{path} is not a text file (not valid UTF-8)", hint=_TOML_HINT) from None
        except tomllib.TOMLDecodeError as exc:
            raise DatasetError(f"{path} is not valid TOML: {exc}", hint=_TOML_HINT) from None
        fmt = config.get("format")
        if fmt is None:
            raise DatasetError(f"{path} has no `format` (empty or not written by dvtr-data)", hint=_TOML_HINT)
        if isinstance(fmt, bool) or not isinstance(fmt, int):
            raise DatasetError(f"{path}: `format` must be a whole number, not {fmt!r}", hint=_TOML_HINT)
        if fmt > DATASET_FORMAT:
            raise DatasetError(
                f"{self.root} was written by a newer dvtr-data (format {fmt} > {DATASET_FORMAT})",
                hint="upgrade dvtr-data",
            )
        if not isinstance(config.get("stages", {}), dict):
            raise DatasetError(f"{path}: `stages` must be a table", hint=_TOML_HINT)
        return config

    def save_config(self, config: dict[str, Any]) -> None:
        with self._guard("dataset.toml"):
            atomic_write_bytes(self.toml_path, tomli_w.dumps(_toml_safe(config)).encode())

    def record_stage(self, stage: str, settings: dict[str, Any]) -> None:
        """Remember the settings a stage last ran with (shown by `info` and the dataset card)."""
        with self._guard(stage):
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
        """Read a table, check its schema tag and bring an older version up to date (in memory only).

        An absent table reads as empty (or raises).
        """
        path = self.table_path(name)
        if not path.is_file():
            if missing_ok:
                return empty_table(name)
            raise DatasetError(f"{path} does not exist")
        table = read_table_file(path, name)
        return migrate(name, table, self)

    def write_table(self, name: str, table: pa.Table | list[dict]) -> pa.Table:
        """Validate against the table's schema, then write atomically, under the write lock.

        For a table whose rows carry their writer, this writes the whole table: commands use `replace_rows`.
        """
        spec = schema_of(name)
        with self._guard(f"write {name}"):
            if spec.writer_column and isinstance(table, list):
                missing = [r for r in table if spec.writer_column not in r]
                if missing:
                    raise DatasetError(f"{name}: {len(missing)} row(s) without a {spec.writer_column!r}")
            table = validate(name, table)
            write_parquet(self.table_path(name), table)
        return table

    def rows_of(self, name: str, writer: str) -> pa.Table:
        """The rows of ``name`` that ``writer`` wrote."""
        spec = schema_of(name)
        table = self.read_table(name)
        if not spec.writer_column:
            raise DatasetError(f"internal: table {name!r} has one owner ({spec.owner}), no writer column")
        return table.filter(pc.equal(table.column(spec.writer_column), writer))

    def replace_rows(self, name: str, writer: str, rows: pa.Table | list[dict[str, Any]]) -> pa.Table:
        """Make ``rows`` the complete set of ``writer``'s rows of ``name``; every other writer's row stays as it was.

        Rows without a writer get ``writer``. A key that another writer already holds is refused, so no command
        can overwrite a row it did not write. Returns the whole table as written.
        """
        spec = schema_of(name)
        col = spec.writer_column
        if not col:
            raise DatasetError(f"internal: table {name!r} has one owner ({spec.owner}); use write_table")
        if isinstance(rows, pa.Table):
            rows = rows.to_pylist()
        rows = [{**r, col: r.get(col) or writer} for r in rows]
        strangers = [r[col] for r in rows if r[col] != writer]
        if strangers:
            raise DatasetError(f"internal: {writer} tried to write rows of {strangers[0]} into {name}")
        new = validate(name, rows)
        with self._guard(writer):
            old = self.read_table(name)
            others = old.filter(pc.not_equal(old.column(col), writer)) if old.num_rows else old
            if others.num_rows and new.num_rows and spec.key:
                taken = _keys(others, spec.key) & _keys(new, spec.key)
                if taken:
                    first = sorted(taken)[0]
                    owner = _owner_of(others, spec.key, first, col)
                    raise DatasetError(
                        f"{name}: {len(taken)} row(s) of {writer} have keys that {owner} already wrote, e.g. "
                        f"{dict(zip(spec.key, first, strict=True))}",
                        hint="no command replaces rows another wrote; remove the other rows with the command that wrote them",
                    )
            merged = pa.concat_tables([others.cast(new.schema), new]) if others.num_rows else new
            return self.write_table(name, merged)


_TOML_HINT = "restore it from a backup, or move the folder aside and build the dataset again"


def _keys(table: pa.Table, key: tuple[str, ...]) -> set[tuple[Any, ...]]:
    cols = [table.column(k).to_pylist() for k in key]
    return set(zip(*cols, strict=True))


def _owner_of(table: pa.Table, key: tuple[str, ...], value: tuple[Any, ...], col: str) -> str:
    cols = [table.column(k).to_pylist() for k in key]
    for i, k in enumerate(zip(*cols, strict=True)):
        if k == value:
            return str(table.column(col)[i].as_py())
    return "another command"


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
