"""Latent directions in the file formats users have, checked against the generator.

    load_direction('smile', w_dim=256)                          # a shipped synthfaces boundary, by name
    load_direction('editings/interfacegan_directions/age.pt', 512)   # PTI's InterfaceGAN [1, 512] tensor
    load_direction('boundaries/stylegan2_ffhq_w/boundary_Smiling.npy', 512)   # InterfaceGAN (1, 512)
    load_pca('editings/ganspace_pca/ffhq_pca.pt', 512)          # GANSpace dict: mean, comp, std

A path may also be an http(s) URL: the file is looked up in <cache_dir>/directions first and
downloaded only when absent. Files are read without executing code (`torch.load(weights_only=True)`,
`np.load(allow_pickle=False)`). Every failure is one line naming the file and the problem.

Shipped boundaries (`pti_lab/synthfaces/weights/boundaries.pt`, written by
`python -m pti_lab.train.fit_boundaries`) are a dict {'kind': 'interfacegan-boundaries',
'generator_sha256', 'boundaries': {name: [w_dim]}, 'metrics': {...}}; any such file can be named by
`boundaries=` and its entries then by name.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import numpy as np
import torch

from pti_lab.errors import BadInputError, CheckpointError
from pti_lab.safe_pickle import load_weights_only
from pti_lab.synthfaces import shipped
from pti_lab.weights import cache_dir, is_url, resolve_weights

log = logging.getLogger(__name__)

BOUNDARIES_FILE = "boundaries.pt"          # shipped synthfaces InterfaceGAN boundaries
BOUNDARIES_KIND = "interfacegan-boundaries"
DIRECTION_SUFFIXES = (".pt", ".pth", ".npy")


@dataclass(frozen=True)
class PCA:
    """GANSpace's principal components of W (the official ffhq_pca.pt layout, flattened)."""
    mean: torch.Tensor        # [w_dim] mean latent of the samples
    components: torch.Tensor  # [K, w_dim] unit principal directions, largest variance first
    std: torch.Tensor         # [K] standard deviation of the samples along each component

    def to_official(self) -> dict:
        """The dict PTI / e4e / GANSpace save: mean [1, w_dim], comp [K, 1, w_dim], std [K]."""
        return {"mean": self.mean[None].clone(), "comp": self.components[:, None].clone(), "std": self.std.clone()}


def local_file(path_or_url: str, what: str) -> Path:
    """A readable local file for a path or an http(s) URL (cache first, then download)."""
    if is_url(path_or_url):
        filename = Path(urlparse(path_or_url).path).name or "direction.pt"
        return resolve_weights(what, filename, search_dirs=[cache_dir() / "directions"], url=path_or_url)
    file = Path(path_or_url).expanduser()
    if not file.is_file():
        raise BadInputError(f"{what}: {file} does not exist")
    return file


def read_file(file: Path, what: str):
    """The object stored in a .npy / .pt / .pth file, read without executing code."""
    try:
        if file.suffix == ".npy":
            return torch.from_numpy(np.load(file, allow_pickle=False))
        return load_weights_only(file)
    except Exception as exc:  # numpy and torch raise many types for corrupt or hostile files
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{file}: cannot read {what} ({first_line})") from None


def as_vector(value, w_dim: int, where: str) -> torch.Tensor:
    """A direction tensor of any of the usual shapes ([w_dim], [1, w_dim], [1, 1, w_dim]) -> float32 [w_dim]."""
    if not isinstance(value, torch.Tensor):
        raise CheckpointError(f"{where}: expected a tensor or array, found {type(value).__name__}")
    if value.ndim == 0 or value.numel() != value.shape[-1]:  # only leading singleton axes allowed
        raise CheckpointError(f"{where}: a direction has shape [1, w_dim]; found {list(value.shape)}")
    vector = value.reshape(-1).float()
    if len(vector) != w_dim:
        raise BadInputError(f"{where}: direction has {len(vector)} dimensions but the generator's W has "
                            f"{w_dim}; it was made for another generator")
    if not torch.isfinite(vector).all() or vector.norm() == 0:
        raise CheckpointError(f"{where}: direction is zero or not finite")
    return vector


def read_boundaries(path: Optional[str] = None) -> dict:
    """A boundaries file (None: the shipped synthfaces one): {'boundaries': {name: tensor}, ...}."""
    file = local_file(path, "boundaries") if path else shipped.path_of(BOUNDARIES_FILE)
    data = read_file(file, "InterfaceGAN boundaries")
    if not isinstance(data, dict) or data.get("kind") != BOUNDARIES_KIND or not isinstance(data.get("boundaries"), dict):
        raise CheckpointError(f"{file}: not an InterfaceGAN boundaries file (written by "
                              f"python -m pti_lab.train.fit_boundaries)")
    return data


def boundary_names(path: Optional[str] = None) -> list:
    """Names of the boundaries in a boundaries file (None: the shipped synthfaces ones)."""
    return sorted(read_boundaries(path)["boundaries"])


def is_file_reference(direction: str) -> bool:
    """Whether `direction` names a file or URL rather than an entry of a boundaries file."""
    return is_url(direction) or Path(direction).suffix in DIRECTION_SUFFIXES or "/" in direction


def load_direction(
    direction: str,                      # entry name of the boundaries file, or a .pt/.pth/.npy path or URL
    w_dim: int,                          # the generator's W dimension, checked
    boundaries: Optional[str] = None,    # boundaries file for names (None: the shipped synthfaces file)
    normalize: bool = True,              # scale to unit length, as InterfaceGAN does
) -> torch.Tensor:
    """One direction in W as float32 [w_dim]."""
    if is_file_reference(direction):
        file = local_file(direction, "direction")
        value = read_file(file, "direction")
        if isinstance(value, dict):
            raise CheckpointError(f"{file}: holds a dict ({', '.join(map(str, value))}), not a single direction; "
                                  f"a GANSpace PCA file goes to editor=ganspace editor.pca=...")
        vector = as_vector(value, w_dim, str(file))
    else:
        data = read_boundaries(boundaries)
        if direction not in data["boundaries"]:
            known = ", ".join(sorted(data["boundaries"]))
            raise BadInputError(f"direction {direction!r} is unknown; available: {known} (or give a .pt/.npy file)")
        vector = as_vector(data["boundaries"][direction], w_dim, f"{boundaries or BOUNDARIES_FILE}[{direction!r}]")
    return vector / vector.norm() if normalize else vector


def load_pca(path_or_url: str, w_dim: int) -> PCA:
    """A GANSpace PCA file (dict with mean [1, w_dim], comp [K, 1, w_dim], std [K])."""
    file = local_file(path_or_url, "GANSpace PCA")
    data = read_file(file, "GANSpace PCA")
    if not isinstance(data, dict) or not {"mean", "comp", "std"} <= set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{file}: a GANSpace PCA file is a dict with mean, comp and std; found {found}")
    mean, comp, std = (data[key] for key in ("mean", "comp", "std"))
    if not all(isinstance(t, torch.Tensor) for t in (mean, comp, std)):
        raise CheckpointError(f"{file}: mean, comp and std must be tensors")
    components = comp.reshape(comp.shape[0], -1).float()  # [K, 1, w_dim] -> [K, w_dim]
    if components.shape[1] != w_dim or mean.numel() != w_dim:
        raise BadInputError(f"{file}: PCA of a {components.shape[1]}-dimensional W, but the generator's W has {w_dim}")
    if std.reshape(-1).shape[0] != components.shape[0]:
        raise CheckpointError(f"{file}: {components.shape[0]} components but {std.numel()} std values")
    return PCA(mean=mean.reshape(-1).float(), components=components, std=std.reshape(-1).float())
