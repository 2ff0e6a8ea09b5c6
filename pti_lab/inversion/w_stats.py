"""Statistics of W: the mean latent and the spread of mapped samples, computed once per generator.

The StyleGAN2 projector starts at the mean of W and scales its exploration noise by the spread of W.
Both come from `num_samples` z drawn with NumPy's RandomState(seed) and mapped without truncation,
exactly as the official code draws them (RandomState(123)); PTI maps 600 samples (its
`project(..., w_avg_samples=600)`), the stock StyleGAN2 projector 10 000.

The official code recomputes these for every image. Here they are cached by a fingerprint of the
mapping network's weights, the sample count and the seed: in memory for the process, and on disk
under `<cache_dir>/w_stats/<fingerprint>.pt` for later processes.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from pti_lab.atomic import save_torch
from pti_lab.errors import BadInputError
from pti_lab.models.fingerprint import tensors_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.safe_pickle import load_weights_only
from pti_lab.weights import cache_dir

log = logging.getLogger(__name__)

PTI_SAMPLES = 600     # PTI's w_avg_samples
OFFICIAL_SEED = 123   # the official projector's np.random.RandomState(123)
VERSION = "w_stats-v1"  # part of the fingerprint: bump when the computation changes


@dataclass(frozen=True)
class WStats:
    mean: torch.Tensor  # [1, w_dim] float32 on the CPU: the mean latent mu_w
    std: float          # sqrt(mean ||w - mu_w||^2): the official scalar spread (not per dimension)
    num_samples: int    # mapped z samples behind the statistics
    seed: int           # RandomState seed of the z samples


# fingerprint -> statistics, for this process.
MEMORY_CACHE: dict[str, WStats] = {}


def fingerprint(G: Generator, num_samples: int, seed: int, version: str = VERSION) -> str:
    """Cache key of statistics of G's mapped samples: the mapping network's parameters, num_samples,
    seed and the version of the computation (other statistics of mapped samples, e.g. GANSpace's PCA,
    pass theirs)."""
    header = f"{version} z_dim={G.z_dim} n={num_samples} seed={seed}"
    return tensors_fingerprint(dict(G.mapping.named_parameters()), header, algorithm="sha1")


def compute_w_stats(G: Generator, num_samples: int, seed: int) -> WStats:
    """Map `num_samples` seeded z and return their mean and spread (no caching)."""
    if G.c_dim > 0:
        raise BadInputError(f"w_stats: the generator is conditional (c_dim={G.c_dim}); W statistics "
                            f"need unconditional samples")
    device = next(G.parameters()).device
    z = torch.from_numpy(np.random.RandomState(seed).randn(num_samples, G.z_dim)).to(device)
    with torch.no_grad():
        # skip_w_avg_update: a generator left in training mode must not move its tracked w_avg.
        w = G.mapping(z, None, skip_w_avg_update=True)[:, 0].double()  # [N, w_dim]
    mean = w.mean(dim=0, keepdim=True)  # [1, w_dim]
    std = ((w - mean).square().sum() / num_samples).sqrt().item()
    return WStats(mean=mean.float().cpu(), std=std, num_samples=num_samples, seed=seed)


def cached_w_stats(
    G: Generator,
    num_samples: int = PTI_SAMPLES,  # mapped z samples
    seed: int = OFFICIAL_SEED,       # RandomState seed of the z samples
    disk_cache: bool = True,         # also read and write <cache_dir>/w_stats/<fingerprint>.pt
) -> WStats:
    """W statistics of G, from the memory cache, the disk cache, or computed (and then cached)."""
    key = fingerprint(G, num_samples, seed)
    if key in MEMORY_CACHE:
        return MEMORY_CACHE[key]
    path = cache_dir() / "w_stats" / f"{key}.pt" if disk_cache else None
    stats = read_cached(path) if path is not None and path.is_file() else None
    if stats is None:
        stats = compute_w_stats(G, num_samples, seed)
        if path is not None:
            save_torch({"mean": stats.mean, "std": stats.std, "num_samples": num_samples, "seed": seed}, path)
    MEMORY_CACHE[key] = stats
    return stats


def read_cached(path: Path) -> Optional[WStats]:
    """The statistics stored at `path`, or None (with a warning) when the file cannot be read."""
    try:
        data = load_weights_only(path)
        return WStats(mean=data["mean"].float(), std=float(data["std"]),
                      num_samples=int(data["num_samples"]), seed=int(data["seed"]))
    except Exception as error:  # a damaged cache file is recomputed and overwritten, never fatal
        log.warning("w_stats: ignoring unreadable cache file %s (%s: %s)", path, type(error).__name__, error)
        return None
