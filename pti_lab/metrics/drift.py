"""How much tuning changed the generator away from the tuned images (the paper's Fig. 15 measure)."""

from typing import Optional

import torch

from pti_lab.imaging import resize_square
from pti_lab.metrics.image import lpips, mse
from pti_lab.models.stylegan2 import Generator


@torch.no_grad()
def locality_drift(
    original: Generator,            # the generator before tuning
    tuned: Generator,               # the tuned generator
    eval_size: Optional[int] = None,  # both renders resized to this (px) before LPIPS and MSE; None: as rendered
    count: int = 64,                # seeded random latents compared
    seed: int = 0,                  # seed of their z
    truncation_psi: float = 1.0,    # truncation of the random latents
    batch: int = 16,                # latents rendered at once
) -> dict:
    """Mean LPIPS (AlexNet) and MSE between original(w) and tuned(w) over `count` random latents w = f(z),
    measured at `eval_size` as the reconstruction metrics are."""
    device = next(original.parameters()).device
    z = torch.randn([count, original.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    lpips_sum = mse_sum = 0.0
    for chunk in z.split(batch):
        ws = original.mapping(chunk, None, truncation_psi=truncation_psi)
        before = resize_square(original.synthesis(ws, noise_mode="const").clamp(-1, 1), eval_size)
        after = resize_square(tuned.synthesis(ws, noise_mode="const").clamp(-1, 1), eval_size)
        lpips_sum += lpips(before, after).sum().item()
        mse_sum += mse(before, after).sum().item()
    return {"lpips": lpips_sum / count, "mse": mse_sum / count, "latents": count, "eval_size": before.shape[-1]}
