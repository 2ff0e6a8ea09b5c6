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

import copy
import math
import time
from typing import Iterable, Optional, Sequence

import torch
import torch.nn.functional as F

from pti_lab.batching.problems import Problems
from pti_lab.batching.stacked import StackedAdam
from pti_lab.errors import BadInputError, NonFiniteLossError, PTILabError
from pti_lab.inversion.inverter import Inversion, Inverter, check_target
from pti_lab.inversion.w_stats import OFFICIAL_SEED, PTI_SAMPLES, cached_w_stats
from pti_lab.models.lpips import ProjectorDistance
from pti_lab.models.stylegan2 import Generator
from pti_lab.precision import autocast_context, check_autocast
from pti_lab.progress import StepProgress
from pti_lab.steps import StepCallback

ADAM_BETAS = (0.9, 0.999)
NOISE_REG_MIN_SIZE = 8  # the autocorrelation penalty stops halving a noise map at this size


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


class WInverter(Inverter):
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
        progress: bool = True,                # progress bar on a terminal, a few log lines elsewhere (pti_lab/progress.py)
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

    def one_step(self) -> "WInverter":
        probe = copy.copy(self)
        probe.steps, probe.progress = 1, False
        return probe

    def invert_batch(
        self,
        G: Generator,                        # the generator inverted (only read)
        targets: Sequence[torch.Tensor],     # K images [1, 3, R, R] in [-1, 1]
        seed: int = 0,                       # fixes each image's noise maps and w noise
        on_steps: Optional[Sequence[Optional[StepCallback]]] = None,  # per image, called after each step
        inits: Optional[Sequence[torch.Tensor]] = None,  # per image [1, num_ws, w_dim]: start there instead of
                                             # at mu_w (W: at the mean of its rows), e.g. an encoder's latent
    ) -> list[Inversion | PTILabError]:
        """Invert K targets in one batch, each exactly as it would be alone with this seed: its own noise
        maps, w noise and random stream, the same schedule, its own Adam rows (the batch loss is the sum of
        the per-image losses). Returns one Inversion per target, or in its place the error that failed it
        (a bad target, a non-finite loss): the others go on without it. `seconds` of each is the batch's
        wall time divided by K."""
        where = type(self).__name__
        problems = Problems(targets, lambda target: check_target(G, target, where), on_steps)
        if not problems:
            return problems.results
        start = time.perf_counter()
        device = next(G.parameters()).device
        stats = cached_w_stats(G, self.w_avg_samples, self.w_stats_seed, self.w_stats_disk_cache)
        distance = self.projector_distance(device)
        with torch.no_grad():
            target_features = distance.feature_maps(torch.cat([targets[k] for k in problems.live]).to(device, torch.float32))
        rngs = [torch.Generator(device).manual_seed(seed) for _ in problems.live]

        # G is only read: its weights enter detached (no gradients accumulate in G) and the optimised
        # noise maps [K, 1, H, W] replace its noise buffers [H, W] for these calls only.
        weights = {name: p.detach() for name, p in G.synthesis.named_parameters()}
        noise_shapes = {name: buf.shape for name, buf in G.synthesis.named_buffers() if name.endswith("noise_const")}
        noise = {name: torch.stack([torch.randn(shape, generator=rng, device=device) for rng in rngs])[:, None]
                 for name, shape in noise_shapes.items()}  # each image's maps drawn in the order it draws them alone
        num_latents = G.num_ws if self.per_layer else 1
        w_start = stats.mean.to(device)[:, None].repeat([len(problems), num_latents, 1])  # [K, L, w_dim]
        if inits is not None:  # each image's own start, [1, num_ws, w_dim]
            w_start = torch.cat([inits[k].detach().to(device, torch.float32) for k in problems.live])
            w_start = w_start if self.per_layer else w_start.mean(dim=1, keepdim=True)
        adam = StackedAdam([{"w": w_start, **noise}], [self.lr], ADAM_BETAS)

        def failure(row: int, losses: dict) -> NonFiniteLossError:
            return NonFiniteLossError(f"{where}: loss is {losses['loss']} at step {step + 1}/{self.steps} "
                                      f"(dist {losses['dist']}, noise_reg {losses['noise_reg']})")

        with StepProgress(self.steps, where, enabled=self.progress) as progress:
            for step in progress:
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

                failed = problems.report(step, {"loss": loss, "dist": dist, "noise_reg": reg}, synth[:, None], failure)
                progress.show(dist=dist.mean())
                kept = [row for row in range(len(problems)) if row not in failed]
                if not kept:
                    problems.keep([], device)
                    break
                adam.step(loss[kept].sum())  # a failed image's rows get no gradient and are dropped below
                with torch.no_grad():
                    for name in noise_shapes:  # each image's noise maps [1, H, W] renormalised on their own
                        buf = adam[0][name]
                        buf -= buf.mean(dim=(1, 2, 3), keepdim=True)
                        buf *= buf.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
                if failed:
                    rows = problems.keep(kept, device)
                    adam.keep(rows)
                    target_features = [f[rows] for f in target_features]
                    rngs = [rngs[row] for row in kept]

        seconds = (time.perf_counter() - start) / len(targets)
        for row, k in enumerate(problems.live):
            pivot = adam[0]["w"][row:row + 1].detach().expand(-1, G.num_ws, -1).clone()  # [1, num_ws, w_dim]
            problems.results[k] = Inversion(pivot=pivot, losses=problems.losses[k], steps=self.steps, seconds=seconds)
        return problems.results


class WPlusInverter(WInverter):
    """The same projector in W+: a separate latent per layer, each starting at mu_w."""

    per_layer = True
