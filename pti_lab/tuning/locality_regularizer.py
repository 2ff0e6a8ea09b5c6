"""Locality regularisation (PTI §3.3): keep the tuned generator unchanged away from the pivot.

Each application samples z, maps it with the original generator (truncation psi), moves from the
pivot a fixed distance alpha towards that latent,

    w_r = w_p + alpha * (w_z - w_p) / ||w_z - w_p||      (norm over all num_ws x w_dim entries,
                                                          as the official code computes it)

and penalises lpips_weight * LPIPS + l2_weight * MSE between the original and the tuned
generator's images of w_r (noise mode 'none', as the official code).
"""

from typing import Callable, Optional, Sequence

import torch

from pti_lab.models.stylegan2 import Generator


class LocalityRegularizer:
    def __init__(
        self,
        alpha: float = 30.0,            # distance moved from the pivot towards the sampled latent
        truncation_psi: float = 0.5,    # truncation of the sampled latents w_z
        samples: int = 1,               # sampled latents per application
        lpips_weight: float = 0.1,      # weight of LPIPS(original, tuned) at w_r
        l2_weight: float = 0.1,         # weight of MSE(original, tuned) at w_r
        weight: float = 1.0,            # weight of the whole term in the tuning loss
        interval: int = 1,              # apply every `interval` tuning steps
        noise_mode: str = "none",       # noise of both generators at w_r
    ):
        assert samples >= 1 and interval >= 1 and alpha > 0
        self.alpha, self.truncation_psi, self.samples = alpha, truncation_psi, samples
        self.lpips_weight, self.l2_weight, self.weight = lpips_weight, l2_weight, weight
        self.interval, self.noise_mode = interval, noise_mode

    def applies(self, step: int) -> bool:
        return step % self.interval == 0

    def move_towards(self, pivot: torch.Tensor, w_z: torch.Tensor) -> torch.Tensor:
        """w_p + alpha * (w_z - w_p) / ||w_z - w_p||, per sample. pivot [1, L, D], w_z [S, L, D]."""
        direction = w_z - pivot
        norm = direction.flatten(1).norm(dim=1).clamp_min(1e-8).reshape(-1, 1, 1)
        return pivot + self.alpha * direction / norm

    def sample(self, original: Generator, pivot: torch.Tensor, rng: Optional[torch.Generator]) -> torch.Tensor:
        """The latents w_r [samples, num_ws, w_dim] around one pivot [1, num_ws, w_dim]."""
        z = torch.randn([self.samples, original.z_dim], generator=rng).to(pivot.device)
        with torch.no_grad():
            w_z = original.mapping(z, None, truncation_psi=self.truncation_psi)
            return self.move_towards(pivot.detach(), w_z)

    def terms(self, before: torch.Tensor, after: torch.Tensor,
              perceptual: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """(LPIPS, MSE) between the images [P, S, C, R, R] of P generators' w_r, one value per generator [P]."""
        P = before.shape[0]
        zero = before.new_zeros([P])
        lpips = (perceptual.forward_unchecked(before.flatten(0, 1), after.flatten(0, 1)).reshape(P, -1).mean(1)
                 if self.lpips_weight > 0 else zero)
        mse = (after - before).square().flatten(1).mean(1) if self.l2_weight > 0 else zero
        return lpips, mse

    def weighted(self, lpips: torch.Tensor, mse: torch.Tensor) -> torch.Tensor:
        return self.weight * (self.lpips_weight * lpips + self.l2_weight * mse)

    def loss(
        self,
        original: Generator,            # the generator before tuning (frozen)
        render_tuned: Callable[[torch.Tensor], torch.Tensor],  # ws [K, S, num_ws, w_dim] -> images [K, S, C, R, R],
                                        # row k rendered by tuned generator k
        pivots: torch.Tensor,           # [K, N, num_ws, w_dim]: the N pivots of generator k
        perceptual: torch.nn.Module,    # LPIPS network
        rngs: Sequence[Optional[torch.Generator]],  # generator k's source of z, drawn pivot after pivot
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each generator's locality term: (weighted loss, LPIPS, MSE), each [K], the mean over its pivots
        and their samples."""
        w_r = torch.stack([torch.cat([self.sample(original, pivot[None], rng) for pivot in problem])
                           for problem, rng in zip(pivots, rngs)])  # [K, N * samples, num_ws, w_dim]
        with torch.no_grad():
            before = original.synthesis(w_r.flatten(0, 1), noise_mode=self.noise_mode).reshape(
                *w_r.shape[:2], original.img_channels, original.img_resolution, original.img_resolution)
        lpips, mse = self.terms(before, render_tuned(w_r), perceptual)
        return self.weighted(lpips, mse), lpips, mse
