"""Pivotal tuning (PTI §3.2) and joint tuning of latent and generator (the paper's ablations E/F).

Pivotal tuning freezes the pivot latents and tunes the generator so that G(pivot) matches the
target under lpips_weight * LPIPS + l2_weight * MSE, noise mode 'const', Adam, optionally with
the locality regulariser. The generator passed in is never modified: a copy is tuned and returned.
Several images at once (multi-ID) minimise the mean of the per-image losses.

Early stop: tuning stops once every image's LPIPS is at or below `lpips_threshold`. The official
0.06 was calibrated on 1024 px FFHQ; a generator may carry its own measured value
(`G.tuning_lpips_threshold`, set for the shipped synthfaces generator), used when the threshold is
left unset (None). 0 never stops early.

Only the targets are checked as images: the generator's renders enter the losses as they come, so
a generator whose raw output overshoots [-1, 1] (as official networks do) tunes all the same.
"""

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pti_lab.errors import BadInputError, NonFiniteLossError
from pti_lab.imaging import check_images
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback
from pti_lab.tuning.locality_regularizer import LocalityRegularizer

OFFICIAL_LPIPS_THRESHOLD = 0.06  # PTI's early stop (LPIPS_value_threshold), calibrated on 1024 px FFHQ


@dataclass
class Tuning:
    generator: Generator                         # the tuned copy (eval mode, frozen)
    pivots: torch.Tensor                         # [N, num_ws, w_dim] latents it was tuned at
    steps: int                                   # optimisation steps taken
    stopped_early: bool                          # reached the LPIPS threshold before `steps`
    seconds: float
    losses: list[dict] = field(default_factory=list)  # per step: loss, lpips, mse (+ locality parts)


class PivotalTuner:
    def __init__(
        self,
        steps: int = 350,                 # maximum optimisation steps
        lr: float = 3e-4,                 # Adam learning rate of the generator
        lpips_weight: float = 1.0,        # weight of LPIPS(G(pivot), target)
        l2_weight: float = 1.0,           # weight of MSE(G(pivot), target)
        lpips_threshold: Optional[float] = None,  # stop once every image's LPIPS is <= this; 0 = never;
                                          # None = the generator's calibrated value, else the official 0.06
        noise_mode: str = "const",        # generator noise while tuning
        params: str = r"^synthesis\.",    # regex over parameter names: which parameters are tuned
        seed: int = 0,                    # seed of the locality regulariser's samples
        progress: bool = True,            # show a progress bar
    ):
        self.steps, self.lr = steps, lr
        self.lpips_weight, self.l2_weight, self.lpips_threshold = lpips_weight, l2_weight, lpips_threshold
        self.noise_mode, self.params = noise_mode, params
        self.seed, self.progress = seed, progress

    def trainable(self, G: Generator) -> list[torch.nn.Parameter]:
        pattern = re.compile(self.params)
        chosen = [p for name, p in G.named_parameters() if pattern.search(name)]
        if not chosen:
            raise BadInputError(f"tuner.params={self.params!r} matches no generator parameter")
        return chosen

    def early_stop(self, G: Generator) -> float:
        """The LPIPS threshold in force for G (see the module's docstring)."""
        if self.lpips_threshold is not None:
            return self.lpips_threshold
        return getattr(G, "tuning_lpips_threshold", OFFICIAL_LPIPS_THRESHOLD)

    def latents(self, pivots: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """The latents rendered at each step and extra optimiser groups: fixed pivots here."""
        return pivots.detach(), []

    def tune(
        self,
        G: Generator,                     # the generator to start from (left unchanged)
        targets: torch.Tensor,            # [N, C, R, R] images in [-1, 1]
        pivots: torch.Tensor,             # [N, num_ws, w_dim]
        perceptual: torch.nn.Module,      # LPIPS network (alex in PTI)
        regularizer: Optional[LocalityRegularizer] = None,
        on_step: Optional[StepCallback] = None,  # called after every step (losses, renders)
    ) -> Tuning:
        check_images(targets, "targets", type(self).__name__)
        N = targets.shape[0]
        assert targets.shape[2:] == (G.img_resolution, G.img_resolution), "targets must match the generator"
        assert pivots.shape == (N, G.num_ws, G.w_dim), f"pivots must be [{N}, {G.num_ws}, {G.w_dim}]"
        start = time.perf_counter()
        tuned = copy.deepcopy(G).requires_grad_(False)
        params = self.trainable(tuned)
        for p in params:
            p.requires_grad_(True)
        latents, extra_groups = self.latents(pivots)
        optimizer = torch.optim.Adam([{"params": params, "lr": self.lr}, *extra_groups])
        rng = torch.Generator().manual_seed(self.seed)

        losses, stopped_early = [], False
        threshold = self.early_stop(G)
        bar = tqdm(range(self.steps), desc=type(self).__name__, disable=not self.progress, leave=False)
        for step in bar:
            images = tuned.synthesis(self.render_latents(latents, G), noise_mode=self.noise_mode)
            lpips = perceptual.forward_unchecked(images, targets).reshape(N)  # per image
            mse = F.mse_loss(images, targets, reduction="none").flatten(1).mean(1)  # per image
            if threshold > 0 and bool((lpips <= threshold).all()):
                stopped_early = True
                break
            loss = (self.lpips_weight * lpips + self.l2_weight * mse).mean()
            record = {"loss": loss.item(), "lpips": lpips.mean().item(), "mse": mse.mean().item()}
            if regularizer is not None and regularizer.applies(step):
                locality, parts = regularizer.loss(G, tuned, self.render_latents(latents, G), perceptual, rng)
                loss = loss + locality
                record.update(parts, loss=loss.item())
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"{type(self).__name__}: loss is {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(record)
            if on_step is not None:
                on_step(step, record, images.detach())
            bar.set_postfix(lpips=f"{record['lpips']:.3f}")
        bar.close()

        tuned.requires_grad_(False).eval()
        return Tuning(tuned, self.render_latents(latents, G).detach(), len(losses), stopped_early,
                      time.perf_counter() - start, losses)

    def render_latents(self, latents: torch.Tensor, G: Generator) -> torch.Tensor:
        return latents


class JointTuner(PivotalTuner):
    """Optimise the latent and the generator together (ablations E and F).

    The latent stays in W (one w per image, broadcast to all layers) unless space='w_plus'.
    """

    def __init__(self, w_lr: float = 0.01, space: str = "w", **kwargs):
        # w_lr: Adam learning rate of the latent (the projector's initial rate);
        # space: 'w' (one w per image) or 'w_plus' (one w per layer).
        super().__init__(**kwargs)
        assert space in ("w", "w_plus"), f"tuner.space must be 'w' or 'w_plus', got {space!r}"
        self.w_lr, self.space = w_lr, space

    def early_stop(self, G: Generator) -> float:
        """The LPIPS threshold in force for G (see the module's docstring)."""
        if self.lpips_threshold is not None:
            return self.lpips_threshold
        return getattr(G, "tuning_lpips_threshold", OFFICIAL_LPIPS_THRESHOLD)

    def latents(self, pivots: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        start = pivots[:, :1] if self.space == "w" else pivots  # [N, 1 or num_ws, w_dim]
        latent = start.detach().clone().requires_grad_(True)
        return latent, [{"params": [latent], "lr": self.w_lr}]

    def render_latents(self, latents: torch.Tensor, G: Generator) -> torch.Tensor:
        return latents.expand(-1, G.num_ws, -1) if latents.shape[1] == 1 else latents


class NoTuner:
    """tuner=none: nothing is tuned and the run reports the inversion. It takes the tuners' step and
    stopping options, unused, so that `tuner.steps=N` applies to every method of a sweep (as the
    mean and random inverters take `steps`)."""

    def __init__(
        self,
        steps: int = 0,                           # unused
        lr: Optional[float] = None,               # unused
        lpips_threshold: Optional[float] = None,  # unused
        progress: bool = True,                    # unused
    ):
        pass
