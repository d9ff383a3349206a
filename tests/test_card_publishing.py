"""The publishable parts of the dataset card: licence, owner, provenance, coverage and the limitations
computed from it, a map over GSHHG coastlines, keyframe thumbnails, mathtext-proof labels, settings folded."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dvtr_data.card import plots, write_card
from dvtr_data.card.coastlines import gshhg_dir, map_lines
from dvtr_data.card.publishing import TABLE_SOURCES, day_part, regions
from dvtr_data.splits import SplitConfig, split_dataset
from dvtr_data.testing.tables import write_generated_dataset

ZURICH = (47.37, 8.54)
MADRID = (40.42, -3.70)
needs_gshhg = pytest.mark.skipif(
    gshhg_dir() is None, reason="GSHHG data not installed (apt-get install gmt-gshhg-low)"
)


def set_columns(ds, name: str, **columns) -> None:
    table = ds.read_table(name)
    for col, values in columns.items():
        i = table.schema.get_field_index(col)
        table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
    ds.write_table(name, table)


def small_dataset(tmp_path, **kw):
    args = {"n_flights": 6, "clips_per_flight": 4, "n_sites": 1, "seed": 3, **kw}
    ds, _ = write_generated_dataset(tmp_path / "ds", **args)
    return ds


def limitation(stats, source: str) -> str:
    texts = [lim["text"] for lim in stats["limitations"] if lim["source"] == source]
    assert len(texts) == 1, stats["limitations"]
    return texts[0]


# --- pure functions, hand-computed -------------------------------------------------------------------------
def test_regions_join_touching_cells_and_wrap_at_the_antimeridian():
    # 47.37 and 47.62 fall in neighbouring 0.25-degree rows (189 and 190): one region of 5; Madrid is alone
    pts = [ZURICH] * 3 + [(47.62, 8.54)] * 2 + [MADRID]
    regs = regions(pts)
    assert [r["clips"] for r in regs] == [5, 1]
    assert regs[0]["lat"] == pytest.approx((3 * 47.37 + 2 * 47.62) / 5, abs=1e-4)
    assert regs[1]["label"] == "around 40.42°N 3.70°W"
    # 0.25 degrees of latitude is 27.8 km: the first region is that tall and has no east-west extent
    assert regs[0]["extent_km"] == pytest.approx(27.8, abs=0.1)
    assert [r["clips"] for r in regions([(10.0, 179.9), (10.0, -179.9)])] == [2]
    assert [r["clips"] for r in regions([(10.0, 0.0), (10.6, 0.0)])] == [1, 1]  # a gap of one empty cell
    assert regions([]) == []


def test_parts_of_the_day():
    assert [day_part(h) for h in (0, 4, 5, 10, 11, 14, 15, 17, 18, 20, 21, 23)] == [
        "night", "night", "morning", "morning", "midday", "midday",
        "afternoon", "afternoon", "evening", "evening", "night", "night",
    ]  # fmt: skip


def test_labels_with_dollars_are_text_not_mathtext():
    bad = r"$\frac{$ car park"
    # the failure this guards against: matplotlib parses two dollars as TeX and fails on a malformed formula
    fig = Figure()
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, bad)
    with pytest.raises(ValueError):
        fig.canvas.draw()
    assert plots.plain("$5 parking$") == r"\$5 parking\$"
    for horizontal in (True, False):
        png = plots.bars({bad: 3, "$x^2$": 1, "plain": 2}, "categories $ (top)", horizontal=horizontal)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


# --- coastlines --------------------------------------------------------------------------------------------
@needs_gshhg
def test_gshhg_coastlines_and_borders_are_where_the_atlas_says():
    def nearest(lines, lon, lat):
        pts = np.concatenate([np.c_[a, b] for a, b in lines])
        return float(np.hypot(pts[:, 0] - lon, pts[:, 1] - lat).min())

    gib = map_lines((-10.0, 0.0, 33.0, 40.0))
    assert gib is not None and gib.source.startswith("GSHHG")
    assert nearest(gib.coast, -5.35, 36.14) < 0.1  # Gibraltar
    cape = map_lines((15.0, 25.0, -40.0, -30.0))
    assert nearest(cape.coast, 18.47, -34.36) < 0.1  # Cape of Good Hope (south of the equator, east)
    swiss = map_lines((5.0, 12.0, 45.0, 49.0))
    assert nearest(swiss.borders, 7.59, 47.56) < 0.1  # Basel, where Switzerland, France and Germany meet
    assert nearest(swiss.lakes, 6.6, 46.45) < 0.2  # Lake Geneva
    ocean = map_lines((-45.0, -35.0, 20.0, 30.0))  # open Atlantic: no shore inside the box
    pts = np.concatenate([np.c_[a, b] for a, b in ocean.coast])
    inside = (pts[:, 0] > -45) & (pts[:, 0] < -35) & (pts[:, 1] > 20) & (pts[:, 1] < 30)
    assert not inside.any()
    for lon, _lat in gib.coast + cape.coast + swiss.coast + swiss.borders:
        assert lon.min() >= -180 and lon.max() <= 180


@needs_gshhg
def test_card_map_draws_gshhg_and_says_so(tmp_path):
    ds = small_dataset(tmp_path)
    r = write_card(ds)
    assert r.stats["map_source"].startswith("GSHHG")
    assert "Coastlines and national borders: GSHHG" in r.markdown.read_text()


def test_card_without_coastline_data_draws_the_plain_map_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DVTR_GSHHG_DIR", str(tmp_path / "nowhere"))
    ds = small_dataset(tmp_path)
    r = write_card(ds)
    assert r.stats["map_source"] is None and "map" in r.figures
    assert "No coastline data was found" in r.markdown.read_text()
    assert "No coastline data was found" in r.html.read_text()


# --- licence, provenance, limitations ----------------------------------------------------------------------
def test_one_region_one_licence_midday_card(tmp_path):
    ds = small_dataset(tmp_path)
    n_flights, n_clips = 6, 24
    set_columns(
        ds,
        "flights",
        licence=["CC-BY-4.0"] * 5 + [None],
        owner=["Aerial Lab <lab@example.org>"] * n_flights,
        recorded_at=[datetime(2026, 5, 1, 12, 30, tzinfo=UTC)] * n_flights,
    )
    r = write_card(ds)
    s = r.stats
    assert s["licences"] == {"CC-BY-4.0": 5, "not stated": 1}
    md, html = r.markdown.read_text(), r.html.read_text()
    assert "| CC-BY-4.0 | 5 |" in md and "| not stated | 1 |" in md
    assert "Aerial Lab &lt;lab@example.org&gt;" in html and "Aerial Lab &lt;lab@example.org&gt;" in md
    # all sites are one (n_sites=1): the card must say that every mapped clip comes from one region
    text = limitation(s, "regions")
    assert text.startswith(f"All {n_clips} clips shown on the map come from one region")
    assert "around 47." in text
    # 12:30 plus at most 20 s of clip start: every clip at midday, none at any other part of the day
    text = limitation(s, "hours")
    assert text.startswith(
        f"{n_clips} of the {n_clips} clips with a recording time (100 %) were filmed in the midday"
    )
    assert "none in the night, morning, afternoon, evening" in text
    assert s["hours"][12] == n_clips
    # every altitude is 80 m: the 10-90 % band is 80-80 m, a narrow band
    text = limitation(s, "altitudes")
    assert text.startswith(f"80 % of the {n_clips} clips with an altitude were filmed between 80 and 80 m")
    assert "narrow band" in text
    # the generated captions are all simulated: the card says they are not human language
    text = limitation(s, "provenance")
    assert text.startswith(f"{n_clips * 5} of {n_clips * 5} accepted captions (100 %) are simulated")
    assert s["provenance"]["caption_origins"]["simulated"]["accepted"] == n_clips * 5
    assert s["provenance"]["libraries"]["pyarrow"] == pa.__version__
    assert f"pyarrow {pa.__version__}" in md and f"pyarrow {pa.__version__}" in html
    for lim in s["limitations"]:
        assert lim["source"] in r.figures or lim["source"] in TABLE_SOURCES, lim
    for section in (
        "Licence and owner",
        "How this dataset was made",
        "Intended uses",
        "Out-of-scope uses",
        "Known limitations and biases",
        "Coverage",
        "Settings",
    ):
        assert f"<h2>{section}</h2>" in html and f"## {section}" in md
    for name in ("map", "regions", "altitudes", "hours"):
        assert f"figures/{name}.png" in md and (r.out / "figures" / f"{name}.png").is_file()


def test_limitations_follow_the_numbers(tmp_path):
    ds = small_dataset(tmp_path, n_flights=4, clips_per_flight=5)  # 20 clips
    clips = ds.read_table("clips")
    lat = [MADRID[0]] * 5 + [ZURICH[0]] * 12 + [None] * 3
    lon = [MADRID[1]] * 5 + [ZURICH[1]] * 12 + [None] * 3
    alts = [10.0 * (k + 1) for k in range(10)] + [None] * 10  # 10, 20, ..., 100 m
    cats = ["road"] * 14 + ["harbour"] * 5 + [None]
    assert clips.num_rows == 20
    set_columns(ds, "clips", lat=lat, lon=lon, altitude_m=alts, category=cats)
    s = write_card(ds).stats
    assert s["positions"] == {
        "own_clips": 20, "with_position": 17, "without_position": 3, "shown": 17, "hidden_private": 0,
        "imported_clips": 0,
    }  # fmt: skip
    summary = [lim["text"] for lim in s["limitations"] if lim["source"] == "summary"]
    assert summary[0].startswith("3 of 20 own clips (15 %) have no position")
    assert summary[1] == "No clip has a recording time: the times of day are unknown."
    # 12 of the 17 mapped clips are in the Zurich region: 71 %, more than half
    assert limitation(s, "regions") == (
        "The clips shown on the map come from 2 regions; the largest (around 47.37°N 8.54°E) holds 12 of 17 "
        "(71 %): the dataset is dominated by one place."
    )
    # numpy's linear percentile of 10..100: position 0.9 -> 19 m, position 8.1 -> 91 m; median 55 m
    assert limitation(s, "altitudes") == (
        "80 % of the 10 clips with an altitude were filmed between 19 and 91 m (median 55 m; relative: 10 clips)."
    )
    assert limitation(s, "categories") == (
        "The most common category, \u201croad\u201d, holds 14 of 19 categorised clips (74 %) among 2 "
        "categories; 1 clip(s) have no category."
    )
    assert "hours" not in {lim["source"] for lim in s["limitations"]}


def test_no_positions_at_all(tmp_path):
    ds = small_dataset(tmp_path, gps=False)
    r = write_card(ds)
    texts = [lim["text"] for lim in r.stats["limitations"]]
    assert "24 of 24 own clips (100 %) have no position" in texts[0]
    assert "No clip has a position, so the geographic coverage is unknown." in texts
    assert "No clip has an altitude: the flying heights are unknown." in texts
    assert "map" not in r.figures and "regions" not in r.figures
    assert "No clip position to map: 24 of 24 own clips have no position" in r.markdown.read_text()


def test_annotated_categories_table_wins_and_dollar_categories_render(tmp_path):
    ds = small_dataset(tmp_path)
    ids = ds.read_table("clips").column("clip_id").to_pylist()
    bad = r"$\frac{$ parking"
    pq.write_table(
        pa.table(
            {
                "clip_id": ids[:10],
                "category": [bad] * 6 + ["quarry"] * 3 + [None],
                "votes": [3] * 10,
                "agreement": [1.0] * 6 + [2 / 3] * 3 + [0.5],
            }
        ),
        ds.table_path("clip_categories"),
    )
    r = write_card(ds)
    s = r.stats
    assert s["categories_from"] == "clip_categories"
    generated = dict(
        zip(ids, ds.read_table("clips").column("category").to_pylist(), strict=True)
    )  # the 10th clip has no annotated category: its ingest category stays
    want: dict[str, int] = {bad: 6, "quarry": 3}
    for cid in ids[9:]:
        want[generated[cid]] = want.get(generated[cid], 0) + 1
    assert s["categories"] == want
    # 10 clips voted on, 9 with a majority, 1 tie; agreement (6 * 1 + 3 * 2/3 + 0.5) / 10 = 0.85
    assert s["category_votes"] == {"clips": 10, "majority": 9, "no_majority": 1, "mean_agreement": 0.85}
    assert "annotators voted on 10 clip(s): 9 with a majority category, 1 without" in r.markdown.read_text()
    assert (r.out / "figures" / "categories.png").read_bytes()[:4] == b"\x89PNG"


# --- thumbnails and folding --------------------------------------------------------------------------------
def test_example_clips_show_keyframes_with_escaped_captions(tmp_path):
    from PIL import Image

    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=3, clips_per_flight=3, with_files=True, seed=5)
    clips = ds.read_table("clips").to_pylist()
    for k, c in enumerate(clips[:4]):
        path = ds.root / c["keyframe_paths"][0]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((90, 160, 3), 40 * k, np.uint8)).save(path)
    # a keyframe path from a table that points outside the dataset is never read
    outside = tmp_path / "secret.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(outside)
    kf = [c["keyframe_paths"] for c in clips]
    kf[5] = ["../secret.jpg"]
    set_columns(ds, "clips", keyframe_paths=kf)
    caps = ds.read_table("captions")
    texts = caps.column("text").to_pylist()
    first = caps.column("clip_id").to_pylist().index(clips[0]["clip_id"])
    texts[first] = "<script>alert(1)</script> | a [link](javascript:x)"
    set_columns(ds, "captions", text=texts)
    r = write_card(ds)
    html, md = r.html.read_text(), r.markdown.read_text()
    assert html.count('src="data:image/jpeg;base64,') == 4
    assert sorted(p.name for p in (r.out / "figures" / "examples").iterdir()) == [
        "1.jpg",
        "2.jpg",
        "3.jpg",
        "4.jpg",
    ]
    with Image.open(r.out / "figures" / "examples" / "1.jpg") as im:
        assert im.size == (160, 90)  # already within 320x180: not enlarged
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt; \\| a \\[link\\]\\(javascript:x\\)" in md
    assert "![keyframe of an example clip](figures/examples/1.jpg)" in md
    assert "secret" not in html and "secret" not in md
    assert not re.search(r"<img(?![^>]*src=\"data:image/(png|jpeg);base64,)", html)


def test_settings_are_folded_away_at_the_end(tmp_path):
    ds = small_dataset(tmp_path)
    split_dataset(ds, SplitConfig(tolerance=0.5))
    r = write_card(ds)
    html, md = r.html.read_text(), r.markdown.read_text()
    for text in (html, md):
        start, end = text.index("<details>"), text.index("</details>")
        assert start > text.index("Captions") and text.count("<details>") == 1
        assert "split" in text[start:end]  # the split stage's settings are inside the fold
        assert "seed" in text[start:end]
    assert html.rstrip().endswith("</html>") and html.index("</details>") > html.index("<h2>Settings</h2>")


REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
REAL_PHOTO = REALDATA / "images" / "deepforest_pypi" / "AWPE_Pigeon_Lake_2020_DJI_0005.JPG"


@pytest.mark.skipif(not REAL_PHOTO.is_file(), reason="../shared/realdata is absent")
def test_a_real_drone_photo_as_keyframe(tmp_path):
    from PIL import Image

    ds, _ = write_generated_dataset(tmp_path / "ds", n_flights=2, clips_per_flight=2, with_files=True, seed=6)
    clip = ds.read_table("clips").to_pylist()[0]
    target = ds.root / clip["keyframe_paths"][0]
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REAL_PHOTO, target)  # a copy in the test's temporary dataset, never in the repository
    r = write_card(ds)
    (thumb,) = (r.out / "figures" / "examples").iterdir()
    with Image.open(REAL_PHOTO) as full, Image.open(thumb) as small:
        w, h = full.size
        # scaled to fit 320x180 with the photo's aspect ratio kept (to within PIL's rounding)
        scale = min(320 / w, 180 / h)
        assert abs(small.size[0] - w * scale) <= 1 and abs(small.size[1] - h * scale) <= 1
    assert r.html.read_text().count('src="data:image/jpeg;base64,') == 1
