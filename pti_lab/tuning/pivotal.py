"""Pivotal tuning (PTI §3.2) and joint tuning of latent and generator (the paper's ablations E/F).

Pivotal tuning freezes the pivot latents and tunes the generator so that G(pivot) matches the
target under lpips_weight * LPIPS + l2_weight * MSE, noise mode 'const', Adam, optionally with
the locality regulariser. The generator passed in is never modified: a copy is tuned and returned.
Several images at once (multi-ID) minimise the mean of the per-image losses. `tune_batch` instead
tunes K generators in one pass, one per image, each as `tune` would tune it alone (batch_size=K).

Early stop: tuning stops once every image's LPIPS is at or below `lpips_threshold`. The official
0.06 was calibrated on 1024 px FFHQ; a generator may carry its own measured value
(`G.tuning_lpips_threshold`, set for the shipped synthfaces generator), used when the threshold is
left unset (None). 0 never stops early.

Only the targets are checked as images: the generator's renders enter the losses as they come, so
a generator whose raw output overshoots [-1, 1] (as official networks do) tunes all the same.
"""

import copy
import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pti_lab.errors import BadInputError, NonFiniteLossError, PTILabError
from pti_lab.imaging import check_images
from pti_lab.models.stylegan2 import Generator
from pti_lab.precision import autocast_context, check_autocast
from pti_lab.stacked import StackedAdam, accepted, adam
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
        autocast: Optional[str] = None,   # None: float32; 'bf16': forward passes in bfloat16 (pti_lab/precision.py)
        progress: bool = True,            # show a progress bar
    ):
        self.steps, self.lr = steps, lr
        self.lpips_weight, self.l2_weight, self.lpips_threshold = lpips_weight, l2_weight, lpips_threshold
        self.noise_mode, self.params = noise_mode, params
        check_autocast(autocast, type(self).__name__)
        self.seed, self.autocast, self.progress = seed, autocast, progress

    def trainable(self, G: Generator) -> list[str]:
        """Names of the parameters of G that are tuned."""
        pattern = re.compile(self.params)
        chosen = [name for name, _ in G.named_parameters() if pattern.search(name)]
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
        params = [tuned.get_parameter(name).requires_grad_(True) for name in self.trainable(tuned)]
        latents, extra_groups = self.latents(pivots)
        optimizer = adam([{"params": params, "lr": self.lr}, *extra_groups])
        rng = torch.Generator().manual_seed(self.seed)

        losses, stopped_early = [], False
        threshold = self.early_stop(G)
        lpips_to_targets = perceptual_distance(perceptual, targets)
        bar = tqdm(range(self.steps), desc=type(self).__name__, disable=not self.progress, leave=False)
        for step in bar:
            with autocast_context(self.autocast, targets.device):
                images = tuned.synthesis(self.render_latents(latents, G), noise_mode=self.noise_mode)
                lpips = lpips_to_targets(images).float()  # per image
            mse = F.mse_loss(images, targets, reduction="none").flatten(1).mean(1)  # per image
            if threshold > 0 and bool((lpips <= threshold).all()):
                stopped_early = True
                break
            per_image = self.lpips_weight * lpips + self.l2_weight * mse
            bad = (~torch.isfinite(per_image)).nonzero().flatten().tolist()
            if bad:  # which images: multi-ID tuning goes on without them (pti_lab/driver.py)
                which = f" for image {', '.join(map(str, bad))} of {N}" if N > 1 else ""
                raise NonFiniteLossError(f"{type(self).__name__}: loss is {per_image[bad[0]].item()} at step {step}{which}",
                                         images=tuple(bad))
            loss = per_image.mean()
            record = {"loss": loss.item(), "lpips": lpips.mean().item(), "mse": mse.mean().item()}
            if regularizer is not None and regularizer.applies(step):
                with autocast_context(self.autocast, targets.device):
                    locality, parts = regularizer.loss(G, tuned, self.render_latents(latents, G), perceptual, rng)
                loss = loss + locality.float()
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

    def tune_batch(
        self,
        G: Generator,                          # the generator every image starts from (left unchanged)
        targets: Sequence[torch.Tensor],       # K images [1, C, R, R] in [-1, 1]
        pivots: Sequence[torch.Tensor],        # their pivots [1, num_ws, w_dim]
        perceptual: torch.nn.Module,           # LPIPS network (alex in PTI)
        regularizer: Optional[LocalityRegularizer] = None,
        on_steps: Optional[Sequence[Optional[StepCallback]]] = None,  # per image, called after its steps
    ) -> list[Tuning | PTILabError]:
        """K generators tuned in one pass, generator k for image k alone, each exactly as `tune(G,
        targets[k], pivots[k], ...)` would tune it: the tuned weights get a leading image dimension
        (torch.func.vmap renders each image with its own weights), the loss is the sum of the per-image
        losses so that each image's Adam rows see only its own gradient, each image stops on its own
        (early stop) and the locality regulariser samples each image's latents from its own stream.
        Returns one Tuning per image, or in its place the error that failed it (a bad target, a
        non-finite loss): the others go on without it. `seconds` of each is the wall time / K."""
        where = type(self).__name__
        K = len(targets)
        on_steps = list(on_steps) if on_steps is not None else [None] * K

        def check(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
            target, pivot = pair
            check_images(target, "targets", where)
            if target.shape != (1, G.img_channels, G.img_resolution, G.img_resolution) or \
                    pivot.shape != (1, G.num_ws, G.w_dim):
                raise BadInputError(f"{where}: target {list(target.shape)} or pivot {list(pivot.shape)} does "
                                    f"not fit the generator ({G.img_resolution} px, {G.num_ws} ws)")
        results, live = accepted(list(zip(targets, pivots)), check)  # live: the images still tuned, in row order
        if not live:
            return results
        start = time.perf_counter()
        synthesis = G.synthesis
        # Parameters outside the synthesis network never reach the images: tuning leaves them as they are.
        names = [name.removeprefix("synthesis.") for name in self.trainable(G) if name.startswith("synthesis.")]
        if not names:  # nothing rendered is tuned: no batch to vectorise
            return [self.tune_one(G, targets[k], pivots[k], perceptual, regularizer, on_steps[k]) for k in range(K)]
        shared = {name: p.detach() for name, p in synthesis.named_parameters() if name not in names}
        start_latents, extra_groups = self.latents(torch.cat([pivots[k] for k in live]))
        groups = [{name: synthesis.get_parameter(name).detach().expand(len(live), *synthesis.get_parameter(name).shape)
                   for name in names}]  # one copy of the tuned weights per image: [K, ...]
        lrs = [self.lr]
        if extra_groups:  # joint tuning: one latent row per image, at its own learning rate
            groups.append({"latent": start_latents})
            lrs.append(extra_groups[0]["lr"])
        optimizer = StackedAdam(groups, lrs)

        def render_one(weights: dict[str, torch.Tensor], ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
            return torch.func.functional_call(synthesis, {**shared, **weights}, (ws,), {"noise_mode": noise_mode})

        def render(ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
            """ws [K, S, num_ws, w_dim] -> [K, S, C, R, R], row k by image k's generator."""
            vectorised = torch.func.vmap(render_one, in_dims=(0, 0, None), randomness="different")
            return vectorised(optimizer[0], ws, noise_mode)

        target_batch = torch.cat([targets[k] for k in live])
        threshold = self.early_stop(G)
        rngs = [torch.Generator().manual_seed(self.seed) for _ in live]
        losses: dict[int, list] = {k: [] for k in live}
        stopped = set()  # images that reached the early-stop threshold

        def finish(rows: list[int]) -> None:
            """Keep the tuned weights of these rows (before this step's update) as their results."""
            for row in rows:
                k = live[row]
                tuned = copy.deepcopy(G).requires_grad_(False).eval()
                with torch.no_grad():
                    for name, value in optimizer[0].items():
                        tuned.synthesis.get_parameter(name).copy_(value[row])
                latent = optimizer[1]["latent"][row:row + 1] if extra_groups else start_latents[row:row + 1]
                results[k] = Tuning(tuned, self.render_latents(latent, G).detach().clone(), len(losses[k]),
                                    k in stopped, 0.0, losses[k])

        lpips_to_targets = perceptual_distance(perceptual, target_batch)
        bar = tqdm(range(self.steps), desc=f"{where} x{len(live)}", disable=not self.progress, leave=False)
        for step in bar:
            latents = optimizer[1]["latent"] if extra_groups else start_latents
            ws = self.render_latents(latents, G)  # [K, num_ws, w_dim]
            with autocast_context(self.autocast, target_batch.device):
                images = render(ws[:, None], self.noise_mode)[:, 0]  # [K, C, R, R]
                lpips = lpips_to_targets(images).float()  # [K]
            mse = (images - target_batch).square().flatten(1).mean(1)  # [K]
            done = [row for row, value in enumerate(lpips.tolist()) if threshold > 0 and value <= threshold]
            stopped.update(live[row] for row in done)
            loss = self.lpips_weight * lpips + self.l2_weight * mse  # [K]
            parts = {}
            if regularizer is not None and regularizer.applies(step):
                # A row that stops now draws nothing from its own stream (as alone); its term is not used.
                streams = [rng if row not in done else torch.Generator() for row, rng in enumerate(rngs)]
                with autocast_context(self.autocast, target_batch.device):
                    locality, parts["locality_lpips"], parts["locality_mse"] = regularizer.batch_loss(
                        G, lambda w_r: render(w_r, regularizer.noise_mode), ws, perceptual, streams)
                parts = {name: part.float() for name, part in parts.items()}
                loss = loss + locality.float()
            values = torch.stack([loss, lpips, mse, *parts.values()], 1).tolist()
            failed = []
            for row, (value, lpips_value, mse_value, *part_values) in enumerate(values):
                if row in done:
                    continue
                k = live[row]
                if not math.isfinite(value):
                    results[k] = NonFiniteLossError(f"{where}: loss is {value} at step {step}")
                    failed.append(row)
                    continue
                record = {"loss": value, "lpips": lpips_value, "mse": mse_value, **dict(zip(parts, part_values))}
                losses[k].append(record)
                if on_steps[k] is not None:
                    on_steps[k](step, record, images[row:row + 1].detach())
            finish(done)
            kept = [row for row in range(len(live)) if row not in done and row not in failed]
            if kept:
                optimizer.step(loss[kept].sum())  # rows that stopped or failed get no gradient and are dropped below
            if len(kept) < len(live):
                rows = torch.tensor(kept, dtype=torch.long, device=target_batch.device)
                optimizer.keep(rows)
                start_latents, target_batch = start_latents[rows], target_batch[rows]
                lpips_to_targets = perceptual_distance(perceptual, target_batch)
                rngs = [rngs[row] for row in kept]
                live = [live[row] for row in kept]
            if not live:
                break
            if not bar.disable:
                bar.set_postfix(lpips=f"{lpips.mean().item():.3f}")
        bar.close()
        finish(list(range(len(live))))
        seconds = (time.perf_counter() - start) / K
        for result in results:
            if isinstance(result, Tuning):
                result.seconds = seconds
        return results

    def tune_one(self, G: Generator, target: torch.Tensor, pivot: torch.Tensor, perceptual: torch.nn.Module,
                 regularizer: Optional[LocalityRegularizer], on_step: Optional[StepCallback]) -> Tuning | PTILabError:
        """`tune` for one image, its error returned instead of raised (as tune_batch returns them)."""
        try:
            return self.tune(G, target, pivot, perceptual, regularizer, on_step)
        except PTILabError as error:
            return error

    def render_latents(self, latents: torch.Tensor, G: Generator) -> torch.Tensor:
        return latents


def perceptual_distance(perceptual: torch.nn.Module, targets: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """images [N, C, R, R] -> LPIPS(images, targets) per image [N]. With an LPIPS module the targets'
    features are computed once here, not at every step."""
    if hasattr(perceptual, "feature_maps_unchecked") and hasattr(perceptual, "distance"):
        with torch.no_grad():
            target_features = perceptual.feature_maps_unchecked(targets)
        return lambda images: perceptual.distance(perceptual.feature_maps_unchecked(images), target_features).flatten()
    return lambda images: perceptual.forward_unchecked(images, targets).reshape(len(images))


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
