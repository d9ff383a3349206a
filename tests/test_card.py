"""The dataset card: every section present, figures inlined, statistics right, and untrusted captions escaped."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest

from dvtr_data.card import caption_stats, dataset_stats, distinct_n, md_escape, write_card
from dvtr_data.errors import UsageError
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.tables import write_generated_dataset

HOSTILE = [
    "<script>alert('x')</script> a harbour",
    "[click me](javascript:alert(1)) a road",
    "<img src=x onerror=alert(1)> | pipes | break tables",
    "**bold** _under_ `code` # heading",
]


def hostile_dataset(tmp_path, private: bool = False):
    ds, _ = write_generated_dataset(
        tmp_path / "ds", n_flights=30, clips_per_flight=(3, 6), embed_dim=16, seed=4
    )
    caps = ds.read_table("captions")
    texts = caps.column("text").to_pylist()
    for k, h in enumerate(HOSTILE):
        texts[k * 7] = h
    ds.write_table("captions", caps.set_column(caps.schema.get_field_index("text"), "text", pa.array(texts)))
    if private:
        flights = ds.read_table("flights")
        flags = [True] + [False] * (flights.num_rows - 1)
        ds.write_table(
            "flights",
            flights.set_column(
                flights.schema.get_field_index("location_private"), "location_private", pa.array(flags)
            ),
        )
    split_dataset(ds, SplitConfig(tolerance=0.1))
    return ds


def test_text_statistics():
    toks = [["a", "b", "c"], ["a", "b", "d"], []]
    assert distinct_n(toks, 1) == 4 / 6 and distinct_n(toks, 2) == 3 / 4
    s = caption_stats(["a b c", "a b d", ""], toks)
    assert (
        s["vocabulary"] == 4 and s["unique_caption_ratio"] == 1.0 and s["empty"] == 1 and s["words_max"] == 3
    )


def test_card_has_every_section_and_escapes_captions(tmp_path, monkeypatch):
    ds = hostile_dataset(tmp_path)
    # make sure the hostile captions are among the examples shown
    monkeypatch.setattr(
        "dvtr_data.card.stats._examples",
        lambda texts, cap_clip, split_of, k=6: [
            {"clip_id": "c", "split": "train", "text": h} for h in HOSTILE
        ],
    )
    r = write_card(ds)
    html = r.html.read_text()
    md = r.markdown.read_text()
    for section in ("Summary", "Splits", "Leakage report", "Clips", "Captions", "How this dataset was made"):
        assert f"<h2>{section}</h2>" in html and f"## {section}" in md
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not re.search(r"<img(?![^>]*src=\"data:image/png;base64,)", html), (
        "an <img> that is not an inlined figure"
    )
    assert "http://" not in html and "https://" not in html  # self-contained
    assert "Content-Security-Policy" in html
    # Markdown: no raw HTML, no live link, no table-breaking pipe from a caption
    assert "<script>" not in md and "<img" not in md
    assert "\\[click me\\]\\(javascript:alert\\(1\\)\\)" in md
    assert "&lt;img src=x onerror=alert\\(1\\)&gt; \\| pipes \\| break tables" in md
    for name in ("splits", "clip_lengths", "categories", "qc", "captions_per_clip", "caption_lengths", "map"):
        png = r.out / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}.png" in md
    # the seven QA figures, plus the coverage figures this data has (regions, altitudes; no recording times)
    assert html.count('src="data:image/png;base64,') == len(r.figures) == 9
    assert set(r.figures) - {
        "splits",
        "clip_lengths",
        "categories",
        "qc",
        "captions_per_clip",
        "caption_lengths",
        "map",
    } == {"regions", "altitudes"}
    stats = json.loads((r.out / "card.json").read_text())
    assert stats["split_report"]["leakage"]["leaks"] == 0
    assert stats["totals"]["captions"] == ds.read_table("captions").num_rows
    assert set(stats["splits"]) == {"train", "val", "test"}
    assert "vocabulary" in stats["text"] and "distinct_2" in stats["text"]


def test_private_locations_are_left_off_the_map(tmp_path):
    ds = hostile_dataset(tmp_path, private=True)
    s = dataset_stats(ds)
    n_private = sum(1 for c in ds.read_table("clips").to_pylist() if c["flight_id"] == "f0000000000000001")
    assert s["locations_hidden"] == n_private > 0
    assert len(s["locations"]) == ds.read_table("clips").num_rows - n_private


def test_card_without_splits_or_telemetry(tmp_path):
    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=5, clips_per_flight=3, gps=False)
    r = write_card(ds, tmp_path / "card")
    assert "No splits yet" in r.html.read_text() and "map" not in r.figures
    write_card(ds, tmp_path / "card")  # replacing an earlier card is fine
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("keep")
    with pytest.raises(UsageError, match="not an earlier dataset card"):
        write_card(ds, mine)


def test_md_escape():
    assert md_escape("a | b\nc") == "a \\| b c"
    assert md_escape("<b>") == "&lt;b&gt;"
