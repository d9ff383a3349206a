"""Caption banks: the built-in drone bank, user banks in every layout, bad banks, and published caption sets."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dvtr_data.errors import InputError
from dvtr_data.precaption.bank import BUILTIN_NAME, builtin_bank, combine, load_bank, load_banks
from dvtr_data.precaption.taxonomy import ERA_EVENTS, RS_SCENES, expand

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "captions"


# ----------------------------------------------------------------------------------------------------------------
# built-in bank
# ----------------------------------------------------------------------------------------------------------------
def test_builtin_bank_is_large_varied_and_covers_the_taxonomy():
    bank = builtin_bank()
    assert bank.name == BUILTIN_NAME
    assert 3000 <= len(bank) <= 8000
    text = "\n".join(bank.texts).lower()
    for word in ("port", "church", "railway", "dense residential", "farmland", "harbour", "flood", "baseball",
                 "traffic jam", "harvester", "the drone", "top-down view", "oblique aerial view", "several", "many"):
        assert word in text, word
    assert len(ERA_EVENTS) == 25
    assert {"port", "church", "railway", "dense residential", "farmland"} <= {c.name for c in RS_SCENES}
    # every class contributes sentences
    for cls in ERA_EVENTS + RS_SCENES:
        nouns = [n for _, np_ in cls.places for n in expand(np_)]
        assert any(n.lower() in text for n in nouns), cls.name
    # distinct, not a handful of templates: many different opening words and sentence lengths
    assert len({t.split()[0] for t in bank.texts}) > 60
    assert len({len(t.split()) for t in bank.texts}) > 12


def test_builtin_sentences_are_well_formed():
    bank = builtin_bank()
    for t in bank.texts:
        assert t[0].isupper() and t.endswith(".") and "  " not in t and ".." not in t, t
        assert len(t) <= 200, t
        # indefinite articles agree with the next word's sound (the vocabulary avoids silent-h and "uni-" words)
        assert not re.search(r"\ba [aeiou]", t.lower()), t
        assert not re.search(r"\ban [b-df-hj-np-tv-z]", t.lower()), t
        assert " a a " not in t and " the the " not in t, t
    assert len({t.lower() for t in bank.texts}) == len(bank)


def test_builtin_bank_is_the_same_in_every_process():
    code = "from dvtr_data.precaption.bank import builtin_bank; print(builtin_bank().label)"
    labels = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2")
    }
    assert labels == {builtin_bank().label}


# ----------------------------------------------------------------------------------------------------------------
# user banks
# ----------------------------------------------------------------------------------------------------------------
def test_text_bank_skips_empty_huge_and_duplicate_lines(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\ufeffA red car on a road.\n\n   \na red car  on a road\nA boat in a port.\n" + "x" * 1200 + "\n",
                    encoding="utf-8")
    bank = load_bank(path)
    assert bank.texts == ("A red car on a road.", "A boat in a port.")
    assert (bank.skipped_empty, bank.skipped_huge, bank.duplicates) == (2, 1, 1)
    assert bank.name == "mine" and bank.label.startswith("mine@")
    assert load_bank(path, max_chars=5000).skipped_huge == 0


def test_jsonl_json_and_parquet_banks(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"caption": "a boat"}\n\n{"caption": ["two cars", "a bus"]}\n"a church"\n')
    assert load_bank(tmp_path / "a.jsonl").texts == ("a boat", "two cars", "a bus", "a church")
    (tmp_path / "b.jsonl").write_text('{"sentence": "x", "desc": "a boat"}\n')
    assert load_bank(tmp_path / "b.jsonl", text_column="desc").texts == ("a boat",)
    (tmp_path / "c.json").write_text(json.dumps(["a boat", {"text": "a port"}]))
    assert load_bank(tmp_path / "c.json").texts == ("a boat", "a port")
    (tmp_path / "d.json").write_text(json.dumps({"vid1": ["a boat", "a ship"], "vid2": "a port"}))
    assert load_bank(tmp_path / "d.json").texts == ("a boat", "a ship", "a port")
    pq.write_table(pa.table({"id": [1, 2, 3], "text": ["a boat", None, "a port"]}), tmp_path / "e.parquet")
    bank = load_bank(tmp_path / "e.parquet")
    assert bank.texts == ("a boat", "a port") and bank.skipped_empty == 1
    pq.write_table(pa.table({"captions": [["a boat", "a ship"], ["a port"]]}), tmp_path / "f.parquet")
    assert load_bank(tmp_path / "f.parquet").texts == ("a boat", "a ship", "a port")


def test_capera_and_clip4clip_layouts(tmp_path):
    capera = {"ERA_caption": [{"video_id": "Baseball_001.mp4", "annotation": {"English_caption": [
        "people playing baseball", "a baseball game", "", "people playing baseball"]}}]}
    (tmp_path / "CapERA_DATASET_test.json").write_text(json.dumps(capera))
    bank = load_bank(tmp_path / "CapERA_DATASET_test.json")
    assert bank.texts == ("people playing baseball", "a baseball game")
    assert (bank.skipped_empty, bank.duplicates) == (1, 1)

    usrd = tmp_path / "USRD"
    usrd.mkdir()
    with open(usrd / "raw-captions.pkl", "wb") as fh:
        pickle.dump({"Party_042 ": [["there", "are", "many", "people"], ["some", "people", "eat"]],
                     "Video_291": [[]]}, fh)
    bank = load_bank(usrd)  # a folder: its raw-captions.pkl
    assert bank.name == "USRD"
    assert bank.texts == ("there are many people", "some people eat") and bank.skipped_empty == 1
    assert load_bank(usrd / "raw-captions.pkl").texts == bank.texts


def test_combined_banks_deduplicate_across_sources(tmp_path):
    (tmp_path / "a.txt").write_text("a boat\na port\n")
    (tmp_path / "b.txt").write_text("A port.\na church\n")
    bank = load_banks([tmp_path / "a.txt", tmp_path / "b.txt"])
    assert bank.texts == ("a boat", "a port", "a church")
    assert bank.name == "a+b" and bank.duplicates == 1
    both = load_banks(["builtin", tmp_path / "a.txt"])
    assert len(both) == len(builtin_bank()) + 2
    assert combine([bank]) is bank


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("empty.txt", "", "no usable captions"),
        ("blank.txt", "\n  \n\n", r"no usable captions \(3 empty"),
        ("bad.json", "{not json", "not valid JSON"),
        ("bad.jsonl", '{"text": "a"}\n{oops\n', "line 2 is not valid JSON"),
        ("nofield.jsonl", '{"title": "a"}\n', "no text field"),
        ("shape.json", "42", "expected a list of captions"),
        ("capera.json", '{"ERA_caption": [{"video_id": "x"}]}', "English_caption"),
        ("binary.txt", b"\x00\x01\x02", "not a text file"),
        ("latin.txt", "caf\xe9".encode("latin-1"), "not UTF-8"),
        ("evil.pkl", pickle.dumps(OrderedDict(a=["x"])), "refused"),
        ("list.pkl", pickle.dumps(["a", "b"]), "expected a dict of video id"),
        ("notpq.parquet", b"PAR1garbage", "not a readable Parquet"),
    ],
)
def test_bad_banks_are_one_clear_input_error(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(InputError, match=match):
        load_bank(path)


def test_bank_path_and_column_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_bank(tmp_path / "nope.txt")
    pq.write_table(pa.table({"title": ["a"]}), tmp_path / "t.parquet")
    with pytest.raises(InputError, match="no text column.*title"):
        load_bank(tmp_path / "t.parquet")
    with pytest.raises(InputError, match="no column 'x'"):
        load_bank(tmp_path / "t.parquet", text_column="x")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "n.parquet")
    with pytest.raises(InputError, match="not text"):
        load_bank(tmp_path / "n.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no caption file"):
        load_bank(tmp_path / "empty")
    with pytest.raises(InputError, match="unknown bank format"):
        load_bank(tmp_path / "t.parquet", fmt="csv")


# ----------------------------------------------------------------------------------------------------------------
# published caption sets (../shared/realdata; skipped when absent)
# ----------------------------------------------------------------------------------------------------------------
realdata = pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is absent (real caption sets are optional)")


@pytest.mark.realdata
@realdata
def test_usrd_and_umcrd_pickles_load_with_the_restricted_unpickler():
    usrd = load_bank(REAL / "huangjh98_ASLVT" / "USRD" / "raw-captions.pkl")
    assert usrd.name == "USRD"
    total = len(usrd) + usrd.duplicates + usrd.skipped_empty
    assert total == 14_320  # 2,864 videos x 5 captions, as the README says
    assert 0.6 < len(usrd) / total < 0.75  # "only 68.5% of captions are unique"
    umcrd = load_bank(REAL / "huangjh98_ASLVT" / "UMCRD")
    assert umcrd.skipped_empty >= 1  # Video_291 has an empty caption
    assert len(umcrd) + umcrd.duplicates + umcrd.skipped_empty == 21_175


@pytest.mark.realdata
@realdata
def test_capera_and_precomp_caption_files_load():
    capera = load_bank(REAL / "yakoubbazi_CapEra")
    assert len(capera) > 5000
    assert all(isinstance(t, str) and t for t in capera.texts)
    rsitmd = load_bank(REAL / "ZhanYang-nwpu_PE-RSITR" / "rsitmd_precomp")  # *_caps.txt, one caption per line
    assert len(rsitmd) > 1000
