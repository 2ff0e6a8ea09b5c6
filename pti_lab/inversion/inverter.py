"""What every inverter shares: its result, the check of a target, and `invert` as a batch of one.

An inverter (the Inverter contract of pti_lab/stages.py) turns K targets into K pivots with
`invert_batch`, each pivot the one it gives for that image alone; an image that cannot be inverted
gets its error in its place and the others go on.
"""

from dataclasses import dataclass, field
from typing import Optional

import torch

from pti_lab.errors import BadInputError, PTILabError
from pti_lab.imaging import check_images, describe
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback


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


class Inverter:
    """Base of the inverters: `invert` is `invert_batch` of one image; nothing to prepare; `one_step` is
    the inverter itself unless it optimises (the projector overrides it)."""

    weights_fingerprint: Optional[str] = None  # sha256 of the inverter's own weights (an encoder's), for the pivot cache

    def prepare(self, G: Generator) -> None:
        """Check, before any image, that this inverter can invert for G (a one-line BadInputError if not)."""

    def one_step(self) -> "Inverter":
        """A copy that takes one optimisation step, quietly (what the batch memory probe runs)."""
        return self

    def invert(self, G: Generator, target: torch.Tensor, seed: int = 0,
               on_step: Optional[StepCallback] = None) -> Inversion:
        """The pivot of one target [1, 3, R, R] in [-1, 1]; raises the error that failed it."""
        (result,) = self.invert_batch(G, [target], seed, [on_step])
        if isinstance(result, PTILabError):
            raise result
        return result
