"""Find flight videos in files and folders, and pair each with its telemetry sidecar.

A dataset's own files are never input: a folder holding a ``dataset.toml`` of ours (and the target dataset
folder itself) is skipped with one note, or its clip files would come back as new flights on every run.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dvtr_data.media import VIDEO_EXTENSIONS
from dvtr_data.telemetry import find_sidecar


@dataclass(frozen=True)
class FlightSource:
    video: Path
    sidecar: Path | None


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def is_dataset_folder(folder: Path) -> bool:
    """Whether ``folder`` is a dvtr-data dataset: a ``dataset.toml`` with our ``format`` key, or (a damaged
    toml) our ``.work`` folder beside it. A stranger's ``dataset.toml`` alone does not hide a folder."""
    toml = folder / "dataset.toml"
    if not toml.is_file():
        return False
    try:
        with toml.open("rb") as fh:
            config = tomllib.loads(fh.read(1 << 16).decode("utf-8"))
        if isinstance(config.get("format"), int):
            return True
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        pass
    return (folder / ".work").is_dir()


def _inside(path: Path, folders: set[Path]) -> Path | None:
    for parent in (path, *path.parents):
        if parent in folders or (parent.is_dir() and is_dataset_folder(parent)):
            return parent
    return None


def discover(
    inputs: list[Path], *, exclude: Iterable[Path] = (), notes: list[str] | None = None
) -> tuple[list[FlightSource], list[str]]:
    """Expand files and folders (recursively) into flight sources, sorted and without duplicates.

    Returns the sources and one message per input that could not be used (missing path, not a video). Dataset
    folders (`is_dataset_folder`) and the folders in ``exclude`` (the target dataset) are skipped; one line
    saying so goes to ``notes`` when given.
    """
    excluded = {Path(p).expanduser().absolute() for p in exclude}
    found: dict[Path, FlightSource] = {}
    problems: list[str] = []
    skipped: list[Path] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            problems.append(f"{path}: no such file or folder")
            continue
        inside = _inside(path.absolute(), excluded)
        if inside is not None:
            skipped.append(inside)
            continue
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                here = Path(root)
                kept = []
                for d in sorted(d for d in dirs if not d.startswith(".")):
                    sub = (here / d).absolute()
                    if sub in excluded or is_dataset_folder(sub):
                        skipped.append(sub)
                    else:
                        kept.append(d)
                dirs[:] = kept
                for name in sorted(files):
                    candidate = here / name
                    if is_video(candidate):
                        found.setdefault(candidate.absolute(), FlightSource(candidate.absolute(), None))
        elif is_video(path):
            found.setdefault(path.absolute(), FlightSource(path.absolute(), None))
        else:
            problems.append(f"{path}: not a video file (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    if skipped and notes is not None:
        unique = sorted(set(skipped))
        more = ", ..." if len(unique) > 1 else ""
        notes.append(f"skipped {len(unique)} dataset folder(s) among the inputs ({unique[0]}{more}): "
                     "a dataset's own files are never taken as flights")
    sources = [FlightSource(v, find_sidecar(v)) for v in sorted(found)]
    return sources, problems
