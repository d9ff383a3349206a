"""Import a CLIP4Clip / MSVD layout (USRD, UMCRD): ``raw-captions.pkl`` plus ``{train,val,test}_list.txt``.

The pickle maps a video id to its captions as token lists. It is read with the restricted unpickler (no imports:
a stranger's pickle must not run code). Ids are matched verbatim between the pickle and the lists: the MSAM loader
strips only the newline, so ``"Party_042 "`` (trailing space) is a different video from ``"Party_042"``.
"""

from __future__ import annotations

from pathlib import Path

from dvtr_data.errors import InputError
from dvtr_data.importers.common import VIDEO_SUFFIXES, MediaIndex, Published, PublishedItem
from dvtr_data.unpickle import caption_pickle

PICKLE = "raw-captions.pkl"
LISTS = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}


def read_list(path: Path) -> list[str]:
    """Ids of a split list, verbatim except the line ending (the MSAM loader's ``strip("\\n")``)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def read_captions_pickle(path: Path) -> dict[str, list[list[str]]]:
    """``raw-captions.pkl`` as a dict, after checking it holds only ids -> lists of token lists (bounded: a pickle
    bomb is refused before any caption is joined; see `dvtr_data.unpickle.caption_pickle`)."""
    return caption_pickle(path)  # type: ignore[return-value]  # token lists only: allow_text is off


def pickle_protocol(path: Path) -> int | None:
    head = path.read_bytes()[:2]
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def read_clip4clip(path: Path, media_dir: Path | None = None) -> Published:
    """Read and check a CLIP4Clip/MSVD folder (or its pickle); ids and orders exactly as published."""
    path = Path(path)
    folder = path.parent if path.is_file() else path
    pkl = path if path.is_file() else folder / PICKLE
    if not pkl.is_file():
        raise InputError(f"{folder}: no {PICKLE} (a CLIP4Clip/MSVD caption set)")
    data = read_captions_pickle(pkl)
    notes: list[str] = []
    split_of: dict[str, tuple[str, int]] = {}
    lists_found = []
    for split, fname in LISTS.items():
        lp = folder / fname
        if not lp.is_file():
            continue
        lists_found.append(fname)
        ids = read_list(lp)
        unknown = [i for i in ids if i not in data]
        if unknown:
            stripped = {k.strip() for k in data}
            near = [i for i in unknown if i.strip() in stripped]
            hint = " (ids are matched verbatim: check trailing spaces)" if near else ""
            raise InputError(f"{lp}: {len(unknown)} id(s) are not in {PICKLE}, e.g. {unknown[0]!r}{hint}")
        for pos, vid in enumerate(ids):
            if vid in split_of:
                other = split_of[vid][0]
                where = "twice in this list" if other == split else f"also in {LISTS[other]}"
                raise InputError(
                    f"{lp}: id {vid!r} appears {where}", hint="a video must be in one split only"
                )
            split_of[vid] = (split, pos)
    if not lists_found:
        notes.append("no train/val/test lists beside the pickle: videos imported without a published split")
    unlisted = [k for k in data if k not in split_of]
    if lists_found and unlisted:
        notes.append(f"{len(unlisted)} video(s) of the pickle are in no list; imported without a split")
    index = MediaIndex(media_dir or folder, VIDEO_SUFFIXES)
    items = []
    for vid, caps in data.items():
        listed = split_of.get(vid)  # (split, position in its list); None for a video in no list
        item_split, list_order = listed if listed is not None else (None, None)
        items.append(
            PublishedItem(
                source_id=vid,
                captions=[" ".join(c) for c in caps],
                tokens=[list(c) for c in caps],
                split=item_split,
                list_order=list_order,
                media=index.find(
                    [vid + s for s in VIDEO_SUFFIXES] + [vid.strip() + s for s in VIDEO_SUFFIXES], item_split
                ),
            )
        )
    meta = {"path": str(folder), "pickle_protocol": pickle_protocol(pkl), "lists": lists_found}
    return Published("clip4clip", items, "video", meta, notes)
