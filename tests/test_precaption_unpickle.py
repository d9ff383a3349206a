"""The restricted unpickler reads plain caption pickles and refuses every import, so a hostile pickle runs nothing."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import pytest

from dvtr_data.errors import InputError
from dvtr_data.precaption.unpickle import RefusedPickle, load_restricted, loads_restricted


class Payload:
    """Unpickling this calls os.system: what a malicious caption file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_caption_data_loads_with_every_protocol(protocol):
    data = {"Party_042 ": [["there", "are", "many", "people"], ["a", "party"]], "v 1": ["a sentence"],
            "nums": (1, 2.5, True, None), "tags": {"a", "b"}, "frozen": frozenset({1})}
    if protocol >= 3:
        data["raw"] = b"x"  # older protocols spell bytes as a call to _codecs.encode, which is refused
    assert loads_restricted(pickle.dumps(data, protocol=protocol)) == data


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_pickle_that_imports_a_function_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    blob = pickle.dumps({"v": Payload(marker)}, protocol=protocol)
    with pytest.raises(RefusedPickle, match="os|posix|system"):
        loads_restricted(blob)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [collections.OrderedDict(a=1), collections.Counter("ab"), Path("/tmp"),
                                 int.__add__, pytest.raises])
def test_a_pickle_that_imports_a_class_is_refused(obj):
    with pytest.raises(RefusedPickle, match="tries to import"):
        loads_restricted(pickle.dumps(obj))


def test_builtins_that_run_code_are_refused():
    # a hand-written pickle calling builtins.eval("1+1")
    blob = b"cbuiltins\neval\n(V1+1\ntR."
    with pytest.raises(RefusedPickle, match="builtins.eval"):
        loads_restricted(blob)


def test_persistent_ids_are_refused():
    blob = b"Pabc\n."
    with pytest.raises(RefusedPickle, match="persistent"):
        loads_restricted(blob)


def test_file_errors_are_input_errors(tmp_path):
    bad = tmp_path / "raw-captions.pkl"
    bad.write_bytes(pickle.dumps(collections.OrderedDict(a=1)))
    with pytest.raises(InputError, match="refused") as exc:
        load_restricted(bad)
    assert "only plain data" in str(exc.value)
    bad.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(InputError, match="not a readable pickle"):
        load_restricted(bad)
    with pytest.raises(InputError, match="cannot read"):
        load_restricted(tmp_path / "missing.pkl")
