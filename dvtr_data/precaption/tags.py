"""Zero-shot scene tags: which class of a list each clip most looks like, with scores.

A class is embedded as the mean of its prompts ("an aerial photo of a flooded area.", ...) under several templates,
the usual CLIP zero-shot recipe. Scores are a softmax over the class list at the model's logit scale; the raw
cosine is kept too. The tags feed stratified splits later, so the list's name and content hash travel with them.

Class lists: ``era`` (the 25 ERA events), ``scenes`` (remote-sensing scene classes), ``all``, or a text file with
one class per line, ``tag`` or ``tag: prompt; prompt`` (``#`` starts a comment).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dvtr_data.errors import InputError
from dvtr_data.precaption.taxonomy import CLASS_LISTS

TEMPLATES = ("an aerial photo of {}.", "a drone video of {}.", "an aerial view of {}.", "footage of {} taken from a drone.")


@dataclass(frozen=True)
class ClassList:
    """Tags and the prompts that describe each."""

    name: str
    classes: tuple[tuple[str, tuple[str, ...]], ...]  # (tag, prompts)

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for tag, prompts in self.classes:
            h.update(tag.encode() + b"\t" + "\x1f".join(prompts).encode() + b"\n")
        h.update("\x1e".join(TEMPLATES).encode())
        return h.hexdigest()

    @property
    def label(self) -> str:
        return f"{self.name}@{self.digest[:12]}"

    @property
    def tags(self) -> list[str]:
        return [tag for tag, _ in self.classes]

    def prompt_texts(self) -> list[tuple[int, str]]:
        """(class position, full prompt) for every prompt under every template."""
        return [(c, t.format(p)) for c, (_, prompts) in enumerate(self.classes) for p in prompts for t in TEMPLATES]


def load_class_list(spec: str | Path) -> ClassList:
    """A built-in list by name, or a user file."""
    if str(spec) in CLASS_LISTS:
        return ClassList(str(spec), tuple((c.name, c.prompts) for c in CLASS_LISTS[str(spec)]))
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(f"class list {spec!r} is neither a built-in list ({', '.join(CLASS_LISTS)}) nor a file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the class list ({exc})") from exc
    classes: dict[str, tuple[str, ...]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tag, _, rest = line.partition(":")
        tag = " ".join(tag.split())
        prompts = tuple(p.strip() for p in rest.split(";") if p.strip()) or (tag,)
        if not tag:
            raise InputError(f"{path}: line {number} has no tag name")
        if tag in classes:
            raise InputError(f"{path}: tag {tag!r} appears twice (line {number})")
        classes[tag] = prompts
    if len(classes) < 2:
        raise InputError(f"{path}: a class list needs at least two classes, found {len(classes)}")
    return ClassList(path.stem, tuple(classes.items()))


def class_vectors(class_list: ClassList, prompt_vectors: np.ndarray) -> np.ndarray:
    """Mean of each class's unit-length prompt embeddings, renormalised: ``(n_classes, D)``."""
    owners = np.array([c for c, _ in class_list.prompt_texts()])
    out = np.zeros((len(class_list.classes), prompt_vectors.shape[1]), np.float32)
    np.add.at(out, owners, prompt_vectors)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


@dataclass(frozen=True)
class Tag:
    rank: int
    tag: str
    score: float  # softmax probability over the list
    similarity: float  # cosine


def zero_shot(clip_vectors: np.ndarray, classes: np.ndarray, tags: list[str], logit_scale: float,
              top: int = 3) -> list[list[Tag]]:
    """The ``top`` classes per clip, most likely first."""
    if len(clip_vectors) == 0:
        return []
    sims = np.asarray(clip_vectors, np.float32) @ classes.T
    logits = sims.astype(np.float64) * float(logit_scale)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    top = min(top, len(tags))
    order = np.lexsort((np.broadcast_to(np.arange(len(tags)), probs.shape), -probs), axis=-1)[:, :top]
    return [
        [Tag(r + 1, tags[c], float(probs[row, c]), float(sims[row, c])) for r, c in enumerate(order[row])]
        for row in range(len(clip_vectors))
    ]
