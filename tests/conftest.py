"""What every test shares: an offline environment, one torch thread, tracebacks on, and the markers' skip reasons.

Set here once, at import, so that module- and session-scoped fixtures (which run before any function fixture)
see the same environment as the tests, and so that every subprocess a test starts inherits it:

- ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1``: no test may reach the Hugging Face hub; a missing weight file
  must fail at once with the project's message, not after a network timeout.
- ``DVTR_DEBUG=1``: an unexpected exception in a stage or a CLI run shows its traceback instead of the
  one-line "internal error" that users get. The CLI's error boundary re-raises *every* error under DVTR_DEBUG,
  so the tests that check what users see (one line on stderr, a documented exit code) are marked
  ``@pytest.mark.boundary``: DVTR_DEBUG is removed for them, and for any subprocess they start. A module-scoped
  fixture that runs the boundary clears it itself (``pytest.MonkeyPatch.context()``), since it runs before any
  function-level fixture.
- torch, on a machine whose few cores are shared, runs one intra-op thread: set the moment torch is first
  imported (an import hook), so this file never imports torch itself and a test without torch pays nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["DVTR_DEBUG"] = "1"

# ../shared/realdata beside the repository: real sample data, never part of it
REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


# ----------------------------------------------------------------------------------------------------------------
# one torch thread, without importing torch here
# ----------------------------------------------------------------------------------------------------------------
def _one_thread(torch: ModuleType) -> None:
    torch.set_num_threads(1)


class _TorchThreadsHook(importlib.abc.MetaPathFinder):
    """Wraps torch's loader so that ``torch.set_num_threads(1)`` runs right after torch's first import."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torch":
            return None
        sys.meta_path.remove(self)  # once, and never in the way of the search below
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_pin(module: ModuleType) -> None:
            exec_module(module)
            _one_thread(module)

        loader.exec_module = exec_then_pin  # type: ignore[method-assign]
        return spec


if "torch" in sys.modules:  # imported by a plugin before this file
    _one_thread(sys.modules["torch"])
else:
    sys.meta_path.insert(0, _TorchThreadsHook())


@pytest.fixture(autouse=True)
def _torch_stays_on_one_thread() -> Iterator[None]:
    """A test that raises torch's thread count (a benchmark-like check) gives the next test one thread again."""
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != 1:
        _one_thread(torch)


# ----------------------------------------------------------------------------------------------------------------
# markers
# ----------------------------------------------------------------------------------------------------------------
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "boundary: checks what users see from the CLI's error boundary (one line, an exit code); runs without "
        "DVTR_DEBUG, which would make the boundary re-raise",
    )


@pytest.fixture(autouse=True)
def _debug_unless_boundary(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("boundary") is not None:
        monkeypatch.delenv("DVTR_DEBUG", raising=False)
    else:
        monkeypatch.setenv("DVTR_DEBUG", "1")  # a test before this one may have cleared it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips with a reason that says what is missing and how to get it, decided once here for every file."""
    if not REALDATA.is_dir():
        skip = pytest.mark.skip(reason=f"{REALDATA} is absent (real sample data is never part of the repository)")
        for item in items:
            if item.get_closest_marker("realdata") is not None:
                item.add_marker(skip)
