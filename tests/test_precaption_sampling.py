"""Frame sampling: uniform indices, geometry, decord vs PyAV, and decoding on the worker engine (hangs, crashes)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dvtr_data.engine.local import ProcessExecutor
from dvtr_data.precaption.sampling import (
    FrameGeometry,
    SampleJob,
    decode_clips,
    sample_frames,
    sample_with_decord,
    sample_with_pyav,
    uniform_indices,
)
from dvtr_data.testing.precaption import COLOURS, write_clip

GEOM = FrameGeometry((224, 224))


def test_uniform_indices_are_segment_centres_and_always_count_long():
    assert uniform_indices(80, 8) == [5, 15, 25, 35, 45, 55, 65, 75]
    assert uniform_indices(80, 8, start=100) == [105, 115, 125, 135, 145, 155, 165, 175]
    short = uniform_indices(3, 8)
    assert len(short) == 8 and set(short) == {0, 1, 2} and short == sorted(short)
    assert uniform_indices(0, 8) == [] and uniform_indices(10, 0) == []


def test_geometry_follows_open_clip_resize_modes():
    assert GEOM.decode_size(320, 180) == (398, 224)
    assert GEOM.decode_size(180, 320) == (224, 398)
    frames = np.zeros((2, 224, 398, 3), np.uint8)
    frames[:, :, 87:311] = 255
    assert (GEOM.finish(frames) == 255).all()  # centre crop keeps the middle
    longest = FrameGeometry((224, 224), "longest", fill=7)
    assert longest.decode_size(320, 180) == (224, 126)
    padded = longest.finish(np.full((1, 126, 224, 3), 200, np.uint8))
    assert padded.shape == (1, 224, 224, 3) and padded[0, 0, 0, 0] == 7 and padded[0, 112, 112, 0] == 200
    assert FrameGeometry((224, 224), "squash").decode_size(320, 180) == (224, 224)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "red.mp4", COLOURS["red"], n_frames=40)


def test_decord_and_pyav_sample_the_same_frames(clip):
    job = SampleJob(0, str(clip), 8)
    a = sample_with_decord(job, GEOM)
    b = sample_with_pyav(job, GEOM)
    assert a.indices == b.indices == uniform_indices(40, 8)
    assert a.frames.shape == b.frames.shape == (8, 224, 224, 3) and a.frames.dtype == np.uint8
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 6  # same frames, scalers differ slightly
    assert (a.decoder, b.decoder) == ("decord", "pyav")
    # a span inside a longer file (an uncut flight): indices stay in the span
    span = sample_frames(replace(job, start_frame=10, end_frame=20, count=4), GEOM)
    assert span.indices == [11, 13, 16, 18] and span.error is None
    # a wrong frame count hint (over-reported) is corrected by PyAV
    over = sample_with_pyav(replace(job, n_frames=400), GEOM)
    assert over.indices == uniform_indices(40, 8)


def test_unreadable_file_is_an_error_after_both_decoders(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    result = sample_frames(SampleJob(3, str(bad), 8, width=320, height=180), GEOM)
    assert result.frames is None and result.key == 3
    assert "decord failed" in result.error and "cannot decode" in result.error


# --- misbehaving sample functions, run inside the engine's worker processes ---------------------------------------
def hang_unless_pyav(job: SampleJob, geometry: FrameGeometry):
    """Stands in for decord hanging on a file that over-reports its frames."""
    if job.backend != "pyav":
        time.sleep(3600)
    return sample_frames(job, geometry)


def crash_on_marked(job: SampleJob, geometry: FrameGeometry):
    if "crash" in Path(job.path).name:
        os._exit(3)
    return sample_frames(job, geometry)


def test_a_hung_decoder_is_stopped_and_pyav_takes_over(clip):
    ex = ProcessExecutor(workers=1, stall_timeout=2.0)
    (result,) = list(decode_clips([SampleJob(0, str(clip), 8)], GEOM, ex, sample_fn=hang_unless_pyav))
    assert result.error is None and result.decoder == "pyav"
    assert result.notes[0] == "decord: no progress for 2 s (hung decoder?); the worker was stopped"


def test_a_crashed_decoder_is_replaced_and_the_rest_go_on(clip, tmp_path):
    crash = tmp_path / "crash.mp4"
    crash.write_bytes(clip.read_bytes())
    jobs = [SampleJob(0, str(clip), 4), SampleJob(1, str(crash), 4), SampleJob(2, str(clip), 4)]
    results = {r.key: r for r in decode_clips(jobs, GEOM, ProcessExecutor(workers=2, stall_timeout=30),
                                             sample_fn=crash_on_marked)}
    assert results[0].error is None and results[2].error is None
    # decord's worker died, then PyAV's: both said, the clip is one error
    assert results[1].error == "decord: worker process died (exit code 3); pyav: worker process died (exit code 3)"


def test_recycled_decode_workers_keep_every_result(clip):
    jobs = [SampleJob(i, str(clip), 2) for i in range(7)]
    ex = ProcessExecutor(workers=2, stall_timeout=30, recycle=2, prefetch=1)
    keys = sorted(r.key for r in decode_clips(jobs, GEOM, ex) if r.error is None)
    assert keys == list(range(7))
