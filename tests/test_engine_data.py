"""Data for the engine: the authors' frame arithmetic, decoding and normalisation, tokenisation, splits from
tables and from Parquet, the registry and config files, the offline backbone error, and the feature cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dvtr_data.baselines.engine import registry
from dvtr_data.baselines.engine.backbone import _cached_weight_file, load_clip, token_mask, tokenize
from dvtr_data.baselines.engine.cache import FeatureCache
from dvtr_data.baselines.engine.config import BackboneConfig, BaselineConfig, DataConfig, parse_assignment
from dvtr_data.baselines.engine.data import (
    decode_frames,
    frame_indices,
    load_clip_pixels,
    load_parquet_split,
    load_split,
    normalise,
    pick_frames,
)
from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, ModelError, UsageError
from dvtr_data.testing.engine import TINY_CLIP, TINY_OVERRIDES, build_toy_dataset


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    return build_toy_dataset(tmp_path_factory.mktemp("toy") / "ds")


# ---------------------------------------------------------------------------------------------- frames
def test_frame_arithmetic_reproduces_the_authors_extractor() -> None:
    cfg = DataConfig()
    # USRD: 5 s at 24 fps = 120 frames -> the read at second 5 (frame 120) fails: 5 real frames
    assert frame_indices(120, 24.0, cfg) == [0, 24, 48, 72, 96]
    # 23.976 fps is read as 23 by OpenCV: seconds 0..6, frame 138 fails -> 6 frames
    assert frame_indices(120, 23.976, cfg) == [0, 23, 46, 69, 92, 115]
    # the corrected variant samples at the true rate
    assert frame_indices(120, 23.976, DataConfig(fps_rounding="exact")) == [0, 24, 48, 72, 96]
    assert frame_indices(121, 24.0, cfg) == [0, 24, 48, 72, 96, 120]
    assert frame_indices(48, 24.0, DataConfig(frame_rate=2)) == [0, 12, 24, 36]
    assert frame_indices(0, 24.0, cfg) == []


def test_more_than_twelve_frames_are_spread_like_linspace_cast_to_int() -> None:
    idx = list(range(0, 30 * 30, 30))  # 30 s at 30 fps: 30 frames
    picked = pick_frames(idx, DataConfig())
    assert picked == [idx[i] for i in np.linspace(0, 29, 12).astype(int)]
    assert pick_frames(idx, DataConfig(frame_pick="head")) == idx[:12]
    assert pick_frames(idx, DataConfig(frame_pick="tail")) == idx[-12:]
    assert pick_frames(idx[:5], DataConfig()) == idx[:5]


def test_frames_are_clip_preprocessed_and_zero_padded(toy: Dataset) -> None:
    import open_clip

    clip = load_split(toy, "train").clips[0]
    cfg = DataConfig()
    pixels, n = load_clip_pixels(clip, cfg, 64)
    expected_n = len(frame_indices(clip.n_frames, clip.fps, cfg))
    assert n == expected_n and pixels.shape == (12, 64, 64, 3)
    assert not pixels[n:].any()
    mask = torch.zeros(12, dtype=torch.long)
    mask[:n] = 1
    video = normalise(torch.from_numpy(pixels), mask)
    assert video.shape == (12, 3, 64, 64) and torch.count_nonzero(video[n:]) == 0
    # the same frame through open_clip's own eval transform (resize, centre crop, ToTensor, Normalize)
    transform = open_clip.image_transform(64, is_train=False)
    with av.open(str(clip.path)) as f:
        first = next(f.decode(video=0)).to_image()
    torch.testing.assert_close(video[0], transform(first), rtol=0, atol=1e-5)


def test_decoding_stops_at_the_real_end(toy: Dataset) -> None:
    clip = load_split(toy, "train").clips[0]
    frames = decode_frames(clip.path, [0, clip.n_frames - 1, clip.n_frames + 50], 32)
    assert len(frames) == 2


# ---------------------------------------------------------------------------------------------- text
def test_tokens_are_sot_thirty_tokens_eot_padded_to_32() -> None:
    ids = tokenize(["a boat", " ".join(["harbour"] * 50)], 32)
    assert ids.shape == (2, 32)
    sot, eot = 49406, 49407
    assert ids[0, 0] == sot and ids[0, 3] == eot and not ids[0, 4:].any()
    assert ids[1, 0] == sot and ids[1, 31] == eot and (ids[1, 1:31] != 0).all()
    mask = token_mask(ids)
    assert mask[0].tolist() == [1] * 4 + [0] * 28 and mask[1].all()


# ---------------------------------------------------------------------------------------------- splits
def test_split_from_tables_groups_captions_by_clip(toy: Dataset) -> None:
    train = load_split(toy, "train")
    assert len(train.clips) == 8 and len(train.captions) == 24
    assert [c.clip_id for c in train.clips] == sorted(c.clip_id for c in train.clips)
    assert train.caption_clip == sorted(train.caption_clip)  # each clip's captions together, in clip order
    assert all(train.clips[i].clip_id == cap.clip_id for i, cap in zip(train.caption_clip, train.captions, strict=False))


def test_unknown_split_and_missing_table_are_clear_errors(toy: Dataset, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="splits: test, train, val"):
        load_split(toy, "dev")
    bare = Dataset(tmp_path / "bare").create()
    with pytest.raises(DatasetError, match="no splits table"):
        load_split(bare, "train")


def test_exported_parquet_split_reads_like_the_tables(toy: Dataset, tmp_path: Path) -> None:
    ref = load_split(toy, "val")
    rows = [
        {"clip_id": c.clip_id, "clip_path": str(ref.clips[i].path.relative_to(toy.root)), "caption_id": c.caption_id, "text": c.text}
        for i, c in zip(ref.caption_clip, ref.captions, strict=False)
    ]
    path = toy.root / "exports" / "val.parquet"
    path.parent.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    got = load_split(toy, str(path))
    assert [c.clip_id for c in got.clips] == [c.clip_id for c in ref.clips]
    assert [c.text for c in got.captions] == [c.text for c in ref.captions]
    assert got.caption_clip == ref.caption_clip
    # the layout `dvtr-data export --format parquet` writes: one row per clip, list columns, media beside the file
    (tmp_path / "videos").mkdir()
    per_clip = []
    for c in ref.clips:
        (tmp_path / "videos" / f"{c.clip_id}.mp4").write_bytes(c.path.read_bytes())
        mine = [x for x in ref.captions if x.clip_id == c.clip_id]
        per_clip.append({"clip_id": c.clip_id, "clip_path": "clips/gone.mp4", "video": f"videos/{c.clip_id}.mp4",
                         "start_frame": 100, "end_frame": 100 + c.n_frames, "fps": c.fps,
                         "caption_ids": [x.caption_id for x in mine], "captions": [x.text for x in mine]})
    pq.write_table(pa.Table.from_pylist(per_clip), tmp_path / "val.parquet")
    exported = load_parquet_split(tmp_path / "val.parquet")
    assert [(c.caption_id, c.text) for c in exported.captions] == [(c.caption_id, c.text) for c in ref.captions]
    assert exported.clips[0].path.parent == tmp_path / "videos" and exported.clips[0].n_frames == ref.clips[0].n_frames


# ---------------------------------------------------------------------------------------------- configs
def test_every_registered_baseline_loads_and_the_ablation_rows_exist() -> None:
    names = registry.baseline_names()
    for required in ("msam", "msam-no-gate", "msam-no-kl", "msam-no-diversity", "clip4clip-meanp",
                     "clip4clip-meanp-zeroshot", "clip4clip-seqtransf"):
        assert required in names
    for name in names:
        cfg = registry.registered(name)
        assert cfg.name == name and cfg.description
    msam = registry.registered("msam")
    assert (msam.train.batch_size, msam.train.epochs, msam.train.lr, msam.train.weight_decay) == (64, 5, 1e-4, 0.2)
    assert msam.backbone_lr == pytest.approx(1e-7) and msam.eval.chunk_size == 32 and msam.data.max_words == 32
    assert registry.registered("clip4clip-meanp-zeroshot").zero_shot


def test_user_config_by_path_with_a_base(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"base": "msam-no-kl", "train": {"epochs": 2}, "eval": {"chunk_size": 16}}))
    cfg = registry.resolve(str(path))
    assert cfg.name == "mine" and cfg.train.epochs == 2 and cfg.eval.chunk_size == 16
    assert cfg.model.preset == "no_kl" and cfg.train.batch_size == 64
    over = tmp_path / "over.json"
    over.write_text(json.dumps({"train": {"lr": 3e-4}}))
    assert registry.resolve("msam", config_file=over).train.lr == 3e-4


def test_config_errors_name_the_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="valid keys: .*epochs"):
        registry.registered("msam").with_overrides({"train": {"epoch": 3}})
    with pytest.raises(UsageError, match="backbone mode"):
        registry.registered("msam").with_overrides({"backbone": {"mode": "thawed"}})
    with pytest.raises(UsageError, match="unknown baseline"):
        registry.resolve("msam-nope")
    assert parse_assignment("eval.chunk_size=64") == {"eval": {"chunk_size": 64}}
    assert parse_assignment("backbone.pretrained=null") == {"backbone": {"pretrained": None}}
    assert BaselineConfig.from_dict(registry.registered("msam").to_dict()) == registry.registered("msam")


# ---------------------------------------------------------------------------------------------- backbone
def test_missing_pretrained_weights_fail_at_once_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """"At once": the missing file is found before open_clip builds a model or anything touches the network."""
    import socket

    import open_clip

    if _cached_weight_file("ViT-B-32-quickgelu", "openai") is not None:
        pytest.skip("the OpenAI weights are cached on this machine")

    def refuse(what: str):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} before the missing weights were reported: {args}")

        return fail

    monkeypatch.setattr(open_clip, "create_model", refuse("a model was built"))
    monkeypatch.setattr(socket, "create_connection", refuse("network access"))
    monkeypatch.setattr(socket.socket, "connect", refuse("network access"))
    with pytest.raises(ModelError, match="--clip-checkpoint"):
        load_clip(BackboneConfig(model="ViT-B-32-quickgelu", pretrained="openai"))


def test_clip_checkpoint_file_loads(tmp_path: Path) -> None:
    a = load_clip(BackboneConfig(model="t", pretrained=None, model_cfg=TINY_CLIP, init_seed=1))
    path = tmp_path / "clip.pt"
    torch.save({f"clip.{k}": v for k, v in a.state_dict().items()}, path)  # an MSAM-style checkpoint
    b = load_clip(BackboneConfig(model="t", pretrained=None, model_cfg=TINY_CLIP, init_seed=2, checkpoint=str(path)))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=False):
        assert torch.equal(va, vb), k
    with pytest.raises(ModelError, match="does not fit"):
        load_clip(BackboneConfig(model="ViT-S-32-alt", pretrained=None, checkpoint=str(path)))


# ---------------------------------------------------------------------------------------------- cache
def test_feature_cache_encodes_once_and_notices_changed_files(toy: Dataset, tmp_path: Path) -> None:
    clips = load_split(toy, "train").clips
    calls: list[int] = []

    def encode(missing):
        calls.append(len(missing))
        for i, c in enumerate(missing):
            yield [i], torch.full((1, 12, 4), float(len(c.clip_id))), torch.ones(1, 12, dtype=torch.long)

    cache = FeatureCache(tmp_path / "cache", {"x": 1}, "test")
    feats, mask = cache.frame_features(clips, encode)
    assert feats.shape == (8, 12, 4) and calls == [8]
    again = FeatureCache(tmp_path / "cache", {"x": 1}, "test")  # a fresh process reads the shards
    torch.testing.assert_close(again.frame_features(clips, encode)[0], feats)
    assert calls == [8]
    os.utime(clips[3].path, ns=(time.time_ns(), time.time_ns() + 10**9))  # the clip file was rewritten
    again.frame_features(clips, encode)
    assert calls == [8, 1]


def test_the_tiny_test_overrides_are_a_valid_config() -> None:
    cfg = registry.registered("msam").with_overrides(TINY_OVERRIDES)
    assert cfg.backbone.pretrained is None and cfg.backbone.model_cfg == TINY_CLIP
