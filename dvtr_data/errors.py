"""The user-facing exception family.

Library code raises these for anything a user can fix (a bad path, a missing sidecar, weights that are not on
disk). The CLI maps them to one line on stderr and an exit code; every other exception is a bug and gets the
generic exit code (with a traceback under ``DVTR_DEBUG=1``).
"""

from __future__ import annotations


class DvtrError(Exception):
    """Base of every error meant for the user. ``exit_code`` is what the CLI returns."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(DvtrError):
    """Bad options or arguments (exit 2)."""

    exit_code = 2


class InputError(DvtrError):
    """Input that cannot be read or understood: a missing file, a malformed table or sidecar (exit 3)."""

    exit_code = 3


class DatasetError(DvtrError):
    """The dataset folder is missing, from a newer version, or inconsistent (exit 4)."""

    exit_code = 4


class DatasetLocked(DatasetError):
    """Another command holds the dataset's one write lock (exit 4): a second writer stops at once, never waits."""


class SchemaError(DatasetError):
    """A table does not match its declared schema; raised before anything is written."""


class ServiceError(DvtrError):
    """An external service (Label Studio) is down, refuses us, or answers nonsense (exit 5)."""

    exit_code = 5


class ModelError(DvtrError):
    """Model weights or configs cannot be had (exit 6)."""

    exit_code = 6


class PartialFailure(DvtrError):
    """The run finished but some items failed; their rows carry the errors (exit 1)."""

    exit_code = 1


EXIT_CODES = {
    0: "success: every item succeeded",
    1: "finished, but some items failed (see the table's status/error columns and the run log)",
    2: "usage error: bad option or argument",
    3: "input error: a file could not be read or understood",
    4: "dataset error: the dataset folder is missing, damaged, inconsistent, or being written by another command",
    5: "service error: an external service (Label Studio) failed",
    6: "model error: model weights or config cannot be had",
    70: "internal error (a bug): re-run with DVTR_DEBUG=1 and report the traceback",
    130: "interrupted (Ctrl-C); re-running resumes",
}
