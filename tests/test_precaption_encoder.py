"""open_clip loading: identity, checkpoints (tensors only), cached tag weights, and fail-fast when weights are absent.

Everything runs on ViT-S-32-alt with random weights; nothing is downloaded. HF_HUB_OFFLINE=1 is set for every test
by tests/conftest.py, and by these tests where it is the condition under test.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from dvtr_data.errors import ModelError, UsageError
from dvtr_data.precaption import encoder as enc_mod
from dvtr_data.precaption.encoder import ModelSpec, load_encoder

ARCH = "ViT-S-32-alt"


@pytest.fixture(scope="module")
def small():
    return load_encoder(ModelSpec(ARCH, None, device="cpu"))


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything opens a TCP connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_random_weights_are_seeded_and_identified(small):
    ident = small.identity
    assert ident.name == f"{ARCH}/random-s0" and ident.key == f"{ARCH}__random-s0"
    assert ident.embed_dim == 256 and len(ident.config_hash) == 16 and ident.checkpoint_sha256 is None
    assert small.geometry.size == (224, 224) and small.geometry.resize_mode == "shortest"
    again = load_encoder(ModelSpec(ARCH, "none", device="cpu"))
    frames = np.random.default_rng(0).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
    a, b = small.encode_frames(frames), again.encode_frames(frames)
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert a.shape == (3, 256) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    other = load_encoder(ModelSpec(ARCH, None, device="cpu", seed=1))
    assert other.identity.name != ident.name
    assert np.abs(other.encode_frames(frames) - a).max() > 1e-3


def test_frames_are_normalised_like_open_clip(small):
    """The uint8 fast path equals open_clip's own Normalize on the same pixels."""
    import open_clip

    _, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=None)
    normalize = preprocess.transforms[-1]
    frames = np.random.default_rng(1).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    ours = small.frames_to_input(frames)
    ref = normalize(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_trimmed_text_encoding_equals_open_clip(small):
    texts = ["a drone flies over a port", "x", "Many cars are parked along a narrow street in a dense residential area.",
             "word " * 100]
    assert small.trim_text
    ours = small.encode_texts(texts)
    with torch.inference_mode():
        ref = torch.nn.functional.normalize(small.model.encode_text(small.tokenizer(texts)), dim=-1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert small.encode_texts([]).shape == (0, 256)


def test_checkpoint_file_is_loaded_and_identified_by_its_hash(small, tmp_path):
    path = tmp_path / "remoteclip-like.pt"
    torch.save(small.model.state_dict(), path)
    loaded = load_encoder(ModelSpec(ARCH, checkpoint=path, device="cpu", seed=5))  # seed is irrelevant with weights
    assert loaded.identity.weights.startswith("ckpt-") and len(loaded.identity.checkpoint_sha256) == 64
    assert loaded.identity.weights == f"ckpt-{loaded.identity.checkpoint_sha256[:16]}"
    frames = np.random.default_rng(2).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.encode_frames(frames), small.encode_frames(frames), atol=1e-5)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_objects_is_refused(small, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": small.model.state_dict(), "extra": Evil()}, path)
    with pytest.raises(ModelError, match="more than tensors"):
        load_encoder(ModelSpec(ARCH, checkpoint=path, device="cpu"))


def test_checkpoint_of_another_architecture_is_a_model_error(small, tmp_path):
    path = tmp_path / "s32.pt"
    torch.save(small.model.state_dict(), path)
    with pytest.raises(ModelError, match="do not fit model config ViT-M-32-alt"):
        load_encoder(ModelSpec("ViT-M-32-alt", checkpoint=path, device="cpu"))
    with pytest.raises(ModelError, match="does not exist"):
        load_encoder(ModelSpec(ARCH, checkpoint=tmp_path / "missing.pt"))


def test_missing_tag_weights_fail_at_once_offline_without_network(monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    # "at once": the plan finds the weights missing before any model is built (and no_network: nothing is asked)
    def no_build(plan):
        raise AssertionError(f"a model was built before the missing weights were reported: {plan}")

    monkeypatch.setattr(enc_mod, "build_encoder", no_build)
    with pytest.raises(ModelError) as exc:
        load_encoder(ModelSpec("ViT-B-32", "laion2b_s34b_b79k", device="cpu", cache_dir=tmp_path / "clip"))
    text = str(exc.value)
    assert "not on this machine" in text and "offline" in text
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in text and str(tmp_path / "empty-hf-cache") in text
    assert "--checkpoint PATH" in text
    # a URL-hosted tag names the file and open_clip's cache folder
    with pytest.raises(ModelError, match=r"RN50\.pt .*/clip/RN50\.pt"):
        load_encoder(ModelSpec("RN50", "openai", device="cpu", cache_dir=tmp_path / "clip"))


def test_missing_weights_fail_fast_when_the_host_cannot_be_reached(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("DVTR_OFFLINE", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    asked = []
    monkeypatch.setattr(enc_mod, "reachable", lambda host, *a, **k: asked.append(host) or False)
    with pytest.raises(ModelError, match="huggingface.co cannot be reached"):
        load_encoder(ModelSpec("ViT-B-32", "laion2b_s34b_b79k", device="cpu"))
    assert asked == ["huggingface.co"]


def test_tag_weights_in_the_hf_cache_are_used(monkeypatch, tmp_path, small, no_network):
    """The real loading path: a tag resolved to a file in the Hugging Face cache, loaded without the network."""
    import huggingface_hub.constants
    import open_clip.pretrained as pretrained

    cache = tmp_path / "hf"
    snapshot = cache / "models--dvtr--tiny-clip" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (cache / "models--dvtr--tiny-clip" / "refs").mkdir()
    (cache / "models--dvtr--tiny-clip" / "refs" / "main").write_text("0123abcd")
    torch.save(small.model.state_dict(), snapshot / "open_clip_pytorch_model.bin")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setitem(pretrained._PRETRAINED, ARCH, {"tinytag": pretrained._pcfg(hf_hub="dvtr/tiny-clip/")})
    loaded = load_encoder(ModelSpec(ARCH, "tinytag", device="cpu"))
    assert loaded.identity.name == f"{ARCH}/tinytag"
    frames = np.random.default_rng(3).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.encode_frames(frames), small.encode_frames(frames), atol=1e-5)


def test_bad_names_and_options_are_clear_errors():
    with pytest.raises(ModelError, match="no pretrained tag 'nope'.*laion2b_s34b_b79k"):
        load_encoder(ModelSpec("ViT-B-32", "nope"))
    with pytest.raises(ModelError, match="no model config 'ViT-B-33'.*ViT-B-32"):
        load_encoder(ModelSpec("ViT-B-33", None))
    with pytest.raises(UsageError, match="precision"):
        load_encoder(ModelSpec(ARCH, None, precision="fp8"))
    with pytest.raises(UsageError, match="fp16 is not supported on the CPU"):
        load_encoder(ModelSpec(ARCH, None, device="cpu", precision="fp16"))
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            load_encoder(ModelSpec(ARCH, None, device="cuda"))


def test_bf16_runs_on_the_cpu():
    bf = load_encoder(ModelSpec(ARCH, None, device="cpu", precision="bf16"))
    out = bf.encode_frames(np.zeros((1, 224, 224, 3), np.uint8))
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert bf.identity.precision == "bf16" and bf.identity.name == f"{ARCH}/random-s0"
