"""`annotate status` counts moments: queries, windows, distinct raters per query, the rating round's progress and
per annotator counts, from the hand-made flights of `dvtr_data.testing.moments` (who writes which query is known:
simulated annotator n writes the n-th maneuver of a segment)."""

from __future__ import annotations

from typer.testing import CliRunner

from dvtr_data.annotation import moments as M
from dvtr_data.annotation import ratings as R
from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.annotation.status import annotation_status
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer
from dvtr_data.testing.moments import make_moments_dataset

LOCAL = Connection("http://127.0.0.1:8080", "0123456789abcdef0123456789abcdef01234567", local=True)


def sim(n: int) -> str:
    return f"simulated-{n}@simulated.dvtr.invalid"


def test_status_counts_queries_raters_and_ratings(tmp_path, monkeypatch):
    ds = make_moments_dataset(tmp_path / "ds")
    assert annotation_status(ds.root).moments is None  # nothing pulled yet
    studio = Studio(LOCAL, sdk=FakeSDK(FakeServer()))
    M.push_moments(ds.root, LOCAL, studio=studio)
    M.simulate_moments(ds.root, LOCAL, studio=studio)
    M.pull_moments(ds.root, LOCAL, studio=studio)
    R.push_ratings(ds.root, LOCAL, studio=studio)
    R.simulate_ratings(ds.root, LOCAL, studio=studio, overlap=1)  # one rater each: two raters per query
    R.pull_ratings(ds.root, LOCAL, studio=studio)
    m = annotation_status(ds.root).moments
    assert m is not None
    assert (m.rows, m.queries, m.windows, m.rating_rows, m.ratings_accepted) == (7, 7, 7, 7, 7)
    assert m.raters == {1: 0, 2: 7, 3: 0} and m.complete == 0
    # authors: simulated-1 writes 3 queries (road, sports field, forest), simulated-2 3 (orbit, parking lot, lake),
    # simulated-3 1 (river); the first rater who is not the author: simulated-2 for simulated-1's, else simulated-1
    got = {a.annotator: (a.queries, a.windows, a.ratings) for a in m.annotators}
    assert got == {sim(1): (3, 3, 4), sim(2): (3, 3, 3), sim(3): (1, 1, 0)}

    R.simulate_ratings(ds.root, LOCAL, studio=studio, overlap=2)  # the second rater of each query
    R.pull_ratings(ds.root, LOCAL, studio=studio)
    rep = annotation_status(ds.root)
    m = rep.moments
    assert m is not None and m.raters == {1: 0, 2: 0, 3: 7} and m.complete == 7 and m.ratings_accepted == 14
    # second raters: simulated-3 for simulated-1's and -2's queries, simulated-2 for simulated-3's
    got = {a.annotator: (a.queries, a.ratings) for a in m.annotators}
    assert got == {sim(1): (3, 4), sim(2): (3, 4), sim(3): (1, 6)}

    import dvtr_data.cli.annotate as cli_annotate
    from dvtr_data.cli import app

    monkeypatch.setattr(cli_annotate, "_connection", lambda *_: LOCAL)
    res = CliRunner().invoke(app, ["annotate", "status", "--dataset", str(ds.root)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "moments: 7 accepted query(ies) of 7, 7 window(s)" in res.output
    assert "raters: 7 of 7 query(ies) have 3; rating round: 14 of 14 rating(s) accepted" in res.output
    assert "moment annotators" in res.output and "no captions pulled yet" not in res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80
