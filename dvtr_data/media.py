"""Media files: the one list of video and image extensions, and how a media file is placed (copy, link, symlink).

Ingest, import and export all use these, so a file one stage accepts is never one another stage ignores.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dvtr_data.crashpoints import crashpoint
from dvtr_data.dataset import atomic_path

# Containers drone footage comes in: DJI (.mp4/.mov, .lrf low-res proxies, .mts/.m2ts/.ts from older models),
# GoPro (.mp4, .lrf), and the common web/desktop ones a published dataset ships.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".avi", ".mts", ".m2ts", ".ts", ".lrf", ".webm"}
)
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"})
MEDIA_EXTENSIONS: frozenset[str] = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
PLACEMENTS = ("copy", "link", "symlink", "none")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def is_media(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def place_media(src: Path, dst: Path, mode: str) -> None:
    """Put ``src`` at ``dst`` as a copy, a hard link (a copy across file systems) or a symbolic link.

    A copy is written to a temporary name and renamed, so a killed run never leaves a truncated file under the
    final name.
    """
    crashpoint("media")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "symlink":
        os.symlink(os.path.abspath(src), dst)
        return
    if mode == "link":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
