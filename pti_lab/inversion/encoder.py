"""Encoder inversion: pSp or e4e maps the image to a W+ pivot in one forward pass (image -> pivot).

    inverter=e4e                          # the shipped synthfaces e4e
    inverter=psp inverter.path=psp_ffhq_encode.pt
    inverter=e4e tuner=pivotal            # PTI from the e4e pivot (the official code's use_e4e)
    inverter=e4e inverter.refine_steps=100   # then 100 W+ projector steps from the encoder's latent

`path` is any file `pti_lab.models.load_encoder` reads (official e4e / pSp checkpoints or ours) or
a URL; null takes the shipped synthfaces encoder of `kind`. The encoder is read when the inverter is
built and checked against the generator by `prepare(G)` before any image (num_ws and w_dim must
match; a mismatch is one line naming both). Its weights' fingerprint (`weights_fingerprint`) is part
of the pivot cache key, so a retrained file never serves the pivots of the old one.

Refinement runs the W+ (or W) projector of projector.py started at the encoder's latent instead of
mu_w: the encoder gives the start, a few steps of optimisation the details. Its exploration noise
starts at `refine_noise_factor` (the projector's 0.05 searches around mu_w; from an encoder's latent
there is nothing to search for), the rest of the schedule is the projector's.
"""

import copy
import time
from typing import Optional, Sequence

import torch

from pti_lab.batching.stacked import accepted
from pti_lab.errors import BadInputError, PTILabError
from pti_lab.inversion.inverter import Inversion, Inverter, check_target
from pti_lab.inversion.projector import WInverter, WPlusInverter
from pti_lab.models.encoders import EncoderNet, load_encoder
from pti_lab.models.fingerprint import tensors_fingerprint
from pti_lab.models.stylegan2 import Generator
from pti_lab.steps import StepCallback
from pti_lab.synthfaces import shipped

REFINE_SPACES = {"w_plus": WPlusInverter, "w": WInverter}


def encoder_fingerprint(encoder: EncoderNet) -> str:
    """sha256 of the encoder's tensors and latent_avg (whatever file format or dtype they came from)."""
    return tensors_fingerprint(encoder.state_dict(), header=f"{encoder.kind}\n")


class EncoderInverter(Inverter):
    """Pivot = encoder(image): an e4e or pSp checkpoint, optionally refined by the projector."""

    def __init__(
        self,
        kind: str = "e4e",                  # 'e4e' or 'psp': the shipped encoder when path is null, and the file's kind
        path: Optional[str] = None,         # encoder checkpoint or URL (load_encoder); null = shipped synthfaces `kind`
        refine_steps: int = 0,              # projector steps from the encoder's latent; 0 = the encoder alone
        refine_space: str = "w_plus",       # 'w_plus' (one latent per layer) or 'w' (the layers' mean, broadcast)
        refine_lr: float = 0.01,            # projector peak learning rate (PTI's first_inv_lr)
        refine_noise_factor: float = 0.0,   # projector exploration noise at step 0, in units of the W spread
        steps: int = 0,                     # unused (nothing is optimised): `inverter.steps=N` sweeps every method
        progress: bool = True,              # progress bar of the refinement (terminals only)
    ):
        where = f"inverter={kind}"
        if kind not in shipped.ENCODER_FILES:
            raise BadInputError(f"{where}: kind must be one of {', '.join(shipped.ENCODER_FILES)}")
        if refine_steps < 0:
            raise BadInputError(f"{where}: refine_steps must be >= 0, got {refine_steps}")
        if refine_space not in REFINE_SPACES:
            raise BadInputError(f"{where}: refine_space must be one of {', '.join(REFINE_SPACES)}, "
                                f"got {refine_space!r}")
        source = path or str(shipped.path_of(shipped.ENCODER_FILES[kind]))
        self.encoder = load_encoder(source)
        if self.encoder.kind != kind:
            raise BadInputError(f"{source}: the checkpoint holds {self.encoder.kind}, not {kind}; "
                                f"use inverter={self.encoder.kind}")
        self.kind, self.source = kind, source
        self.weights_fingerprint = encoder_fingerprint(self.encoder)
        self.refiner = REFINE_SPACES[refine_space](steps=refine_steps, lr=refine_lr, progress=progress,
                                                   initial_noise_factor=refine_noise_factor) if refine_steps else None

    def prepare(self, G: Generator) -> None:
        """Check, before any image, that G renders the ws this encoder predicts."""
        self.encoder.check_generator(G)

    def one_step(self) -> "EncoderInverter":
        if self.refiner is None:
            return self
        probe = copy.copy(self)
        probe.refiner = self.refiner.one_step()
        return probe

    def invert_batch(self, G: Generator, targets: Sequence[torch.Tensor], seed: int = 0,
                     on_steps: Optional[Sequence[Optional[StepCallback]]] = None) -> list[Inversion | PTILabError]:
        """encoder(target) [1, num_ws, w_dim] for each target, then `refine_steps` projector steps from
        those latents, all K in one batch; `seed` and `on_steps` serve the refinement (the encoder itself
        is deterministic and has no steps)."""
        results, live = accepted(targets, lambda target: check_target(G, target, type(self).__name__))
        self.prepare(G)
        start = time.perf_counter()
        device = next(G.parameters()).device
        with torch.no_grad():
            encoded = [self.encoder.to(device)(targets[k].to(device, torch.float32)) for k in live]  # [1, num_ws, w_dim] each
        encoding_seconds = (time.perf_counter() - start) / len(targets)
        if self.refiner is None:
            refined = [Inversion(pivot=pivot, steps=0) for pivot in encoded]
        else:
            on_steps = list(on_steps) if on_steps is not None else [None] * len(targets)
            refined = self.refiner.invert_batch(G, [targets[k] for k in live], seed, [on_steps[k] for k in live],
                                                inits=encoded)
        for k, inversion in zip(live, refined):
            if isinstance(inversion, Inversion):
                inversion.seconds += encoding_seconds
            results[k] = inversion
        return results
