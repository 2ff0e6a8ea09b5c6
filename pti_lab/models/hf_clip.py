"""OpenAI CLIP through Hugging Face transformers: the CLIP that StyleCLIP latent optimisation uses.

    clip = HuggingFaceCLIP("openai/clip-vit-base-patch32")          # or a directory saved with save_pretrained
    images_e = clip.encode_image(images)                            # [N, D], L2-normalised, differentiable
    texts_e = clip.encode_text(["a smiling face"])                  # [M, D], L2-normalised
    cosines = clip.similarity(images, ["a smiling face"])           # [N, M]

The interface equals the synthfaces TinyCLIP (`pti_lab.synthfaces.tiny_clip`), so either can be the
editor's `clip`. Images are prepared as the CLIP image processor prepares them, but with
differentiable tensor operations so that StyleCLIP can back-propagate through them: [-1, 1] ->
[0, 1], bicubic (antialiased) resize of the shorter side to `vision_config.image_size`, centre
crop, normalisation with the checkpoint's `image_mean` / `image_std` (`preprocessor_config.json`;
OpenAI's values when it is missing).

Loading never runs code from the checkpoint (`trust_remote_code=False`; safetensors when the
directory has them, and transformers loads `.bin` files with `weights_only`). Order: `model` as a
local directory; else the Hugging Face cache only; else a download; else WeightsNotFoundError
saying how to get the weights onto an offline machine. `transformers` is imported only here, on
construction: the rest of pti-lab does not need it.
"""

import json
import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pti_lab.errors import BadInputError, CheckpointError, WeightsNotFoundError
from pti_lab.extras import require

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP image processor defaults
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSOR_FILE = "preprocessor_config.json"
SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")


def hub_cache(cache_dir: Optional[str] = None) -> str:
    """The Hugging Face hub cache folder, read from the environment now (not at import time)."""
    if cache_dir:
        return str(Path(cache_dir).expanduser())
    if os.environ.get("HF_HUB_CACHE"):
        return str(Path(os.environ["HF_HUB_CACHE"]).expanduser())
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(xdg).expanduser() / "huggingface" / "hub")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set (read now, not at import time)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def looks_like_path(model: str) -> bool:
    """A name that can only be a directory (absolute, relative, ~, or more than one '/'), not a hub id."""
    return (model.startswith(("/", "./", "../", "~", "\\")) or model in {".", ".."}
            or model.count("/") > 1 or os.sep != "/" and os.sep in model)


def one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def image_statistics(directory: Optional[Path]) -> tuple:
    """(mean, std) from `directory`/preprocessor_config.json when it has them, else OpenAI's values."""
    mean, std = OPENAI_MEAN, OPENAI_STD
    if directory is None or not (directory / PREPROCESSOR_FILE).is_file():
        return mean, std
    try:
        config = json.loads((directory / PREPROCESSOR_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{directory / PREPROCESSOR_FILE}: not readable JSON ({one_line(exc)})") from exc
    for key, default in (("image_mean", mean), ("image_std", std)):
        value = config.get(key, default)
        if isinstance(value, (int, float)):
            value = [value] * 3
        if not (isinstance(value, (list, tuple)) and len(value) == 3
                and all(isinstance(v, (int, float)) for v in value)):
            raise CheckpointError(f"{directory / PREPROCESSOR_FILE}: {key} must be 3 numbers, got {value!r}")
        if key == "image_mean":
            mean = tuple(float(v) for v in value)
        else:
            std = tuple(float(v) for v in value)
    if min(std) <= 0:
        raise CheckpointError(f"{directory / PREPROCESSOR_FILE}: image_std must be positive, got {std}")
    return mean, std


def features(output) -> torch.Tensor:
    """get_*_features' result as a tensor: transformers < 5 returns the projected embeddings, 5.x a
    BaseModelOutputWithPooling whose pooler_output holds them (image_embeds/text_embeds if named so)."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("image_embeds", "text_embeds", "pooler_output"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and len(output) > 1 and isinstance(output[1], torch.Tensor):
        return output[1]  # return_dict=False: (last_hidden_state, pooler_output, ...)
    raise CheckpointError(f"CLIP get_*_features returned {type(output).__name__}, not embeddings")


class HuggingFaceCLIP(nn.Module):
    """A transformers CLIPModel with the TinyCLIP interface; frozen, in eval mode."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,         # a directory saved with CLIPModel.save_pretrained, or a hub name
        cache_dir: Optional[str] = None,    # Hugging Face hub cache; None: HF_HUB_CACHE / HF_HOME/hub
        device: str = "cpu",                # where the model runs
    ):
        super().__init__()
        if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
            raise BadInputError(f"HuggingFaceCLIP: model must be a directory or a hub name, got {model!r}")
        self.name = str(model)
        transformers = require("transformers", "editor/clip=openai")  # the editing extra
        self.clip, self.tokenizer, directory = self._load(transformers.CLIPModel, transformers.CLIPTokenizer,
                                                          self.name, cache_dir)
        self.clip = self.clip.float().eval().requires_grad_(False)
        self.image_size = int(self.clip.config.vision_config.image_size)
        self.max_tokens = int(self.clip.config.text_config.max_position_embeddings)
        mean, std = image_statistics(directory)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.to(device)
        self.eval()

    @staticmethod
    def _load(model_class, tokenizer_class, name: str, cache_dir: Optional[str]) -> tuple:
        """(model, tokenizer, directory holding preprocessor_config.json or None)."""
        path = Path(name).expanduser()
        safe = dict(trust_remote_code=False)
        if path.is_dir():
            if any((path / file).is_file() for file in SAFETENSORS_FILES):
                safe["use_safetensors"] = True
            try:
                model = model_class.from_pretrained(str(path), local_files_only=True, **safe)
                tokenizer = tokenizer_class.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
            except Exception as exc:  # transformers raises OSError, ValueError, KeyError, safetensors errors ...
                raise CheckpointError(f"CLIP model directory {path}: cannot load a CLIPModel and its tokenizer "
                                      f"({one_line(exc)})") from exc
            return model, tokenizer, path
        cache = hub_cache(cache_dir)
        if looks_like_path(name):
            raise WeightsNotFoundError(f"CLIP model directory {path} does not exist: set editor.clip.model to a "
                                       f"directory saved with CLIPModel.save_pretrained, or to a hub name such as "
                                       f"{DEFAULT_MODEL!r}")
        attempts = [True] if hub_offline() else [True, False]
        errors = []
        for local_only in attempts:
            try:
                model = model_class.from_pretrained(name, cache_dir=cache, local_files_only=local_only, **safe)
                tokenizer = tokenizer_class.from_pretrained(name, cache_dir=cache, local_files_only=local_only,
                                                            trust_remote_code=False)
            except Exception as exc:  # missing from the cache / offline / no such repository
                errors.append(exc)
                continue
            return model, tokenizer, HuggingFaceCLIP._preprocessor_dir(name, cache, local_only)
        why = "offline mode is set (HF_HUB_OFFLINE)" if hub_offline() else "cannot be downloaded"
        raise WeightsNotFoundError(
            f"CLIP model {name!r} is not in the Hugging Face cache ({cache}) and {why}: run `hf download {name}` "
            f"(huggingface_hub < 1.0: `huggingface-cli download {name}`) on a machine with internet and copy its "
            f"hub cache to {cache}, or set "
            f"editor.clip.model to a local directory saved with CLIPModel.save_pretrained "
            f"(last error: {one_line(errors[-1])})") from errors[-1]

    @staticmethod
    def _preprocessor_dir(name: str, cache: str, local_only: bool) -> Optional[Path]:
        """The snapshot folder holding the hub model's preprocessor_config.json, or None (OpenAI defaults)."""
        try:
            from huggingface_hub import hf_hub_download
            return Path(hf_hub_download(name, PREPROCESSOR_FILE, cache_dir=cache, local_files_only=local_only)).parent
        except Exception:  # a CLIP repository without a preprocessor config: the OpenAI statistics
            return None

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def train(self, mode: bool = True) -> "HuggingFaceCLIP":
        return super().train(False)  # frozen: always in eval mode

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> [N, 3, S, S] normalised CLIP input (S = vision image_size), differentiably."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise BadInputError(f"HuggingFaceCLIP.encode_image: expected images [N, 3, H, W], got {shape}")
        if not images.is_floating_point() or images.shape[0] == 0 or min(images.shape[2:]) < 1:
            raise BadInputError(f"HuggingFaceCLIP.encode_image: expected a non-empty float batch, got "
                                f"{images.dtype} {tuple(images.shape)}")
        x = (images.to(self.device, torch.float32) + 1) / 2
        size = self.image_size
        height, width = x.shape[2:]
        if min(height, width) != size:  # shorter side to `size`, as CLIPImageProcessor's resize
            short, long = min(height, width), max(height, width)
            long = max(size, int(size * long / short))
            target = (size, long) if height <= width else (long, size)
            try:
                x = F.interpolate(x, size=target, mode="bicubic", align_corners=False, antialias=True)
            except (RuntimeError, NotImplementedError):  # a torch / device without antialiased bicubic
                x = F.interpolate(x, size=target, mode="bicubic", align_corners=False)
        height, width = x.shape[2:]
        top, left = (height - size) // 2, (width - size) // 2  # centre crop
        x = x[:, :, top:top + size, left:left + size]
        return (x - self.mean) / self.std

    def text_ids(self, texts: list) -> dict:
        """list of M prompts -> tokenizer output (input_ids, attention_mask) on the model's device."""
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
            raise BadInputError(f"HuggingFaceCLIP.encode_text: expected a non-empty list of strings, got {texts!r}")
        for row, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise BadInputError(f"HuggingFaceCLIP.encode_text: text {row} must be a non-empty string, got {text!r}")
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens,
                                return_tensors="pt")
        return {key: tokens[key].to(self.device) for key in ("input_ids", "attention_mask") if key in tokens}

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1], any size -> [N, D], L2-normalised (differentiable in the images)."""
        output = self.clip.get_image_features(pixel_values=self.pixel_values(images))
        return F.normalize(features(output).float(), dim=1)

    def encode_text(self, texts: list) -> torch.Tensor:
        """list of M prompts -> [M, D], L2-normalised. Empty or non-string prompts raise BadInputError."""
        return F.normalize(features(self.clip.get_text_features(**self.text_ids(texts))).float(), dim=1)

    def similarity(self, images: torch.Tensor, texts: list) -> torch.Tensor:
        """Cosine similarity of every image with every text: [N, M]."""
        return self.encode_image(images) @ self.encode_text(texts).T
