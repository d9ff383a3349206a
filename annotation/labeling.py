"""What an annotator sees: the labeling config, the task header, the drafts block, and the guidelines.

Everything that reaches the page is escaped here or by Label Studio: the config is rendered by Jinja2 with
autoescape on (and parsed back as XML to prove it is well-formed), the guidelines are converted from Markdown by a
small converter that escapes every text run, and task data (flight names, drafts) is shown through ``Header`` and
``Text`` tags, which Label Studio renders as text, never as HTML, and as the starting text of a draft box (a
``TextArea`` value: a form field's text, never markup).
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import jinja2

from dvtr_data.errors import UsageError

VIDEO = "video"
DRAFTS = "drafts"
QC = "qc"
CATEGORY = "category"
CAPTION_PREFIX = "caption_"
START_FROM = "start_from"
"""The choices that pick the draft a caption box starts from (``draft 1`` ... ``draft N``), one single choice per
caption box (``start_from`` for box 1, ``start_from_2`` ...). No box is pre-filled until its choice is clicked."""
START_PREFIX = "draft "
DRAFT_BOX_INFIX = "_draft_"
"""``caption_1_draft_2``: the caption box that starts out holding draft 2, shown while ``draft 2`` is ticked."""
START_CHOICES = "start_choices"
"""Task field: the ``draft i`` choices offered (empty for noise drafts, so no box can start from one)."""
START_HEADER = "start_header"
START_FIELD_PREFIX = "start_"
"""Task fields ``start_1`` ... ``start_5``: the text a draft box starts out holding ("" where there is none)."""
MAX_DRAFTS = 5
RANDOM_DRAFTS_NOTE = (
    "These drafts come from a model with random weights (no trained checkpoint): they are noise, not descriptions "
    "of the clip. Write the caption from scratch."
)
START_HEADER_DRAFTS = "Click a draft to start from it (its text goes in the box: edit it), or type in the empty box"
START_HEADER_NOISE = "No draft to start from (the drafts are noise): write the caption in the box"
START_HEADER_NONE = "Write the caption in the box"

QC_CHOICES: tuple[str, ...] = ("usable", "too blurry", "static / nothing happens", "privacy concern", "wrong content")
CATEGORIES: tuple[str, ...] = (
    "residential",
    "city centre",
    "road / traffic",
    "parking lot",
    "industrial / construction",
    "farmland",
    "forest / park",
    "grassland",
    "water / coast",
    "beach",
    "sports field",
    "other",
)
NO_DRAFTS = "(no drafts for this clip: write the caption from scratch)"
MAX_CAPTIONS_PER_TASK = 10


@dataclass(frozen=True)
class LabelingSetup:
    """How many captions one annotation holds, and the QC and category choices offered."""

    captions_per_task: int = 1
    qc_choices: tuple[str, ...] = QC_CHOICES
    categories: tuple[str, ...] = CATEGORIES
    video_height: int = 360
    video_width: int = 640
    placeholder: str = "What does the clip show? Objects, counts, layout, activity, camera view."

    def check(self) -> None:
        if not 1 <= self.captions_per_task <= MAX_CAPTIONS_PER_TASK:
            raise UsageError(f"--captions-per-task must be between 1 and {MAX_CAPTIONS_PER_TASK}")
        if not self.qc_choices:
            raise UsageError("at least one QC choice is needed")

    @property
    def caption_names(self) -> list[str]:
        return caption_names(self.captions_per_task)


def caption_names(k: int) -> list[str]:
    """Control names of the K caption text areas, in order (``caption_1`` ...)."""
    return [f"{CAPTION_PREFIX}{i}" for i in range(1, k + 1)]


def caption_slot(from_name: str) -> int | None:
    """0-based slot of a caption control name, or None for any other control."""
    if not from_name.startswith(CAPTION_PREFIX):
        return None
    tail = from_name[len(CAPTION_PREFIX) :]
    return int(tail) - 1 if tail.isdigit() and int(tail) >= 1 else None


def start_name(slot: int) -> str:
    """The ``start from`` choices of a 0-based caption slot (slot 0 keeps the name earlier configs used)."""
    return START_FROM if slot == 0 else f"{START_FROM}_{slot + 1}"


def draft_box_name(slot: int, draft: int) -> str:
    """The caption box of a 0-based slot that starts out holding 0-based draft ``draft`` (``caption_1_draft_1``)."""
    return f"{CAPTION_PREFIX}{slot + 1}{DRAFT_BOX_INFIX}{draft + 1}"


def draft_box(from_name: str) -> tuple[int, int] | None:
    """(0-based slot, 0-based draft) of a draft box's control name, or None for any other control.

    The control that holds a submitted text says which draft the box started from: Label Studio submits only the
    box that is shown, and a draft box is shown only while its ``draft i`` choice is ticked.
    """
    head, sep, tail = from_name.rpartition(DRAFT_BOX_INFIX)
    slot = caption_slot(head) if sep else None
    if slot is None or not tail.isdigit() or not 1 <= int(tail) <= MAX_DRAFTS:
        return None
    return slot, int(tail) - 1


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render_label_config(setup: LabelingSetup | None = None) -> str:
    """The project's labeling config (XML). Raises if the result is not well-formed XML."""
    setup = setup or LabelingSetup()
    setup.check()
    text = _environment().get_template("label_config.xml.j2").render(
        video_name=VIDEO,
        drafts_name=DRAFTS,
        qc_name=QC,
        category_name=CATEGORY,
        slots=[
            {"name": name, "start": start_name(i), "boxes": [(n, draft_box_name(i, n - 1)) for n in range(1, MAX_DRAFTS + 1)]}
            for i, name in enumerate(setup.caption_names)
        ],
        start_choices=START_CHOICES,
        start_header=START_HEADER,
        start_field_prefix=START_FIELD_PREFIX,
        qc_choices=list(setup.qc_choices),
        categories=list(setup.categories),
        video_height=setup.video_height,
        video_width=setup.video_width,
        start_prefix=START_PREFIX,
        placeholder=setup.placeholder,
    )
    ET.fromstring(text)  # a template or value that breaks the XML fails here, not in the server
    return text.strip() + "\n"


def captions_per_task_of(label_config: str) -> int:
    """How many caption areas a (possibly user-edited) labeling config has."""
    root = ET.fromstring(label_config)
    return sum(1 for el in root.iter("TextArea") if caption_slot(el.get("name", "")) is not None)


# ----------------------------------------------------------------------------------------------------------------
# task header and drafts block (plain text: Label Studio shows it as text)
# ----------------------------------------------------------------------------------------------------------------
def task_header(
    flight_name: str, start_s: float, end_s: float, flight_duration_s: float | None, altitude_m: float | None,
    altitude_kind: str | None,
) -> str:
    """One line placing the clip in its flight: name, time span, altitude when known."""
    parts = [f"Flight {flight_name}", f"{_clock(start_s)}-{_clock(end_s)}"]
    if flight_duration_s:
        parts[-1] += f" of {_clock(flight_duration_s)}"
    if altitude_m is not None:
        kind = f" ({altitude_kind})" if altitude_kind else ""
        parts.append(f"altitude {altitude_m:.0f} m{kind}")
    return "  ·  ".join(parts)


def _clock(seconds: float) -> str:
    minutes, sec = divmod(max(0.0, float(seconds)), 60.0)
    return f"{int(minutes)}:{sec:04.1f}"


def drafts_block(drafts: list[str], random_weights: bool = False) -> str:
    """The numbered drafts as one text (the page's ``start from`` choice ``draft i`` names line ``i``).

    Drafts of a randomly initialised model are still listed (the team sees what the pipeline made) but under a
    plain note that they are noise.
    """
    if not drafts:
        return NO_DRAFTS
    listed = "\n".join(f"{i}. {text}" for i, text in enumerate(drafts[:MAX_DRAFTS], 1))
    return f"{RANDOM_DRAFTS_NOTE}\n{listed}" if random_weights else listed


def start_fields(drafts: list[str], random_weights: bool = False) -> dict[str, object]:
    """The task fields behind the one-click start: the ``draft i`` choices offered and each draft box's text.

    Drafts of a randomly initialised model are noise: no choice is offered and no box can hold one, so a box
    never starts out holding noise (they are still listed, under the note, by ``drafts_block``).
    """
    usable = [] if random_weights else list(drafts[:MAX_DRAFTS])
    header = START_HEADER_DRAFTS if usable else START_HEADER_NOISE if drafts else START_HEADER_NONE
    fields: dict[str, object] = {
        START_HEADER: header,
        START_CHOICES: [{"value": f"{START_PREFIX}{i}"} for i in range(1, len(usable) + 1)],
    }
    for i in range(MAX_DRAFTS):
        fields[f"{START_FIELD_PREFIX}{i + 1}"] = usable[i] if i < len(usable) else ""
    return fields


def start_slot(choice: str) -> int | None:
    """0-based draft index of a ``start from`` choice (``draft 2`` -> 1), or None for anything else."""
    if not choice.startswith(START_PREFIX):
        return None
    tail = choice[len(START_PREFIX) :].strip()
    return int(tail) - 1 if tail.isdigit() and 1 <= int(tail) <= MAX_DRAFTS else None


# ----------------------------------------------------------------------------------------------------------------
# guidelines
# ----------------------------------------------------------------------------------------------------------------
_VERSION_RE = re.compile(r"<!--\s*dvtr-guidelines\s+version=(\S+)\s*-->")


def guidelines_text() -> str:
    return resources.files("dvtr_data.annotation").joinpath("guidelines.md").read_text(encoding="utf-8")


def guideline_version(text: str | None = None) -> str:
    """The version tag at the top of guidelines.md, recorded with every caption written under it."""
    match = _VERSION_RE.search(text if text is not None else guidelines_text())
    return match.group(1) if match else "unversioned"


def guidelines_html(text: str | None = None) -> str:
    """The guidelines as the HTML Label Studio shows in the project's instructions.

    A deliberately small Markdown subset (headings, bullets, paragraphs, **bold**, *italic*): every text run is
    escaped before the few tags are added, so nothing in the file can inject markup.
    """
    text = guidelines_text() if text is None else text
    text = _VERSION_RE.sub("", text)
    out: list[str] = []
    para: list[str] = []
    in_list = False

    def flush_para() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    def close_list() -> None:
        nonlocal in_list
        if in_list:
            out.append("</ul>")
            in_list = False

    for raw in text.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            flush_para()
            close_list()
            continue
        heading = re.match(r"^(#{1,4})\s+(.*)$", stripped)
        if heading:
            flush_para()
            close_list()
            level = len(heading.group(1)) + 1
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped.startswith("- "):
            flush_para()
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(stripped[2:])}</li>")
        elif in_list and line.startswith("  "):
            out[-1] = out[-1][: -len("</li>")] + " " + _inline(stripped) + "</li>"
        else:
            close_list()
            para.append(stripped)
    flush_para()
    close_list()
    return "\n".join(out)


def _inline(text: str) -> str:
    text = html.escape(text, quote=True)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<em>\1</em>", text)
