"""Pivots without optimisation, for the paper's ablation (Fig. 16): the mean latent and a random one."""

import time
from typing import Optional

import torch

from pti_lab.inversion.projector import Inversion, check_target
from pti_lab.inversion.w_stats import OFFICIAL_SEED, PTI_SAMPLES, cached_w_stats
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback


class MeanInverter:
    """Pivot = mu_w, the mean of W from the projector's statistics, for every image (ablations C, E)."""

    def __init__(
        self,
        w_avg_samples: int = PTI_SAMPLES,    # mapped z samples behind mu_w (same as the W inverter's)
        w_stats_seed: int = OFFICIAL_SEED,   # RandomState seed of those samples
        w_stats_disk_cache: bool = True,     # keep W statistics in <cache_dir>/w_stats across runs
        steps: int = 0,                      # no optimisation; accepted so `inverter.steps=N` sweeps every ablation
    ):
        self.w_avg_samples, self.w_stats_seed, self.w_stats_disk_cache = w_avg_samples, w_stats_seed, w_stats_disk_cache

    def invert(self, G: Generator, target: torch.Tensor, seed: int = 0,
               on_step: Optional[StepCallback] = None) -> Inversion:
        """mu_w broadcast to [1, num_ws, w_dim]; the target is only checked; `seed` and
        `on_step` are not used (nothing is optimised)."""
        check_target(G, target, type(self).__name__)
        start = time.perf_counter()
        stats = cached_w_stats(G, self.w_avg_samples, self.w_stats_seed, self.w_stats_disk_cache)
        device = next(G.parameters()).device
        pivot = stats.mean.to(device)[:, None].repeat([1, G.num_ws, 1])  # [1, num_ws, w_dim]
        return Inversion(pivot=pivot, steps=0, seconds=time.perf_counter() - start)


class RandomInverter:
    """Pivot = f(z) for a z drawn from `seed`, whatever the image (ablations D, F)."""

    def __init__(
        self,
        truncation_psi: float = 1.0,  # truncation towards G.mapping.w_avg (1 = none)
        steps: int = 0,               # no optimisation; accepted so `inverter.steps=N` sweeps every ablation
    ):
        self.truncation_psi = truncation_psi

    def invert(self, G: Generator, target: torch.Tensor, seed: int = 0,
               on_step: Optional[StepCallback] = None) -> Inversion:
        """G.mapping(z) with z ~ N(0, I) from a CPU generator seeded with `seed` (device-independent);
        `on_step` is not used (nothing is optimised)."""
        check_target(G, target, type(self).__name__)
        start = time.perf_counter()
        device = next(G.parameters()).device
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
        with torch.no_grad():
            pivot = G.mapping(z, None, truncation_psi=self.truncation_psi, skip_w_avg_update=True)  # [1, num_ws, w_dim]
        return Inversion(pivot=pivot, steps=0, seconds=time.perf_counter() - start)
