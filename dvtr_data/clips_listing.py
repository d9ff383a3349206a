"""What `dvtr-data clips` lists: each clip's span, QC verdict, captions and split, joined from the tables.

Clip ids are what `precaption show`, `annotate push --clip` and the exports speak; `info` prints totals
only, so this is where a user finds them. The listing reads the tables and never writes (readers are never
blocked).
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from dvtr_data.dataset import Dataset
from dvtr_data.errors import UsageError
from dvtr_data.lineage import captions_on_current_clips

QC_VERDICTS = ("pass", "reject")


@dataclass(frozen=True)
class ClipListing:
    """One clip as listed. ``source`` is the flight's file name, or ``import:<name>`` for an imported clip."""

    clip_id: str
    flight_id: str
    source: str
    start_s: float
    end_s: float
    duration_s: float
    status: str  # ok | error
    qc_verdict: str  # pass | reject
    qc_reasons: list[str]
    captions_accepted: int
    captions_total: int
    split: str | None  # None before `dvtr-data split` (or for a clip the split left out)
    clip_path: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_clips(
    dataset_dir: str | os.PathLike[str],
    flights: list[str] | None = None,
    qc: str | None = None,
) -> list[ClipListing]:
    """The clips of a dataset in flight order (by source, then start time).

    ``flights`` keeps the clips of these flights, each named by flight id, file name or, for imported clips,
    the import's name; a name that matches nothing is a `UsageError` with the closest names as a hint.
    ``qc`` keeps the clips with that verdict.
    """
    if qc is not None and qc not in QC_VERDICTS:
        raise UsageError(f"--qc must be one of {', '.join(QC_VERDICTS)}, not {qc!r}")
    ds = Dataset(dataset_dir).require()
    flight_rows = ds.read_table("flights").to_pylist()
    name_of = {f["flight_id"]: f["file_name"] for f in flight_rows}
    clips = ds.read_table("clips").to_pylist()

    def source_of(clip: dict[str, Any]) -> str:
        if clip["flight_id"] in name_of:
            return str(name_of[clip["flight_id"]])
        return str(clip.get("writer") or clip["flight_id"])

    if flights:
        known = {c for f in flight_rows for c in (f["flight_id"], f["file_name"])}
        known |= {c["flight_id"] for c in clips}
        known |= {
            c["writer"].removeprefix("import:")
            for c in clips
            if (c.get("writer") or "").startswith("import:")
        }
        clips = [c for c in clips if _matches(c, source_of(c), flights)]
        unknown = [f for f in flights if f not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(known), n=3, cutoff=0.5)
            raise UsageError(
                f"no flight {unknown[0]!r} in {ds.root}",
                hint=f"did you mean {', '.join(map(repr, close))}?"
                if close
                else "name flights by id or file name, as `dvtr-data info` and this listing show them",
            )
    if qc is not None:
        clips = [c for c in clips if c["qc_verdict"] == qc]

    accepted: Counter[str] = Counter()
    total: Counter[str] = Counter()
    caps = captions_on_current_clips(ds)  # current clips, accepted as reviewed
    pairs = zip(caps.column("clip_id").to_pylist(), caps.column("accepted").to_pylist(), strict=True) if caps.num_rows else []
    for cid, ok in pairs:
        total[cid] += 1
        accepted[cid] += bool(ok)
    split_of: dict[str, set[str]] = {}
    for cid, split in zip(*_columns(ds, "splits", "clip_id", "split"), strict=True):
        split_of.setdefault(cid, set()).add(split)

    listed = [
        ClipListing(
            clip_id=c["clip_id"],
            flight_id=c["flight_id"],
            source=source_of(c),
            start_s=float(c["start_s"]),
            end_s=float(c["end_s"]),
            duration_s=float(c["duration_s"]),
            status=c["status"],
            qc_verdict=c["qc_verdict"],
            qc_reasons=list(c.get("qc_reasons") or []),
            captions_accepted=accepted[c["clip_id"]],
            captions_total=total[c["clip_id"]],
            split="/".join(sorted(split_of[c["clip_id"]])) if c["clip_id"] in split_of else None,
            clip_path=c.get("clip_path"),
        )
        for c in clips
    ]
    listed.sort(key=lambda x: (x.source, x.flight_id, x.start_s, x.clip_id))
    return listed


def _matches(clip: dict[str, Any], source: str, names: list[str]) -> bool:
    writer = clip.get("writer") or ""
    return any(n in (clip["flight_id"], source) or writer == f"import:{n}" for n in names)


def _columns(ds: Dataset, table: str, *names: str) -> list[list[Any]]:
    t = ds.read_table(table)
    return [t.column(n).to_pylist() if t.num_rows else [] for n in names]
