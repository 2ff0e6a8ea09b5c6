"""Finding pretrained weight files: explicit path, then caches, then download, then a clear error.

Every network that needs pretrained weights goes through `resolve_weights`, so the lookup order
and the offline message are the same everywhere: the user is told which file to put where.
"""

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Optional

from pti_lab.atomic import atomic_path
from pti_lab.errors import WeightsNotFoundError


def cache_dir() -> Path:
    """pti-lab's download cache: $PTI_LAB_CACHE, else ~/.cache/pti_lab."""
    return Path(os.environ.get("PTI_LAB_CACHE", Path.home() / ".cache" / "pti_lab"))


def torch_hub_checkpoints_dir() -> Path:
    """Where torch.hub keeps downloaded checkpoints ($TORCH_HOME/hub/checkpoints)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def is_url(path_or_url: str) -> bool:
    return str(path_or_url).startswith(("http://", "https://"))


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, timeout: float = 30.0) -> Path:
    """Download `url` to `dest` atomically."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        while block := response.read(1 << 20):
            out.write(block)
    return dest


def resolve_weights(
    what: str,
    filename: str,
    path: Optional[str] = None,
    search_dirs: Iterable[Path] = (),
    url: Optional[str] = None,
) -> Path:
    """Return a local file holding the weights described by `what`.

    what:        human name used in messages, e.g. "AlexNet (LPIPS)".
    filename:    file name looked for in each cache folder and used for downloads.
    path:        explicit file from config; when given it must exist (no fallback).
    search_dirs: cache folders tried in order before downloading.
    url:         download source, tried after the caches; saved into the first search dir
                 (or pti-lab's cache).
    """
    if path:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise WeightsNotFoundError(f"{what}: configured weights file {explicit} does not exist")
        return explicit
    dirs = [Path(d).expanduser() for d in search_dirs] or [cache_dir()]
    for folder in dirs:
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    if url:
        dest = dirs[0] / filename
        try:
            return download(url, dest)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise WeightsNotFoundError(
                f"{what}: {filename} is not cached and downloading {url} failed ({exc}); "
                f"download it elsewhere and place it at {dest}"
            ) from None
    raise WeightsNotFoundError(
        f"{what}: {filename} not found; place it at {dirs[0] / filename} or set its path in config"
    )
