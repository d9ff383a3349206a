"""The card's "Caption audit" section: the audit written beside the tables, or computed now when there is none."""

from __future__ import annotations

from typing import Any

from dvtr_data.audit.core import audit_dataset, read_audit
from dvtr_data.dataset import Dataset


def card_audit(ds: Dataset) -> dict[str, Any] | None:
    """A flat summary of the audit for the card templates (numbers and a few short user texts to escape).

    Reads ``audit.json`` when `dvtr-data audit` wrote one; otherwise computes the audit without writing it (the
    card does not leave files in the dataset). None when the dataset has no captions at all.
    """
    report = read_audit(ds)
    origin = f"audit.json of {report['created_at']}" if report else None
    if report is None:
        if not ds.has_table("captions") or not ds.read_table("captions").num_rows:
            return None
        report = audit_dataset(ds, write=False)
        origin = "computed for this card"
    text = report.get("text")
    ids = report["ids"]
    caps = report["captions"]
    per = report["captions_per_clip"]
    return {
        "origin": origin,
        "splits_from": report.get("splits_from"),
        "similarity": text["similarity"] if text else None,
        "unique_share": report["uniqueness"]["all"]["unique_share_normalised"],
        "captions": report["uniqueness"]["all"]["captions"],
        "pairs": [
            {
                "pair": k,
                "identical": v["identical"]["captions"],
                "identical_pct": round(100 * v["identical"]["share"], 1),
                "near": v["near"]["captions"],
                "near_pct": round(100 * v["near"]["share"], 1),
            }
            for k, v in (text["pairs"].items() if text else [])
        ],
        "shared_within": [
            {"split": k, "texts": v["texts"], "clips": v["clips"], "largest": v["largest"]}
            for k, v in (text["shared_within"].items() if text else [])
        ],
        "id_source": ids["source"],
        "id_variants": ids["whitespace_or_case_variants"]["groups"],
        "id_padded": ids["leading_or_trailing_space"]["ids"],
        "id_suffix_families": ids["suffix_variants"]["families"],
        "id_suffix_split": ids["suffix_variants"]["families_in_several_splits"],
        "empty": caps["empty"]["count"],
        "short": caps["short"]["count"],
        "short_below": caps["short_below_words"],
        "long": caps["long"]["count"],
        "long_above": caps["long_above_words"],
        "usual_captions": per["usual"],
        "fewer_than_usual": per["fewer_than_usual"]["clips"],
        "releases": _card_releases(ds, report.get("releases")),
    }


def _card_releases(ds: Dataset, changes: dict[str, Any] | None) -> dict[str, Any] | None:
    """The frozen releases and what changed: the comparison `audit --compare` wrote, else the latest release
    against the dataset now. None when nothing was frozen."""
    from dvtr_data.splits import releases

    rows = releases.list_releases(ds)
    if not rows:
        return None
    if changes is None:
        changes = releases.compare(ds, rows[-1]["release"])
    caps = changes["captions"]
    return {
        "list": [
            {
                "name": r["release"],
                "created_at": r["created_at"].isoformat(timespec="seconds"),
                "train": r["train_clips"],
                "val": r["val_clips"],
                "test": r["test_clips"],
                "captions": r["captions"],
            }
            for r in rows
        ],
        "from": changes["from"],
        "to": changes["to"],
        "clips": [{"split": k, **v} for k, v in changes["clips"].items()],
        "captions_added": caps["added"],
        "captions_changed": caps["changed"],
        "captions_removed": caps["removed"],
        "moved": changes["moved"]["count"],
        "moved_out_of_test": changes["moved"]["out_of_test"],
        "renamed": changes.get("renamed", {}).get("count", 0),
    }
