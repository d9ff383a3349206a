"""Caption text from Label Studio's web form: the line break the form appends is dropped, nothing else is."""

from __future__ import annotations

from dvtr_data.annotation.client import Connection, Studio
from dvtr_data.annotation.pull import pull
from dvtr_data.annotation.push import push
from dvtr_data.testing.labelstudio import FakeSDK, FakeServer, caption_result, make_dataset
from dvtr_data.text import strip_form_newline

LOCAL = Connection("http://127.0.0.1:8080", "k" * 40, local=True)


def test_strip_form_newline_drops_only_trailing_line_breaks():
    assert strip_form_newline("Two cars at the bottom.\n") == "Two cars at the bottom."
    assert strip_form_newline("Two cars.\r\n") == "Two cars."
    assert strip_form_newline("Two cars.  ") == "Two cars.  "  # spaces are the writer's, kept
    assert strip_form_newline("line one\nline two\n") == "line one\nline two"


def test_pulled_captions_lose_the_forms_trailing_line_break(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_clips=1)
    srv = FakeServer()
    studio = Studio(LOCAL, sdk=FakeSDK(srv))
    push(ds.root, LOCAL, studio=studio)
    task = next(iter(srv.tasks.values()))
    typed = "Two cars drive along a road past houses at the bottom.\n"
    FakeSDK(srv).annotations.create(task["id"], result=caption_result(typed))
    pull(ds.root, LOCAL, studio=Studio(LOCAL, sdk=FakeSDK(srv)))
    rows = [r for r in ds.read_table("captions").to_pylist() if r["writer"] == "annotate"]
    assert [r["text"] for r in rows] == [typed[:-1]]
