"""Find flight videos in files and folders, and pair each with its telemetry sidecar."""

from __future__ import annotations

import os
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


def discover(inputs: list[Path]) -> tuple[list[FlightSource], list[str]]:
    """Expand files and folders (recursively) into flight sources, sorted and without duplicates.

    Returns the sources and one message per input that could not be used (missing path, not a video).
    """
    found: dict[Path, FlightSource] = {}
    problems: list[str] = []
    for raw in inputs:
        path = Path(raw).expanduser()
        if not path.exists():
            problems.append(f"{path}: no such file or folder")
            continue
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if is_video(candidate):
                        found.setdefault(candidate.absolute(), FlightSource(candidate.absolute(), None))
        elif is_video(path):
            found.setdefault(path.absolute(), FlightSource(path.absolute(), None))
        else:
            problems.append(f"{path}: not a video file (extensions: {', '.join(sorted(VIDEO_EXTENSIONS))})")
    sources = [FlightSource(v, find_sidecar(v)) for v in sorted(found)]
    return sources, problems
