"""The configured generator (conf/generator): a checkpoint, fresh weights, or the shipped synthfaces one.

This factory sits above models/ and synthfaces/: the embedded domain depends on models, and the
choice between them is made here, never inside models/.
"""

import logging
from typing import Optional

import torch

from pti_lab.models.checkpoints import load_generator, new_generator
from pti_lab.models.stylegan2 import Generator
from pti_lab.synthfaces import shipped

log = logging.getLogger(__name__)


def make_generator(path: Optional[str] = None, architecture: Optional[dict] = None, seed: int = 0,
                   device: str | torch.device = "cpu") -> Generator:
    """The configured generator: a checkpoint, fresh weights, or the shipped synthfaces generator.

    path:         checkpoint file or URL for load_generator; takes precedence.
    architecture: Generator constructor arguments for fresh weights (used when path is None);
                  with network: stylegan3, a StyleGAN3 generator's.
    seed:         seed of the fresh weights.
    With neither, the synthfaces generator that ships with pti-lab (hash-checked), carrying its
    measured tuning early stop (`tuning_lpips_threshold`).
    """
    if path:
        return load_generator(path, device)
    if architecture:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            G = new_generator(dict(architecture))
        log.info("generator: fresh weights (seed %d), %d px", seed, G.img_resolution)
        return G.eval().requires_grad_(False).to(device)
    G = load_generator(shipped.path_of(shipped.GENERATOR_FILE), device)
    G.tuning_lpips_threshold = shipped.TUNING_LPIPS_THRESHOLD  # read by the tuners when tuner.lpips_threshold is auto
    return G
