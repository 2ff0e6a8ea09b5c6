"""Pivotal tuning (PTI §3.2) and joint tuning of latent and generator (the paper's ablations E/F).

Pivotal tuning freezes the pivot latents and tunes the generator so that G(pivot) matches the
target under lpips_weight * LPIPS + l2_weight * MSE, noise mode 'const', Adam, optionally with
the locality regulariser. The generator passed in is never modified: a copy is tuned and returned.

One loop, `tune_batch`, tunes K generators at once, each exactly as it would be tuned alone: problem k
is a generator tuned for its N images (the mean of their losses; N > 1 is multi-ID), its weights are
row k of stacked tensors and its Adam sees only its own loss (pti_lab/batching). `tune` is one problem.

Early stop: a generator stops once every one of its images' LPIPS is at or below `lpips_threshold`.
The official 0.06 was calibrated on 1024 px FFHQ; 'auto' takes the generator's own measured value
(`G.tuning_lpips_threshold`, set for the shipped synthfaces generator) and else 0.06; null never stops.

Only the targets are checked as images: the generator's renders enter the losses as they come, so
a generator whose raw output overshoots [-1, 1] (as official networks do) tunes all the same.
"""

import copy
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from pti_lab.batching.problems import Problems
from pti_lab.batching.stacked import StackedAdam, StackedSynthesis
from pti_lab.errors import BadInputError, NonFiniteLossError, PTILabError
from pti_lab.imaging import check_images
from pti_lab.models.stylegan2 import Generator
from pti_lab.precision import autocast_context, check_autocast
from pti_lab.progress import StepProgress
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
    latent_lr: Optional[float] = None  # Adam learning rate of the latents; None: the pivots stay fixed

    def __init__(
        self,
        steps: int = 350,                 # maximum optimisation steps
        lr: float = 3e-4,                 # Adam learning rate of the generator
        lpips_weight: float = 1.0,        # weight of LPIPS(G(pivot), target)
        l2_weight: float = 1.0,           # weight of MSE(G(pivot), target)
        lpips_threshold: float | str | None = "auto",  # stop once every image's LPIPS is <= this; null: never;
                                          # 'auto': the generator's calibrated value, else the official 0.06
        noise_mode: str = "const",        # generator noise while tuning
        params: str = r"^synthesis\.",    # regex over parameter names: which parameters are tuned
        seed: int = 0,                    # seed of the locality regulariser's samples
        autocast: Optional[str] = None,   # None: float32; 'bf16': forward passes in bfloat16 (pti_lab/precision.py)
        progress: bool = True,            # progress bar on a terminal, a few log lines elsewhere (pti_lab/progress.py)
    ):
        where = type(self).__name__
        if isinstance(lpips_threshold, str) and lpips_threshold != "auto":
            raise BadInputError(f"{where}: lpips_threshold must be a number, 'auto' or null, got {lpips_threshold!r}")
        self.steps, self.lr = steps, lr
        self.lpips_weight, self.l2_weight, self.lpips_threshold = lpips_weight, l2_weight, lpips_threshold
        self.noise_mode, self.params = noise_mode, params
        check_autocast(autocast, where)
        self.seed, self.autocast, self.progress = seed, autocast, progress

    def one_step(self) -> "PivotalTuner":
        """A copy that takes one step, quietly and without early stop (what the batch memory probe runs)."""
        probe = copy.copy(self)
        probe.steps, probe.lpips_threshold, probe.progress = 1, None, False
        return probe

    def trainable(self, G: Generator) -> list[str]:
        """Names, inside G.synthesis, of the parameters that are tuned (those outside it never reach an image)."""
        pattern = re.compile(self.params)
        chosen = [name.removeprefix("synthesis.") for name, _ in G.named_parameters()
                  if pattern.search(name) and name.startswith("synthesis.")]
        if not chosen:
            raise BadInputError(f"tuner.params={self.params!r} matches no parameter of the synthesis network")
        return chosen

    def early_stop(self, G: Generator) -> Optional[float]:
        """The LPIPS threshold in force for G (see the module's docstring); None: no early stop."""
        if self.lpips_threshold == "auto":
            return getattr(G, "tuning_lpips_threshold", OFFICIAL_LPIPS_THRESHOLD)
        return self.lpips_threshold

    def start_latents(self, pivots: torch.Tensor) -> torch.Tensor:
        """The latents [K, N, L, w_dim] the loop starts from: the pivots themselves [K, N, num_ws, w_dim]."""
        return pivots.detach()

    def render_latents(self, latents: torch.Tensor, G: Generator) -> torch.Tensor:
        """The ws [..., num_ws, w_dim] rendered from the latents."""
        return latents

    def tune(
        self,
        G: Generator,                     # the generator to start from (left unchanged)
        targets: torch.Tensor,            # [N, C, R, R] images in [-1, 1]
        pivots: torch.Tensor,             # [N, num_ws, w_dim]
        perceptual: torch.nn.Module,      # LPIPS network (alex in PTI)
        regularizer: Optional[LocalityRegularizer] = None,
        on_step: Optional[StepCallback] = None,  # called after every step (losses, renders)
    ) -> Tuning:
        """One generator tuned for the N images (multi-ID when N > 1): `tune_batch` of one problem."""
        (result,) = self.tune_batch(G, [targets], [pivots], perceptual, regularizer, [on_step])
        if isinstance(result, PTILabError):
            raise result
        return result

    def check(self, G: Generator, targets: torch.Tensor, pivots: torch.Tensor) -> None:
        """Raise BadInputError unless targets [N, C, R, R] and pivots [N, num_ws, w_dim] fit G."""
        where = type(self).__name__
        check_images(targets, "targets", where)
        N = len(targets)
        if tuple(targets.shape[1:]) != (G.img_channels, G.img_resolution, G.img_resolution) or \
                tuple(pivots.shape) != (N, G.num_ws, G.w_dim):
            raise BadInputError(f"{where}: targets {list(targets.shape)} or pivots {list(pivots.shape)} do not fit "
                                f"the generator ({G.img_resolution} px, {G.num_ws} ws of {G.w_dim})")

    def tune_batch(
        self,
        G: Generator,                          # the generator every problem starts from (left unchanged)
        targets: Sequence[torch.Tensor],       # K problems' images [N, C, R, R] in [-1, 1] (the same N for all)
        pivots: Sequence[torch.Tensor],        # their pivots [N, num_ws, w_dim]
        perceptual: torch.nn.Module,           # LPIPS network (alex in PTI)
        regularizer: Optional[LocalityRegularizer] = None,
        on_steps: Optional[Sequence[Optional[StepCallback]]] = None,  # per problem, called after its steps
    ) -> list[Tuning | PTILabError]:
        """K generators tuned in one pass, generator k for problem k alone. Returns one Tuning per problem,
        or in its place the error that failed it (a bad target, a non-finite loss): the others go on.
        `seconds` of each is the wall time / K."""
        where = type(self).__name__
        K = len(targets)
        problems = Problems(list(zip(targets, pivots)), lambda pair: self.check(G, *pair), on_steps)
        if not problems:
            return problems.results
        assert len({len(targets[k]) for k in problems.live}) == 1, "every problem of a batch has the same number of images"
        start = time.perf_counter()
        synthesis = StackedSynthesis(G, self.trainable(G))
        latents = self.start_latents(torch.stack([pivots[k] for k in problems.live]))  # [K, N, L, w_dim]
        groups, lrs = [synthesis.initial(len(problems))], [self.lr]
        if self.latent_lr is not None:  # joint tuning: the latents are optimised too, at their own rate
            groups.append({"latent": latents})
            lrs.append(self.latent_lr)
        optimizer = StackedAdam(groups, lrs)
        target_batch = torch.stack([targets[k] for k in problems.live])  # [K, N, C, R, R]
        lpips_to_targets = perceptual_distance(perceptual, target_batch.flatten(0, 1))
        threshold = self.early_stop(G)
        rngs = [torch.Generator().manual_seed(self.seed) for _ in problems.live]  # each problem's locality samples

        def current_latents() -> torch.Tensor:
            return optimizer[1]["latent"] if self.latent_lr is not None else latents

        def finish(rows: list[int], stopped_early: bool) -> None:
            """These rows' generators and latents as they are now (before this step's update) are their results."""
            for row in rows:
                k = problems.live[row]
                problems.results[k] = Tuning(synthesis.generator(optimizer[0], row),
                                             self.render_latents(current_latents()[row], G).detach().clone(),
                                             len(problems.losses[k]), stopped_early, 0.0, problems.losses[k])

        with StepProgress(self.steps, f"{where} x{K}" if K > 1 else where, enabled=self.progress) as progress:
            for step in progress:
                ws = self.render_latents(current_latents(), G)  # [K, N, num_ws, w_dim]
                with autocast_context(self.autocast, target_batch.device):
                    images = synthesis.render(optimizer[0], ws, self.noise_mode)  # [K, N, C, R, R]
                    lpips = lpips_to_targets(images.flatten(0, 1)).float().reshape(images.shape[:2])  # [K, N]
                mse = (images - target_batch).square().flatten(2).mean(2)  # [K, N]
                # Early stop: a generator whose every image reached the threshold is done as it is.
                done = [] if threshold is None else [row for row, reached in enumerate((lpips <= threshold).all(1).tolist()) if reached]
                per_image = self.lpips_weight * lpips + self.l2_weight * mse  # [K, N]
                loss, parts = per_image.mean(1), {}  # [K]: a multi-ID generator minimises its images' mean loss
                if regularizer is not None and regularizer.applies(step):
                    # A row that stops now draws nothing from its own stream (as alone); its term is not used.
                    streams = [rng if row not in done else torch.Generator() for row, rng in enumerate(rngs)]
                    with autocast_context(self.autocast, target_batch.device):
                        locality, parts["locality_lpips"], parts["locality_mse"] = regularizer.loss(
                            G, lambda w_r: synthesis.render(optimizer[0], w_r, regularizer.noise_mode), ws, perceptual, streams)
                    loss = loss + locality.float()

                failed = problems.report(step, {"loss": loss, "lpips": lpips.mean(1), "mse": mse.mean(1), **parts}, images,
                                         lambda row, losses: non_finite_loss(where, per_image[row], losses["loss"], step),
                                         skip=done)
                progress.show(lpips=lpips.mean())
                finish(done, stopped_early=True)
                kept = [row for row in range(len(problems)) if row not in done and row not in failed]
                if kept:
                    optimizer.step(loss[kept].sum())  # the sum: each row's Adam sees only its own loss's gradient
                if len(kept) < len(problems):  # rows that stopped or failed are dropped
                    rows = problems.keep(kept, target_batch.device)
                    optimizer.keep(rows)
                    latents, target_batch, rngs = latents[rows], target_batch[rows], [rngs[row] for row in kept]
                    lpips_to_targets = perceptual_distance(perceptual, target_batch.flatten(0, 1))
                if not problems:
                    break
        finish(list(range(len(problems))), stopped_early=False)
        seconds = (time.perf_counter() - start) / K
        for result in problems.results:
            if isinstance(result, Tuning):
                result.seconds = seconds
        return problems.results


def non_finite_loss(where: str, per_image: torch.Tensor, loss: float, step: int) -> NonFiniteLossError:
    """The error of a generator whose loss turned non-finite, naming which of its N images (multi-ID tuning
    goes on without them: pti_lab/driver.py); none named: the locality term."""
    bad = (~torch.isfinite(per_image)).nonzero().flatten().tolist()
    which = f" for image {', '.join(map(str, bad))} of {len(per_image)}" if bad and len(per_image) > 1 else ""
    return NonFiniteLossError(f"{where}: loss is {loss} at step {step}{which}", images=tuple(bad))


def perceptual_distance(perceptual: torch.nn.Module, targets: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """images [N, C, R, R] -> LPIPS(images, targets) per image [N], the targets' features computed once here,
    not at every step."""
    with torch.no_grad():
        target_features = perceptual.feature_maps_unchecked(targets)
    return lambda images: perceptual.distance(perceptual.feature_maps_unchecked(images), target_features).flatten()


class JointTuner(PivotalTuner):
    """Optimise the latent and the generator together (ablations E and F).

    The latent stays in W (one w per image, broadcast to all layers) unless space='w_plus'.
    """

    def __init__(self, w_lr: float = 0.01, space: str = "w", **kwargs):
        # w_lr: Adam learning rate of the latent (the projector's initial rate);
        # space: 'w' (one w per image) or 'w_plus' (one w per layer).
        super().__init__(**kwargs)
        assert space in ("w", "w_plus"), f"tuner.space must be 'w' or 'w_plus', got {space!r}"
        self.latent_lr, self.space = w_lr, space

    def start_latents(self, pivots: torch.Tensor) -> torch.Tensor:
        return pivots[..., :1, :] if self.space == "w" else pivots  # [K, N, 1 or num_ws, w_dim]

    def render_latents(self, latents: torch.Tensor, G: Generator) -> torch.Tensor:
        return latents.expand(*latents.shape[:-2], G.num_ws, -1) if latents.shape[-2] == 1 else latents
