"""How much tuning changed the generator away from the tuned images (the paper's Fig. 15 measure)."""

import torch
import torch.nn.functional as F

from pti_lab.models.stylegan2 import Generator


@torch.no_grad()
def locality_drift(
    original: Generator,            # the generator before tuning
    tuned: Generator,               # the tuned generator
    perceptual: torch.nn.Module,    # LPIPS network (alex)
    count: int = 64,                # seeded random latents compared
    seed: int = 0,                  # seed of their z
    truncation_psi: float = 1.0,    # truncation of the random latents
    batch: int = 16,                # latents rendered at once
) -> dict:
    """Mean LPIPS and MSE between original(w) and tuned(w) over `count` random latents w = f(z)."""
    device = next(original.parameters()).device
    z = torch.randn([count, original.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    lpips_sum = mse_sum = 0.0
    for chunk in z.split(batch):
        ws = original.mapping(chunk, None, truncation_psi=truncation_psi)
        before = original.synthesis(ws, noise_mode="const").clamp(-1, 1)
        after = tuned.synthesis(ws, noise_mode="const").clamp(-1, 1)
        lpips_sum += perceptual(before, after).sum().item()
        mse_sum += F.mse_loss(after, before, reduction="none").flatten(1).mean(1).sum().item()
    return {"lpips": lpips_sum / count, "mse": mse_sum / count, "latents": count}
