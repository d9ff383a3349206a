"""open_clip's own "initialized randomly" warning is not printed beside ours (the model identity says it once)."""

from __future__ import annotations

import logging

import open_clip

from dvtr_data.baselines.engine.backbone import load_clip
from dvtr_data.baselines.engine.config import BackboneConfig
from dvtr_data.reporting import quiet_root_warnings


def _open_clip_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "No pretrained weights" in r.getMessage()]


def test_open_clip_warns_on_its_own_and_our_loaders_keep_it_quiet(caplog):
    with caplog.at_level(logging.WARNING):
        open_clip.create_model("ViT-S-32-alt", pretrained=None)  # the control: the warning is really captured here
    assert _open_clip_warnings(caplog)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_clip(BackboneConfig(model="ViT-S-32-alt", pretrained=None))
    assert _open_clip_warnings(caplog) == []


def test_errors_still_pass_and_the_filter_is_removed_after():
    root = logging.getLogger()
    before = list(root.filters)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep(level=logging.DEBUG)
    root.addHandler(handler)
    try:
        with quiet_root_warnings():
            logging.warning("dropped")
            logging.error("kept")
        logging.warning("after")
    finally:
        root.removeHandler(handler)
    assert seen == ["kept", "after"] and root.filters == before
