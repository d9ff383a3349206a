"""The audit for people: a few compact tables that fit 80 columns. Every caption and id is user text: it goes
into a `rich.text.Text` (never parsed as markup) with control characters shown as escapes."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


def _safe(value: Any, limit: int = 60) -> Text:
    """User text as a Text: repr-escaped control characters, visible edge spaces, cut to ``limit``."""
    s = str(value)
    shown = (
        s.encode("unicode_escape").decode("ascii") if any(ord(ch) < 32 or ord(ch) == 127 for ch in s) else s
    )
    if shown != shown.strip():
        shown = repr(shown)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return Text(shown)


def render(report: dict[str, Any], console: Console) -> None:
    """Print ``report`` (from `audit_dataset`) as tables on ``console``."""
    src = report.get("splits_from")
    console.print(
        Text.assemble(("audit of ", "bold"), Text(str(report.get("dataset", "")), style="bold")),
        highlight=False,
    )
    uniq = report["uniqueness"]
    t = Table(title="captions (accepted)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("split", "captions", "distinct", "unique %", "distinct norm.", "unique norm. %"):
        t.add_column(col, justify="right" if col != "split" else "left", no_wrap=True)
    for name, u in uniq.items():
        t.add_row(
            name,
            str(u["captions"]),
            str(u["distinct_raw"]),
            _pct(u["unique_share_raw"]),
            str(u["distinct_normalised"]),
            _pct(u["unique_share_normalised"]),
        )
    console.print(t)

    text = report.get("text")
    if text:
        where = "published splits" if src == "published" else "the dataset's splits"
        t = Table(
            title=f"text leakage between {where} ({text['similarity']})",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("pair", "identical", "% of 2nd", "near", "% of 2nd"):
            t.add_column(col, justify="left" if col == "pair" else "right", no_wrap=True)
        for k, v in text["pairs"].items():
            t.add_row(
                k,
                str(v["identical"]["captions"]),
                _pct(v["identical"]["share"]),
                str(v["near"]["captions"]),
                _pct(v["near"]["share"]),
            )
        console.print(t)
        t = Table(
            title="captions on several clips of one split",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("split", "texts", "clips", "captions", "most clips"):
            t.add_column(col, justify="left" if col == "split" else "right", no_wrap=True)
        for k, v in text["shared_within"].items():
            t.add_row(k, str(v["texts"]), str(v["clips"]), str(v["captions"]), str(v["largest"]))
        console.print(t)
        for k, v in text["shared_within"].items():
            for ex in v["examples"][:3]:
                console.print(
                    Text.assemble(f"  {k}: {ex['clips']} clips share ", _safe(ex["text"], 50)),
                    highlight=False,
                )
    else:
        console.print("no splits (published or own): text leakage not measured", highlight=False)

    ids = report["ids"]
    t = Table(title=f"ids ({ids['source']})", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("check", no_wrap=True)
    t.add_column("count", justify="right", no_wrap=True)
    t.add_column("example", overflow="fold")
    ws = ids["whitespace_or_case_variants"]
    pad = ids["leading_or_trailing_space"]
    suf = ids["suffix_variants"]
    t.add_row("same but whitespace/case", f"{ws['groups']} groups", _join(ws["examples"][:1]))
    t.add_row("leading/trailing space", str(pad["ids"]), _safe(pad["examples"][0]) if pad["examples"] else "")
    t.add_row(
        "id + ' suffix' pairs",
        f"{suf['families']} ({suf['families_in_several_splits']} split)",
        _join(suf["examples"][:1]),
    )
    console.print(t)

    caps = report["captions"]
    per = report["captions_per_clip"]
    t = Table(title="captions (submitted)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("check", no_wrap=True)
    t.add_column("count", justify="right", no_wrap=True)
    t.add_column("example", overflow="fold")
    for key, label in (
        ("empty", "empty"),
        ("short", f"under {caps['short_below_words']} words"),
        ("long", f"over {caps['long_above_words']} words"),
    ):
        ex = caps[key]["examples"]
        t.add_row(label, str(caps[key]["count"]), _safe(ex[0]["text"], 40) if ex else "")
    few = per["fewer_than_usual"]
    t.add_row(
        f"clips under {per['usual']} captions",
        str(few["clips"]),
        _safe(few["examples"][0], 40) if few["examples"] else "",
    )
    console.print(t)
    if report.get("releases"):
        render_changes(report["releases"], console)


def render_changes(changes: dict[str, Any], console: Console) -> None:
    """The diff of two releases (`releases.diff`): clips per split, then one line on captions."""
    t = Table(
        title=f"changes from release {changes['from']} to {changes['to']}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("split", "before", "after", "added", "removed", "moved in", "moved out"):
        t.add_column(col, justify="left" if col == "split" else "right", no_wrap=True)
    for name, c in changes["clips"].items():
        t.add_row(
            name,
            *(str(c[k]) for k in ("before", "after", "added", "removed", "moved_in", "moved_out")),
        )
    console.print(t)
    caps = changes["captions"]
    console.print(
        f"captions: {caps['before']} -> {caps['after']}: {caps['added']} added, {caps['changed']} changed, "
        f"{caps['removed']} removed; clips moved between splits: {changes['moved']['count']} "
        f"({changes['moved']['out_of_test']} out of test); clips renamed by a re-ingest: "
        f"{changes['renamed']['count']}",
        highlight=False,
        markup=False,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _join(groups: list[list[str]]) -> Text:
    out = Text()
    for g in groups:
        for k, i in enumerate(g):
            if k:
                out.append(" / ")
            out.append_text(_safe(repr(i), 30))
    return out
