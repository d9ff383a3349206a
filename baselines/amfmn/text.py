"""Caption tokens and the vocabulary, as AMFMN's ``data.py`` and ``vocab.py`` make them.

AMFMN tokenises with NLTK's ``word_tokenize`` on the lower-cased caption, drops 16 punctuation tokens, builds the
vocabulary from the training captions without stop words (words seen at least 5 times, in order of first
appearance, ids from 1, ``<unk>`` last; id 0 pads), and maps every other token, stop words included, to
``<unk>`` (kept: the released checkpoints were trained so).

Two stand-ins, because NLTK's data files cannot be downloaded here:

* ``word_tokenize`` needs the Punkt model to split sentences first; captions are split at ``.``, ``!`` or ``?``
  followed by white space instead, then NLTK's own word tokenizer (``NLTKWordTokenizer``, the one
  ``word_tokenize`` calls, which needs no data) runs on each piece.
* NLTK's English stop-word corpus is used when installed, else the same 179 words written out here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nltk.tokenize import NLTKWordTokenizer

from dvtr_data.errors import InputError

PUNCTUATION = frozenset([",", ".", ":", ";", "?", "(", ")", "[", "]", "&", "!", "*", "@", "#", "$", "%"])
UNK = "<unk>"
_STOP_WORDS = """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
he him his himself she she's her hers herself it it's its itself they them their theirs themselves what which who
whom this that that'll these those am is are was were be been being have has had having do does did doing a an the
and but if or because as until while of at by for with about against between into through during before after
above below to from up down in out on off over under again further then once here there when where why how all any
both each few more most other some such no nor not only own same so than too very s t can will just don don't
should should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn
wasn't weren weren't won won't wouldn wouldn't""".split()
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORDS = NLTKWordTokenizer()


@cache
def stop_words() -> frozenset[str]:
    """NLTK's English stop words (the installed corpus when present, else the copy above)."""
    try:
        from nltk.corpus import stopwords

        return frozenset(stopwords.words("english"))
    except LookupError:
        return frozenset(_STOP_WORDS)


def word_tokens(text: str) -> list[str]:
    """NLTK word tokens of ``text`` (sentences split at ``.!?`` + space; see the module docstring)."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        if sentence:
            out.extend(_WORDS.tokenize(sentence))
    return out


def caption_tokens(text: str) -> list[str]:
    """Lower-cased word tokens without the punctuation tokens (AMFMN ``data.py``)."""
    return [t for t in word_tokens(text.lower()) if t not in PUNCTUATION]


@dataclass(frozen=True)
class Vocabulary:
    """``word2idx`` with ids from 1 (0 pads); unknown words map to ``<unk>``."""

    word2idx: dict[str, int]

    def __post_init__(self) -> None:
        if UNK not in self.word2idx:
            raise InputError("an AMFMN vocabulary needs an '<unk>' entry")
        if min(self.word2idx.values(), default=1) < 1:
            raise InputError("AMFMN vocabulary ids start at 1 (0 is padding)")

    def __len__(self) -> int:
        return len(self.word2idx)

    @property
    def size(self) -> int:
        """Rows of the word embedding: the largest id + 1 (padding row 0; the released ``len(vocab) + 1``)."""
        return max(self.word2idx.values()) + 1

    def words(self) -> list[str]:
        """Words in id order (the released ``vocab_word`` list)."""
        return [w for w, _ in sorted(self.word2idx.items(), key=lambda kv: kv[1])]

    def encode(self, text: str) -> list[int]:
        """Token ids of a caption; at least one id (an empty caption is one ``<unk>``)."""
        unk = self.word2idx[UNK]
        ids = [self.word2idx.get(t, unk) for t in caption_tokens(text)]
        return ids or [unk]

    @classmethod
    def build(cls, texts: Iterable[str], *, threshold: int = 5) -> Vocabulary:
        """AMFMN's ``build_vocab``: stop words out, count >= threshold, first-appearance order, ``<unk>`` last."""
        stop = stop_words()
        counter: Counter[str] = Counter()
        for text in texts:
            counter.update(t for t in caption_tokens(text) if t not in stop)
        words = [w for w, n in counter.items() if n >= threshold and w != UNK]
        word2idx = {w: i for i, w in enumerate(words, start=1)}
        word2idx[UNK] = len(word2idx) + 1
        return cls(word2idx)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """An AMFMN vocabulary JSON (``{"word2idx": {...}, ...}``, as ``vocab/rsitmd_splits_vocab.json``)."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"AMFMN vocabulary {p} does not exist", hint="model.options.vocab_path names the JSON file")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            return cls({str(k): int(v) for k, v in data["word2idx"].items()})
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{p} is not an AMFMN vocabulary JSON (word2idx): {exc}") from exc
