"""One JSON-lines log per command run, under ``<dataset>/logs/``: every per-item error and the summary."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dvtr_data.text import bounded


class RunLog:
    """Append-only JSON-lines log. Each line is flushed at once, so a killed run leaves a readable log."""

    def __init__(self, logs_dir: Path, command: str) -> None:
        logs_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.path = logs_dir / f"{command}-{stamp}-{os.getpid()}.jsonl"
        self._fh = open(self.path, "a", encoding="utf-8")
        self.command = command

    def write(self, event: str, **fields: Any) -> None:
        record = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "command": self.command, "event": event}
        # an error naming a 5 MB id is logged bounded: every top-level text field, at most MAX_ERROR_CHARS
        record.update({k: bounded(v) if isinstance(v, str) else v for k, v in fields.items()})
        self._fh.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
