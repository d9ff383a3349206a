"""MCSAN attribute mining: the heuristic tagger on hand-read captions, vocabularies, labels, positions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from open_clip.tokenizer import SimpleTokenizer

from dvtr_data.baselines.mcsan.attributes import (
    AttributeVocabulary,
    SpacyTagger,
    clean_caption,
    make_tagger,
    mine_vocabulary,
    role_masks,
    role_positions,
    singular,
    tag_captions,
    verb_forms,
)
from dvtr_data.errors import ModelError, UsageError

TOK = SimpleTokenizer()


def attrs(text: str) -> dict[str, list[str]]:
    return tag_captions([text])[0].attributes()


def test_entities_actions_and_relations_of_a_plain_caption() -> None:
    a = attrs("A red car drives along the road next to two trees.")
    assert a == {
        "entity": ["car", "road", "tree"],
        "action": ["drive"],
        "relation": ["along road", "next_to tree"],
    }


def test_noun_verb_ambiguity_is_settled_by_the_word_before() -> None:
    assert attrs("Trees line the road")["action"] == ["line"]  # after a noun (its subject): a verb
    a = attrs("a white line on the road")  # after an adjective: a noun
    assert "line" in a["entity"] and a["action"] == []
    assert attrs("a park with trees")["entity"] == ["park", "tree"]


def test_passives_gerunds_irregular_forms_and_noun_ing_words() -> None:
    a = attrs("Cars are parked in front of a tall building while people were swimming and a boat ran aground")
    assert a["action"] == ["park", "swim", "run"]
    assert a["entity"][:3] == ["car", "building", "person"]
    assert "in_front_of building" in a["relation"]
    assert "building" not in a["action"]


def test_relation_needs_a_noun_after_the_predicate() -> None:
    assert attrs("a boat floats near")["relation"] == []
    assert attrs("a boat floats near the big white pier")["relation"] == [
        "near pier"
    ]  # skips article, adjectives


def test_inflection_rules() -> None:
    assert set(verb_forms("run")) >= {"run", "runs", "running"}
    assert set(verb_forms("move")) == {"move", "moves", "moved", "moving"}
    assert set(verb_forms("fly")) >= {"flies", "flied", "flying"}
    assert set(verb_forms("cross")) >= {"crosses", "crossed", "crossing"}
    assert [singular(w) for w in ("trees", "buses", "cities", "churches", "grass", "people", "bus")] == [
        "tree",
        "bus",
        "city",
        "church",
        "grass",
        "person",
        "bus",
    ]


def test_vocabulary_counts_captions_ranks_and_cuts() -> None:
    texts = [
        "a car and a car on a road",  # car counts once for this caption
        "a car near a house",
        "a boat near a house",
        "a truck on a bridge",
    ]
    vocab = mine_vocabulary(tag_captions(texts), sizes={"entity": 3, "action": 4, "relation": 10})
    # counts: car 2, house 2, road 1, boat 1, truck 1, bridge 1 -> top 3: car, house (tie: alphabetical), then
    # the first of the count-1 words alphabetically: boat
    assert vocab.words["entity"] == ["car", "house", "boat"]
    assert vocab.counts["entity"] == [2, 2, 1]
    assert vocab.words["relation"] == ["near house", "on bridge", "on road"]
    assert vocab.source_captions == 4
    assert mine_vocabulary(tag_captions(texts), min_count=2).words["entity"] == ["car", "house"]


def test_labels_ignore_attributes_outside_the_vocabulary() -> None:
    vocab = mine_vocabulary(tag_captions(["a car near a house", "a boat on a lake"]))
    y = vocab.labels(tag_captions(["a car near a lake with a dog"]))
    e = vocab.words["entity"]
    assert e == ["boat", "car", "house", "lake"]
    assert y["entity"].tolist() == [[0.0, 1.0, 0.0, 1.0]]  # car, lake; dog is not in the vocabulary
    assert y["relation"].tolist() == [[0.0, 0.0]]  # "near lake"/"with dog" unseen in training
    assert y["action"].shape == (1, 0)


def test_vocabulary_round_trips_through_json(tmp_path) -> None:
    vocab = mine_vocabulary(tag_captions(["people walk on the beach", "a car drives over a bridge"]))
    vocab.save(tmp_path / "v.json")
    again = AttributeVocabulary.load(tmp_path / "v.json")
    assert again.words == vocab.words and again.counts == vocab.counts and again.tagger == "heuristic"


def test_role_positions_point_at_the_words_tokens() -> None:
    text = "A red car drives along the road"
    ids = TOK([text], context_length=32)[0]
    pos = role_positions(tag_captions([text])[0])
    assert [int(ids[p]) for p in pos["entity"]] == TOK.encode("car") + TOK.encode("road")
    assert [int(ids[p]) for p in pos["action"]] == TOK.encode("drives")
    assert [int(ids[p]) for p in pos["relation"]] == TOK.encode("along") + TOK.encode("road")


def test_a_word_owns_all_its_bpe_tokens_and_truncated_ones_are_dropped() -> None:
    text = "two excavators near a helipad"
    ids = TOK([text], context_length=32)[0]
    pos = role_positions(tag_captions([text])[0])
    assert len(TOK.encode("excavators")) == 2 and len(TOK.encode("helipad")) == 2
    assert [int(ids[p]) for p in pos["entity"]] == TOK.encode("excavators") + TOK.encode("helipad")
    long = " ".join(["road"] * 35) + " with a helipad"
    masks = role_masks(tag_captions([long]), max_words=32)
    entity = masks[0, 0].nonzero().flatten().tolist()
    assert entity == list(range(1, 31))  # 30 text tokens fit (SOT + 30 + EOT); the helipad is cut off
    assert masks.shape == (1, 3, 32) and not masks[0, 2].any()


def test_cleaning_matches_clip() -> None:
    assert clean_caption("  A  Red&amp;Blue   CAR ") == "a red&blue car"


def test_spacy_tagger_adapter_reads_pos_lemmas_and_prepositional_arcs() -> None:
    """A stand-in pipeline with spaCy's token attributes (no model is installable here)."""
    text = "cars parked near the river"
    spec = [
        ("cars", "car", "NOUN", "nsubj", 1),
        ("parked", "park", "VERB", "ROOT", 1),
        ("near", "near", "ADP", "prep", 1),
        ("the", "the", "DET", "det", 4),
        ("river", "river", "NOUN", "pobj", 2),
    ]
    toks, at = [], 0
    for i, (w, lemma, pos, dep, _) in enumerate(spec):
        at = text.index(w, at)
        toks.append(SimpleNamespace(text=w, idx=at, lemma_=lemma, pos_=pos, dep_=dep, i=i))
    for tok, s in zip(toks, spec, strict=True):
        tok.head = toks[s[4]]
    tagger = SpacyTagger("fake", nlp=lambda _t: toks)
    cap = tagger.tag(text)
    assert cap.attributes() == {"entity": ["car", "river"], "action": ["park"], "relation": ["near river"]}
    ids = TOK([text], context_length=32)[0]
    assert [int(ids[p]) for p in role_positions(cap)["relation"]] == TOK.encode("near") + TOK.encode("river")


def test_tagger_names() -> None:
    assert make_tagger("heuristic").name == "heuristic"
    with pytest.raises(UsageError):
        make_tagger("nltk")
    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match="spaCy"):
            make_tagger("spacy")


def test_role_masks_stack_levels_in_order() -> None:
    masks = role_masks(tag_captions(["people walk on the beach", "a sunny day"]), max_words=16)
    assert masks.dtype == torch.bool and masks.shape == (2, 3, 16)
    assert masks[0].any(1).tolist() == [True, True, True]
    assert masks[1].any(1).tolist() == [True, False, False]  # "day" only


def test_modals_participles_compounds_and_suffix_adjectives() -> None:
    a = attrs("we can see a religious procession on the football field during the day")
    assert a["action"] == ["see"]  # after a modal
    assert a["entity"] == [
        "procession",
        "football",
        "field",
        "day",
    ]  # religious: -ous adjective; during: stop word
    assert a["relation"] == ["on field"]  # the compound's head noun
    b = attrs("a village perched on the hill with docked boats")
    assert b["action"] == ["perched", "dock"]  # unknown -ed after its subject: a verb, lemma as written;
    # a known -ed form is a verb wherever it stands
    c = attrs("red roofed houses near the shore")
    assert (
        c["entity"] == ["house", "shore"] and c["action"] == []
    )  # unknown -ed after an adjective: a modifier
