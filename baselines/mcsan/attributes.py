"""Attribute vocabularies mined from captions: entities (nouns), actions (verbs), relations (predicates).

MCSAN supervises every semantic level with multi-hot attribute labels mined from the *training* captions
(methods.md §1.2 and §1.8; the recipe of HANet, whose ``concept_frequency.py`` tags with NLTK). No offline
part-of-speech model is installable here, so the default tagger is a stated heuristic
(:class:`HeuristicTagger`):

* **relation words** come from a fixed list of spatial/relational predicates (:data:`RELATION_PHRASES`,
  multi-word phrases first: "next to", "in front of", ...). A relation attribute is ``"<predicate> <object>"``
  (``"next_to tree"``): the predicate with the first noun after it (skipping articles, adjectives and
  numbers; of a compound its last noun, "on the football field" -> ``on field``); a predicate with no noun
  after it gives none. Subjects are not part of the label (full triples are too sparse at these sizes).
* **verbs** are the forms of a stated lexicon of base verbs (:data:`VERB_LEXICON`, inflected by rule, plus the
  irregular forms in :data:`IRREGULAR_VERBS`) and unknown words ending in ``-ing``. A base or third-person
  form that is also a noun ("park", "lines") is a verb only where a verb goes: right after a noun or pronoun
  (its subject), a form of *be*, a modal or *to*; elsewhere it is a noun. An unknown ``-ed`` word is a verb
  in that position and a modifier otherwise ("the village nestled in ..." vs "red roofed houses"). Unknown
  forms keep their surface form as the lemma.
* **nouns** are the remaining content words that are not stop words (:data:`STOP_WORDS`), adjectives
  (:data:`ADJECTIVES`: colours, sizes, ..., and words ending in ``-ous``, ``-ful``, ``-ible``, ``-less``),
  numbers or ``-ly`` adverbs; plural nouns are singularised by rule.

A user-supplied spaCy pipeline (``pip install spacy`` plus a model package) replaces the heuristic when it is
asked for (:class:`SpacyTagger`, guarded import): it uses spaCy's coarse POS tags and lemmas, and
``prep``/``pobj`` dependency arcs for relations.

Every word keeps its character span in the text *as CLIP's tokenizer cleans it*, so a caption's word roles map
onto the positions of its BPE tokens (:func:`role_positions`): the text side of MCSAN pools its entity, action
and relation embeddings over exactly those positions.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import torch

from dvtr_data.errors import InputError, ModelError, UsageError

LEVELS = ("entity", "action", "relation")
DEFAULT_SIZES = {
    "entity": 1024,
    "action": 512,
    "relation": 512,
}  # HANet's 1,024 nouns / 512 verbs; relations: ours


# ------------------------------------------------------------------------------------------ stated vocabulary
def _words(text: str) -> list[str]:
    """The words of a whitespace-separated list (keeps the long word lists below readable)."""
    return text.split()


RELATION_PHRASES: tuple[str, ...] = (
    "in front of",
    "on top of",
    "in the middle of",
    "on the side of",
    "at the edge of",
    "next to",
    "close to",
    "adjacent to",
    "far from",
    "away from",
    "out of",
    "along with",
    "above",
    "across",
    "against",
    "along",
    "alongside",
    "among",
    "amid",
    "amidst",
    "around",
    "at",
    "behind",
    "below",
    "beneath",
    "beside",
    "between",
    "beyond",
    "by",
    "from",
    "in",
    "inside",
    "into",
    "near",
    "on",
    "onto",
    "outside",
    "over",
    "past",
    "through",
    "toward",
    "towards",
    "under",
    "underneath",
    "with",
    "within",
)
STOP_WORDS = frozenset(
    _words(
        """
        a an the this that these those there here it its it's they them their theirs he him his she
        her hers we us our you your i me my mine who whom whose which what where when why how is are
        was were be been being am has have had having do does did doing can could may might must
        shall should will would of and or but nor so yet if then than as while also just only very
        too not no any all each every both either neither some such own same other another more most
        much many few several lot lots one ones something anything nothing someone everything 's 't
        're 've 'm 'll 'd up down off out about again further once left right
        """
    )
)
ADJECTIVES = frozenset(
    _words(
        """
        vast verdant visible dusty sandy rocky grassy muddy snowy hilly leafy sunlit overcast hazy
        bustling modern ancient historic traditional tropical coastal scenic picturesque
        red green blue yellow white black orange purple pink brown grey gray golden silver dark
        light bright pale colourful colorful big small large little huge tiny tall short long wide
        narrow broad thick thin high low deep shallow new old young full empty open closed busy
        quiet crowded dense sparse clear cloudy sunny foggy snowy rainy wet dry flat steep straight
        curved rectangular circular oval triangular smooth rough different various same similar main
        central upper lower near far nearby distant other first second third last next whole entire
        certain neat tidy messy clean dirty calm still rural urban residential industrial
        agricultural aerial vertical horizontal diagonal parallel multiple numerous several few many
        some lush barren green-colored
        """
    )
)
NUMBER_WORDS = frozenset(
    _words("zero one two three four five six seven eight nine ten eleven twelve twenty thirty hundred dozen")
)
DETERMINERS = (
    frozenset(_words("a an the this that these those its their his her our your my some any each every no"))
    | frozenset(_words("several many few"))
    | NUMBER_WORDS
)
BE_FORMS = frozenset(_words("is are was were be been being am 's 're"))
SUBJECT_PRONOUNS = frozenset(_words("it they he she we you i who which that"))
AUXILIARIES = frozenset(_words("can could may might must shall should will would do does did to"))
EXTRA_STOP_WORDS = frozenset(_words("to during via per whereas although though because since until"))
ADJECTIVE_SUFFIXES = ("ous", "ful", "ible", "less")  # religious, colourful, visible, treeless
VERB_LEXICON: tuple[str, ...] = tuple(
    _words(
        """
        wear send put happen soak submerge feature overlook tower sprawl teem battle nestle get cause
        flank dock illuminate capture give keep begin help try use find hang sweep splash wade gallop
        tend pose
        move drive fly walk run park cross stand sit cover surround flow turn pass play go come head
        travel ride swim race follow lead carry pull push stop wait line border lie grow burn rise
        fall land take make show see look watch gather march dance jump climb enter leave approach
        circle chase collide crash harvest plough plow work build construct connect divide separate
        extend stretch wind curve reach hold hover float sail row cycle skate ski shine smoke spread
        fill stay remain appear occupy contain locate situate scatter dot plant mow graze fish bathe
        celebrate protest pray queue load unload dig pave flood overflow erupt collapse destroy
        damage block jam crowd fight kick throw catch hit chat talk sing shop sell buy cook eat
        drink sleep rest train practice perform compete score dive surf paddle jog hike pedal steer
        tow lift drop pick spray water feed herd graze patrol rescue evacuate gallop crawl roll
        slide spin shake wave point cheer clap bend cut mark frame face arrange align pile stack
        fence divide shade reflect glitter sparkle move
        """
    )
)
IRREGULAR_VERBS = {
    "sent": "send",
    "got": "get",
    "gotten": "get",
    "gave": "give",
    "given": "give",
    "kept": "keep",
    "began": "begin",
    "begun": "begin",
    "found": "find",
    "swept": "sweep",
    "wore": "wear",
    "worn": "wear",
    "ran": "run",
    "flew": "fly",
    "flown": "fly",
    "drove": "drive",
    "driven": "drive",
    "went": "go",
    "gone": "go",
    "came": "come",
    "rode": "ride",
    "ridden": "ride",
    "swam": "swim",
    "swum": "swim",
    "stood": "stand",
    "sat": "sit",
    "lay": "lie",
    "lain": "lie",
    "lying": "lie",
    "took": "take",
    "taken": "take",
    "made": "make",
    "saw": "see",
    "seen": "see",
    "led": "lead",
    "held": "hold",
    "fell": "fall",
    "fallen": "fall",
    "rose": "rise",
    "risen": "rise",
    "grew": "grow",
    "grown": "grow",
    "built": "build",
    "wound": "wind",
    "dug": "dig",
    "caught": "catch",
    "threw": "throw",
    "thrown": "throw",
    "fought": "fight",
    "sold": "sell",
    "bought": "buy",
    "ate": "eat",
    "eaten": "eat",
    "drank": "drink",
    "drunk": "drink",
    "slept": "sleep",
    "sang": "sing",
    "sung": "sing",
    "shone": "shine",
    "spun": "spin",
    "shook": "shake",
    "shaken": "shake",
    "bent": "bend",
    "dove": "dive",
    "hung": "hang",
}
NOUN_ING = frozenset(
    _words(
        """
        building buildings parking ceiling morning evening thing things something nothing anything
        everything ring king spring string wing wings clothing housing crossing landing painting
        railing ceiling sibling pudding wedding meeting setting lighting clearing opening marking
        markings surroundings
        """
    )
)
IRREGULAR_PLURALS = {
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "feet": "foot",
    "teeth": "tooth",
    "geese": "goose",
    "mice": "mouse",
    "buses": "bus",
    "leaves": "leaf",
    "knives": "knife",
    "lives": "life",
    "wolves": "wolf",
    "shelves": "shelf",
    "calves": "calf",
    "halves": "half",
    "cacti": "cactus",
}
NOUN_KEEP_S = frozenset(
    _words(
        """
        grass glass bus gas class mass moss boss cross dress press process access across tennis
        canvas lens news series species physics athletics gymnastics its this his us yes plus campus
        status chassis bias
        """
    )
)


# ---------------------------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class Word:
    """A tagged word: its lemma, a coarse part of speech and its character span in the cleaned caption.

    ``pos`` is one of ``NOUN``, ``VERB``, ``ADJ``, ``NUM``, ``REL`` (a relation predicate) or ``OTHER``.
    """

    text: str
    lemma: str
    pos: str
    start: int
    end: int


@dataclass(frozen=True)
class Relation:
    """A predicate and the noun after it, with the indices (into the caption's words) of both."""

    predicate: str
    object: str
    words: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.predicate} {self.object}"


@dataclass(frozen=True)
class TaggedCaption:
    """A caption as the taggers see it: cleaned text, words and relations."""

    text: str
    words: tuple[Word, ...]
    relations: tuple[Relation, ...]

    def attributes(self) -> dict[str, list[str]]:
        """The caption's attribute strings per level (duplicates removed, first occurrence order)."""
        entity = [w.lemma for w in self.words if w.pos == "NOUN"]
        action = [w.lemma for w in self.words if w.pos == "VERB"]
        relation = [r.label for r in self.relations]
        return {
            k: list(dict.fromkeys(v))
            for k, v in (("entity", entity), ("action", action), ("relation", relation))
        }

    def level_words(self) -> dict[str, list[int]]:
        """Indices of the words that carry each level (relations: predicate and object words)."""
        rel = sorted({i for r in self.relations for i in r.words})
        return {
            "entity": [i for i, w in enumerate(self.words) if w.pos == "NOUN"],
            "action": [i for i, w in enumerate(self.words) if w.pos == "VERB"],
            "relation": rel,
        }


class Tagger(Protocol):
    """Anything that tags a cleaned caption (lower-case, single spaces) into words and relations."""

    name: str

    def tag(self, text: str) -> TaggedCaption: ...


# ------------------------------------------------------------------------------------------- CLIP text pieces
@cache
def _clip_tokenizer() -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def clean_caption(text: str) -> str:
    """The caption as CLIP's tokenizer sees it (ftfy, HTML unescape, whitespace collapse, lower case)."""
    return _clip_tokenizer().clean_fn(text)


@dataclass(frozen=True)
class Piece:
    """One pre-BPE piece of CLIP's tokenizer (a letter run, one digit, a punctuation run, a contraction)."""

    text: str
    start: int
    end: int
    n_tokens: int


def clip_pieces(cleaned: str) -> list[Piece]:
    """CLIP's pieces of an already cleaned caption with their BPE token counts.

    The tokenizer BPE-encodes each regex piece independently, so the caption's token sequence is the
    concatenation of the pieces' sequences; this is what lets word spans map onto token positions.
    """
    tok = _clip_tokenizer()
    out = []
    for m in tok.pat.finditer(cleaned):
        piece = m.group(0)
        encoded = "".join(tok.byte_encoder[b] for b in piece.encode("utf-8"))
        n = len(tok.bpe(encoded).split(" "))
        out.append(Piece(piece, m.start(), m.end(), n))
    return out


# ------------------------------------------------------------------------------------------- heuristic tagger
def _vowel(c: str) -> bool:
    return c in "aeiou"


def _cvc(word: str) -> bool:
    """A one-syllable word ending consonant-vowel-consonant (run, stop): its final consonant doubles."""
    if len(word) < 3 or word[-1] in "wxy" or _vowel(word[-1]) or not _vowel(word[-2]) or _vowel(word[-3]):
        return False
    groups = sum(1 for i, c in enumerate(word) if _vowel(c) and (i == 0 or not _vowel(word[i - 1])))
    return groups == 1


def verb_forms(base: str) -> dict[str, str]:
    """Inflected forms of a base verb -> the form's kind (``base``, ``s``, ``ed``, ``ing``)."""
    forms = {base: "base"}
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        forms[base + "es"] = "s"
    elif base.endswith("y") and not _vowel(base[-2]):
        forms[base[:-1] + "ies"] = "s"
    else:
        forms[base + "s"] = "s"
    if base.endswith("e"):
        forms[base + "d"] = "ed"
    elif base.endswith("y") and not _vowel(base[-2]):
        forms[base[:-1] + "ied"] = "ed"
    else:
        forms[base + "ed"] = "ed"
    if base.endswith("ie"):
        forms[base[:-2] + "ying"] = "ing"
    elif base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        forms[base[:-1] + "ing"] = "ing"
    else:
        forms[base + "ing"] = "ing"
    if _cvc(base) or (base.endswith("l") and len(base) > 4 and _vowel(base[-2]) and not _vowel(base[-3])):
        forms[base + base[-1] + "ing"] = "ing"  # run -> running; travel -> travelling (British) as well
        forms[base + base[-1] + "ed"] = "ed"
    return forms


@cache
def _verb_table() -> dict[str, tuple[str, str]]:
    """Every known verb form -> (lemma, kind)."""
    table: dict[str, tuple[str, str]] = {}
    for base in VERB_LEXICON:
        for form, kind in verb_forms(base).items():
            table.setdefault(form, (base, kind))
    for form, base in IRREGULAR_VERBS.items():
        table.setdefault(form, (base, "ed"))
    return table


def singular(noun: str) -> str:
    """A plural noun's singular by rule (the irregular and keep-as-is lists first)."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun in NOUN_KEEP_S or len(noun) <= 3 or not noun.endswith("s") or noun.endswith(("ss", "us", "is")):
        return noun
    if noun.endswith("ies") and len(noun) > 4:
        return noun[:-3] + "y"
    if noun.endswith(("sses", "shes", "ches", "xes", "zes")):
        return noun[:-2]
    return noun[:-1]


def _after_subject(prev: str, prev_pos: str) -> bool:
    """Whether a verb form sits where a verb goes: after a noun or pronoun (its subject), a form of *be*, a
    modal or auxiliary, or *to*."""
    return prev_pos == "NOUN" or prev in SUBJECT_PRONOUNS or prev in BE_FORMS or prev in AUXILIARIES


class HeuristicTagger:
    """The stated-vocabulary tagger of this module's docstring (no model, deterministic)."""

    name = "heuristic"

    def __init__(self) -> None:
        phrases = sorted((p.split() for p in RELATION_PHRASES), key=len, reverse=True)
        self._phrases = [tuple(p) for p in phrases]

    def tag(self, text: str) -> TaggedCaption:
        pieces = [
            p for p in clip_pieces(text) if p.text.isalpha() or p.text.startswith("'") or p.text.isdigit()
        ]
        n = len(pieces)
        pos: list[str] = ["OTHER"] * n
        lemma: list[str] = [p.text for p in pieces]
        rel_span: dict[int, tuple[int, str]] = {}  # first piece -> (length, predicate)
        i = 0
        while i < n:
            for phrase in self._phrases:
                k = len(phrase)
                if tuple(p.text for p in pieces[i : i + k]) == phrase:
                    rel_span[i] = (k, "_".join(phrase))
                    for j in range(i, i + k):
                        pos[j] = "REL"
                    i += k
                    break
            else:
                i += 1
        table = _verb_table()
        for i, piece in enumerate(pieces):
            if pos[i] == "REL":
                continue
            w = piece.text
            prev = pieces[i - 1].text if i else ""
            prev_pos = pos[i - 1] if i else "START"
            if w.isdigit() or w in NUMBER_WORDS:
                pos[i] = "NUM"
            elif w in STOP_WORDS or w in EXTRA_STOP_WORDS or w.startswith("'"):
                pos[i] = "OTHER"
            elif w in ADJECTIVES or (w.endswith(ADJECTIVE_SUFFIXES) and len(w) >= 6 and w not in table):
                pos[i] = "ADJ"
            elif w.endswith("ly") and len(w) > 4:
                pos[i] = "OTHER"
            elif w in NOUN_ING and prev not in BE_FORMS:
                pos[i], lemma[i] = "NOUN", singular(w)
            elif w in table:
                base, kind = table[w]
                if kind in ("ing", "ed") or _after_subject(prev, prev_pos):
                    pos[i], lemma[i] = "VERB", base
                else:
                    pos[i], lemma[i] = "NOUN", singular(w)
            elif w.endswith("ing") and len(w) >= 5:
                pos[i] = "VERB"
            elif (
                w.endswith("ed") and len(w) >= 5
            ):  # unknown participle: a verb after its subject, else a modifier
                pos[i] = "VERB" if _after_subject(prev, prev_pos) else "ADJ"
            else:
                lemma[i] = singular(w)
                pos[i] = "OTHER" if lemma[i] in STOP_WORDS else "NOUN"  # "others"
        words = tuple(Word(p.text, lemma[i], pos[i], p.start, p.end) for i, p in enumerate(pieces))
        relations = []
        for start, (k, predicate) in sorted(rel_span.items()):
            for j in range(start + k, n):
                if pos[j] == "NOUN":
                    while j + 1 < n and pos[j + 1] == "NOUN":  # a compound's head: "on the football field"
                        j += 1
                    relations.append(Relation(predicate, lemma[j], (*range(start, start + k), j)))
                    break
                if pos[j] not in ("ADJ", "NUM", "OTHER") or (
                    pos[j] == "OTHER" and pieces[j].text not in DETERMINERS
                ):
                    break
        return TaggedCaption(text, words, tuple(relations))


# ---------------------------------------------------------------------------------------------- spaCy tagger
class SpacyTagger:
    """Tags with a user-installed spaCy pipeline (POS, lemmas, ``prep``/``pobj`` arcs for relations).

    ``nlp`` may be any callable that returns spaCy-like tokens (``text``, ``idx``, ``lemma_``, ``pos_``,
    ``dep_``, ``head``, ``i``); by default ``spacy.load(model)``.
    """

    def __init__(self, model: str = "en_core_web_sm", nlp: Any = None) -> None:
        if nlp is None:
            try:
                import spacy
            except ImportError as exc:
                raise ModelError(
                    "the spaCy tagger needs spaCy",
                    hint="pip install spacy and a model package, or use the heuristic tagger",
                ) from exc
            try:
                nlp = spacy.load(model, disable=["ner"])
            except OSError as exc:
                raise ModelError(
                    f"spaCy model {model!r} is not installed",
                    hint=f"install it (python -m spacy download {model}) or use the heuristic tagger",
                ) from exc
        self.nlp = nlp
        self.name = f"spacy:{model}"

    def tag(self, text: str) -> TaggedCaption:
        doc = self.nlp(text)
        words: list[Word] = []
        index: dict[int, int] = {}
        for tok in doc:
            if not any(c.isalnum() for c in tok.text):
                continue
            coarse = {
                "NOUN": "NOUN",
                "PROPN": "NOUN",
                "VERB": "VERB",
                "ADJ": "ADJ",
                "NUM": "NUM",
                "ADP": "REL",
            }
            pos = coarse.get(tok.pos_, "OTHER")
            if tok.pos_ == "ADP" and tok.text.lower() not in {
                p for ph in RELATION_PHRASES for p in ph.split()
            }:
                pos = "OTHER"
            index[tok.i] = len(words)
            words.append(Word(tok.text.lower(), tok.lemma_.lower(), pos, tok.idx, tok.idx + len(tok.text)))
        relations = []
        for tok in doc:
            linked = tok.dep_ == "pobj" and tok.head.dep_ == "prep" and tok.i in index and tok.head.i in index
            if linked and words[index[tok.i]].pos == "NOUN" and words[index[tok.head.i]].pos == "REL":
                relations.append(
                    Relation(tok.head.text.lower(), tok.lemma_.lower(), (index[tok.head.i], index[tok.i]))
                )
        return TaggedCaption(text, tuple(words), tuple(relations))


def make_tagger(name: str = "heuristic") -> Tagger:
    """``heuristic``, or ``spacy`` / ``spacy:<model>`` for an installed spaCy pipeline."""
    if name == "heuristic":
        return HeuristicTagger()
    if name == "spacy" or name.startswith("spacy:"):
        return SpacyTagger(name.partition(":")[2] or "en_core_web_sm")
    raise UsageError(f"unknown tagger {name!r}", hint="heuristic, spacy or spacy:<model>")


def tag_captions(texts: Iterable[str], tagger: Tagger | None = None) -> list[TaggedCaption]:
    """Tag captions after CLIP's cleaning (so spans index the cleaned text)."""
    tagger = tagger or HeuristicTagger()
    return [tagger.tag(clean_caption(t)) for t in texts]


# ---------------------------------------------------------------------------------------------- vocabulary
@dataclass
class AttributeVocabulary:
    """Per level, the attribute strings kept (most frequent first) and their training-caption counts."""

    words: dict[str, list[str]]
    counts: dict[str, list[int]]
    tagger: str = "heuristic"
    source_captions: int = 0
    _index: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        missing = [lv for lv in LEVELS if lv not in self.words]
        if missing:
            raise InputError(f"attribute vocabulary lacks level(s) {', '.join(missing)}")
        self._index = {lv: {w: i for i, w in enumerate(self.words[lv])} for lv in LEVELS}

    def size(self, level: str) -> int:
        return len(self.words[level])

    def sizes(self) -> dict[str, int]:
        return {lv: self.size(lv) for lv in LEVELS}

    def labels(self, captions: Sequence[TaggedCaption]) -> dict[str, torch.Tensor]:
        """Multi-hot ``float32 [N, K_level]`` per level; attributes outside the vocabulary are ignored."""
        out = {}
        for lv in LEVELS:
            y = torch.zeros((len(captions), max(self.size(lv), 1)), dtype=torch.float32)[:, : self.size(lv)]
            for row, cap in enumerate(captions):
                for a in cap.attributes()[lv]:
                    k = self._index[lv].get(a)
                    if k is not None:
                        y[row, k] = 1.0
            out[lv] = y
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "tagger": self.tagger,
            "source_captions": self.source_captions,
            "words": self.words,
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttributeVocabulary:
        try:
            return cls(
                words={lv: list(data["words"][lv]) for lv in LEVELS},
                counts={lv: [int(c) for c in data["counts"][lv]] for lv in LEVELS},
                tagger=str(data.get("tagger", "heuristic")),
                source_captions=int(data.get("source_captions", 0)),
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"not an attribute vocabulary: {exc}") from None

    def save(self, path: Path) -> None:
        from dvtr_data.dataset import atomic_write_bytes

        atomic_write_bytes(Path(path), json.dumps(self.to_dict(), indent=1).encode("utf-8"))

    @classmethod
    def load(cls, path: Path) -> AttributeVocabulary:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read attribute vocabulary {path}: {exc}") from None


def mine_vocabulary(
    captions: Sequence[TaggedCaption],
    *,
    sizes: dict[str, int] | None = None,
    min_count: int = 1,
    tagger: str = "heuristic",
) -> AttributeVocabulary:
    """The top-K attributes per level by the number of captions that contain them (ties: alphabetical).

    Pass the *training* captions only: attributes of evaluation captions must not shape the label space.
    """
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    if any(v < 1 for v in sizes.values()) or min_count < 1:
        raise UsageError("attribute vocabulary sizes and min_count must be >= 1")
    counters: dict[str, Counter[str]] = {lv: Counter() for lv in LEVELS}
    for cap in captions:
        for lv, attrs in cap.attributes().items():
            counters[lv].update(set(attrs))
    words, counts = {}, {}
    for lv in LEVELS:
        ranked = sorted(
            ((w, c) for w, c in counters[lv].items() if c >= min_count), key=lambda wc: (-wc[1], wc[0])
        )
        ranked = ranked[: sizes[lv]]
        words[lv] = [w for w, _ in ranked]
        counts[lv] = [c for _, c in ranked]
    return AttributeVocabulary(words, counts, tagger=tagger, source_captions=len(captions))


# -------------------------------------------------------------------------------------------- token positions
def role_positions(caption: TaggedCaption, max_words: int = 32) -> dict[str, list[int]]:
    """Per level, the positions in CLIP's token sequence (SOT at 0) of the level's words.

    A word owns every BPE token of every piece its span overlaps; tokens cut off by the ``max_words``
    truncation (SOT + ``max_words - 2`` tokens + EOT) are dropped.
    """
    pieces = clip_pieces(caption.text)
    limit = max_words - 1  # positions 1 .. max_words - 2 hold text tokens
    spans: list[tuple[int, int, int, int]] = []  # (char start, char end, first position, end position)
    at = 1
    for p in pieces:
        spans.append((p.start, p.end, at, at + p.n_tokens))
        at += p.n_tokens
    out = {}
    for lv, idx in caption.level_words().items():
        positions: set[int] = set()
        for i in idx:
            w = caption.words[i]
            for s, e, a, b in spans:
                if s < w.end and w.start < e:
                    positions.update(range(a, min(b, limit)))
        out[lv] = sorted(positions)
    return out


def role_masks(captions: Sequence[TaggedCaption], max_words: int = 32) -> torch.Tensor:
    """``bool [N, 3, max_words]``: entity, action and relation token positions of each caption."""
    mask = torch.zeros((len(captions), len(LEVELS), max_words), dtype=torch.bool)
    for row, cap in enumerate(captions):
        positions = role_positions(cap, max_words)
        for k, lv in enumerate(LEVELS):
            pos = positions[lv]
            if pos:
                mask[row, k, pos] = True
    return mask
