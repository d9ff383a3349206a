"""MCSAN's heuristic tagger on real drone video captions (USRD and UMCRD, as the MSAM authors publish them):
the mined vocabularies hold the scene's objects, actions and relations and none of the stop words.

Skips when ``../shared/realdata`` is absent (the files are never copied into the repository).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from dvtr_data.baselines.mcsan import mine_vocabulary, role_masks, tag_captions
from dvtr_data.baselines.mcsan.attributes import STOP_WORDS

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
ASLVT = REALDATA / "captions" / "huangjh98_ASLVT"

pytestmark = pytest.mark.realdata


class _NoObjects(pickle.Unpickler):
    """The caption pickles hold only dicts, lists and strings: refuse anything that would import code."""

    def find_class(self, module: str, name: str) -> type:
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def train_captions(name: str, limit: int) -> list[str]:
    folder = ASLVT / name
    if not (folder / "raw-captions.pkl").is_file():
        pytest.skip(f"{folder} is absent (../shared/realdata is not part of the repository)")
    with open(folder / "raw-captions.pkl", "rb") as f:
        captions = _NoObjects(f).load()
    ids = [line.rstrip("\n") for line in (folder / "train_list.txt").read_text(encoding="utf-8").splitlines()]
    texts = [" ".join(tokens) for vid in ids if vid in captions for tokens in captions[vid]]
    return texts[:: max(len(texts) // limit, 1)]  # spread over the file: it is ordered by scene class


@pytest.mark.parametrize(
    ("name", "entities", "actions"),
    [
        ("USRD", {"person", "road", "car", "tree", "house"}, {"run", "play", "swim"}),
        ("UMCRD", {"building", "tree", "road", "river", "house"}, {"surround", "stand", "park"}),
    ],
)
def test_real_caption_vocabularies(name: str, entities: set[str], actions: set[str]) -> None:
    tagged = tag_captions(train_captions(name, 2000))
    vocab = mine_vocabulary(tagged)
    top_entities = set(vocab.words["entity"][:40])
    top_actions = set(vocab.words["action"][:60])
    assert entities <= top_entities, top_entities
    assert actions <= top_actions, top_actions
    for level in ("entity", "action"):
        assert not set(vocab.words[level]) & STOP_WORDS
    assert all(" " in r for r in vocab.words["relation"])
    coverage = role_masks(tagged).any(-1).float().mean(0).tolist()
    assert coverage[0] > 0.95  # nearly every caption names an entity the text side can pool over
