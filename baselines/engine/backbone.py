"""The open_clip backbone: loading (offline-safe), identity for the feature cache, freezing and fp16 as authored.

Loading never hangs on a machine without network: a pretrained tag whose weights are not in the local caches
fails at once with a :class:`ModelError` that says how to provide them (``--clip-checkpoint PATH``), when
downloads are off (``HF_HUB_OFFLINE=1``). With network, open_clip downloads as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import torch
from open_clip.model import CLIP

from dvtr_data.errors import InputError, ModelError
from dvtr_data.hashing import sha256_file
from dvtr_data.reporting import quiet_root_warnings

from .config import BackboneConfig, DataConfig

CACHE_FORMAT = 1  # bump when the cached features' meaning changes


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "DVTR_OFFLINE"))


def _cached_weight_file(model: str, tag: str) -> Path | None:
    """The local file open_clip would load for ``(model, tag)``, if it is already on disk."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, tag)
    if not cfg:
        return None
    if cfg.get("file"):
        path = Path(cfg["file"])
        return path if path.is_file() else None
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:  # pragma: no cover - open_clip depends on it
            pass
        else:
            repo, filename = os.path.split(hub)
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                found = try_to_load_from_cache(repo_id=repo, filename=name)
                if isinstance(found, str) and Path(found).is_file():
                    return Path(found)
    url = cfg.get("url", "")
    if url:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return path
    return None


def _missing_weights_hint(model: str) -> str:
    return (
        "pass --clip-checkpoint PATH (an open_clip or OpenAI ViT-B-32 weights file, e.g. ViT-B-32.pt), or load "
        f"the weights once on a machine with network (python -c \"import open_clip; open_clip.create_model('{model}', "
        "pretrained='openai')\") and copy ~/.cache/huggingface to this one"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from a weights file; OpenAI's TorchScript archives are read with ``torch.jit.load``."""
    if not path.is_file():
        raise InputError(f"CLIP checkpoint {path} does not exist")
    state: Any  # whatever the file holds; checked to be a non-empty dict below
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        is_jit = False
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                is_jit = any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in zf.namelist())
        try:
            if is_jit:
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            from .checkpoint import unreadable_reason

            raise ModelError(f"checkpoint unreadable: CLIP weights {path}: {unreadable_reason(exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path} does not hold a state dict")
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    if any(k.startswith("clip.") for k in state):  # an MSAM/CLIP4Clip checkpoint: take its CLIP part
        state = {k[len("clip.") :]: v for k, v in state.items() if k.startswith("clip.")}
    for key in ("input_resolution", "context_length", "vocab_size"):
        state.pop(key, None)
    return state


def load_clip(cfg: BackboneConfig) -> CLIP:
    """The open_clip ``CLIP`` a baseline trains on, in float32 on the CPU.

    Order: ``model_cfg`` builds the architecture when given (else the named open_clip config); weights come
    from ``checkpoint``, else from the ``pretrained`` tag, else a seeded random initialisation.
    """
    import open_clip

    state: dict[str, torch.Tensor] | None = None
    if cfg.checkpoint:
        state = _read_state_dict(Path(cfg.checkpoint).expanduser())
    with _seeded(cfg.init_seed), quiet_root_warnings():
        if cfg.model_cfg is not None:
            try:
                clip = CLIP(**cfg.model_cfg)
            except TypeError as exc:
                raise ModelError(f"backbone.model_cfg is not an open_clip CLIP config: {exc}") from None
        elif cfg.pretrained and state is None:
            clip = _create_pretrained(cfg.model, cfg.pretrained)
        else:
            if cfg.model not in open_clip.list_models():
                raise ModelError(
                    f"unknown open_clip model {cfg.model!r}", hint="see open_clip.list_models(), e.g. ViT-B-32-quickgelu"
                )
            clip = open_clip.create_model(cfg.model, pretrained=None)
    if not isinstance(clip, CLIP):
        raise ModelError(
            f"{cfg.model} builds a {type(clip).__name__}; MSAM needs open_clip's CLIP class (built-in text tower)",
            hint="pick a model such as ViT-B-32-quickgelu",
        )
    if state is not None:
        try:
            clip.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:300]
            raise ModelError(f"{cfg.checkpoint} does not fit {cfg.model}: {first}") from None
    return clip.float().eval()


def _create_pretrained(model: str, tag: str) -> CLIP:
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    if model not in open_clip.list_models():
        raise ModelError(f"unknown open_clip model {model!r}", hint="see open_clip.list_models(), e.g. ViT-B-32-quickgelu")
    if Path(tag).expanduser().is_file():
        return open_clip.create_model(model, pretrained=str(Path(tag).expanduser()))
    if not get_pretrained_cfg(model, tag):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise ModelError(f"open_clip has no pretrained tag {tag!r} for {model}", hint=f"tags: {tags}")
    if _cached_weight_file(model, tag) is None and _offline():
        raise ModelError(
            f"the {model} weights for tag {tag!r} are not on this machine and downloads are off (HF_HUB_OFFLINE)",
            hint=_missing_weights_hint(model),
        )
    try:
        return open_clip.create_model(model, pretrained=tag)
    except Exception as exc:
        raise ModelError(
            f"cannot load {model} weights {tag!r}: {' '.join(str(exc).split())[:240]}", hint=_missing_weights_hint(model)
        ) from None


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Run a random initialisation under ``seed`` without disturbing the caller's RNG stream."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


@cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)[:16]


def weights_identity(cfg: BackboneConfig) -> dict[str, Any]:
    """What decides the backbone's weights (the cache key); a checkpoint counts by content."""
    ident: dict[str, Any] = {"model": cfg.model, "model_cfg": cfg.model_cfg}
    if cfg.checkpoint:
        p = Path(cfg.checkpoint).expanduser()
        st = p.stat() if p.is_file() else None
        ident["checkpoint_sha256"] = _file_digest(str(p), st.st_size, st.st_mtime_ns) if st else str(p)
    elif cfg.pretrained:
        ident["pretrained"] = cfg.pretrained
    else:
        ident["random_init_seed"] = cfg.init_seed
    return ident


def feature_identity(cfg: BackboneConfig, data: DataConfig, image_size: int) -> dict[str, Any]:
    """Everything the cached CLIP features depend on: weights, precision, frame sampling, token context."""
    return {
        "format": CACHE_FORMAT,
        "weights": weights_identity(cfg),
        "precision": cfg.precision,
        "frames": {
            "frame_rate": data.frame_rate,
            "max_frames": data.max_frames,
            "frame_pick": data.frame_pick,
            "fps_rounding": data.fps_rounding,
            "image_size": image_size,
        },
        "max_words": data.max_words,
    }


def identity_key(identity: dict[str, Any], label: str) -> str:
    """A folder name: readable label plus a hash of the identity."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in label)[:60]
    return f"{safe}-{digest}"


def image_size_of(clip: CLIP) -> int:
    size = getattr(clip.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


# The authors' freezing loop (msam.md §1): these stay trainable; so do every text and vision resblock.
_ALWAYS_TRAINED = ("ln_final.", "text_projection", "logit_scale", "visual.ln_post.", "visual.proj")


def authors_trainable(name: str) -> bool:
    """Whether the authors' freezing loop (``freeze_layer_num=0``) leaves a CLIP parameter trainable."""
    if name.startswith(_ALWAYS_TRAINED):
        return True
    return name.startswith("visual.transformer.resblocks.") or name.startswith("transformer.resblocks.")


def set_backbone_trainable(clip: CLIP, *, trainable: bool, freeze: str = "authors") -> None:
    for name, p in clip.named_parameters():
        p.requires_grad_(trainable and (freeze == "none" or authors_trainable(name)))


def convert_to_fp16(clip: CLIP) -> None:
    """The authors' ``convert_weights``: Linear, Conv, attention weights and both projections in fp16.

    LayerNorms, embeddings and ``logit_scale`` stay fp32, as in OpenAI's CLIP. Forward passes then run under
    ``torch.autocast(float16)`` (see :func:`clip_autocast`).
    """
    from open_clip.model import convert_weights_to_lp

    convert_weights_to_lp(clip, dtype=torch.float16)


def clip_autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """fp16 autocast for the CLIP forward in ``reference`` mode (and the fp16 cache); a no-op otherwise.

    Deviation, documented: the authors' fp16 forward keeps the residual stream in fp16; autocast keeps it in
    fp32 between the fp16 matrix products.
    """
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


@cache
def clip_tokenizer() -> Any:
    """open_clip's CLIP BPE tokenizer (lower-cased, ftfy and whitespace cleaning)."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def tokenize(texts: list[str], max_words: int = 32) -> torch.Tensor:
    """``[N, max_words]`` token ids: SOT + at most ``max_words - 2`` BPE tokens + EOT, padded with 0.

    open_clip truncates to the context and puts EOT last, which is exactly the authors' loader.
    """
    if not texts:
        return torch.zeros((0, max_words), dtype=torch.long)
    return clip_tokenizer()(list(texts), context_length=max_words)


def token_mask(ids: torch.Tensor) -> torch.Tensor:
    """1 from SOT through EOT (the authors' ``input_mask``); EOT is the largest id of each row."""
    eot = ids.argmax(dim=-1, keepdim=True)
    return (torch.arange(ids.shape[1], device=ids.device)[None, :] <= eot).long()
