"""Releases that do not move: freeze the splits under a version name, pin them in later splits, diff two releases.

A team publishes a test split and keeps ingesting flights. Re-running `split` on the grown dataset must not move a
clip someone already evaluated on, or published numbers stop being comparable. So a release is frozen once:

* ``releases/<name>/splits.parquet``: the clips in train, val and test (rows of the ``splits`` schema);
* ``releases/<name>/captions.parquet``: the accepted captions of those clips (rows of the ``captions`` schema), the
  caption set a consumer of the release trains and scores with;
* ``releases/<name>/manifest.json``: counts per split, the sha256 of both files, and what changed since the release
  before it;
* one row of the ``releases`` table (owner: ``split``) with the same hashes.

The folder is written in a staging folder and renamed into place, and the table row comes last, all under the
dataset's one write lock (``split``). A later `split` pins every clip of every release to its frozen split
(`frozen_splits`, like an import's published split), so only groups without frozen clips are placed; a new clip of a
group that has frozen clips goes where the group is. Clip ids are followed through ``clip_lineage``, so a clip whose
boundaries a re-ingest moved keeps its frozen split under its new id. A release whose files no longer match the
hashes in the table is refused rather than silently trusted.

`compare` says what changed between two releases, or a release and the dataset now: clips added, removed and moved
per split, clips renamed by a re-ingest (followed through ``clip_lineage``, so a clip whose boundaries moved is not
reported as one removed and one added), captions added, changed (other text or clip) and removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import dvtr_data.schemas.release_tables  # noqa: F401  (registers releases)
from dvtr_data import __version__
from dvtr_data.dataset import Dataset, atomic_write_bytes, write_parquet
from dvtr_data.errors import DatasetError, UsageError
from dvtr_data.hashing import sha256_file
from dvtr_data.lineage import TABLE as LINEAGE_TABLE
from dvtr_data.lineage import _mapping, captions_on_current_clips, resolve
from dvtr_data.schemas import validate
from dvtr_data.schemas.records import ReleaseRow, to_rows
from dvtr_data.splits.assign import SPLIT_NAMES

RELEASES_DIR = "releases"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "dvtr-release/1"
DIFF_FORMAT = "dvtr-release-diff/1"
NOW = "now"  # the name `compare` gives the dataset as it is; never a release name
WRITER = "split"
MAX_EXAMPLES = 5
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Snapshot:
    """What a release holds (or the dataset holds now): each clip's split, each caption's clip and text."""

    name: str
    split_of: dict[str, str]
    captions: dict[str, tuple[str, str]]  # caption_id -> (clip_id, text)


def check_name(name: str) -> str:
    """A release name is a clean id (it names a folder and a table key) and not the reserved word ``now``."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name == NOW:
        raise UsageError(
            f"release name {name!r} is not usable: letters, digits, '.', '_' and '-', starting with a letter or "
            f"digit, at most 64 characters, and not {NOW!r}"
        )
    return name


def release_dir(ds: Dataset, name: str) -> Any:
    return ds.root / RELEASES_DIR / name


def list_releases(ds: Dataset) -> list[dict[str, Any]]:
    """The rows of the ``releases`` table, oldest first (empty when nothing was frozen)."""
    if not ds.has_table("releases"):
        return []
    rows = ds.read_table("releases").to_pylist()
    return sorted(rows, key=lambda r: (r["created_at"], r["release"]))


def _release_row(ds: Dataset, name: str) -> dict[str, Any]:
    for row in list_releases(ds):
        if row["release"] == name:
            return row
    known = ", ".join(r["release"] for r in list_releases(ds)) or "none"
    raise UsageError(
        f"no release {name!r} in {ds.root} (releases: {known})", hint="freeze one with `split --freeze NAME`"
    )


def _verified(ds: Dataset, row: dict[str, Any], file: str, column: str) -> pa.Table:
    """A release file, refused when its bytes are not the ones frozen (a release must not change silently)."""
    path = ds.root / row["path"] / file
    if not path.is_file():
        raise DatasetError(f"release {row['release']!r}: {path} is missing", hint="restore it from a backup")
    if sha256_file(path) != row[column]:
        raise DatasetError(
            f"release {row['release']!r}: {path} differs from the file frozen (sha256 mismatch)",
            hint="restore the release folder from a backup; a frozen release is never edited",
        )
    return pq.read_table(path)


def _current_ids(ds: Dataset) -> tuple[dict[str, str | None], set[str]]:
    """The lineage mapping (old clip id -> new) and the clip ids that exist now."""
    clips = ds.read_table("clips")
    current = set(clips.column("clip_id").to_pylist()) if clips.num_rows else set()
    if not ds.has_table(LINEAGE_TABLE):
        return {}, current
    lineage = ds.read_table(LINEAGE_TABLE)
    return (_mapping(lineage.to_pylist()) if lineage.num_rows else {}), current


def frozen_splits(ds: Dataset) -> tuple[dict[str, str], dict[str, str]]:
    """Every frozen clip's split and the release that froze it first, keyed by its current clip id.

    Later releases contain the earlier ones' clips in the same splits (split never moves them), so the first
    release that froze a clip decides; a disagreement would mean a release was frozen from a hand-edited splits
    table, and is refused.
    """
    split_of: dict[str, str] = {}
    release_of: dict[str, str] = {}
    rows = list_releases(ds)
    if not rows:
        return split_of, release_of
    mapping, current = _current_ids(ds)
    for row in rows:
        t = _verified(ds, row, "splits.parquet", "splits_sha256")
        for cid, sp in zip(t.column("clip_id").to_pylist(), t.column("split").to_pylist(), strict=True):
            now_id = (resolve(cid, mapping, current) if cid in mapping else cid) or cid
            if now_id in split_of and split_of[now_id] != sp:
                raise DatasetError(
                    f"clip {now_id} is frozen in {split_of[now_id]} by release {release_of[now_id]!r} and in {sp} "
                    f"by release {row['release']!r}",
                    hint="releases disagree; restore the later release folder from a backup",
                )
            if now_id not in split_of:
                split_of[now_id] = sp
                release_of[now_id] = row["release"]
    return split_of, release_of


# snapshots ----------------------------------------------------------------------------------------------------------
def _accepted(captions: pa.Table, clip_ids: set[str]) -> pa.Table:
    if not captions.num_rows:
        return captions
    ok = pc.and_(
        pc.equal(captions.column("status"), "submitted"), pc.fill_null(captions.column("accepted"), False)
    )
    keep = pc.and_(
        ok, pc.is_in(captions.column("clip_id"), value_set=pa.array(sorted(clip_ids), pa.string()))
    )
    t = captions.filter(keep)
    return t.take(pc.sort_indices(t, sort_keys=[("caption_id", "ascending")]))


def _now_tables(ds: Dataset) -> tuple[pa.Table, pa.Table]:
    """The splits rows in train/val/test and the accepted captions of those clips, as they are now."""
    splits = ds.read_table("splits")
    if splits.num_rows:
        splits = splits.filter(pc.is_in(splits.column("split"), value_set=pa.array(list(SPLIT_NAMES))))
        splits = splits.take(pc.sort_indices(splits, sort_keys=[("clip_id", "ascending")]))
    clip_ids = set(splits.column("clip_id").to_pylist())
    captions = _accepted(captions_on_current_clips(ds), clip_ids)
    return splits, captions


def _snapshot_of(name: str, splits: pa.Table, captions: pa.Table) -> Snapshot:
    return Snapshot(
        name=name,
        split_of=dict(
            zip(splits.column("clip_id").to_pylist(), splits.column("split").to_pylist(), strict=True)
        ),
        captions={
            c: (k, t)
            for c, k, t in zip(
                captions.column("caption_id").to_pylist(),
                captions.column("clip_id").to_pylist(),
                captions.column("text").to_pylist(),
                strict=True,
            )
        },
    )


def snapshot(ds: Dataset, name: str | None = None) -> Snapshot:
    """Release ``name`` as frozen (files checked against their hashes), or the dataset now when ``name`` is None
    or ``"now"``."""
    if name is None or name == NOW:
        return _snapshot_of(NOW, *_now_tables(ds))
    row = _release_row(ds, name)
    return _snapshot_of(
        name,
        _verified(ds, row, "splits.parquet", "splits_sha256"),
        _verified(ds, row, "captions.parquet", "captions_sha256"),
    )


# diff ---------------------------------------------------------------------------------------------------------------
def follow_lineage(ds: Dataset, old: Snapshot, new: Snapshot) -> tuple[Snapshot, dict[str, str]]:
    """``old`` with each clip id that a re-ingest replaced (``clip_lineage``) renamed to its clip in ``new``.

    A clip whose boundaries moved gets a new id; without this a diff would show a frozen test clip removed and
    another added, when it is the same clip under a new id. Returns the renamed snapshot and ``{old: new}``.
    """
    mapping, _current = _current_ids(ds)
    present = set(new.split_of)
    renamed: dict[str, str] = {}
    for cid in old.split_of:
        if cid in mapping and cid not in present:
            to = resolve(cid, mapping, present)
            if to is not None and to in present and to not in old.split_of:
                renamed[cid] = to
    if not renamed:
        return old, renamed
    return (
        Snapshot(
            name=old.name,
            split_of={renamed.get(c, c): s for c, s in old.split_of.items()},
            captions={k: (renamed.get(c, c), t) for k, (c, t) in old.captions.items()},
        ),
        renamed,
    )


def diff(old: Snapshot, new: Snapshot, renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """What changed from ``old`` to ``new`` (``old`` already renamed by `follow_lineage`, ``renamed`` listed).

    Clips: per split, ``added`` (in no split before), ``removed`` (in no split after), ``moved_in`` /
    ``moved_out`` (in another split on the other side), and the moved clips listed. Captions (accepted, of clips in
    a split): ``added`` / ``removed`` by caption id, ``changed`` when the id stays but its text or clip differs;
    per split, by the clip's split after (added, changed) or before (removed).
    """
    clips: dict[str, dict[str, int]] = {}
    for s in SPLIT_NAMES:
        before = {c for c, sp in old.split_of.items() if sp == s}
        after = {c for c, sp in new.split_of.items() if sp == s}
        clips[s] = {
            "before": len(before),
            "after": len(after),
            "added": sum(1 for c in after if c not in old.split_of),
            "removed": sum(1 for c in before if c not in new.split_of),
            "moved_in": sum(1 for c in after if c in old.split_of and old.split_of[c] != s),
            "moved_out": sum(1 for c in before if c in new.split_of and new.split_of[c] != s),
        }
    moved = sorted(
        (c, old.split_of[c], new.split_of[c])
        for c in old.split_of.keys() & new.split_of.keys()
        if old.split_of[c] != new.split_of[c]
    )
    added_clips = sorted(new.split_of.keys() - old.split_of.keys())
    removed_clips = sorted(old.split_of.keys() - new.split_of.keys())

    added = sorted(new.captions.keys() - old.captions.keys())
    removed = sorted(old.captions.keys() - new.captions.keys())
    changed = sorted(
        c for c in old.captions.keys() & new.captions.keys() if old.captions[c] != new.captions[c]
    )
    by_split: dict[str, Counter[str]] = {s: Counter() for s in SPLIT_NAMES}
    for kind, ids, side in (("added", added, new), ("changed", changed, new), ("removed", removed, old)):
        for c in ids:
            sp = side.split_of.get(side.captions[c][0])
            if sp in by_split:
                by_split[sp][kind] += 1
    return {
        "format": DIFF_FORMAT,
        "from": old.name,
        "to": new.name,
        "clips": clips,
        "clips_added": {"count": len(added_clips), "examples": added_clips[:MAX_EXAMPLES]},
        "clips_removed": {"count": len(removed_clips), "examples": removed_clips[:MAX_EXAMPLES]},
        "renamed": {
            "count": len(renamed or {}),
            "examples": [{"from": a, "to": b} for a, b in sorted((renamed or {}).items())[:MAX_EXAMPLES]],
        },
        "moved": {
            "count": len(moved),
            "out_of_test": sum(1 for _, a, _b in moved if a == "test"),
            "examples": [{"clip_id": c, "from": a, "to": b} for c, a, b in moved[:MAX_EXAMPLES]],
        },
        "captions": {
            "before": len(old.captions),
            "after": len(new.captions),
            "added": len(added),
            "changed": len(changed),
            "removed": len(removed),
            "by_split": {
                s: {k: by_split[s][k] for k in ("added", "changed", "removed")} for s in SPLIT_NAMES
            },
            "examples": {
                "added": added[:MAX_EXAMPLES],
                "changed": [
                    {"caption_id": c, "before": old.captions[c][1][:200], "after": new.captions[c][1][:200]}
                    for c in changed[:MAX_EXAMPLES]
                ],
                "removed": removed[:MAX_EXAMPLES],
            },
        },
    }


def compare(ds: Dataset | str | os.PathLike, old: str, new: str | None = None) -> dict[str, Any]:
    """What changed from release ``old`` to release ``new`` (None or ``"now"``: the dataset as it is)."""
    ds = ds if isinstance(ds, Dataset) else Dataset(ds)
    ds.require()
    if old == NOW:
        raise UsageError(f"compare from a release, not {NOW!r}")
    after = snapshot(ds, new)
    before, renamed = follow_lineage(ds, snapshot(ds, old), after)
    return diff(before, after, renamed)


# freeze -------------------------------------------------------------------------------------------------------------
def freeze_release(ds: Dataset | str | os.PathLike, name: str) -> dict[str, Any]:
    """Freeze the current splits and their accepted captions as release ``name``; returns its manifest.

    Takes the write lock as ``split`` (the ``releases`` table's owner); `split_dataset(freeze=...)` freezes under
    the lock it already holds.
    """
    ds = ds if isinstance(ds, Dataset) else Dataset(ds)
    ds.require()
    check_name(name)
    with ds.writing(WRITER):
        return freeze_locked(ds, name)


def check_new_name(ds: Dataset, name: str) -> None:
    """Refuse a name already frozen (before a long split runs, not after)."""
    check_name(name)
    if any(r["release"] == name for r in list_releases(ds)):
        raise UsageError(
            f"release {name!r} is already frozen in {ds.root}; a release is frozen once",
            hint="choose a new name (e.g. the next version)",
        )


def freeze_locked(ds: Dataset, name: str) -> dict[str, Any]:
    """`freeze_release` for a caller that holds the write lock as ``split``."""
    if not ds.locked_here:
        raise DatasetError("internal: freeze_locked needs the dataset's write lock")
    check_new_name(ds, name)
    splits, captions = _now_tables(ds)
    if not splits.num_rows:
        raise DatasetError(
            f"{ds.root} has no clips in train, val or test to freeze", hint="run `dvtr-data split` first"
        )
    previous = list_releases(ds)
    prev_name = previous[-1]["release"] if previous else None
    changes = None
    if prev_name:
        this = _snapshot_of(name, splits, captions)
        before, renamed = follow_lineage(ds, snapshot(ds, prev_name), this)
        changes = diff(before, this, renamed)

    final = release_dir(ds, name)
    if final.exists():  # a folder without a table row: a freeze killed between its rename and its row
        shutil.rmtree(final)
    stage = final.parent / f".{name}.partial-{uuid.uuid4().hex[:8]}"
    stage.mkdir(parents=True)
    try:
        write_parquet(stage / "splits.parquet", validate("splits", splits))
        write_parquet(stage / "captions.parquet", validate("captions", captions))
        per_split = Counter(splits.column("split").to_pylist())
        clip_split = dict(
            zip(splits.column("clip_id").to_pylist(), splits.column("split").to_pylist(), strict=True)
        )
        cap_split = Counter(clip_split[c] for c in captions.column("clip_id").to_pylist())
        created = datetime.now(UTC)
        hashes = {f: sha256_file(stage / f) for f in ("splits.parquet", "captions.parquet")}
        manifest = {
            "format": MANIFEST_FORMAT,
            "release": name,
            "dataset": ds.config().get("name", ds.root.name),
            "created_at": created.isoformat(timespec="seconds"),
            "tool_version": __version__,
            "previous": prev_name,
            "counts": {
                "clips": {s: int(per_split.get(s, 0)) for s in SPLIT_NAMES},
                "captions": {s: int(cap_split.get(s, 0)) for s in SPLIT_NAMES},
                "groups": len(set(splits.column("group_id").to_pylist())),
            },
            "files": {
                f: {"sha256": hashes[f], "bytes": (stage / f).stat().st_size, "rows": rows}
                for f, rows in (("splits.parquet", splits.num_rows), ("captions.parquet", captions.num_rows))
            },
            "split_settings": ds.config().get("stages", {}).get("split"),
            "changes_since_previous": changes,
        }
        atomic_write_bytes(
            stage / MANIFEST_NAME,
            (json.dumps(manifest, indent=1, ensure_ascii=False, default=str) + "\n").encode(),
        )
        os.replace(stage, final)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    row = ReleaseRow(
        release=name,
        path=f"{RELEASES_DIR}/{name}",
        created_at=created,
        tool_version=__version__,
        previous=prev_name,
        clips=splits.num_rows,
        train_clips=int(per_split.get("train", 0)),
        val_clips=int(per_split.get("val", 0)),
        test_clips=int(per_split.get("test", 0)),
        captions=captions.num_rows,
        splits_sha256=hashes["splits.parquet"],
        captions_sha256=hashes["captions.parquet"],
        manifest_sha256=sha256_file(final / MANIFEST_NAME),
    )
    ds.write_table("releases", [*previous, *to_rows([row])])
    return manifest


def read_manifest(ds: Dataset, name: str) -> dict[str, Any]:
    row = _release_row(ds, name)
    path = ds.root / row["path"] / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"release {name!r}: {path} cannot be read: {exc}") from None
