"""open_clip loading with an exact model identity, and a fail-fast answer when weights are not on the machine.

Users name any open_clip config and pretrained tag, or a local checkpoint (how RemoteCLIP, GeoRSCLIP and other
remote-sensing CLIPs ship). Before anything is loaded, the weights are looked up where open_clip would find them
(the Hugging Face cache, open_clip's URL cache): when they are not there and the machine is offline, the user gets
one message naming the file and where to put it, at once, instead of open_clip's long retry loop. Checkpoints are
read with ``torch.load(weights_only=True)``, never as arbitrary pickles.

Every embedding carries a `ModelIdentity`: config name, a hash of the resolved config, and the tag or the
checkpoint's sha256, so embeddings from different weights are never mixed.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np

from dvtr_data.errors import ModelError, UsageError
from dvtr_data.hashing import sha256_file
from dvtr_data.precaption.sampling import FrameGeometry
from dvtr_data.reporting import quiet_root_warnings

PRECISIONS = ("fp32", "fp16", "bf16", "amp", "amp_bf16")
RANDOM_WEIGHTS = ("none", "random")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for. ``pretrained=None`` (or "none") means seeded random weights: tests and benchmarks."""

    model: str = "ViT-B-32"
    pretrained: str | None = "laion2b_s34b_b79k"
    checkpoint: Path | None = None
    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0
    cache_dir: Path | None = None  # open_clip's cache of URL downloads; HF weights use the HF cache

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if not self.model or not self.model.strip():
            raise UsageError("--model must name an open_clip config, e.g. ViT-B-32")
        if self.seed < 0:  # as every command's --seed (split's generator refuses negatives)
            raise UsageError(f"--seed must be >= 0; got {self.seed}")


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights made an embedding. ``name`` goes into every table row; ``key`` names files."""

    arch: str  # open_clip config name, e.g. "ViT-B-32"
    weights: str  # pretrained tag | "ckpt-<sha256[:16]>" | "random-s<seed>"
    config_hash: str  # sha256[:16] of the resolved model config (with forced overrides)
    checkpoint_sha256: str | None
    precision: str
    embed_dim: int

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.weights}"

    @property
    def key(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.arch}__{self.weights}").strip("_")


class Encoder(Protocol):
    """What the stage needs from a model: normalised image and text embeddings, and how to shape frames."""

    identity: ModelIdentity
    geometry: FrameGeometry
    logit_scale: float

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``(B, H, W, 3)`` already at ``geometry.size`` -> float32 ``(B, D)``, unit length."""
        ...

    def encode_texts(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Texts -> float32 ``(N, D)``, unit length, in input order."""
        ...


# ----------------------------------------------------------------------------------------------------------------
# finding weights without the network
# ----------------------------------------------------------------------------------------------------------------
def offline() -> bool:
    return any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "DVTR_OFFLINE"))


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` (name lookup included, in a thread)."""
    ok = [False]

    def attempt() -> None:
        with contextlib.suppress(OSError):
            socket.create_connection((host, port), timeout=timeout).close()
            ok[0] = True

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return ok[0]


def hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # huggingface_hub missing or changed: name the usual place
        return os.path.expanduser("~/.cache/huggingface/hub")


def _hf_cached(repo_id: str, filename: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename)
    return found if isinstance(found, str) and os.path.isfile(found) else None


@dataclass(frozen=True)
class _Where:
    """Where a tag's weights live or would be downloaded to."""

    hf_repo: str | None
    hf_files: tuple[str, ...]
    url: str | None
    url_target: str | None

    def describe(self) -> str:
        places = []
        if self.hf_repo:
            places.append(f"{self.hf_files[-1]} from the Hugging Face repo {self.hf_repo} into the Hugging Face cache "
                          f"(HF_HUB_CACHE, now {hf_cache_dir()})")
        if self.url_target:
            places.append(f"{os.path.basename(self.url_target)} (from {self.url}) at {self.url_target}")
        return " or ".join(places)

    def hosts(self) -> list[str]:
        hosts = []
        if self.hf_repo:
            endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
            hosts.append(urlparse(endpoint).hostname or "huggingface.co")
        if self.url:
            hosts.append(urlparse(self.url).hostname or "")
        return [h for h in hosts if h]


def _where(cfg: dict[str, Any], cache_dir: Path | None) -> _Where:
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    hf_repo, hf_files = None, ()
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"].rstrip("\n"))
        hf_repo = repo
        filename = filename or HF_WEIGHTS_NAME
        safe = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else (
            [filename[:-4] + ".safetensors"] if filename.endswith((".bin", ".pth")) else [])
        hf_files = (*safe, filename)
    url = cfg.get("url") or None
    target = None
    if url:
        target = os.path.join(os.fspath(cache_dir) if cache_dir else os.path.expanduser("~/.cache/clip"), os.path.basename(url))
    return _Where(hf_repo, hf_files, url, target)


def _local_weights(where: _Where) -> str | None:
    if where.hf_repo:
        for name in where.hf_files:
            if found := _hf_cached(where.hf_repo, name):
                return found
    if where.url_target and os.path.isfile(where.url_target):
        return where.url_target
    return None


def resolve_tag_weights(arch: str, tag: str, cache_dir: Path | None = None) -> tuple[str, dict[str, Any]]:
    """The local file of ``arch``/``tag`` (downloading it only when the network answers), and the tag's config.

    Raises `ModelError` at once, with where to put the file, when the weights are not here and cannot be fetched.
    """
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ModelError(
            f"{arch} has no pretrained tag {tag!r}",
            hint=(f"known tags: {', '.join(tags)}; " if tags else "open_clip knows no tags for it; ")
            + "or pass a weights file with --checkpoint PATH",
        )
    if cfg.get("file"):
        return cfg["file"], cfg
    where = _where(cfg, cache_dir)
    if found := _local_weights(where):
        return found, cfg
    hosts = where.hosts()
    how = f"put {where.describe()}, or pass the weights file with --checkpoint PATH"
    if offline():
        raise ModelError(f"weights of {arch} {tag!r} are not on this machine and it is offline (HF_HUB_OFFLINE)", hint=how)
    down = [h for h in hosts if not reachable(h)]
    if down or not hosts:
        raise ModelError(
            f"weights of {arch} {tag!r} are not on this machine and {', '.join(down) or 'no download host'} cannot be reached",
            hint=how,
        )
    from open_clip.pretrained import download_pretrained

    try:
        path = download_pretrained(cfg, cache_dir=os.fspath(cache_dir) if cache_dir else None)
    except Exception as exc:  # any download failure is one model error
        raise ModelError(f"downloading weights of {arch} {tag!r} failed: {' '.join(str(exc).split())[:300]}", hint=how) from exc
    if not path or not os.path.isfile(path):
        raise ModelError(f"downloading weights of {arch} {tag!r} produced no file", hint=how)
    return path, cfg


def _config_hash(model_cfg: dict[str, Any], overrides: dict[str, Any]) -> str:
    blob = json.dumps({"model_cfg": model_cfg, "overrides": overrides}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible to torch", hint="use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: MPS is not available", hint="use --device cpu")
    return device


# ----------------------------------------------------------------------------------------------------------------
# the open_clip encoder
# ----------------------------------------------------------------------------------------------------------------
class ClipEncoder:
    """An open_clip model in eval mode, with its identity, frame geometry and tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, identity: ModelIdentity, device: str, precision: str,
                 text_batch: int = 256) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.device = torch.device(device)
        self.precision = precision
        self.text_batch = text_batch
        pp = _preprocess_cfg(model)
        size = pp.get("size", 224)
        size = (size, size) if isinstance(size, int) else tuple(size)
        self.geometry = FrameGeometry(size=(int(size[0]), int(size[1])), resize_mode=pp.get("resize_mode", "shortest"),
                                      fill=int(pp.get("fill_color", 0) or 0))
        mean = torch.tensor(pp.get("mean", (0.48145466, 0.4578275, 0.40821073)), dtype=torch.float32)
        std = torch.tensor(pp.get("std", (0.26862954, 0.26130258, 0.27577711)), dtype=torch.float32)
        # uint8 -> normalised float in one multiply-add: x * scale + shift
        self._scale = (1.0 / (255.0 * std)).view(1, 3, 1, 1).to(self.device)
        self._shift = (-mean / std).view(1, 3, 1, 1).to(self.device)
        self._input_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
        self.logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
        self._trim: bool | None = None

    @property
    def trim_text(self) -> bool:
        """Whether texts may skip their padding (checked once, on first use: a run with cached banks never pays)."""
        if self._trim is None:
            self._trim = _can_trim_text(self)
        return self._trim

    @trim_text.setter
    def trim_text(self, value: bool) -> None:
        self._trim = value

    def _autocast(self):
        import torch

        if self.precision in ("amp", "amp_bf16"):
            dtype = torch.bfloat16 if self.precision == "amp_bf16" else torch.float16
            return torch.autocast(device_type=self.device.type, dtype=dtype)
        return contextlib.nullcontext()

    def frames_to_input(self, frames: np.ndarray):
        """uint8 ``(B, H, W, 3)`` -> the normalised ``(B, 3, H, W)`` tensor on the device."""
        import torch

        array = np.ascontiguousarray(frames)
        if not array.flags.writeable:  # read-only frames (from Ray's object store): torch wants its own buffer
            array = array.copy()
        x = torch.from_numpy(array)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()
        x = torch.addcmul(self._shift, x, self._scale)
        return x.to(self._input_dtype)

    def encode_input(self, x) -> np.ndarray:
        """The bare model on a prepared input tensor (what the benchmark times as the model alone)."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode(), self._autocast():
            feats = self.model.encode_image(x)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    def encode_frames(self, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = self.frames_to_input(frames)
        return self.encode_input(x)

    def encode_texts(self, texts: Sequence[str], progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        n = len(texts)
        out = np.zeros((n, self.identity.embed_dim), np.float32)
        if not n:
            return out
        tokens = self.tokenizer(list(texts))
        order: np.ndarray = np.arange(n)
        if self.trim_text:
            # sort by length so each batch trims to its own longest caption
            lengths = tokens.argmax(dim=-1).numpy()
            order = np.argsort(lengths, kind="stable")
        done = 0
        for start in range(0, n, self.text_batch):
            idx = order[start:start + self.text_batch]
            batch = tokens[torch.from_numpy(idx)]
            with torch.inference_mode(), self._autocast():
                if self.trim_text:
                    feats = _encode_text_trimmed(self.model, batch.to(self.device))
                else:
                    feats = self.model.encode_text(batch.to(self.device))
            out[idx] = F.normalize(feats.float(), dim=-1).cpu().numpy()
            done += len(idx)
            if progress:
                progress(done, n)
        return out


def _preprocess_cfg(model: Any) -> dict[str, Any]:
    from open_clip.model import get_model_preprocess_cfg

    return dict(get_model_preprocess_cfg(model) or {})


def _encode_text_trimmed(model: Any, text):
    """CLIP's text tower on tokens cut after the longest caption's end token.

    With a causal mask and end-token pooling, positions after the end token cannot change the pooled feature, so
    cutting the padding gives the same embedding at a fraction of the cost (captions are ~15 of 77 tokens).
    """
    from open_clip.transformer import text_global_pool

    length = int(text.argmax(dim=-1).max().item()) + 1
    text = text[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if hasattr(model.text_projection, "weight") else x @ model.text_projection
    return x


def _can_trim_text(enc: ClipEncoder) -> bool:
    """Trim only standard CLIP text towers (causal mask, end-token pooling), and only if a self-check agrees."""
    import torch
    from open_clip.model import CLIP

    m = enc.model
    if not isinstance(m, CLIP) or getattr(m, "attn_mask", None) is None or getattr(m, "text_pool_type", "") != "argmax":
        return False
    try:
        probe = enc.tokenizer(["a drone flies over a port", "cars are parked along a narrow street in the evening"]).to(enc.device)
        with torch.inference_mode(), enc._autocast():
            full = m.encode_text(probe).float()
            cut = _encode_text_trimmed(m, probe).float()
        return bool(torch.allclose(full, cut, rtol=1e-3, atol=1e-3 * float(full.abs().max())))
    except Exception:  # a model that differs from what the shortcut assumes: use the plain path
        return False


@dataclass(frozen=True)
class EncoderPlan:
    """Everything about a model that is known before it is built: checked, resolved, identified.

    Planning is cheap (no weights are read, except hashing a checkpoint file), so the stage knows which clips need
    embedding, and at which frame geometry, while the model is still loading.
    """

    spec: ModelSpec
    arch: str
    device: str
    weights_file: str | None
    overrides: dict[str, Any]
    identity: ModelIdentity
    geometry: FrameGeometry  # what open_clip's preprocessing will ask for (checked after building)


def plan_encoder(spec: ModelSpec) -> EncoderPlan:
    """Check the request and find the weights; raise `ModelError`/`UsageError` at once with what to do."""
    spec.check()
    import open_clip

    device = _pick_device(spec.device)
    if spec.precision == "fp16" and device == "cpu":
        raise UsageError("--precision fp16 is not supported on the CPU", hint="use fp32 or bf16")
    arch = spec.model.strip()
    if arch.startswith(("hf-hub:", "local-dir:")):
        raise UsageError(
            f"--model {arch}: hub and folder schemas are not supported",
            hint="name a built-in config (open_clip.list_models()) and pass the weights with --checkpoint PATH",
        )
    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        raise ModelError(f"open_clip has no model config {arch!r}", hint=f"did you mean {', '.join(close)}?" if close
                         else "see open_clip.list_models()")

    pretrained = (spec.pretrained or "").strip() or None
    if pretrained and pretrained.lower() in RANDOM_WEIGHTS:
        pretrained = None
    overrides: dict[str, Any] = {}
    checkpoint_sha = None
    weights_file: str | None = None
    if spec.checkpoint is not None:
        path = Path(spec.checkpoint).expanduser()
        if not path.is_file():
            raise ModelError(f"checkpoint {path} does not exist or is not a file")
        weights_file = str(path)
        checkpoint_sha = sha256_file(path)
        weights = f"ckpt-{checkpoint_sha[:16]}"
    elif pretrained:
        weights_file, tag_cfg = resolve_tag_weights(arch, pretrained, spec.cache_dir)
        weights = pretrained
        overrides["force_preprocess_cfg"] = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode")
                                             if tag_cfg.get(k) is not None}
        if tag_cfg.get("quick_gelu") and not model_cfg.get("quick_gelu"):
            overrides["force_quick_gelu"] = True  # the weights were trained with QuickGELU
    else:
        weights = f"random-s{spec.seed}"
    resolved_cfg = dict(model_cfg, quick_gelu=bool(model_cfg.get("quick_gelu") or overrides.get("force_quick_gelu")))
    identity = ModelIdentity(
        arch=arch,
        weights=weights,
        config_hash=_config_hash(resolved_cfg, overrides.get("force_preprocess_cfg", {})),
        checkpoint_sha256=checkpoint_sha,
        precision=spec.precision,
        embed_dim=int(model_cfg["embed_dim"]),
    )
    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    geometry = FrameGeometry((int(size[0]), int(size[1])),
                             overrides.get("force_preprocess_cfg", {}).get("resize_mode", "shortest"))
    return EncoderPlan(spec, arch, device, weights_file, overrides, identity, geometry)


def build_planned_encoder(spec: ModelSpec) -> ClipEncoder:
    """Plan and build in one call: what a Ray model actor runs, so that it can start before the driver plans."""
    return build_encoder(plan_encoder(spec))


def build_encoder(plan: EncoderPlan) -> ClipEncoder:
    """Create the model of a plan (the slow part: weights are read or initialised)."""
    import open_clip
    import torch

    spec, arch, weights_file = plan.spec, plan.arch, plan.weights_file
    open_clip_precision = "fp32" if spec.precision.startswith("amp") else spec.precision
    try:
        with torch.random.fork_rng(devices=[]), quiet_root_warnings():
            torch.manual_seed(spec.seed)  # random weights are reproducible, so their identity is honest
            model = open_clip.create_model(
                arch, pretrained=weights_file, precision=open_clip_precision, device=plan.device,
                cache_dir=os.fspath(spec.cache_dir) if spec.cache_dir else None, weights_only=True, **plan.overrides,
            )
    except ModelError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "weights_only" in text.lower() or "unpickl" in text.lower():
            # PyTorch's own message advises loading with weights_only=False, which would run the file's payload:
            # never repeated (issue 11, item 13)
            raise ModelError(f"checkpoint unreadable: {weights_file}: refused to load: the file holds more than "
                             "tensors (other objects), and loading it could run code",
                             hint="export a plain state_dict (torch.save(model.state_dict(), path))") from None
        if weights_file:
            raise ModelError(f"{weights_file}: these weights do not fit model config {arch} ({text[:240]})",
                             hint="pass the --model the weights were trained with") from exc
        raise ModelError(f"cannot build {arch} with weights {plan.identity.weights}: {text[:300]}") from exc
    model.eval()
    try:
        tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:
        raise ModelError(f"cannot load the tokenizer of {arch}: {' '.join(str(exc).split())[:300]}",
                         hint="its tokenizer must be in the Hugging Face cache when offline") from exc
    return ClipEncoder(model, tokenizer, plan.identity, plan.device, spec.precision)


def load_encoder(spec: ModelSpec) -> ClipEncoder:
    """Plan and build the encoder the user named."""
    return build_encoder(plan_encoder(spec))
