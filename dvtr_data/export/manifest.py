"""Export folders appear whole or not at all, and each carries a manifest of what it holds.

An export is written into a hidden staging folder beside its target and renamed into place only after every file
and the manifest are written, so a crash or a refused input never leaves a folder that looks like a finished
export. The manifest (written last) names the dataset, its version, the splits, the counts, and the size and
sha256 of every file, so a reader can check that nothing was lost or changed in transit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dvtr_data import __version__
from dvtr_data.crashpoints import crashpoint
from dvtr_data.dataset import Dataset
from dvtr_data.errors import UsageError
from dvtr_data.hashing import sha256_file
from dvtr_data.media import MEDIA_EXTENSIONS

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "dvtr-export-manifest/1"
MEDIA_SUFFIXES = tuple(sorted(MEDIA_EXTENSIONS))


@contextlib.contextmanager
def staged_folder(out: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``out``, on failure it is removed."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not force:
        raise UsageError(f"{out} already exists", hint="choose another --out, or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    for old in out.parent.glob(f".{glob_escape(out.name)}.partial-*"):
        shutil.rmtree(old, ignore_errors=True)  # a killed export's staging folder (we hold the write lock)
    for old in out.parent.glob(f".{glob_escape(out.name)}.old-*"):
        shutil.rmtree(old, ignore_errors=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    stage.mkdir()
    try:
        yield stage
        crashpoint("export")
        if out.exists():
            trash = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, trash)
            os.replace(stage, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def earlier_export_problem(folder: Path) -> str | None:
    """Why ``folder`` may not be replaced by a new export, or ``None`` when it provably is an earlier export of ours.

    Provably ours: its manifest is a dvtr-data export manifest and every file in the folder is one it lists (a file
    someone added beside an export would be deleted by the replacement, so it blocks it).
    """
    path = folder / MANIFEST
    if not path.is_file():
        return f"it is not an earlier export (no {MANIFEST})"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        listed = {str(f["path"]) for f in manifest["files"]}
        ours = manifest.get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MANIFEST} is not a dvtr-data export manifest"
    if not ours:
        return f"its {MANIFEST} is not a dvtr-data export manifest"
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            rel = (Path(dirpath) / f).relative_to(folder).as_posix()
            if rel != MANIFEST and rel not in listed:
                return f"it holds {rel!r}, which its manifest does not list"
    return None


def dataset_version(ds: Dataset) -> str:
    """The dataset's declared version, else a fingerprint of the tables an export is made of."""
    declared = ds.config().get("version")
    if declared:
        return str(declared)
    h = hashlib.sha256()
    for name in ("clips", "captions", "splits", "imports"):
        path = ds.table_path(name)
        if path.is_file():
            h.update(name.encode())
            h.update(sha256_file(path).encode())
    return "sha256:" + h.hexdigest()[:16]


def file_list(root: Path, hash_media: bool = True) -> list[dict[str, Any]]:
    """Every file under ``root`` (links followed) with its size and sha256 (media hashes optional: they are slow)."""
    rows = []
    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            p = Path(dirpath) / f
            rel = p.relative_to(root).as_posix()
            if rel == MANIFEST:
                continue
            entry: dict[str, Any] = {"path": rel, "bytes": p.stat().st_size}
            if hash_media or not f.lower().endswith(MEDIA_SUFFIXES):
                entry["sha256"] = sha256_file(p)
            rows.append(entry)
    rows.sort(key=lambda r: r["path"])
    return rows


def write_manifest(
    stage: Path,
    *,
    ds: Dataset,
    name: str,
    fmt: str,
    splits: tuple[str, ...],
    counts: dict[str, Any],
    options: dict[str, Any],
    notes: list[str],
    skipped: dict[str, int],
    hash_media: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    manifest = {
        "format": MANIFEST_FORMAT,
        "export_format": fmt,
        "dataset": name,
        "dataset_version": dataset_version(ds),
        "dataset_path": str(ds.root),
        "tool": f"dvtr-data {__version__}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "splits": list(splits),
        "counts": counts,
        "skipped": skipped,
        "options": options,
        "notes": notes,
        **(extra or {}),
        "files": file_list(stage, hash_media),
    }
    (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def verify_export(folder: Path) -> list[str]:
    """Problems found when checking an export against its manifest (empty: intact)."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        return [f"{folder}: no {MANIFEST} (not a finished export)"]
    manifest = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    listed = {f["path"] for f in manifest["files"]}
    for f in manifest["files"]:
        p = folder / f["path"]
        if not p.is_file():
            problems.append(f"missing {f['path']}")
        elif p.stat().st_size != f["bytes"] or ("sha256" in f and sha256_file(p) != f["sha256"]):
            problems.append(f"changed {f['path']}")
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            rel = (Path(dirpath) / f).relative_to(folder).as_posix()
            if rel != MANIFEST and rel not in listed:
                problems.append(f"unlisted {rel}")
    return problems
