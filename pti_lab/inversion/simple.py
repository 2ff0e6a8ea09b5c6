"""Pivots without optimisation, for the paper's ablation (Fig. 16): the mean latent and a random one."""

import time
from typing import Optional, Sequence

import torch

from pti_lab.batching.stacked import accepted
from pti_lab.errors import PTILabError
from pti_lab.inversion.inverter import Inversion, Inverter, check_target
from pti_lab.inversion.w_stats import OFFICIAL_SEED, PTI_SAMPLES, cached_w_stats
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback


class MeanInverter(Inverter):
    """Pivot = mu_w, the mean of W from the projector's statistics, for every image (ablations C, E)."""

    def __init__(
        self,
        w_avg_samples: int = PTI_SAMPLES,    # mapped z samples behind mu_w (same as the W inverter's)
        w_stats_seed: int = OFFICIAL_SEED,   # RandomState seed of those samples
        w_stats_disk_cache: bool = True,     # keep W statistics in <cache_dir>/w_stats across runs
        steps: int = 0,                      # no optimisation; accepted so `inverter.steps=N` sweeps every ablation
    ):
        self.w_avg_samples, self.w_stats_seed, self.w_stats_disk_cache = w_avg_samples, w_stats_seed, w_stats_disk_cache

    def invert_batch(self, G: Generator, targets: Sequence[torch.Tensor], seed: int = 0,
                     on_steps: Optional[Sequence[Optional[StepCallback]]] = None) -> list[Inversion | PTILabError]:
        """mu_w broadcast to [1, num_ws, w_dim] for each target; the targets are only checked; `seed` and
        `on_steps` are not used (nothing is optimised)."""
        results, live = accepted(targets, lambda target: check_target(G, target, type(self).__name__))
        start = time.perf_counter()
        stats = cached_w_stats(G, self.w_avg_samples, self.w_stats_seed, self.w_stats_disk_cache)
        device = next(G.parameters()).device
        pivot = stats.mean.to(device)[:, None].repeat([1, G.num_ws, 1])  # [1, num_ws, w_dim]
        seconds = (time.perf_counter() - start) / len(targets)
        for k in live:
            results[k] = Inversion(pivot=pivot.clone(), steps=0, seconds=seconds)
        return results


class RandomInverter(Inverter):
    """Pivot = f(z) for a z drawn from `seed`, whatever the image (ablations D, F)."""

    def __init__(
        self,
        truncation_psi: float = 1.0,  # truncation towards G.mapping.w_avg (1 = none)
        steps: int = 0,               # no optimisation; accepted so `inverter.steps=N` sweeps every ablation
    ):
        self.truncation_psi = truncation_psi

    def invert_batch(self, G: Generator, targets: Sequence[torch.Tensor], seed: int = 0,
                     on_steps: Optional[Sequence[Optional[StepCallback]]] = None) -> list[Inversion | PTILabError]:
        """G.mapping(z) [1, num_ws, w_dim] with z ~ N(0, I) from a CPU generator seeded with `seed`
        (device-independent), the same for each target; `on_steps` is not used (nothing is optimised)."""
        results, live = accepted(targets, lambda target: check_target(G, target, type(self).__name__))
        start = time.perf_counter()
        device = next(G.parameters()).device
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
        with torch.no_grad():
            pivot = G.mapping(z, None, truncation_psi=self.truncation_psi, skip_w_avg_update=True)
        seconds = (time.perf_counter() - start) / len(targets)
        for k in live:
            results[k] = Inversion(pivot=pivot.clone(), steps=0, seconds=seconds)
        return results
