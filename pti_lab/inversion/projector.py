"""W and W+ inversion: the StyleGAN2 projector with PTI's settings (image -> pivot latent).

Per step, with t = step / steps (the official schedule):
    lr      = lr0 * min(1, t / lr_rampup) * (0.5 - 0.5 cos(pi * min(1, (1 - t) / lr_rampdown)))
    w_noise = randn * w_std * initial_noise_factor * max(0, 1 - t / noise_ramp)^2
    loss    = distance(G.synthesis(w + w_noise), target) + noise_reg_weight * noise_reg(noise maps)
Adam (betas 0.9, 0.999) updates w and the per-layer noise maps; after each step every noise map is
renormalised to zero mean and unit variance. The search starts at mu_w (see w_stats.py).
W: one w broadcast to all layers. W+ (PTI's w_plus_projector): one w per layer, each starting at
mu_w and each given its own exploration noise.

Distance. The official projector and PTI compute `(f(target) - f(synth)).square().sum()` with
NVIDIA's TorchScript vgg16.pt called with `return_lpips=True`: VGG16 features in LPIPS form, whose
sum of squared differences is the LPIPS(vgg) distance (the official perceptual path length metric
uses them as such). Images larger than 256 px are area-downsampled to 256 first. We compute the
same quantity with our LPIPS(vgg) module (`ProjectorDistance`), whose weights are those of the
reference `lpips` package v0.1; vgg16.pt holds NVIDIA's conversion of the same network, so the
numbers can differ slightly from the official ones.

Noise maps. The official code overwrites the noise buffers of a deep copy of G with fresh Gaussian
noise and optimises them. Here fresh maps are drawn from the seeded generator and passed to
G.synthesis in place of its buffers (torch.func.functional_call), so G is never copied or written:
PTI's tuning later renders the pivot with G's own noise_const, and so do the metrics.

Batches: `invert_batch` inverts K images in one batch (batch_size=K), each with its own noise maps,
random stream and Adam rows, so that each pivot is the one `invert` gives for that image alone.

Determinism: a seed gives the same pivot bit for bit on the CPU; on CUDA only under
torch.use_deterministic_algorithms(True) (cuDNN's default backward kernels add in varying order).
"""

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pti_lab.errors import BadInputError, NonFiniteLossError, PTILabError
from pti_lab.imaging import check_images, describe
from pti_lab.inversion.w_stats import OFFICIAL_SEED, PTI_SAMPLES, cached_w_stats
from pti_lab.models.lpips import ProjectorDistance
from pti_lab.models.stylegan2 import Generator
from pti_lab.precision import autocast_context, check_autocast
from pti_lab.stacked import StackedAdam, accepted
from pti_lab.steps import StepCallback

ADAM_BETAS = (0.9, 0.999)
NOISE_REG_MIN_SIZE = 8  # the autocorrelation penalty stops halving a noise map at this size


@dataclass
class Inversion:
    pivot: torch.Tensor  # [1, num_ws, w_dim] latent whose image under G approximates the target (detached)
    losses: list[dict[str, float]] = field(default_factory=list)  # per step: 'loss', 'dist', 'noise_reg'
    steps: int = 0       # optimisation steps run
    seconds: float = 0.0  # wall time of the inversion, W statistics included


def check_target(G: Generator, target: torch.Tensor, where: str) -> None:
    """Raise BadInputError unless target is one RGB image [1, 3, R, R] in [-1, 1] at G's resolution."""
    check_images(target, "target", where)
    expected = [1, 3, G.img_resolution, G.img_resolution]
    if list(target.shape) != expected:
        raise BadInputError(f"{where}: target is {describe(target)}; expected {expected} "
                            f"(one image at the generator's {G.img_resolution} px resolution)")


def noise_regularization(noise_maps: Iterable[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation of each noise map at shifts of one pixel, summed over a pyramid of 2x
    downsamplings: zero for white noise, so the maps cannot learn to carry image structure.
    Maps [H, W] give a scalar; maps [K, 1, H, W] (one per image of a batch) give one value per image [K]."""
    reg = torch.zeros([])
    for noise in noise_maps:
        batched = noise.ndim == 4
        noise = noise if batched else noise[None, None]  # [K, 1, H, W] for avg_pool2d
        while True:
            reg = reg + (noise * noise.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            reg = reg + (noise * noise.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if noise.shape[2] <= NOISE_REG_MIN_SIZE:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
        if not batched:
            reg = reg.squeeze(0)
    return reg


def ramped_learning_rate(t: float, lr: float, rampup: float, rampdown: float) -> float:
    """The StyleGAN2 projector's schedule (also StyleCLIP's): linear warm-up over the first `rampup`
    of the steps, cosine decay over the last `rampdown`; t = step / steps in [0, 1)."""
    down = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / rampdown))
    return lr * down * min(1.0, t / rampup)


class WInverter:
    """Optimise one w (broadcast to all layers) and the noise maps so that G renders the target."""

    per_layer = False  # W+ (WPlusInverter): one latent per layer

    def __init__(
        self,
        steps: int = 450,                     # optimisation steps (PTI's first_inv_steps)
        lr: float = 0.01,                     # peak learning rate (PTI's first_inv_lr; StyleGAN2: 0.1)
        lr_rampup: float = 0.05,              # fraction of the steps of linear lr warm-up
        lr_rampdown: float = 0.25,            # fraction of the steps of cosine lr decay at the end
        noise_ramp: float = 0.75,             # fraction of the steps after which the w noise is zero
        initial_noise_factor: float = 0.05,   # w noise at step 0, in units of w_std
        noise_reg_weight: float = 1e5,        # weight of the noise-map autocorrelation penalty
        w_avg_samples: int = PTI_SAMPLES,     # mapped z samples behind mu_w and w_std (StyleGAN2: 10000)
        w_stats_seed: int = OFFICIAL_SEED,    # RandomState seed of those samples
        w_stats_disk_cache: bool = True,      # keep W statistics in <cache_dir>/w_stats across runs
        weights_path: Optional[str] = None,   # VGG16 backbone file for the distance; None: search
        heads_path: Optional[str] = None,     # LPIPS v0.1 VGG heads file; None: search
        distance_upsample: bool = False,      # VGG16 sees images under 256 px upsampled to 256 (official: as rendered)
        autocast: Optional[str] = None,       # None: float32; 'bf16': forward passes in bfloat16 (pti_lab/precision.py)
        progress: bool = True,                # progress bar over the steps (only on a terminal)
    ):
        where = type(self).__name__
        if steps < 0 or lr <= 0:
            raise BadInputError(f"{where}: need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
        if min(lr_rampup, lr_rampdown, noise_ramp) <= 0:
            raise BadInputError(f"{where}: lr_rampup, lr_rampdown and noise_ramp must be > 0 (fractions "
                                f"of the steps), got {lr_rampup}, {lr_rampdown}, {noise_ramp}")
        if w_avg_samples < 2:
            raise BadInputError(f"{where}: w_avg_samples must be >= 2, got {w_avg_samples}")
        self.steps, self.lr = steps, lr
        self.lr_rampup, self.lr_rampdown = lr_rampup, lr_rampdown
        self.noise_ramp, self.initial_noise_factor = noise_ramp, initial_noise_factor
        self.noise_reg_weight = noise_reg_weight
        self.w_avg_samples, self.w_stats_seed, self.w_stats_disk_cache = w_avg_samples, w_stats_seed, w_stats_disk_cache
        check_autocast(autocast, where)
        self.weights_path, self.heads_path, self.distance_upsample = weights_path, heads_path, distance_upsample
        self.autocast, self.progress = autocast, progress
        self._distance: Optional[ProjectorDistance] = None

    def projector_distance(self, device: torch.device) -> ProjectorDistance:
        # Built on first use, so that configs can be composed and checked without reading VGG16.
        if self._distance is None:
            self._distance = ProjectorDistance(self.weights_path, self.heads_path, upsample=self.distance_upsample)
        return self._distance.to(device)

    def learning_rate(self, t: float) -> float:
        """Learning rate at progress t = step / steps in [0, 1)."""
        return ramped_learning_rate(t, self.lr, self.lr_rampup, self.lr_rampdown)

    def invert(self, G: Generator, target: torch.Tensor, seed: int = 0,
               on_step: Optional[StepCallback] = None, init: Optional[torch.Tensor] = None) -> Inversion:
        """Invert `target` [1, 3, R, R] in [-1, 1]; `seed` fixes the noise maps and the w noise;
        `on_step` is called after every step with its losses and render; `init` [1, num_ws, w_dim]
        starts the search there instead of at mu_w (W: at the mean of its rows), e.g. an encoder's latent."""
        result = self.invert_batch(G, [target], seed, [on_step], None if init is None else [init])[0]
        if isinstance(result, PTILabError):
            raise result
        return result

    def invert_batch(self, G: Generator, targets: Sequence[torch.Tensor], seed: int = 0,
                     on_steps: Optional[Sequence[Optional[StepCallback]]] = None,
                     inits: Optional[Sequence[torch.Tensor]] = None) -> list[Inversion | PTILabError]:
        """Invert K targets ([1, 3, R, R] each) in one batch, each exactly as `invert` would alone with
        this seed: its own noise maps, w noise and random stream, the same schedule, its own Adam rows
        (the batch loss is the sum of the per-image losses). Returns one Inversion per target, or in its
        place the error that failed it (a bad target, a non-finite loss): the others go on without it.
        `seconds` of each is the batch's wall time divided by K."""
        where = type(self).__name__
        on_steps = list(on_steps) if on_steps is not None else [None] * len(targets)
        # live: indices into targets of the images still optimised, in row order
        results, live = accepted(targets, lambda target: check_target(G, target, where))
        if not live:
            return results
        start = time.perf_counter()
        device = next(G.parameters()).device
        stats = cached_w_stats(G, self.w_avg_samples, self.w_stats_seed, self.w_stats_disk_cache)
        distance = self.projector_distance(device)
        with torch.no_grad():
            target_features = distance.feature_maps(torch.cat([targets[k] for k in live]).to(device, torch.float32))
        rngs = [torch.Generator(device).manual_seed(seed) for _ in live]

        # G is only read: its weights enter detached (no gradients accumulate in G) and the optimised
        # noise maps [K, 1, H, W] replace its noise buffers [H, W] for these calls only.
        weights = {name: p.detach() for name, p in G.synthesis.named_parameters()}
        noise_shapes = {name: buf.shape for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")}
        noise = {name: torch.stack([torch.randn(shape, generator=rng, device=device) for rng in rngs])[:, None]
                 for name, shape in noise_shapes.items()}  # each image's maps drawn in the order it draws them alone
        num_latents = G.num_ws if self.per_layer else 1
        w_start = stats.mean.to(device)[:, None].repeat([len(live), num_latents, 1])  # [K, L, w_dim]
        if inits is not None:  # each image's own start, [1, num_ws, w_dim]
            w_start = torch.cat([inits[k].detach().to(device, torch.float32) for k in live])
            w_start = w_start if self.per_layer else w_start.mean(dim=1, keepdim=True)
        adam = StackedAdam([{"w": w_start, **noise}], [self.lr], ADAM_BETAS)

        losses: dict[int, list] = {k: [] for k in live}
        bar = tqdm(range(self.steps), desc=where, leave=False, disable=not (self.progress and sys.stderr.isatty()))
        for step in bar:
            t = step / self.steps
            adam.set_lr(self.learning_rate(t))
            # Exploration noise on w, annealed to zero: early steps search a neighbourhood of mu_w.
            w_noise_scale = stats.std * self.initial_noise_factor * max(0.0, 1.0 - t / self.noise_ramp) ** 2
            w_noise = torch.cat([torch.randn([1, num_latents, G.w_dim], generator=rng, device=device) for rng in rngs])
            params = adam[0]
            ws = (params["w"] + w_noise * w_noise_scale).expand(-1, G.num_ws, -1)  # [K, num_ws, w_dim]
            maps = {name: params[name] for name in noise_shapes}
            with autocast_context(self.autocast, device):
                # Unfused modulation: with G's weights frozen, the backward pass then needs one convolution
                # per layer (the input gradient) instead of two (input and per-sample weight); same image.
                synth = torch.func.functional_call(G.synthesis, {**weights, **maps}, (ws,),
                                                   {"noise_mode": "const", "fused_modconv": False})
                dist = distance.distance(distance.feature_maps_unchecked(synth), target_features).float()  # [K]
            reg = noise_regularization(maps.values()).expand_as(dist)  # [K]
            loss = dist + self.noise_reg_weight * reg  # [K]

            failed = []
            for row, (value, dist_value, reg_value) in enumerate(torch.stack([loss, dist, reg], 1).tolist()):
                k, record = live[row], {"loss": value, "dist": dist_value, "noise_reg": reg_value}
                if not math.isfinite(value):
                    results[k] = NonFiniteLossError(f"{where}: loss is {value} at step {step + 1}/{self.steps} "
                                                    f"(dist {dist_value}, noise_reg {reg_value})")
                    failed.append(row)
                    continue
                losses[k].append(record)
                if on_steps[k] is not None:
                    on_steps[k](step, record, synth[row:row + 1].detach())
            if not bar.disable:
                bar.set_postfix(dist=f"{dist.mean().item():.4f}", refresh=False)

            kept = [row for row in range(len(live)) if row not in failed]
            if not kept:
                live = []
                break
            adam.step(loss[kept].sum())  # a failed image's rows get no gradient and are dropped below
            with torch.no_grad():
                for name in noise_shapes:  # each image's noise maps [1, H, W] renormalised on their own
                    buf = adam[0][name]
                    buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
                    buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
            if failed:
                rows = torch.tensor(kept, device=device)
                adam.keep(rows)
                target_features = [f[rows] for f in target_features]
                rngs = [rngs[row] for row in kept]
                live = [live[row] for row in kept]

        seconds = (time.perf_counter() - start) / len(results)
        for row, k in enumerate(live):
            pivot = adam[0]["w"][row:row + 1].detach().expand(-1, G.num_ws, -1).clone()  # [1, num_ws, w_dim]
            results[k] = Inversion(pivot=pivot, losses=losses[k], steps=self.steps, seconds=seconds)
        return results


class WPlusInverter(WInverter):
    """The same projector in W+: a separate latent per layer, each starting at mu_w."""

    per_layer = True
